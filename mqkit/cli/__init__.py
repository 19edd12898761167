"""The `mqkit` command line (typer + rich)."""

from mqkit.cli.main import app, main

__all__ = ["app", "main"]
