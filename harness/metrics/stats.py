"""Two-sample statistics for regression checks: Mann-Whitney U and a bootstrap ratio.

Pure functions over plain sequences of floats, on numpy and ``scipy.stats``.

``mann_whitney_u(x, y, alternative)`` tests whether ``x`` tends to be larger
(``"greater"``), smaller (``"less"``) or either (``"two-sided"``) than ``y``.
It is ``scipy.stats.mannwhitneyu(x, y, alternative=alternative,
method=..., use_continuity=True)``; this module only chooses the method and
refuses bad input. The statistic is scipy's ``U`` of ``x``,
``U = sum over pairs of [x_i > y_j] + 0.5 [x_i == y_j]``, computed from
mid-ranks of the pooled sample (``U = R_x - n(n+1)/2``). The method is:

- ``method="exact"`` when there are no ties and both samples have at most
  ``EXACT_MAX`` values: the p-value comes from the exact null distribution
  of ``U``, under which every split of the ranks is equally likely (scipy
  applies no continuity correction to it). This is deliberately not scipy's
  ``method="auto"``, which switches to the normal approximation as soon as
  both samples have more than 8 values: with the 5 to 25 runs a regression
  check compares, the exact p-value is cheap and is what the check has
  always used;
- otherwise ``method="asymptotic"``: the normal approximation with the tie
  correction ``var(U) = n m / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))``
  (``t`` the size of each group of tied values, ``N = n + m``) and, with
  ``use_continuity=True``, a continuity correction of 0.5 toward the mean.
  When every value is tied the variance is 0; p is then 1, decided here
  before scipy is asked.

scipy's two-sided p-value is twice the upper tail of the larger of ``U`` and
``n m - U``, capped at 1: the null distribution is symmetric, so that is
twice the smaller one-sided p-value.

``bootstrap_ratio(new, base, seed=...)`` gives the ratio of medians
``median(new) / median(base)`` and a percentile bootstrap confidence
interval for it: each of ``resamples`` rounds draws both samples again with
replacement (independently, from a ``numpy.random.Generator`` seeded with
``seed``) and takes the ratio of their medians; the interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those
ratios. The same inputs and seed always give the same interval.

``smallest_p(n, m, alternative)`` is the smallest p-value the exact test can
reach with samples of those sizes (``1 / C(n + m, n)`` one-sided, when every
``x`` beats every ``y``): with 3 against 3 values no one-sided result is
below 0.05, so a check with that few repetitions could never fail.
``u_counts(n, m)`` counts the rank splits giving each ``U`` (the exact null
distribution in whole numbers); the test does not use it, it is kept as an
independent reference for scipy's exact p-values (``tests/harness/test_stats_scipy.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats

Alternative = Literal["two-sided", "less", "greater"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "less", "greater")
EXACT_MAX = 25  # the exact null distribution for samples up to this size, when untied


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """The outcome of one Mann-Whitney U test of ``x`` against ``y``."""

    u: float  # U of x: pairs where x beats y, ties counting one half
    p_value: float
    alternative: str
    method: str  # "exact" or "normal" (scipy's "exact" or "asymptotic")
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
    ranks = scipy_stats.rankdata(np.asarray(values, dtype=float), method="average")
    return [float(rank) for rank in ranks]


def tie_sizes(values: Sequence[float]) -> list[int]:
    """The size of every group of equal values (groups of one included), smallest value first."""
    _, counts = np.unique(np.asarray(values, dtype=float), return_counts=True)
    return [int(count) for count in counts]


@cache
def u_counts(n: int, m: int) -> tuple[int, ...]:
    """How many of the ``C(n+m, n)`` rank splits give ``U = 0, 1, ..., n*m`` (no ties).

    The recursion ``c(n, m, u) = c(n-1, m, u-m) + c(n, m-1, u)``: the largest
    value is an ``x`` (it beats all ``m`` values of ``y``) or a ``y``. A
    reference for tests; ``mann_whitney_u`` takes its p-values from scipy.
    """
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


def mann_whitney_u(
    x: Sequence[float],
    y: Sequence[float],
    alternative: Alternative = "two-sided",
    method: Literal["auto", "exact", "normal"] = "auto",
) -> MannWhitney:
    """Mann-Whitney U test of ``x`` against ``y`` with scipy (see the module docstring).

    ``alternative="greater"`` asks whether ``x`` tends to be larger than
    ``y``. ``method="auto"`` is this module's rule (exact when untied and at
    most ``EXACT_MAX`` values each), not scipy's; ``"normal"`` is scipy's
    ``"asymptotic"``. ``method="exact"`` with tied values raises
    ``ValueError`` (the exact distribution assumes none; scipy would
    silently truncate a half-integer ``U``).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    if method not in ("auto", "exact", "normal"):
        raise ValueError(f"method must be 'auto', 'exact' or 'normal', not {method!r}")
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("both samples need at least one value")
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.isnan(xs).any() or np.isnan(ys).any():
        raise ValueError("samples must not contain NaN")
    ties = tie_sizes(np.concatenate([xs, ys]).tolist())
    tied = any(t > 1 for t in ties)
    if method == "exact" and tied:
        raise ValueError("the exact test needs samples without ties")
    exact = method == "exact" or (method == "auto" and not tied and max(n, m) <= EXACT_MAX)
    if len(ties) == 1:  # every value equal: zero variance, no evidence of a difference
        return MannWhitney(n * m / 2.0, 1.0, alternative, "normal", n, m)
    result = scipy_stats.mannwhitneyu(
        xs,
        ys,
        use_continuity=True,
        alternative=alternative,
        method="exact" if exact else "asymptotic",
    )
    return MannWhitney(
        float(result.statistic),
        float(result.pvalue),
        alternative,
        "exact" if exact else "normal",
        n,
        m,
    )


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
