"""Resource use of real processes: peak RSS and CPU seconds.

Peak RSS comes from ``resource.getrusage`` (``ru_maxrss``, KiB on Linux)
for the current process, and from psutil's memory_info for a child sampled
by the parent; CPU seconds are user plus system time.
"""

from __future__ import annotations

import resource
import time

from protocol.records import ProcessUsage


def own_usage(name: str) -> ProcessUsage:
    """This process's peak RSS and CPU seconds so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessUsage(name, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime)


class CpuSpan:
    """CPU seconds this process used between construction and ``usage``."""

    def __init__(self) -> None:
        self._start = time.process_time()

    def seconds(self) -> float:
        return time.process_time() - self._start
