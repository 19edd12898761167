from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

URLS = {
    "kafka": os.environ.get("MQKIT_TEST_KAFKA_URL", "kafka://127.0.0.1:9092"),
    "rabbitmq": os.environ.get(
        "MQKIT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/mqkit-test"
    ),
    "redis": os.environ.get("MQKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
}


async def services(command: str, name: str) -> None:
    """Run scripts/services COMMAND NAME (restart, kill, up) and fail loudly if it fails."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / "scripts" / "services"),
        command,
        name,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
