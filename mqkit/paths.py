"""Where mqkit keeps the user's data when told nothing: $XDG_DATA_HOME/mqkit (else
~/.local/share/mqkit). The embedded broker's default file and, beside it, the webhook
database live there."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "mqkit"


def default_database() -> Path:
    """The embedded default broker's file: <data dir>/mqkit.db."""
    return data_dir() / "mqkit.db"
