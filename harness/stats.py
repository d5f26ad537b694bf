"""Two-sample statistics for regression checks: Mann-Whitney U and a bootstrap ratio.

Pure functions over plain sequences of floats; scipy is not a dependency,
numpy is.

``mann_whitney_u(x, y, alternative)`` tests whether ``x`` tends to be larger
(``"greater"``), smaller (``"less"``) or either (``"two-sided"``) than ``y``.
The statistic is ``U = sum over pairs of [x_i > y_j] + 0.5 [x_i == y_j]``,
computed from mid-ranks of the pooled sample (``U = R_x - n(n+1)/2``).
Its p-value is:

- **exact** when there are no ties and both samples have at most
  ``EXACT_MAX`` values: under the null hypothesis every split of the ranks
  is equally likely, and the number of splits giving each ``U`` comes from
  the recursion ``c(n, m, u) = c(n-1, m, u-m) + c(n, m-1, u)`` (an ``x`` is
  the largest value and beats all ``m`` values of ``y``, or a ``y`` is);
- otherwise the **normal approximation** with the tie correction
  ``var(U) = n m / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))`` (``t`` the
  size of each group of tied values, ``N = n + m``) and a continuity
  correction of 0.5. When every value is tied the variance is 0 and p is 1.

The two-sided p-value is twice the smaller one-sided one, capped at 1.

``bootstrap_ratio(new, base, seed=...)`` gives the ratio of medians
``median(new) / median(base)`` and a percentile bootstrap confidence
interval for it: each of ``resamples`` rounds draws both samples again with
replacement (independently, from a ``numpy.random.Generator`` seeded with
``seed``) and takes the ratio of their medians; the interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those
ratios. The same inputs and seed always give the same interval.

``smallest_p(n, m, alternative)`` is the smallest p-value the exact test can
reach with samples of those sizes: with 3 against 3 values no one-sided
result is below 0.05, so a check with that few repetitions could never fail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

Alternative = Literal["two-sided", "less", "greater"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
EXACT_MAX = 25  # the exact null distribution for samples up to this size, when untied


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """The outcome of one Mann-Whitney U test of ``x`` against ``y``."""

    u: float  # U of x: pairs where x beats y, ties counting one half
    p_value: float
    alternative: str
    method: str  # "exact" or "normal"
    n_x: int
    n_y: int


@dataclass(frozen=True, slots=True)
class RatioInterval:
    """``median(new) / median(base)`` and its bootstrap confidence interval."""

    ratio: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int


def midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..N of ``values``, tied values sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        rank = (start + end) / 2 + 1  # ranks start..end (0-based) -> mean, 1-based
        for k in range(start, end + 1):
            ranks[order[k]] = rank
        start = end + 1
    return ranks


def tie_sizes(values: Sequence[float]) -> list[int]:
    """The size of every group of equal values (groups of one included)."""
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return list(counts.values())


@cache
def u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the ``C(n+m, n)`` rank splits give ``U = 0, 1, ..., n*m`` (no ties)."""
    if n == 0 or m == 0:
        return (1,)
    with_x_top = u_counts(n - 1, m)  # the largest value is an x: it beats all m y's
    with_y_top = u_counts(n, m - 1)  # the largest value is a y: it beats no x
    counts = [0] * (n * m + 1)
    for u, count in enumerate(with_x_top):
        counts[u + m] += count
    for u, count in enumerate(with_y_top):
        counts[u] += count
    return tuple(counts)


def _exact_tails(u: float, n: int, m: int) -> tuple[float, float]:
    """``P(U <= u)`` and ``P(U >= u)`` under the null hypothesis (``u`` an integer)."""
    counts = u_counts(n, m)
    total = math.comb(n + m, n)
    k = int(u)
    below = sum(counts[: k + 1])
    above = sum(counts[k:])
    return below / total, above / total


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _normal_tails(u: float, n: int, m: int, ties: list[int]) -> tuple[float, float] | None:
    """Continuity-corrected ``P(U <= u)`` and ``P(U >= u)``, or None if every value is tied."""
    total = n + m
    tie_term = sum(t**3 - t for t in ties) / (total * (total - 1))
    variance = n * m / 12.0 * ((total + 1) - tie_term)
    if variance <= 0:
        return None
    sigma = math.sqrt(variance)
    mean = n * m / 2.0
    below = 1.0 - _normal_sf((u - mean + 0.5) / sigma)
    above = _normal_sf((u - mean - 0.5) / sigma)
    return below, above


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Alternative = "two-sided",
    method: Literal["auto", "exact", "normal"] = "auto",
) -> MannWhitney:
    """Mann-Whitney U test of ``x`` against ``y`` (see the module docstring).

    ``alternative="greater"`` asks whether ``x`` tends to be larger than
    ``y``. ``method="exact"`` with tied values raises ``ValueError`` (the
    exact distribution assumes none).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    pooled = [float(v) for v in x] + [float(v) for v in y]
    if any(math.isnan(v) for v in pooled):
        raise ValueError("samples must not contain NaN")
    ranks = midranks(pooled)
    u = math.fsum(ranks[:n]) - n * (n + 1) / 2.0
    ties = tie_sizes(pooled)
    tied = any(t > 1 for t in ties)
    if method == "exact" and tied:
        raise ValueError("the exact test needs samples without ties")
    exact = method == "exact" or (method == "auto" and not tied and max(n, m) <= EXACT_MAX)
    if exact:
        below, above = _exact_tails(u, n, m)
    else:
        tails = _normal_tails(u, n, m, ties)
        if tails is None:  # every value equal: no evidence of a difference
            return MannWhitney(u, 1.0, alternative, "normal", n, m)
        below, above = tails
    if alternative == "greater":
        p = above
    elif alternative == "less":
        p = below
    else:
        p = 2.0 * min(below, above)
    return MannWhitney(u, min(1.0, p), alternative, "exact" if exact else "normal", n, m)


def smallest_p(n: int, m: int, alternative: Alternative = "greater") -> float:
    """The smallest p-value the exact test gives for samples of ``n`` and ``m`` values."""
    one_sided = 1.0 / math.comb(n + m, n)
    return min(1.0, 2.0 * one_sided) if alternative == "two-sided" else one_sided


def median(values: Sequence[float]) -> float:
    """The sample median (the mean of the two middle values for an even count)."""
    if not values:
        raise ValueError("the median of no values is undefined")
    return float(np.median(np.asarray(values, dtype=float)))


def bootstrap_ratio(
    new: Sequence[float],
    base: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> RatioInterval:
    """``median(new) / median(base)`` with a seeded percentile bootstrap interval.

    Raises ``ValueError`` when a sample is empty or ``median(base)`` is 0
    (the ratio is then undefined). Resamples whose baseline median is 0 give
    an infinite ratio and sit at the top of the interval.
    """
    if not new or not base:
        raise ValueError("both samples need at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    x = np.asarray(new, dtype=float)
    y = np.asarray(base, dtype=float)
    base_median = float(np.median(y))
    if base_median == 0:
        raise ValueError("the baseline median is 0: a ratio is undefined")
    ratio = float(np.median(x)) / base_median
    rng = np.random.default_rng(seed)
    new_medians = np.median(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)
    base_medians = np.median(y[rng.integers(0, len(y), size=(resamples, len(y)))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = new_medians / base_medians
    ratios = np.where(np.isnan(ratios), np.inf, ratios)  # 0 / 0: count as unbounded
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return RatioInterval(ratio, float(low), float(high), confidence, resamples, seed)
