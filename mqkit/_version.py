"""The package's version: the one place it is written (pyproject.toml reads it from here),
so that `mqkit --version` need not import importlib.metadata, a fifth of its start-up."""

__version__ = "0.1.0"
