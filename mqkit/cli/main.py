"""The `mqkit` command: wires the subcommands and reports user errors in one line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mqkit.cli.common import UrlOption
from mqkit.cli.consume import consume
from mqkit.cli.demo import demo, peak_shaving
from mqkit.cli.dlq import dlq_app
from mqkit.cli.half import half_app
from mqkit.cli.outbox import outbox_app
from mqkit.cli.publish import publish
from mqkit.cli.run import run_command
from mqkit.cli.status import status
from mqkit.cli.webhook import webhook_app
from mqkit.errors import MqkitError

app = typer.Typer(
    name="mqkit",
    help="Move messages reliably: publish, consume and run workers on any broker.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help, as click writes it: rich's help pulls in rich.markdown and its tables,
    # which doubled the start-up of every `--help` (benchmarks/startup.py).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from mqkit._version import __version__

        print(f"mqkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: UrlOption = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """mqkit: one clean way to move messages reliably."""
    _quiet_libraries()  # here, not in main(): `--help` and `--version` never log
    ctx.obj = {"url": url}


app.command()(publish)
app.command()(consume)
app.command("run")(run_command)
app.command()(status)
demo_app = typer.Typer(help="Demos on the configured broker (the embedded default unless told).")
demo_app.callback(invoke_without_command=True)(demo)
demo_app.command("peak-shaving")(peak_shaving)
app.add_typer(demo_app, name="demo")
app.add_typer(dlq_app, name="dlq")
app.add_typer(outbox_app, name="outbox")
app.add_typer(half_app, name="half")
app.add_typer(webhook_app, name="webhook")


def _quiet_libraries() -> None:
    """Broker clients log their connection failures; the CLI reports those itself, in one
    line. mqkit's own warnings still reach stderr (`mqkit run` sets up fuller logging)."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("mqkit")
    ours.addHandler(handler)
    ours.setLevel(logging.WARNING)
    ours.propagate = False


def main() -> None:
    # Typer (with its own copy of click) handles parsing; errors are reported here in one
    # line instead of a usage box, since scripts read stderr too.
    command = typer.main.get_command(app)
    try:
        code = command.main(args=sys.argv[1:], prog_name="mqkit", standalone_mode=False)
    except MqkitError as exc:
        print(f"mqkit: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, typer.Abort) as exc:
        sys.exit(getattr(exc, "exit_code", 130))
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help was printed already
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        print(f"mqkit: error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
