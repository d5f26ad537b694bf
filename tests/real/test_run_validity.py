"""The drivers report what went wrong with a run itself in ``DriverResult.errors``.

A failure the run survives (an exception in an event-loop callback, a worker
that failed, a coordinator that did not restart) used to become a note, and
the run's figures passed for evidence; now it is an error and the harness
marks the run invalid (``harness.metrics.figures.invalid_reasons``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, cast

import pytest

from harness.metrics.figures import summarize
from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.messages import Message
from real.inproc.hub import Hub
from real.inproc.run import run_plan
from real.tcp.children import Child
from real.tcp.run import _worker_errors
from real.tcp.worker_process import WorkerResult

SCENARIO = {
    "name": "validity",
    "duration": 1.0,
    "warmup": 0.2,
    "agents": {"count": 4},
    "topics": {"count": 2, "fanout": 2},
    "workload": [{"kind": "direct", "arrival": {"process": "constant", "rate": 100}}],
}


class FaultyHub(Hub):
    """A hub whose first probe reply raises inside its loop callback, as a core bug would."""

    raised = False

    def on_probe_replies(self, inbox: deque[tuple[str, Message]], now: float) -> None:
        if not FaultyHub.raised:
            FaultyHub.raised = True
            raise RuntimeError("injected callback failure")
        super().on_probe_replies(inbox, now)


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_an_exception_in_an_inproc_callback_makes_the_run_invalid(use_uvloop: bool) -> None:
    plan = compile_plan(parse_scenario(SCENARIO))
    clean = run_plan(plan, use_uvloop=use_uvloop)
    assert clean.errors == [] and summarize(plan, clean).valid
    FaultyHub.raised = False
    result = run_plan(plan, use_uvloop=use_uvloop, hub_class=FaultyHub)
    assert FaultyHub.raised
    assert len(result.errors) == 1 and "injected callback failure" in result.errors[0]
    summary = summarize(plan, result)
    assert not summary.valid and summary.invalid_reasons == result.errors
    assert summary.throughput.deliveries > 0  # the run went on; its figures are kept


def _child(name: str, failed: str | None = None, killed: bool = False) -> Child:
    return Child(name, cast(Any, None), cast(Any, None), failed=failed, killed=killed)


def _result(name: str) -> WorkerResult:
    return WorkerResult(name, {}, cast(Any, None))


def test_a_failed_or_silent_tcp_worker_is_an_error_and_a_killed_one_is_not() -> None:
    pool = [
        _child("worker-0"),
        _child("worker-1", failed="worker-1: ConnectionResetError()"),
        _child("worker-2"),  # no result, not killed: it died or hung
        _child("worker-3", killed=True),  # SIGKILLed by a fault and not back: the plan's doing
    ]
    errors = _worker_errors(pool, [_result("worker-0"), _result("worker-1")])
    assert errors == [
        "worker-1 failed: worker-1: ConnectionResetError()",
        "worker-2: no result (timeout or exit)",
    ]
    assert _worker_errors(pool[:1], [_result("worker-0")]) == []


def _kill_worker_when_it_appears(name: str, timeout: float = 20.0) -> threading.Thread:
    """SIGKILL this process's child named ``name`` (a tcp worker) once it is up."""

    def find() -> int | None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and name.encode() in argv:
                return int(pid)
        return None

    def hunt() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = find()
            if pid is not None:
                time.sleep(0.8)  # registered and replaying by now
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=hunt, daemon=True)
    thread.start()
    return thread


def test_a_tcp_worker_that_dies_outside_the_fault_timeline_makes_the_run_invalid() -> None:
    from real.tcp.run import run_plan as tcp_run

    plan = compile_plan(parse_scenario({**SCENARIO, "duration": 3.0, "transport": "tcp"}))
    hunter = _kill_worker_when_it_appears("worker-1")
    result = tcp_run(plan, workers=2, connections=1, use_uvloop=False)
    hunter.join()
    assert any(e.startswith("worker-1") for e in result.errors), (result.errors, result.notes)
    assert not summarize(plan, result).valid
