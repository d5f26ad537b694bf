"""The hand-written ``__init__`` of every message (``protocol/messages.py``).

Each must store every field under its own name, in the dataclass's order and
with its defaults, in the compiled core and in the sources alike; an int given
for a float field must be stored as a float in both (else the wire bytes, and the
model's cost by the byte, depend on the build); and every message must pickle.
A swapped or forgotten assignment would still round-trip through the codec (both
ends use the same constructor), so this checks the fields one by one with a
distinct value each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from native.select import ENV, STATE

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import dataclasses, json, pickle
from protocol.codec import field_kinds
from protocol.messages import MESSAGE_TYPES, ComponentStatus

def value(kind, i):
    if kind == "int": return 1000 + i
    if kind == "float": return 0.5 + i
    if kind == "bool": return i % 2 == 0
    if kind == "str": return f"s{i}"
    if kind == "bytes": return b"b%d" % i
    if kind == "tuple[int, ...]": return (i, i + 1)
    if kind == "tuple[str, ...]": return (f"t{i}",)
    return (ComponentStatus(f"c{i}", "healthy", (("m", i),)),)

problems = []
for cls in MESSAGE_TYPES:
    kinds = field_kinds(cls)
    values = {name: value(kind, i) for i, (name, kind) in enumerate(kinds)}
    by_name = cls(**values)
    by_position = cls(*values.values())
    for msg in (by_name, by_position):
        for name, expected in values.items():
            if getattr(msg, name) != expected:
                problems.append(f"{cls.__name__}.{name}")
    ints = {name: 7 if kind == "float" else values[name] for name, kind in kinds}
    for name, kind in kinds:  # an int given for a float is stored as a float
        if kind == "float" and type(getattr(cls(**ints), name)) is not float:
            problems.append(f"{cls.__name__}.{name} keeps an int")
    if pickle.loads(pickle.dumps(by_name)) != by_name:
        problems.append(f"{cls.__name__} does not pickle")
    required = [f for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    short = cls(*(values[f.name] for f in required))
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and getattr(short, f.name) != f.default:
            problems.append(f"{cls.__name__}.{f.name} default")
print(json.dumps(problems))
"""


@pytest.mark.parametrize("core", ["compiled", "pure"])
def test_every_message_stores_each_field_under_its_name(core: str) -> None:
    if core == "compiled" and not STATE.compiled:
        pytest.skip(f"no compiled core: {STATE.reason}")
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env={**os.environ, ENV: core},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_every_message_defines_its_own_init() -> None:
    """The point of it: compiled, messages are built without
    ``object.__setattr__`` (a ``Deliver`` in 47 ns instead of 908)."""
    from protocol.messages import MESSAGE_TYPES, Ack

    for cls in MESSAGE_TYPES:
        assert "__init__" in vars(cls) and dataclasses.is_dataclass(cls), cls
        if STATE.compiled:
            assert not hasattr(vars(cls)["__init__"], "__code__"), cls  # native, not Python
    assert pickle.loads(pickle.dumps(Ack((1, 2)))) == Ack((1, 2))
