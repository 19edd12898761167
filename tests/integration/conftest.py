"""The integration tier runs against the real servers of `scripts/services` (see
tests.support.services)."""
