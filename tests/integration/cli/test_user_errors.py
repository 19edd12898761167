"""The CLI as a new user meets it: every mistake is one line on stderr and exit code 2, with
no traceback, and nothing is left behind that the user did not ask for."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.cli import mqkit
from tests.support.services import ROOT

POSTGRES_DOWN = "postgresql://app@127.0.0.1:1/app?password=s3cret"

# (arguments, what the one line must say)
MISTAKES: list[tuple[list[str], str]] = [
    (["consume", "t", "--timeout", "-1"], "--timeout"),
    (["consume", "t", "--count", "-1"], "--count"),
    (["consume", "t", "--count", "0"], "--count"),
    (["publish", "t", "x", "--delay", "-1"], "--delay"),
    (["dlq", "list", "t", "--wait", "-1"], "--wait"),
    (["dlq", "list", "t", "--limit", "-5"], "--limit"),
    (["run", "x:app", "--shutdown-timeout", "-1"], "--shutdown-timeout"),
    (["run", "x:app", "--loop", "tokio"], "--loop"),
    (["demo", "--orders", "-1"], "--orders"),
    (["webhook", "dispatch", "--timeout", "-1s"], "--timeout"),
    (["webhook", "serve", "-s", "a=b", "--port", "-1"], "--port"),
    (["webhook", "serve", "-s", "a=b", "--max-pending", "0"], "--max-pending"),
    (["webhook", "endpoint", "rotate-secret", "ep_x", "--overlap", "-1h"], "--overlap"),
    (["outbox", "relay", "--db", "sqlite:///x.db", "--retention", "-1"], "--retention"),
    (["half", "checker", "m:check", "-g", "g", "--store", "x", "--interval", "-1"], "--interval"),
    # Secrets in the URLs of failing commands are masked (userinfo and query).
    (["outbox", "status", "--db", POSTGRES_DOWN], "postgresql://app@127.0.0.1:1/app?password=***"),
    (["publish", "t", "x", "--url", "redis://:s3cret@127.0.0.1:1/0?password=s3cret"], "***"),
]


def _one_line_error(result: subprocess.CompletedProcess[bytes], says: str) -> None:
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("mqkit: error: ") and says in err, err
    assert "s3cret" not in err + result.stdout.decode()


def test_every_mistake_is_one_line_and_exit_2(tmp_path: Path) -> None:
    def attempt(args: list[str]) -> subprocess.CompletedProcess[bytes]:
        return mqkit(*args, url=f"sqlite:///{tmp_path / 'b.db'}", cwd=tmp_path)

    with ThreadPoolExecutor(4) as pool:  # each is a whole interpreter start
        results = list(pool.map(attempt, [args for args, _ in MISTAKES]))
    for (args, says), result in zip(MISTAKES, results, strict=True):
        try:
            _one_line_error(result, says)
        except AssertionError as exc:
            raise AssertionError(f"mqkit {' '.join(args)}: {exc}") from None


def _module(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(text)


def test_run_reports_an_app_that_cannot_be_loaded_in_one_line(tmp_path: Path) -> None:
    _module(tmp_path, "boom_app", "import mqkit\n\nraise RuntimeError('no config')\n")
    # A module that exists and imports a missing one is not itself "no such module", also
    # when the missing module's name is a prefix of it.
    _module(tmp_path, "jobs_app", "import jobs\n")
    _module(tmp_path, "name_app", "from os import no_such_name\n")
    _module(tmp_path, "empty_app", "import mqkit\n\napp = mqkit.App('memory://')\n")
    cases = [
        ("boom_app:app", f"RuntimeError: no config at {tmp_path / 'boom_app.py'}:3"),
        ("jobs_app:app", "importing 'jobs_app' raised ModuleNotFoundError: No module named 'jobs'"),
        ("name_app:app", "ImportError: cannot import name 'no_such_name'"),
        ("missing_mod:app", "cannot import 'missing_mod': no such module"),
        ("empty_app:app", "has no subscribers"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: mqkit("run", c[0], cwd=tmp_path), cases))
    for (target, says), result in zip(cases, results, strict=True):
        try:
            _one_line_error(result, says)
        except AssertionError as exc:
            raise AssertionError(f"mqkit run {target}: {exc}") from None
    whole = mqkit("run", "boom_app:app", "--traceback", cwd=tmp_path)
    assert whole.returncode != 0 and b"Traceback" in whole.stderr  # --traceback shows it all


def test_publishing_empty_stdin_names_the_topic(tmp_path: Path) -> None:
    done = mqkit("publish", "orders", "-", stdin=b"", url=f"sqlite:///{tmp_path / 'b.db'}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().strip() == "published 0 message(s) to orders"


@pytest.mark.parametrize("command", ["relay", "status"])
def test_outbox_commands_never_create_a_database(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing.db"
    result = mqkit("outbox", command, "--db", f"sqlite:///{missing}", url="memory://")
    _one_line_error(result, "mqkit outbox init")
    assert "no outbox table" in result.stderr.decode()
    assert not missing.exists()


def _webhook(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return mqkit("webhook", *args, "--db", f"sqlite:///{tmp_path / 'hooks.db'}")


def test_endpoint_add_refuses_what_dispatch_would_refuse(tmp_path: Path) -> None:
    cases = [
        (["endpoint", "add", "https://example.com/h", "-t", "bad topic"], "invalid topic"),
        (["endpoint", "add", "http://127.0.0.1:9000/", "-t", "a"], "loopback"),
        (["endpoint", "add", "http://169.254.169.254/latest", "-t", "a"], "link-local"),
        (["endpoint", "add", "http://[fec0::1]/", "-t", "a"], "site-local"),
    ]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: _webhook(tmp_path, *c[0]), cases))
    for (_, says), result in zip(cases, results, strict=True):
        _one_line_error(result, says)
        assert "--allow" in result.stderr.decode() or "topic" in says
    listed = _webhook(tmp_path, "endpoint", "list", "--json")
    assert listed.stdout == b""  # nothing was stored
    allowed = _webhook(
        tmp_path, "endpoint", "add", "http://127.0.0.1:9000/", "-t", "a", "--allow", "127.0.0.1/32"
    )
    assert allowed.returncode == 0, allowed.stderr
    named = _webhook(tmp_path, "endpoint", "add", "http://localhost:9000/", "-t", "a")
    assert named.returncode == 0, named.stderr  # DNS may change: stored, with a warning
    assert b"warning" in named.stderr and b"loopback" in named.stderr


def test_endpoint_urls_are_masked_and_never_cut_when_piped(tmp_path: Path) -> None:
    long_path = "/".join(["segment"] * 30)
    url = f"https://user:s3cret@example.com/{long_path}?token=s3cret&page=2"
    added = _webhook(tmp_path, "endpoint", "add", url, "-t", "orders")
    assert added.returncode == 0, added.stderr
    shown = f"https://user:***@example.com/{long_path}?token=***&page=2"
    table = _webhook(tmp_path, "endpoint", "list").stdout.decode()  # stdout is a pipe here
    assert shown in table and "s3cret" not in table
    [record] = [json.loads(line) for line in _webhook(tmp_path, "endpoint", "list", "--json")
                .stdout.decode().splitlines()]  # fmt: skip
    assert record["url"] == shown
    endpoint = record["id"]
    assert "s3cret" not in _webhook(tmp_path, "endpoint", "show", endpoint).stdout.decode()
    full = _webhook(tmp_path, "endpoint", "show", endpoint, "--show-secret").stdout.decode()
    assert json.loads(full)["url"] == url  # asked for: shown whole


def test_the_webhook_database_sits_next_to_the_broker_file_in_use(tmp_path: Path) -> None:
    broker_dir = tmp_path / "elsewhere"
    broker_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    env.pop("MQKIT_URL", None)
    added = subprocess.run(
        [sys.executable, "-m", "mqkit", "--url", f"sqlite:///{broker_dir / 'broker.db'}",
         "webhook", "endpoint", "add", "https://example.com/h", "-t", "orders"],
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert (broker_dir / "webhooks.db").exists()
    assert not (tmp_path / "xdg" / "mqkit" / "webhooks.db").exists()


def test_run_on_a_metrics_port_in_use_says_so_and_exits_2(tmp_path: Path) -> None:
    _module(tmp_path, "ok_app", "import mqkit\n\napp = mqkit.App()\n\n"
            "@app.subscriber('t')\nasync def h(body: bytes) -> None:\n    pass\n")  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'q.db'}"
        result = mqkit("run", "ok_app:app", "--metrics-port", str(port), url=url, cwd=tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert (
        err.strip().splitlines()[-1]
        == f"mqkit: error: cannot serve on 127.0.0.1:{port} (see the line above)"
    )
