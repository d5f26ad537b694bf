"""How the real tcp processes share the machine's cores, at a given load.

``python -m harness.calibrate.schedstat RATE [RATE ...]`` replays the validation
base (``scenarios/validation/base.yaml``) on real tcp at each offered rate in
deliveries per second. While it runs, a thread of this process samples every
``PERIOD`` seconds the kernel's scheduler statistics of each child process
(``/proc/<pid>/task/*/schedstat``: CPU nanoseconds, nanoseconds spent runnable
but waiting for a core, and how many times a thread was put on a core). Over
the middle half of the samples (past start-up, before teardown) it prints, per
process, its share of one core, its share of time spent waiting for one, how
many times a second it was put on a core ("runs"), and the mean wait before
and length of each run.

These say what the per-run ``cpu_wait_seconds`` (``real.usage``) cannot: how
the wait is spread. A process that is woken for each message runs for a few
hundred microseconds at a time; one that is behind reads everything that came
while it waited and runs for milliseconds, and the others wait as long for it.
docs/validation.md ("Where the CPU goes, per process") has the figures for the
development VM. Measurement only: nothing is written to a calibration.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass

PERIOD = 0.25
LOAD_SHARE = 0.01  # a process using less of a core than this is left out (the parent)


@dataclass(frozen=True)
class Reading:
    """One sample of one process: when, CPU and wait in seconds, runs so far."""

    at: float
    cpu: float
    wait: float
    runs: int


@dataclass(frozen=True)
class Share:
    """A process over a window: shares of one core busy and waiting, runs per second."""

    pid: int
    cpu: float
    wait: float
    runs_per_s: float

    @property
    def wait_per_run(self) -> float:
        return self.wait / self.runs_per_s if self.runs_per_s else 0.0

    @property
    def run_length(self) -> float:
        return self.cpu / self.runs_per_s if self.runs_per_s else 0.0


def children(pid: int) -> list[int]:
    """Every descendant of ``pid``, as ``/proc/<pid>/task/*/children`` lists them."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            found += [kid, *children(kid)]
    return found


def reading(pid: int, at: float) -> Reading | None:
    """``pid``'s threads' schedstat summed, or None once it has gone."""
    totals = [0, 0, 0]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                fields = [int(x) for x in f.read().split()[:3]]
            totals = [a + b for a, b in zip(totals, fields, strict=True)]
    except (OSError, ValueError):
        return None
    return Reading(at, totals[0] / 1e9, totals[1] / 1e9, totals[2])


def share(pid: int, readings: list[Reading]) -> Share | None:
    """``pid`` over the middle half of its readings (None: too few, or idle)."""
    if len(readings) < 4:
        return None
    first, last = readings[len(readings) // 4], readings[3 * len(readings) // 4]
    span = last.at - first.at
    if span <= 0:
        return None
    cpu = (last.cpu - first.cpu) / span
    if cpu < LOAD_SHARE:
        return None
    return Share(pid, cpu, (last.wait - first.wait) / span, (last.runs - first.runs) / span)


class Sampler:
    """A thread reading this process's descendants every ``PERIOD`` until stopped."""

    def __init__(self) -> None:
        self.readings: dict[int, list[Reading]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for pid in children(os.getpid()):
                sample = reading(pid, now)
                if sample is not None:
                    self.readings.setdefault(pid, []).append(sample)
            self._stop.wait(PERIOD)

    def shares(self) -> list[Share]:
        found = (share(pid, readings) for pid, readings in self.readings.items())
        return [s for s in found if s is not None]


def measure(rate: float) -> tuple[str, list[Share]]:
    """Run the validation base on real tcp at ``rate``; its figures and the shares."""
    from harness.calibrate.cpu import calibration_scenario
    from harness.metrics.figures import summarize
    from harness.run.runner import run_backend
    from harness.scenario.compile import compile_plan
    from harness.validate.suite import scale_to

    scenario = scale_to(calibration_scenario({"base": True}), rate)
    plan = compile_plan(scenario)
    with Sampler() as sampler:
        result = run_backend(plan, "real", scenario)
    summary = summarize(plan, result)
    latency = summary.latency
    line = (
        f"{rate:,.0f} deliveries/s offered: {summary.throughput.deliveries_per_s:,.0f} delivered, "
        f"p50 {latency.p50_ms:.2f} ms, p95 {latency.p95_ms:.2f} ms"
    )
    return line, sampler.shares()


def table(shares: list[Share]) -> str:
    rows = ["  pid      CPU   waiting   runs/s   wait per run   run length"]
    for s in sorted(shares, key=lambda s: s.pid):
        rows.append(
            f"  {s.pid:<7} {s.cpu:5.0%}   {s.wait:7.0%}   {s.runs_per_s:6,.0f}"
            f"   {s.wait_per_run * 1e6:9,.0f} us   {s.run_length * 1e6:7,.0f} us"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rates", type=float, nargs="+", help="offered deliveries per second")
    args = parser.parse_args(argv)
    if not os.path.exists("/proc/self/task"):
        parser.error("needs Linux's /proc/<pid>/task/*/schedstat")
    for rate in args.rates:
        line, shares = measure(rate)
        print(line)
        print(table(shares))
    return 0


if __name__ == "__main__":
    sys.exit(main())
