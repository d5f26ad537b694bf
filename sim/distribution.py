"""Measured distributions stored as quantiles, sampled by inverse-CDF interpolation.

A ``Distribution`` keeps a short table of ``(probability, value)`` knots
taken from measured samples: by default p0, p5 ... p95 (every 5 %) plus the
tail knots p99, p99.9, p99.99 and p100 (the maximum). Drawing a value takes
one uniform number ``u`` from the caller's seeded ``random.Random``, finds
the segment ``[p_i, p_i+1)`` holding ``u`` with ``bisect`` and maps the
position ``t`` inside it to ``v_i + (v_i+1 - v_i) * t ** k_i``.

A knot ``v_i`` is the inverse of the empirical CDF at ``p_i`` (the
``ceil(p_i * n)``-th smallest sample). The exponent ``k_i`` makes each
segment carry the mean that the samples falling in it had
(``segment_means``): a segment whose samples sit near its lower knot (a
tail segment stretched by one rare GC pause or preemption) gets ``k > 1``,
so the rare value keeps its rare weight instead of being spread uniformly
over the whole segment. With ``k = 1`` this is plain linear interpolation
of the CDF. So the sampler reproduces every measured knot, and its mean
(``model_mean()``) equals the measured sample mean (``mean``) up to
rounding.

All randomness comes from the ``random.Random`` handed to ``sampler``, never
from the global ``random`` module. A distribution whose values are all
equal draws no random number at all (``sampler`` returns a constant
function), which keeps deterministic test calibrations exact and cheap.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.sampler import SegmentSampler

DEFAULT_PROBS: tuple[float, ...] = tuple(i / 20 for i in range(20)) + (
    0.99,
    0.999,
    0.9999,
    1.0,
)

Sampler = Callable[[], float]


@dataclass(frozen=True)
class Distribution:
    """A distribution of seconds: quantile knots, segment means and how it was measured."""

    probs: tuple[float, ...]
    values: tuple[float, ...]
    mean: float
    samples: int = 0
    method: str = ""
    segment_means: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.probs) != len(self.values) or len(self.probs) < 2:
            raise ValueError("a distribution needs at least two (prob, value) knots")
        if self.probs[0] != 0.0 or self.probs[-1] != 1.0:
            raise ValueError("quantile probabilities must run from 0.0 to 1.0")
        if any(b <= a for a, b in zip(self.probs, self.probs[1:], strict=False)):
            raise ValueError("quantile probabilities must increase strictly")
        if any(b < a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("quantile values must not decrease")
        if self.segment_means is not None and len(self.segment_means) != len(self.probs) - 1:
            raise ValueError("need one segment mean per pair of knots")

    @classmethod
    def constant(cls, value: float, method: str = "constant") -> Distribution:
        """Always ``value``."""
        return cls((0.0, 1.0), (value, value), value, 0, method)

    @classmethod
    def from_samples(
        cls,
        samples: Sequence[float],
        method: str,
        probs: Sequence[float] = DEFAULT_PROBS,
    ) -> Distribution:
        """Knots (the inverse empirical CDF) and the samples' mean in each segment."""
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        prefix = [0.0, *itertools.accumulate(ordered)]
        values = tuple(_quantile(ordered, p) for p in probs)
        means = tuple(
            _segment_mean(ordered, prefix, a, b) for a, b in zip(probs, probs[1:], strict=False)
        )
        mean = math.fsum(ordered) / len(ordered)
        return cls(tuple(probs), values, mean, len(ordered), method, means)

    def is_constant(self) -> bool:
        return self.values[0] == self.values[-1]

    def exponents(self) -> tuple[float, ...]:
        """``k_i`` per segment: the shape that gives the segment its measured mean."""
        if self.segment_means is None:
            return (1.0,) * (len(self.probs) - 1)
        return tuple(
            _exponent(self.values[i], self.values[i + 1], m)
            for i, m in enumerate(self.segment_means)
        )

    def model_mean(self) -> float:
        """The mean of the distribution that ``sampler`` draws from."""
        total = 0.0
        for i, k in enumerate(self.exponents()):
            low, high = self.values[i], self.values[i + 1]
            total += (self.probs[i + 1] - self.probs[i]) * (low + (high - low) / (k + 1))
        return total

    def quantile(self, p: float) -> float:
        """The model's value at probability ``p`` (its inverse CDF, no randomness)."""
        if p >= 1.0:
            return self.values[-1]
        i = bisect_right(self.probs, p) - 1
        t = (p - self.probs[i]) / (self.probs[i + 1] - self.probs[i])
        k = self.exponents()[i]
        return self.values[i] + (self.values[i + 1] - self.values[i]) * math.pow(t, k)

    def sampler(self, rng: random.Random) -> Sampler:
        """A function drawing one value per call from ``rng``."""
        if self.is_constant():
            value = self.values[0]
            return lambda: value
        probs = self.probs
        segments = tuple(
            (probs[i], 1.0 / (probs[i + 1] - probs[i]), self.values[i], self.values[i + 1] - low, k)
            for i, (low, k) in enumerate(zip(self.values, self.exponents(), strict=False))
        )
        return SegmentSampler(probs, segments, rng.random)

    def affine(self, scale: float, shift: float, method: str = "") -> Distribution:
        """``scale * x + shift`` of every value: the same shape, stretched and moved
        (a segment's exponent is unchanged, so draws map one to one)."""
        return Distribution(
            self.probs,
            tuple(scale * v + shift for v in self.values),
            scale * self.mean + shift,
            self.samples,
            method or self.method,
            None
            if self.segment_means is None
            else tuple(scale * m + shift for m in self.segment_means),
            dict(self.extra),
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mean": self.mean,
            "samples": self.samples,
            "method": self.method,
            "probs": list(self.probs),
            "values": list(self.values),
        }
        if self.segment_means is not None:
            data["segment_means"] = list(self.segment_means)
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        means = data.get("segment_means")
        return cls(
            tuple(float(p) for p in data["probs"]),
            tuple(float(v) for v in data["values"]),
            float(data["mean"]),
            int(data.get("samples", 0)),
            str(data.get("method", "")),
            tuple(float(m) for m in means) if means is not None else None,
            dict(data.get("extra", {})),
        )


