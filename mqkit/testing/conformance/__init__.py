"""The conformance suite: one set of cases every backend passes, per the capabilities it
claims (a case it does not claim is skipped, saying why). Modelled on Watermill's universal
Pub/Sub tests; docs/design.md lists the cases.

Run it on any URL, from any directory (exit status 0 when green):

    python -m mqkit.testing.conformance sqlite:///tmp/x.db

or in an adapter's own tests: import the cases and their fixtures into a test module and
give the `make_url` fixture (see fixtures.py):

    import pytest
    from mqkit.testing.conformance import *  # noqa: F403

    @pytest.fixture
    def make_url() -> MakeUrl:
        return lambda options="": with_options("mybroker://127.0.0.1:7000", options)
"""

import inspect

import pytest

# Before the cases are imported: a failing case then shows its values, as in any test file.
pytest.register_assert_rewrite(
    *(f"{__name__}.{m}" for m in ("pubsub", "delivery", "dlq", "lag", "batches", "transactions"))
)

from mqkit.testing.conformance import (  # noqa: E402
    batches,
    delivery,
    dlq,
    lag,
    pubsub,
    transactions,
)
from mqkit.testing.conformance.fixtures import (  # noqa: E402
    MakeUrl,
    broker,
    require,
    topic,
    url,
    with_options,
)

_CASES = {
    name: getattr(module, name)
    for module in (pubsub, delivery, dlq, lag, batches, transactions)
    for name in dir(module)
    if name.startswith("test_")
}
for _case in _CASES.values():
    # Marked one by one (not with a module's pytestmark), so that the cases run async in
    # whatever module imports them, under pytest-asyncio's strict mode as under auto.
    if inspect.iscoroutinefunction(_case):
        pytest.mark.asyncio(_case)
globals().update(_CASES)

__all__ = [*sorted(_CASES), "MakeUrl", "broker", "require", "topic", "url", "with_options"]
