"""The check-back's defaults, apart from the checker so that `mqkit half checker --help`
shows them without importing it."""

DEFAULT_INTERVAL = 30.0  # seconds between two checks of an unresolved half message
DEFAULT_MAX_CHECKS = 15  # checks before an unresolved one is dead-lettered
