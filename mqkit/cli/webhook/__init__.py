"""`mqkit webhook ...`: endpoints, the dispatcher, its attempt log and replays, the receiver.

Endpoints and attempts live in the webhook database (`--db`, $MQKIT_WEBHOOK_DB; by default a
sqlite file next to the embedded broker's: mqkit.webhooks.defaults). Messages go through the
broker (`--url`). One module per command group; this one only wires them.
"""

import typer

from mqkit.cli.webhook.attempts import attempts, replay
from mqkit.cli.webhook.dispatch import dispatch
from mqkit.cli.webhook.endpoints import endpoint_app
from mqkit.cli.webhook.serve import serve

webhook_app = typer.Typer(
    help="Webhooks: endpoints, the signed fan-out (dispatch), attempts, replay, the receiver.",
    no_args_is_help=True,
)
webhook_app.add_typer(endpoint_app, name="endpoint")
for command in (attempts, replay, dispatch, serve):
    webhook_app.command()(command)

__all__ = ["webhook_app"]
