"""The Python API as the README writes it: every error it names importable from `mqkit`,
the feature packages reachable after `import mqkit` alone, and `import mqkit` light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mqkit

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_the_readme_names_is_importable_from_mqkit() -> None:
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"\b([A-Z][A-Za-z]+Error)\b", readme)) | {"Retry", "Reject"}
    assert {"PublishTimeoutError", "RateLimitedError", "HalfMessageError"} <= named
    for name in sorted(named):
        error = getattr(mqkit, name, None)
        assert isinstance(error, type) and issubclass(error, mqkit.MqkitError), name
        assert name in mqkit.__all__, name


def test_feature_packages_load_on_first_use_and_import_mqkit_stays_light() -> None:
    code = (
        "import sys, mqkit\n"
        "heavy = [m for m in ('sqlalchemy', 'aiohttp', 'starlette', 'redis', 'aiokafka')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(mqkit.outbox.add) and mqkit.half.HalfProducer\n"
        "assert mqkit.webhooks.sign and mqkit.idempotency.idempotent and mqkit.sync.connect\n"
        "assert mqkit.dlq.DeadLetters and mqkit.ratelimit.LocalLimiter\n"
        "try:\n"
        "    mqkit.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_thing' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('mqkit.no_such_thing did not raise')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()
