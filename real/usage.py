"""Resource use of real processes: peak RSS, CPU seconds and time spent waiting for a core.

Peak RSS comes from ``resource.getrusage`` (``ru_maxrss``, KiB on Linux)
for the current process; CPU seconds are user plus system time. The wait for a
core is the kernel's run-queue delay: the second field of
``/proc/self/task/<tid>/schedstat`` (nanoseconds a runnable thread waited for a
CPU), summed over the process's live threads. It says how much of a process's
latency was the machine rather than the process: three busy processes on two
cores wait for each other even when none of them is saturated. Where the file
is missing (not Linux, schedstats off) it is None.
"""

from __future__ import annotations

import os
import resource
import time

from protocol.records import ProcessUsage

SCHEDSTAT = "/proc/self/task"


def run_queue_wait() -> float | None:
    """Seconds this process's live threads have waited for a core since they started."""
    try:
        tasks = os.listdir(SCHEDSTAT)
    except OSError:
        return None
    total = 0
    found = False
    for task in tasks:
        try:
            with open(f"{SCHEDSTAT}/{task}/schedstat") as f:
                fields = f.read().split()
        except OSError:
            continue  # a thread that ended between the listing and the read
        if len(fields) >= 2:
            total += int(fields[1])
            found = True
    return total / 1e9 if found else None


def own_usage(name: str) -> ProcessUsage:
    """This process's peak RSS, CPU seconds and wait for a core so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessUsage(
        name, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, wait_seconds=run_queue_wait()
    )


class CpuSpan:
    """CPU seconds and wait for a core of this process between construction and now."""

    def __init__(self) -> None:
        self._start = time.process_time()
        self._wait = run_queue_wait()

    def seconds(self) -> float:
        return time.process_time() - self._start

    def wait_seconds(self) -> float | None:
        now = run_queue_wait()
        return None if now is None or self._wait is None else now - self._wait
