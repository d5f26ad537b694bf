"""The per-process core-sharing sampler (``harness.calibrate.schedstat``)."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from harness.calibrate.schedstat import Reading, Sampler, share, table


def test_a_share_is_taken_over_the_middle_half_of_the_readings() -> None:
    # readings every second; the middle half is from reading 2 to reading 6
    readings = [Reading(float(t), 0.5 * t, 0.1 * t, 100 * t) for t in range(9)]
    readings[0] = Reading(0.0, 0.0, 0.0, 0)  # start-up, left out either way
    found = share(42, readings)
    assert found is not None
    assert found.cpu == pytest.approx(0.5) and found.wait == pytest.approx(0.1)
    assert found.runs_per_s == pytest.approx(100)
    assert found.run_length == pytest.approx(0.005) and found.wait_per_run == pytest.approx(0.001)
    assert "5,000 us" in table([found])


def test_idle_or_short_lived_processes_are_left_out() -> None:
    idle = [Reading(float(t), 0.001 * t, 0.0, t) for t in range(8)]
    assert share(1, idle) is None
    assert share(1, idle[:3]) is None


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux's /proc")
def test_the_sampler_reads_a_busy_child() -> None:
    child = multiprocessing.get_context("fork").Process(target=_spin, args=(2.0,))
    with Sampler() as sampler:
        child.start()
        child.join(10)
    (found,) = [s for s in sampler.shares() if s.pid == child.pid]
    assert found.cpu > 0.3  # a spinning process holds most of a core
    assert found.runs_per_s > 0
