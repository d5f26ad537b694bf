"""Drawing from a measured distribution: ``SegmentSampler``, compiled with the core.

``sim.distribution.Distribution`` is piecewise: between probabilities
``probs[i]`` and ``probs[i + 1]`` a value runs from ``low`` to ``low + span``
as ``t ** k`` of the position ``t`` within the segment. A draw takes one
uniform number from the run's seeded generator, finds its segment by
bisection and maps it. The model draws once per job (a message's service
time, a timer's cost, a late wake-up), millions of times a run, so this one
loop is compiled (``native/build.py``); it does the same float arithmetic as
the interpreted code, so a run's draws are the same bits either way.
"""

from __future__ import annotations

from collections.abc import Callable


class SegmentSampler:
    """One value per call, from ``uniform`` (a seeded ``random.Random().random``)."""

    __slots__ = ("probs", "starts", "scales", "lows", "spans", "powers", "uniform")

    probs: list[float]

    def __init__(
        self,
        probs: tuple[float, ...],
        segments: tuple[tuple[float, float, float, float, float], ...],
        uniform: Callable[[], float],
    ) -> None:
        """``segments[i]`` is ``(start, 1 / width, low, span, k)`` for ``probs[i]``'s segment."""
        self.probs = list(probs)
        self.starts = [s[0] for s in segments]
        self.scales = [s[1] for s in segments]
        self.lows = [s[2] for s in segments]
        self.spans = [s[3] for s in segments]
        self.powers = [s[4] for s in segments]
        self.uniform = uniform

    def __call__(self) -> float:
        u: float = self.uniform()
        probs = self.probs
        lo, hi = 0, len(probs)  # bisect_right, written out so that it compiles to a loop
        while lo < hi:
            mid = (lo + hi) // 2
            if u < probs[mid]:
                hi = mid
            else:
                lo = mid + 1
        i = lo - 1
        t = (u - self.starts[i]) * self.scales[i]
        k = self.powers[i]
        return self.lows[i] + self.spans[i] * (t if k == 1.0 else t**k)