def _quantile(ordered: Sequence[float], p: float) -> float:
    """The inverse of the empirical CDF: the ``ceil(p * n)``-th smallest sample."""
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]


def _segment_mean(
    ordered: Sequence[float], prefix: Sequence[float], low: float, high: float
) -> float:
    """Mean of the empirical quantile function (sample ``j`` owns ``[j/n, (j+1)/n)``) on a segment.

    ``prefix[j]`` is the sum of the ``j`` smallest samples.
    """
    n = len(ordered)
    x, y = low * n, high * n
    first, last = math.floor(x), min(math.floor(y), n)
    if first >= last:
        return ordered[min(first, n - 1)]
    total = (first + 1 - x) * ordered[first] + (prefix[last] - prefix[first + 1])
    if last < n:
        total += (y - last) * ordered[last]
    return total / (y - x)


def _exponent(low: float, high: float, mean: float) -> float:
    """``k`` with ``low + (high - low) / (k + 1) == mean``.

    A flat segment is linear (it draws ``low`` anyway); a segment whose mean
    is its lower knot gets ``inf`` (always ``low``), one whose mean is its
    upper knot gets 0 (always ``high``).
    """
    if high <= low:
        return 1.0
    if mean <= low:
        return math.inf
    if mean >= high:
        return 0.0
    k = (high - low) / (mean - low) - 1.0
    return 1.0 if abs(k - 1.0) < 1e-9 else k  # 1.0 exactly lets the sampler skip the power
