from __future__ import annotations

import threading
from pathlib import Path

import pytest

import mqkit
import mqkit.sync


def test_sync_publish_and_consume(tmp_path: Path) -> None:
    with mqkit.sync.connect(f"sqlite:///{tmp_path / 'q.db'}") as broker:
        sent = [broker.publish("t", {"n": i}).id for i in range(5)]
        got = [d.message.id for d in broker.consume("t", group="g", start="earliest", count=5)]
        assert got == sent
        # acked: the group has nothing left
        assert list(broker.consume("t", group="g", timeout=0.3)) == []


def test_exception_in_loop_body_leaves_message_for_redelivery(tmp_path: Path) -> None:
    with mqkit.sync.connect("memory://") as broker:
        broker.publish("t", "fragile")
        with pytest.raises(RuntimeError):
            for _ in broker.consume("t", group="g", start="earliest", timeout=2):
                raise RuntimeError("handler crashed")
        (again,) = list(broker.consume("t", group="g", timeout=2, count=1))
        assert again.message.attempt == 2


def test_callable_from_many_threads() -> None:
    with mqkit.sync.connect("memory://") as broker:
        threads = [
            threading.Thread(target=lambda: [broker.publish("t", b"x") for _ in range(100)])
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(list(broker.consume("t", group="g", start="earliest", timeout=0.5))) == 800


def test_sync_errors_are_the_same_types() -> None:
    with pytest.raises(mqkit.UnknownSchemeError):
        mqkit.sync.connect("nats://localhost:4222")
    with pytest.raises(mqkit.BrokerUnavailableError):
        mqkit.sync.connect("redis://127.0.0.1:1/0")
    broker = mqkit.sync.connect("memory://")
    broker.close()
    broker.close()
