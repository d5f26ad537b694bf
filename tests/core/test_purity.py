"""``protocol/`` is pure: no I/O, no clock, no threads, no global randomness.

Every module under ``protocol/`` is parsed (never imported) and checked for:
imports of a forbidden module (``import x``, ``import x.y``, ``from x import y``,
``__import__("x")``, ``importlib.import_module("x")``), calls to ``open()``,
and module-level use of ``random.``. Randomness, time and I/O are the
drivers' business: they pass ``now`` and a seeded ``random.Random`` in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "protocol"

FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "simpy",
        "socket",
        "time",
        "datetime",
        "random",
        "os",
        "threading",
        "selectors",
        "subprocess",
    }
)
FORBIDDEN_CALLS = frozenset({"open"})


def _root(module: str) -> str:
    return module.split(".")[0]


def _is_module_level(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return False
    return True


def violations(source: str, filename: str) -> list[str]:
    """Every impurity in ``source``, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _root(alias.name) in FORBIDDEN_MODULES:
                    report(node, f"imports {alias.name!r} (forbidden: {_root(alias.name)})")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _root(node.module) in FORBIDDEN_MODULES:
                names = ", ".join(alias.name for alias in node.names)
                report(
                    node, f"imports {names} from {node.module!r} (forbidden: {_root(node.module)})"
                )
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if isinstance(func, ast.Name) and name in FORBIDDEN_CALLS:
                report(node, f"calls {name}()")
            if name in ("__import__", "import_module") and node.args:
                target = node.args[0]
                if (
                    isinstance(target, ast.Constant)
                    and isinstance(target.value, str)
                    and _root(target.value) in FORBIDDEN_MODULES
                ):
                    report(node, f"imports {target.value!r} dynamically")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and _is_module_level(node, parents)
        ):
            report(node, f"module-level use of random.{node.attr}")
    return found


MODULES = sorted(PROTOCOL.rglob("*.py"))


def test_protocol_package_is_found() -> None:
    names = {path.name for path in MODULES}
    assert {"__init__.py", "codec.py", "coordinator.py", "agent.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROTOCOL.parent)))
def test_protocol_module_is_pure(path: Path) -> None:
    relative = str(path.relative_to(PROTOCOL.parent))
    found = violations(path.read_text(encoding="utf-8"), relative)
    assert not found, "protocol/ must stay pure:\n" + "\n".join(found)


# --- the checker itself must be able to fail ------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", "imports 'asyncio'"),
        ("import os.path", "imports 'os.path' (forbidden: os)"),
        ("import time as t", "imports 'time'"),
        ("import json, socket", "imports 'socket'"),
        ("from datetime import datetime", "imports datetime from 'datetime'"),
        ("from concurrent import futures\nfrom threading import Lock", "from 'threading'"),
        ("def f():\n    import subprocess", "imports 'subprocess'"),
        ("from simpy.core import Environment", "from 'simpy.core'"),
        ("from selectors import DefaultSelector", "from 'selectors'"),
        ("from random import Random", "from 'random'"),
        ("x = __import__('random')", "imports 'random' dynamically"),
        ("import importlib\nm = importlib.import_module('time')", "imports 'time' dynamically"),
        ("def load(p):\n    return open(p).read()", "calls open()"),
        ("x = random.random()", "module-level use of random.random"),
        ("rng = random.Random(4)", "module-level use of random.Random"),
    ],
)
def test_checker_catches(source: str, expected: str) -> None:
    found = violations(source, "protocol/x.py")
    assert len(found) >= 1 and any(expected in line for line in found), found
    assert found[0].startswith("protocol/x.py:")


@pytest.mark.parametrize(
    "source",
    [
        "import json\nimport zlib\nfrom dataclasses import dataclass",
        "from protocol.messages import Hello",
        "from . import codec",
        "from .time_util import x",  # relative import of a local module named like time
        "import timeit_free_name",
        "def f(rng):\n    return rng.random()",
        "def f(random):\n    return random.random()",  # a parameter, inside a function
        "class C:\n    def open(self):\n        pass\n\nC().open()",
    ],
)
def test_checker_allows(source: str) -> None:
    assert violations(source, "protocol/x.py") == []
