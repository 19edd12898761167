"""`mqkit webhook ...` as an operator runs it: separate processes, the embedded broker, and the
fan-out delivering to the receiver over real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from mqkit.webhooks import Secret
from mqkit.webhooks.receiver import message_id
from tests.support.cli import mqkit
from tests.support.services import ROOT


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mqkit", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out.decode(), err.decode()


def _wait_for_attempts(db: Path, n: int, timeout: float = 60) -> None:
    """Until the dispatcher has logged `n` attempts (its log is written in batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            try:
                (count,) = conn.execute("SELECT count(*) FROM mqkit_webhook_attempts").fetchone()
            except sqlite3.OperationalError:
                count = 0
        if count >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} attempts logged in {timeout:g}s")


def test_endpoint_commands(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'hooks.db'}"]
    added = mqkit("webhook", "endpoint", "add", "https://example.com/h", "-t", "orders.*", *db)
    assert added.returncode == 0, added.stderr
    endpoint, secret = added.stdout.decode().split()
    assert endpoint.startswith("ep_") and Secret(secret).text == secret

    mqkit("webhook", "endpoint", "update", endpoint, "--rate-limit", "50", "-d", "shop", *db)
    mqkit("webhook", "endpoint", "disable", endpoint, "--reason", "maintenance", *db)
    rotated = mqkit("webhook", "endpoint", "rotate-secret", endpoint, "--overlap", "1h", *db)
    new_secret = rotated.stdout.decode().split()[1]
    listed = mqkit("webhook", "endpoint", "list", "--json", *db)
    [record] = [json.loads(line) for line in listed.stdout.decode().splitlines()]
    assert record["enabled"] is False and record["disabled_reason"] == "maintenance"
    assert record["rate_limit"] == 50 and record["description"] == "shop"
    assert [s["secret"][:10] for s in record["secrets"]] == [new_secret[:10], secret[:10]]
    assert secret not in listed.stdout.decode()  # secrets are never printed whole by default
    table = mqkit("webhook", "endpoint", "list", *db, columns=200).stdout.decode()
    assert endpoint in table and "disabled: maintenance" in table

    removed = mqkit("webhook", "endpoint", "remove", endpoint, *db)
    assert removed.returncode == 0
    for args, error in [
        (["endpoint", "show", endpoint], f"no webhook endpoint {endpoint!r}"),
        (["endpoint", "add", "http://x", "-t", "a", "--secret", "whsec_YWJj"], "24 to 64 bytes"),
    ]:
        r = mqkit("webhook", *args, *db)
        assert r.returncode == 2 and error in r.stderr.decode(), r.stderr
        assert b"Traceback" not in r.stderr and len(r.stderr.decode().splitlines()) == 1


def test_dispatch_to_the_receiver_then_attempts_and_replay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    db = ["--db", f"sqlite:///{tmp_path / 'hooks.db'}"]
    port = _port()
    secret = Secret.generate().text
    env = {"MQKIT_URL": url, "MQKIT_WEBHOOK_SECRET_ACME": secret}
    hook = f"http://127.0.0.1:{port}/acme"
    added = mqkit(
        "webhook", "endpoint", "add", hook, "-t", "orders", "--secret", secret,
        "--allow", "127.0.0.1/32", *db,
    )  # fmt: skip
    endpoint = added.stdout.decode().split()[0]

    dispatch_args = ("webhook", "dispatch", "--allow", "127.0.0.1/32", "--schedule", "0", *db)
    dispatcher = _start(*dispatch_args, env=env)
    for n in range(5):  # the receiver is not up yet: every attempt fails
        mqkit("publish", "orders", json.dumps({"n": n}), url=url)
    _wait_for_attempts(tmp_path / "hooks.db", 5)
    _stop(dispatcher)

    tried = mqkit("webhook", "attempts", "-e", endpoint, "--json", *db)
    attempts = [json.loads(line) for line in tried.stdout.decode().splitlines()]
    assert len(attempts) == 5 and {a["outcome"] for a in attempts} == {"failed"}
    assert all("Connect" in (a["error"] or "") for a in attempts), attempts[0]

    receiver = _start("webhook", "serve", "-s", "acme=received", "--port", str(port), env=env)
    assert receiver.stdout is not None
    assert receiver.stdout.readline().startswith(b"receiving on")
    replayed = mqkit("webhook", "replay", "-e", endpoint, "--since", "1h", *db, url=url)
    assert replayed.stdout.decode().strip() == f"queued 5 message(s) for {endpoint}"
    dispatcher = _start(*dispatch_args, env=env)
    got = mqkit(
        "consume", "received", "--from-beginning", "--count", "5", "--timeout", "20", url=url
    )
    out, _ = _stop(dispatcher)
    _stop(receiver)
    assert "delivered 5" in out
    received = [json.loads(line) for line in got.stdout.decode().splitlines()]
    assert sorted(json.loads(r["body"])["n"] for r in received) == [0, 1, 2, 3, 4]
    sent_ids = {a["message_id"] for a in attempts}
    # The message id is derived from the source and the webhook-id (the dispatcher's id).
    assert {r["headers"]["webhook-id"] for r in received} == sent_ids
    assert {r["id"] for r in received} == {message_id("acme", i) for i in sent_ids}
    again = mqkit("webhook", "replay", "-e", endpoint, "--since", "1h", *db, url=url)
    assert again.stdout.decode().strip() == f"queued 0 message(s) for {endpoint}"
