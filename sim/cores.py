"""A machine's CPU cores, shared by the model's process servers.

On the tcp transport the model gives each OS process (the coordinator and
every agent worker) a server of its own, but the real processes share the
machine's cores: three busy processes on two cores wait for each other.
``Cores`` adds that constraint. A job may start only when its process's
server is free *and* a core is free: ``claim(ready)`` returns the start time
and remembers the core, and ``release(end)`` marks that core busy until the
job ends.

The choice of core is best fit: the core that became free latest but no
later than ``ready`` (so no earlier gap is wasted), else the one that frees
up first. Jobs are placed in the order they reach their nodes and are not
preempted, so a process with a backlog keeps a core for as long as its
backlog lasts, much as a busy single-threaded process keeps one core under
the kernel's scheduler. The kernel's time slices, which take a core from a
process that has run its share while others wait, are the engine's
(``sim.engine.Engine._sliced``): a job here waits for a core rather than
running slower on it.
"""

from __future__ import annotations


class Cores:
    """``count`` cores, each busy until a simulated time."""

    __slots__ = ("free", "claimed")

    def __init__(self, count: int, start: float) -> None:
        if count < 1:
            raise ValueError(f"a machine needs at least one core, not {count}")
        self.free = [start] * count
        self.claimed = 0

    def claim(self, ready: float) -> float:
        """When a job ready at ``ready`` can start; the core it gets is remembered."""
        free = self.free
        best = -1
        for index, until in enumerate(free):
            if until <= ready and (best < 0 or until > free[best]):
                best = index
        if best >= 0:
            self.claimed = best
            return ready
        soonest = min(range(len(free)), key=free.__getitem__)
        self.claimed = soonest
        return free[soonest]

    def release(self, end: float) -> None:
        """The claimed core is busy until ``end``."""
        self.free[self.claimed] = end
