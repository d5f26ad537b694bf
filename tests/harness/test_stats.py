"""harness.metrics.stats: Mann-Whitney U and the bootstrap ratio, against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics.stats import (
    bootstrap_ratio,
    mann_whitney_u,
    median,
    midranks,
    smallest_p,
    u_counts,
)

# Ages of males and females, the two-sample example in scipy's mannwhitneyu docs.
MALES = [19, 22, 16, 29, 24]
FEMALES = [20, 11, 17, 12]


def test_midranks_share_the_mean_rank_of_ties() -> None:
    assert midranks([10, 20, 20, 30]) == [1.0, 2.5, 2.5, 4.0]
    assert midranks([5, 5, 5]) == [2.0, 2.0, 2.0]


def test_null_distribution_counts_every_split_once_and_is_symmetric() -> None:
    for n, m in ((1, 1), (3, 4), (5, 5), (8, 6)):
        counts = u_counts(n, m)
        assert len(counts) == n * m + 1
        assert sum(counts) == math.comb(n + m, n)
        assert counts == counts[::-1]
    assert u_counts(2, 2) == (1, 1, 2, 1, 1)


@pytest.mark.parametrize(("n", "critical"), [(5, 2), (6, 5), (7, 8), (8, 13), (10, 23)])
def test_exact_p_matches_the_textbook_critical_values(n: int, critical: int) -> None:
    """The two-tailed 5 % table for n1 = n2 = n: U <= critical is significant, one more is not."""
    assert _two_sided_p_with_u(n, critical) <= 0.05
    assert _two_sided_p_with_u(n, critical + 1) > 0.05


def _two_sided_p_with_u(n: int, u: int) -> float:
    """The exact two-sided p of two untied samples of ``n`` values whose U is ``u``."""
    y = [2.0 * j for j in range(n)]  # 0, 2, 4, ...
    wins = [min(n, max(0, u - k * n)) for k in range(n)]  # how many y's each x beats
    x = [2.0 * w - 1.0 + 0.001 * k for k, w in enumerate(wins)]  # in the gap above w y's
    result = mann_whitney_u(x, y, "two-sided")
    assert result.method == "exact"
    assert result.u == u
    return result.p_value


def test_exact_and_normal_p_on_the_scipy_docs_example() -> None:
    exact = mann_whitney_u(MALES, FEMALES)
    assert exact.u == 17 and exact.method == "exact"
    assert exact.p_value == pytest.approx(1 / 9, abs=1e-12)  # 14 of 126 splits, both tails
    normal = mann_whitney_u(MALES, FEMALES, method="normal")
    assert normal.method == "normal"
    assert normal.p_value == pytest.approx(0.11134688653314041, rel=1e-9)


def test_complete_separation_of_five_and_five() -> None:
    slow = [10.0, 11.0, 12.0, 13.0, 14.0]
    fast = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert mann_whitney_u(slow, fast, "greater").p_value == pytest.approx(1 / 252)
    assert mann_whitney_u(slow, fast, "two-sided").p_value == pytest.approx(2 / 252)
    assert mann_whitney_u(slow, fast, "less").p_value == pytest.approx(1.0)
    assert mann_whitney_u(fast, slow, "less").u == 0


def test_ties_use_the_normal_approximation_with_tie_correction() -> None:
    x = [1, 2, 2, 3, 3, 3, 4]
    y = [3, 4, 4, 5, 5, 6]
    result = mann_whitney_u(x, y, "less")
    assert result.method == "normal"
    assert result.u == 3.5
    # by hand: N = 13, tie groups of 2, 4, 3 and 2 (the 2s, 3s, 4s and 5s), so
    # sigma^2 = nm/12 * ((N + 1) - sum(t^3 - t) / (N (N - 1))) = 42/12 * (14 - 96/156)
    sigma = math.sqrt(42 / 12 * (14 - 96 / 156))
    z = (3.5 - 21 + 0.5) / sigma  # U - nm/2, with the continuity correction toward the mean
    assert result.p_value == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-12)
    assert result.p_value == pytest.approx(0.0065, abs=5e-5)
    with pytest.raises(ValueError, match="ties"):
        mann_whitney_u(x, y, method="exact")


def test_all_values_tied_is_no_evidence() -> None:
    result = mann_whitney_u([1.0] * 5, [1.0] * 10, "greater")
    assert result.p_value == 1.0


def test_large_samples_use_the_normal_approximation_close_to_exact() -> None:
    rng = np.random.default_rng(3)
    x = list(rng.normal(0.3, 1.0, 30))
    y = list(rng.normal(0.0, 1.0, 30))
    auto = mann_whitney_u(x, y, "greater")
    exact = mann_whitney_u(x, y, "greater", method="exact")
    assert auto.method == "normal" and exact.method == "exact"
    assert auto.p_value == pytest.approx(exact.p_value, abs=0.005)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError):
        mann_whitney_u([1.0], [2.0], "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mann_whitney_u([math.nan], [2.0])


def test_smallest_p_says_when_a_test_can_never_fail() -> None:
    assert smallest_p(3, 3) == pytest.approx(0.05)  # never below 0.05
    assert smallest_p(4, 4) == pytest.approx(1 / 70)
    assert smallest_p(5, 5, "two-sided") == pytest.approx(2 / 252)


def test_bootstrap_ratio_is_seeded_and_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    base = list(rng.normal(100.0, 5.0, 10))
    new = list(rng.normal(130.0, 5.0, 8))
    first = bootstrap_ratio(new, base, seed=7)
    again = bootstrap_ratio(new, base, seed=7)
    other = bootstrap_ratio(new, base, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert first.ratio == pytest.approx(median(new) / median(base))
    assert first.low <= first.ratio <= first.high
    assert first.low > 1.15 and first.high < 1.45


def test_bootstrap_ratio_of_scaled_and_constant_samples() -> None:
    base = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert bootstrap_ratio([2 * v for v in base], base).ratio == pytest.approx(2.0)
    constant = bootstrap_ratio([6.0] * 4, [3.0] * 5)
    assert (constant.ratio, constant.low, constant.high) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="baseline median is 0"):
        bootstrap_ratio([1.0], [0.0, 0.0, 1.0])
