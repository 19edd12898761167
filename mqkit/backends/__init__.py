"""Backends that ship with mqkit: `memory://` and the embedded default, `sqlite://`."""
