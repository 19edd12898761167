"""What a test past its timeout was waiting for (a pytest plugin: pyproject's addopts load it).

pytest-timeout's thread method ends the run with every thread's stack, which for an asyncio
test shows only the event loop idling in select(), and never names the test: CI, which
shows the end of the output, twice showed just that. This plugin takes the timer over
through pytest-timeout's own hooks (so the `timeout` setting and markers apply unchanged)
and, at the deadline, prints the threads' stacks, then the stack of every task on the
running event loops (what the test was awaiting), then, last, the test's name, and ends
the run as pytest-timeout does.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from typing import Any

import pytest

_TIMERS: dict[str, threading.Timer] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "thread":
        return None  # pytest-timeout's own (signal) method
    timer = threading.Timer(settings.timeout, _expired, (item, settings.timeout, time.time()))
    timer.name = "mqkit-test-watchdog"
    timer.daemon = True
    _TIMERS[item.nodeid] = timer
    timer.start()
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    timer = _TIMERS.pop(item.nodeid, None)
    if timer is None:
        return None
    timer.cancel()
    return True


def _expired(item: pytest.Item, timeout: float, started: float) -> None:
    try:
        capture = item.config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(item)
            captured_out, captured_err = capture.read_global_capture()
            sys.stderr.write(f"\n+++ captured stdout\n{captured_out}")
            sys.stderr.write(f"\n+++ captured stderr\n{captured_err}")
        _threads(sys.stderr)
        _tasks(sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        out = sys.stderr  # the real one again, capture suspended
        waited = time.time() - started
        out.write(
            f"\n+++ Timeout: {item.nodeid} still running after {waited:.0f}s (limit {timeout:g}s)\n"
        )
        out.flush()
        sys.stdout.flush()
        os._exit(1)


def _threads(out: Any) -> None:
    me = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident != me:
            out.write(f"\n+++ thread {names.get(ident, ident)}\n")
            out.write("".join(traceback.format_stack(frame)))


def _tasks(out: Any) -> None:
    """Every task of every running loop, read from this other thread: good enough to see
    what they await, which is all this is for."""
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if not loop.is_running():
            continue
        for _ in range(5):  # the loop's task set may change while it is copied
            try:
                tasks = list(asyncio.all_tasks(loop))
                break
            except RuntimeError:
                continue
        else:
            tasks = []
        for task in tasks:
            out.write(f"\n+++ task {task.get_name()}, awaiting:\n")
            for frame in _awaiting(task.get_coro()):
                code = frame.f_code
                out.write(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")


def _awaiting(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine and of what it awaits, outermost first (a task's
    get_stack() gives only the outermost)."""
    frames = []
    while coro is not None and len(frames) < 50:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
