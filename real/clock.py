"""The run clock shared by every real process on one host.

Times handed to the protocol core are seconds since the run's start,
``t0``, read from ``time.perf_counter()``. On Linux that is
CLOCK_MONOTONIC, which every process on the host shares, so a worker
process given the parent's ``t0`` stamps completions on the same time base.
(``loop.time()`` is not used for stamps: uvloop's has millisecond
resolution.) ``loop_time_for`` converts a run-relative deadline to the event
loop's clock for ``call_at``.
"""

from __future__ import annotations

import asyncio
import time


class RunClock:
    """Seconds since ``t0`` on the host's monotonic clock."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.perf_counter() if t0 is None else t0

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def loop_time_for(self, loop: asyncio.AbstractEventLoop, run_time: float) -> float:
        """The ``loop.time()`` value at which run time ``run_time`` falls."""
        return loop.time() + (run_time - self.now())


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A uvloop loop when installed and wanted, else the default asyncio loop."""
    if use_uvloop:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
        except ImportError:
            pass
    return asyncio.new_event_loop()
