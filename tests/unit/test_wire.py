"""Every `mqkit-*` header name is spelled once, in mqkit/wire.py: the core, the DLQ tools and
the adapters import it, so they cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from mqkit import wire

ROOT = Path(__file__).resolve().parents[2]


def test_header_names_are_spelled_only_in_the_wire_module() -> None:
    names = {v for v in vars(wire).values() if isinstance(v, str) and v.startswith("mqkit-")}
    assert {"mqkit-id", "mqkit-attempt", "mqkit-error", "mqkit-replay-group"} <= names
    # The conformance cases spell the names on purpose: they check the wire itself, which a
    # case reading the constants would not notice changing.
    testing = ROOT / "mqkit" / "testing"
    sources = [
        *(p for p in (ROOT / "mqkit").rglob("*.py") if testing not in p.parents),
        *(ROOT / "adapters").rglob("mqkit_*/*.py"),
    ]
    spelled = {
        (str(path.relative_to(ROOT)), name)
        for path in sources
        if path.name != "wire.py"
        for name in names
        if f'"{name}"' in path.read_text() or f"b'{name}'" in path.read_text()
    }
    assert spelled == set(), spelled
