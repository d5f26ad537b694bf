"""The run-queue wait (``real.usage``): read from the kernel, and it grows when a
process has to share a core."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from real.usage import CpuSpan, own_usage, run_queue_wait

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/task"), reason="needs Linux's /proc/<pid>/task"
)


def _spin(until: float) -> None:
    while time.monotonic() < until:
        pass


def test_the_wait_is_read_and_never_goes_back() -> None:
    first = run_queue_wait()
    assert first is not None and first >= 0
    assert own_usage("here").wait_seconds is not None
    span = CpuSpan()
    _spin(time.monotonic() + 0.05)
    later = span.wait_seconds()
    assert later is not None and later >= 0


def test_a_process_pinned_to_a_core_it_shares_waits_for_it() -> None:
    """Two spinners on this process's one core: someone waits, so this process does too."""
    core = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        ctx = multiprocessing.get_context("fork")
        other = ctx.Process(target=_spin, args=(time.monotonic() + 0.5,))
        other.start()  # inherits the one-core affinity
        span = CpuSpan()
        _spin(time.monotonic() + 0.4)
        waited = span.wait_seconds()
        other.join(5)
    finally:
        os.sched_setaffinity(0, before)
    assert waited is not None
    assert waited > 0.05  # sharing one core for 0.4 s, each waits about half of it
