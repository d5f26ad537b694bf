"""Measured distributions stored as quantiles, sampled by inverse-CDF interpolation.

A ``Distribution`` keeps a short table of ``(probability, value)`` points
taken from measured samples: by default p0, p5 ... p95 (every 5 %) plus the
tail points p99, p99.9, p99.99 and p100. The table is read as a piecewise
linear CDF. Drawing a value takes one uniform number ``u`` from the caller's
seeded ``random.Random``, finds the segment with ``bisect`` and interpolates
linearly inside it; so a run's draws depend only on the seed, never on the
global ``random`` module.

The extra tail points matter: with only every 5 %, one rare slow sample (a
GC pause) would stretch the whole top segment and inflate the sampled mean.
``mean`` is the measured sample mean, kept for reports; ``model_mean()`` is
the mean of the piecewise linear distribution the sampler actually draws
from. A distribution whose values are all equal draws no random number at
all (``sampler`` returns a constant function), which keeps deterministic
test calibrations exact and cheap.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PROBS: tuple[float, ...] = tuple(i / 20 for i in range(20)) + (
    0.99,
    0.999,
    0.9999,
    1.0,
)

Sampler = Callable[[], float]


@dataclass(frozen=True)
class Distribution:
    """A distribution of seconds: quantile points plus how they were measured."""

    probs: tuple[float, ...]
    values: tuple[float, ...]
    mean: float
    samples: int = 0
    method: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.probs) != len(self.values) or len(self.probs) < 2:
            raise ValueError("a distribution needs at least two (prob, value) points")
        if self.probs[0] != 0.0 or self.probs[-1] != 1.0:
            raise ValueError("quantile probabilities must run from 0.0 to 1.0")
        if any(b <= a for a, b in zip(self.probs, self.probs[1:], strict=False)):
            raise ValueError("quantile probabilities must increase strictly")
        if any(b < a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("quantile values must not decrease")

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
        """Quantiles (linear interpolation between order statistics) of ``samples``."""
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        values = tuple(_quantile(ordered, p) for p in probs)
        return cls(tuple(probs), values, math.fsum(ordered) / len(ordered), len(ordered), method)

    def is_constant(self) -> bool:
        return self.values[0] == self.values[-1]

    def model_mean(self) -> float:
        """The mean of the piecewise linear distribution that ``sampler`` draws from."""
        total = 0.0
        points = list(zip(self.probs, self.values, strict=True))
        for (p0, v0), (p1, v1) in zip(points, points[1:], strict=False):
            total += (p1 - p0) * (v0 + v1) / 2
        return total

    def quantile(self, p: float) -> float:
        """The model's value at probability ``p`` (inverse CDF, no randomness)."""
        return _interpolate(self.probs, self.values, p)

    def sampler(self, rng: random.Random) -> Sampler:
        """A function drawing one value per call from ``rng``."""
        if self.is_constant():
            value = self.values[0]
            return lambda: value
        probs, values = self.probs, self.values
        slopes = tuple(
            (values[i + 1] - values[i]) / (probs[i + 1] - probs[i]) for i in range(len(probs) - 1)
        )
        uniform = rng.random

        def draw() -> float:
            u = uniform()
            i = bisect_right(probs, u) - 1
            return values[i] + (u - probs[i]) * slopes[i]

        return draw

    def scaled(self, factor: float) -> Distribution:
        """The same shape with every value multiplied by ``factor``."""
        return Distribution(
            self.probs,
            tuple(v * factor for v in self.values),
            self.mean * factor,
            self.samples,
            self.method,
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
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distribution:
        return cls(
            tuple(float(p) for p in data["probs"]),
            tuple(float(v) for v in data["values"]),
            float(data["mean"]),
            int(data.get("samples", 0)),
            str(data.get("method", "")),
            dict(data.get("extra", {})),
        )


def _quantile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between order statistics (numpy's default method)."""
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _interpolate(probs: Sequence[float], values: Sequence[float], p: float) -> float:
    if p >= 1.0:
        return values[-1]
    i = bisect_right(probs, p) - 1
    span = probs[i + 1] - probs[i]
    return values[i] + (p - probs[i]) * (values[i + 1] - values[i]) / span
