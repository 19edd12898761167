"""`python -m mqkit ...` is the `mqkit` command."""

from mqkit.cli import main

main()
