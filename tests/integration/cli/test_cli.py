"""The `mqkit` command as a user runs it: separate processes, real files, exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import mqkit, wait_for_group
from tests.support.services import ROOT


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_publish_in_one_process_consume_in_another(url: str) -> None:
    pub = mqkit("publish", "greetings", "hello world", "--key", "k1", "-H", "a=1", url=url)
    assert pub.returncode == 0, pub.stderr
    message_id = pub.stdout.decode().strip()
    got = mqkit("consume", "greetings", "--from-beginning", "--count", "1", url=url)
    assert got.returncode == 0, got.stderr
    record = json.loads(got.stdout)
    assert record["id"] == message_id
    assert record["body"] == "hello world"
    assert record["key"] == "k1" and record["headers"] == {"a": "1"}


def test_consume_waits_for_a_publish_from_another_process(url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MQKIT_URL": url}
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mqkit",
            "consume",
            "live",
            "--group",
            "g",
            "--count",
            "2",
            "--output",
            "raw",
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # A new group starts at the latest message: publish once the consumer's group exists.
    wait_for_group(url, "live", "g")
    assert mqkit("publish", "live", "one", url=url).returncode == 0
    assert mqkit("publish", "live", "two", url=url).returncode == 0
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    assert out.splitlines() == [b"one", b"two"]


def test_publish_lines_from_stdin_and_file(url: str, tmp_path: Path) -> None:
    lines = b"".join(b'{"n": %d}\n' % i for i in range(2500))
    r = mqkit("publish", "bulk", "-", "--json", url=url, stdin=lines)
    assert r.returncode == 0, r.stderr
    assert b"published 2500 message(s) to bulk" in r.stderr
    f = tmp_path / "more.txt"
    f.write_text("a\n\nb\n")
    assert mqkit("publish", "bulk", "--file", str(f), url=url).returncode == 0
    got = mqkit("consume", "bulk", "--from-beginning", "--count", "2502", url=url)
    records = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(records) == 2502
    assert json.loads(records[0]["body"]) == {"n": 0}
    assert records[0]["content_type"] == "application/json"
    assert [r["body"] for r in records[-2:]] == ["a", "b"]


def test_consume_stops_after_timeout_and_group_keeps_progress(url: str) -> None:
    for i in range(3):
        mqkit("publish", "t", f"m{i}", url=url)
    first = mqkit("consume", "t", "-g", "g", "--from-beginning", "-n", "2", "-o", "raw", url=url)
    rest = mqkit("consume", "t", "-g", "g", "--timeout", "1", "-o", "raw", url=url)
    assert first.stdout.splitlines() == [b"m0", b"m1"]
    assert rest.stdout.splitlines() == [b"m2"] and rest.returncode == 0


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (("publish", "t"), None, "nothing to publish"),
        (("publish", "t", "-", "--json"), b'{"ok": 1}\nnot json\n', "line 2 is not valid JSON"),
        (("publish", "t", "--file", "/no/such/file"), None, "no such file: /no/such/file"),
        (("publish", "t", "x", "-H", "novalue"), None, "--header wants name=value"),
        (("publish", "bad topic", "x"), None, "invalid topic"),
        (
            ("--url", "sqlite:////no/such/dir/q.db", "publish", "t", "x"),
            None,
            "cannot open sqlite:////no/such/dir/q.db",
        ),
        (
            ("publish", "t", "x", "--url", "amqp://u:hunter2@127.0.0.1:1/"),
            None,
            "cannot reach RabbitMQ at amqp://u:***@127.0.0.1:1/",
        ),
        (("publish", "t", "x", "--url", "nats://localhost"), None, "no backend for nats://"),
        (("publish", "t", "x", "--url", "localhost:9092"), None, "not a broker URL"),
        (("consume", "t", "--output", "xml"), None, "--output"),
        (("consume",), None, "Missing argument"),
        (("run", "no_such_module:app"), None, "cannot import 'no_such_module'"),
        (("frobnicate",), None, "No such command"),
    ],
)
def test_user_errors_are_one_line_exit_2(
    url: str, args: tuple[str, ...], stdin: bytes | None, needle: str
) -> None:
    r = mqkit(*args, url=url, stdin=stdin)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "hunter2" not in err


def test_bad_json_publishes_nothing(url: str) -> None:
    mqkit("publish", "t", "-", "--json", url=url, stdin=b'{"a": 1}\n{oops\n')
    got = mqkit("consume", "t", "--from-beginning", "--timeout", "1", url=url)
    assert got.stdout == b""


def test_version_and_url_from_environment(url: str) -> None:
    r = mqkit("--version")
    assert r.returncode == 0 and r.stdout.decode().startswith("mqkit ")
    assert mqkit("publish", "env", "x", url=url).returncode == 0
    got = mqkit("--url", url, "consume", "env", "--from-beginning", "-n", "1", "-o", "raw")
    assert got.stdout == b"x\n"


def _run_app(target: str, cwd: Path, url: str) -> subprocess.Popen[bytes]:
    """`mqkit run TARGET` in its own process, in `cwd`, on the broker at `url`."""
    return subprocess.Popen(
        [sys.executable, "-m", "mqkit", "run", target],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MQKIT_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_run_stops_gracefully_on_sigterm(url: str, tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(
        "import mqkit\n"
        "app = mqkit.App()\n"
        "@app.subscriber('jobs', group='svc')\n"
        "async def handle(body: str) -> None:\n"
        "    print('handled', body, flush=True)\n"
    )
    mqkit("publish", "jobs", "first", url=url)
    proc = _run_app("svc:app", tmp_path, url)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"handled first\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"stopping" in err and b"Traceback" not in err


def test_a_second_signal_stops_run_at_once(url: str, tmp_path: Path) -> None:
    """The first SIGTERM waits for in-flight handlers (here up to 60 s); a second one does
    not wait: the worker exits at once, handing the message back unacked."""
    url += "?lease=2s"  # the handed-back message is due again soon
    (tmp_path / "slow.py").write_text(
        "import asyncio, mqkit\n"
        "app = mqkit.App(shutdown_timeout=60)\n"
        "@app.subscriber('jobs', group='slow')\n"
        "async def handle(body: str) -> None:\n"
        "    print('started', body, flush=True)\n"
        "    await asyncio.sleep(120)\n"
    )
    mqkit("publish", "jobs", "long", url=url)
    proc = _run_app("slow:app", tmp_path, url)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"started long\n"
    proc.send_signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=2)  # the first signal waits for the handler
    second = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - second
    assert proc.returncode == 130, err
    assert took < 20, took  # at once, not after the 60 s shutdown_timeout
    assert b"Traceback" not in err
    again = mqkit("consume", "jobs", "-g", "slow", "-n", "1", "-t", "30", "-o", "raw", url=url)
    assert again.stdout == b"long\n"  # handed back, not lost


def test_demo_finishes_by_itself(url: str) -> None:
    # A narrow terminal: the summary must still come out one fact per line, unwrapped.
    r = mqkit("demo", "--orders", "60", url=url, timeout=120, columns=40)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "done: 59 handled" in out and "succeeded after 2 retries" in out
    assert "1 dead-lettered" in out and "DecodeError" in out


def test_peak_shaving_demo_drains_the_burst_at_the_limit_and_draws_it(
    url: str, tmp_path: Path
) -> None:
    chart = tmp_path / "shaved.png"
    r = mqkit(
        "demo", "peak-shaving", "--rate", "100/s", "--factor", "5", "--chart", str(chart),
        url=url, timeout=120, columns=40,
    )  # fmt: skip
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    offered, processed = (int(n) for n in re.findall(r"(?:offered|processed) (\d+)", out)[:2])
    assert offered == processed and "lost 0" in out
    busiest = int(re.search(r"busiest second after the first: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert busiest <= 110
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = mqkit("demo", "peak-shaving", "--rate", "fast", url=url)
    assert bad.returncode == 2 and b"--rate" in bad.stderr and b"Traceback" not in bad.stderr


def test_demo_uses_the_embedded_default_without_any_url(tmp_path: Path) -> None:
    env_home = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(env_home)}
    env.pop("MQKIT_URL", None)
    r = subprocess.run(
        [sys.executable, "-m", "mqkit", "demo", "--orders", "20"],
        capture_output=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert (env_home / "mqkit" / "mqkit.db").exists()


def _dead_letters(url: str, n: int) -> list[str]:
    """Publish n messages to `orders` and have group billing give up on each."""
    import asyncio

    import mqkit

    async def go() -> list[str]:
        async with mqkit.connect(url) as broker:
            async with await broker.subscribe("orders", group="billing") as sub:
                sent = [await broker.publish("orders", {"n": i}, key=f"k{i}") for i in range(n)]
                for _ in range(n):
                    delivery = await anext(sub)
                    await delivery.reject(ValueError("card declined"))
            return [m.id for m in sent]

    return asyncio.run(go())


def test_dlq_list_show_replay_purge(url: str) -> None:
    ids = _dead_letters(url, 3)
    listed = mqkit("dlq", "list", "orders", "--group", "billing", "--json", url=url)
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["id"] for r in records) == sorted(ids)
    assert {(r["attempts"], r["error_type"], r["error"]) for r in records} == {
        (1, "ValueError", "ValueError: card declined")
    }
    table = mqkit("dlq", "list", "orders", url=url)
    assert table.returncode == 0 and ids[0] in table.stdout.decode()
    assert "declined" in table.stdout.decode()  # the table wraps at 80 columns

    shown = mqkit("dlq", "show", ids[1], "--topic", "orders", url=url)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["key"] == "k1" and record["body"] == '{"n":1}'
    assert record["first_failed_at"] <= record["last_failed_at"]

    replay = mqkit("dlq", "replay", "orders", "--id", ids[0], url=url)
    assert replay.returncode == 0, replay.stderr
    back = mqkit("consume", "orders", "--group", "billing", "--count", "1", url=url)
    again = json.loads(back.stdout)
    assert (again["id"], again["attempt"], again["headers"]["mqkit-replay-group"]) == (
        ids[0],
        1,
        "billing",
    )

    refused = mqkit("dlq", "purge", "orders", url=url, stdin=b"n\n")
    assert refused.returncode != 0
    assert len(mqkit("dlq", "list", "orders", "--json", url=url).stdout.splitlines()) == 2
    purge = mqkit("dlq", "purge", "orders", "--yes", url=url)
    assert purge.returncode == 0 and b"purged 2" in purge.stdout
    assert mqkit("dlq", "list", "orders", "--json", url=url).stdout == b""


def test_dlq_user_errors_are_one_line(url: str) -> None:
    for args in (
        ("dlq", "replay", "orders"),
        ("dlq", "replay", "orders", "--id", "x", "--all"),
        ("dlq", "show", "nope", "--topic", "orders"),
        ("dlq", "replay", "orders", "--id", "nope"),
    ):
        result = mqkit(*args, url=url)
        assert result.returncode == 2, args
        lines = result.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mqkit: error:"), (args, lines)


def test_outbox_init_status_and_relay(url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'app.db'}"
    ddl = mqkit("outbox", "init", "--db", "postgresql://app@db/app", "--sql")
    assert ddl.returncode == 0 and b"CREATE TRIGGER mqkit_outbox_notify" in ddl.stdout
    missing = mqkit("outbox", "status", "--db", db)
    assert missing.returncode == 2 and b"mqkit outbox init" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1
    assert mqkit("outbox", "init", "--db", db).returncode == 0
    assert mqkit("outbox", "init", "--db", db).returncode == 0  # idempotent

    from mqkit import outbox

    with sqlite3.connect(tmp_path / "app.db") as conn:
        ids = [outbox.add(conn, "orders", f"o{i}", key="k").id for i in range(3)]
    status = mqkit("outbox", "status", "--db", db, "--json")
    assert json.loads(status.stdout)["unsent"] == 3
    relayed = mqkit("outbox", "relay", "--db", db, "--once", url=url)
    assert relayed.returncode == 0 and relayed.stdout == b"relayed 3 messages\n", relayed.stderr
    got = mqkit("consume", "orders", "--from-beginning", "--count", "3", url=url)
    assert [json.loads(line)["id"] for line in got.stdout.splitlines()] == ids
    assert json.loads(mqkit("outbox", "status", "--db", db, "--json").stdout)["unsent"] == 0
    bad = mqkit("outbox", "relay", "--db", "mysql://x@y/z", url=url)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_half_list_and_checker(url: str, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'half.db'}"
    (tmp_path / "checks.py").write_text(
        "from mqkit.half import Resolution\n"
        "def check(message):\n"
        "    return Resolution.COMMIT if message.body == b'yes' else Resolution.ROLLBACK\n"
    )
    prepare = (
        "import asyncio, sys, mqkit\n"
        "from mqkit.half import HalfProducer, store_for\n"
        "async def main():\n"
        "    async with mqkit.connect(sys.argv[1]) as broker:\n"
        "        p = HalfProducer(broker, store_for(sys.argv[2]), group='g', check_after=0)\n"
        "        for body in ('yes', 'no'):\n"
        "            print((await p.prepare('orders', body)).id)\n"
        "asyncio.run(main())\n"
    )
    made = subprocess.run(
        [sys.executable, "-c", prepare, url, store],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    yes_id, _ = made.stdout.decode().split()
    listed = [
        json.loads(line)
        for line in mqkit("half", "list", "--store", store, "--json").stdout.splitlines()
    ]
    assert [(r["state"], r["checks"]) for r in listed] == [("prepared", 0), ("prepared", 0)]
    table = mqkit("half", "list", "--store", store)
    assert b"prepared" in table.stdout and b"2 messages" in table.stdout
    checked = mqkit(
        "half", "checker", "checks:check", "--store", store, "--group", "g", "--once",
        url=url, cwd=tmp_path,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert b"committed 1, rolled back 1" in checked.stdout
    assert mqkit("half", "list", "--store", store, "--json").stdout == b""
    got = mqkit("consume", "orders", "--from-beginning", "--count", "1", url=url)
    assert json.loads(got.stdout)["id"] == yes_id
    wrong = mqkit("half", "checker", "checks:nope", "--store", store, url=url, cwd=tmp_path)
    assert (
        wrong.returncode == 2
        and wrong.stderr == b"mqkit: error: module 'checks' has no attribute 'nope'\n"
    )
