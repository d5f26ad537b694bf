"""scipy behind harness.metrics.stats and harness.metrics.compare: the same answers
as the hand-written code.

``harness.metrics.stats`` took its Mann-Whitney p-values from its own exact
recursion and normal approximation, and ``harness.metrics.compare`` its Student t
from a printed table, until both moved to ``scipy.stats``. ``CI_VERDICTS``
was captured from the hand-written code just before the move: the verdicts
and p-values of ``regress`` on a frozen copy of the CI baseline (``data/``)
when its real runs are compared with copies of themselves (the first 5
runs, scaled by 0.7, 0.97 or 1.3, or nudged by 0.07 % per run). The scipy
code must give the same verdicts, the same method and p-values equal to
1e-9 relative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.metrics.compare import mean_ci, t_critical_95
from harness.metrics.stats import mann_whitney_u, midranks, smallest_p, tie_sizes, u_counts
from harness.regress.decide import INFO_FIGURES, RULES, decide, describe

# a frozen copy of reports/baselines/ci.json as it was when the verdicts below were
# captured with the hand-written statistics (the committed baseline is re-measured)
CI_BASELINE = Path(__file__).resolve().parent / "data" / "ci-baseline-2026-12-05.json"
FIGURES = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s", "reliability")
VARIANTS: dict[str, Callable[[int, float], float]] = {
    "first5": lambda k, v: v,
    "x0.7": lambda k, v: v * 0.7,
    "x0.97": lambda k, v: v * 0.97,
    "x1.3": lambda k, v: v * 1.3,
    "jitter": lambda k, v: v * (1 + 0.0007 * (k + 1)),
}
# (scenario without "regress-", figure, variant, method of the one-sided test, verdict,
#  p_worse (two-sided p for a figure that is only described), p_better), from the
#  hand-written harness.metrics.stats of commit 25b690c
CI_VERDICTS: list[tuple[str, str, str, str, str, float, float | None]] = [
    ("latency", "p50_ms", "first5", "normal", "info", 0.29438540599594093, None),
    ("latency", "p50_ms", "x0.7", "normal", "info", 0.0026706230218342952, None),
    ("latency", "p50_ms", "x0.97", "normal", "info", 0.01197189335863924, None),
    ("latency", "p50_ms", "x1.3", "normal", "info", 0.0026706230218341877, None),
    ("latency", "p50_ms", "jitter", "normal", "info", 0.15862360581844748, None),
    ("latency", "p95_ms", "first5", "normal", "not significant", 0.5, 0.5489563244721588),
    ("latency", "p95_ms", "x0.7", "exact", "improved", 1.0, 0.000333000333000333),
    ("latency", "p95_ms", "x0.97", "exact", "small change", 1.0, 0.000333000333000333),
    ("latency", "p95_ms", "x1.3", "exact", "regressed", 0.000333000333000333, 1.0),
    (
        "latency",
        "p95_ms",
        "jitter",
        "exact",
        "not significant",
        0.297036297036297,
        0.7432567432567433,
    ),
    ("latency", "p99_ms", "first5", "normal", "info", 0.5784719795000166, None),
    ("latency", "p99_ms", "x0.7", "normal", "info", 0.002647110966206956, None),
    ("latency", "p99_ms", "x0.97", "normal", "info", 0.002647110966206956, None),
    ("latency", "p99_ms", "x1.3", "normal", "info", 0.0026471109662068656, None),
    ("latency", "p99_ms", "jitter", "normal", "info", 1.0, None),
    (
        "latency",
        "deliveries_per_s",
        "first5",
        "normal",
        "not significant",
        0.3748292795481297,
        0.6839006367718443,
    ),
    (
        "latency",
        "deliveries_per_s",
        "x0.7",
        "normal",
        "regressed",
        0.000668765448557429,
        0.9995791940130289,
    ),
    (
        "latency",
        "deliveries_per_s",
        "x0.97",
        "normal",
        "small change",
        0.000668765448557429,
        0.9995791940130289,
    ),
    (
        "latency",
        "deliveries_per_s",
        "x1.3",
        "normal",
        "improved",
        0.9995791940130289,
        0.0006687654485574137,
    ),
    (
        "latency",
        "deliveries_per_s",
        "jitter",
        "normal",
        "small change",
        0.9995254190943649,
        0.0007477303749822326,
    ),
    ("latency", "reliability", "first5", "normal", "not significant", 1.0, 1.0),
    (
        "latency",
        "reliability",
        "x0.7",
        "normal",
        "regressed",
        0.00012279073443743904,
        0.9999323183671848,
    ),
    (
        "latency",
        "reliability",
        "x0.97",
        "normal",
        "regressed",
        0.00012279073443743904,
        0.9999323183671848,
    ),
    (
        "latency",
        "reliability",
        "x1.3",
        "normal",
        "improved",
        0.9999323183671848,
        0.00012279073443746184,
    ),
    (
        "latency",
        "reliability",
        "jitter",
        "normal",
        "improved",
        0.9998998411538588,
        0.00017660072250299405,
    ),
    ("throughput", "p50_ms", "first5", "normal", "info", 1.0, None),
    ("throughput", "p50_ms", "x0.7", "normal", "info", 0.0002455814688748781, None),
    ("throughput", "p50_ms", "x0.97", "normal", "info", 0.0002455814688748781, None),
    ("throughput", "p50_ms", "x1.3", "normal", "info", 0.0002455814688749237, None),
    ("throughput", "p50_ms", "jitter", "normal", "info", 0.0003532014450059881, None),
    (
        "throughput",
        "p95_ms",
        "first5",
        "normal",
        "not significant",
        0.32167986136586624,
        0.7241765320965696,
    ),
    (
        "throughput",
        "p95_ms",
        "x0.7",
        "normal",
        "improved",
        0.9993014171480745,
        0.0010705355233389113,
    ),
    (
        "throughput",
        "p95_ms",
        "x0.97",
        "normal",
        "not significant",
        0.754641392746786,
        0.286422949184994,
    ),
    (
        "throughput",
        "p95_ms",
        "x1.3",
        "normal",
        "regressed",
        0.0010705355233388825,
        0.9993014171480745,
    ),
    (
        "throughput",
        "p95_ms",
        "jitter",
        "normal",
        "not significant",
        0.05932449080008252,
        0.9540353236582882,
    ),
    ("throughput", "p99_ms", "first5", "normal", "info", 0.6642001619664318, None),
    ("throughput", "p99_ms", "x0.7", "normal", "info", 0.0026237257351204857, None),
    ("throughput", "p99_ms", "x0.97", "normal", "info", 0.4994081538569426, None),
    ("throughput", "p99_ms", "x1.3", "normal", "info", 0.002623725735120466, None),
    ("throughput", "p99_ms", "jitter", "normal", "info", 0.35703528213340296, None),
    (
        "throughput",
        "deliveries_per_s",
        "first5",
        "normal",
        "not significant",
        0.1877390599019717,
        0.8494245609002434,
    ),
    (
        "throughput",
        "deliveries_per_s",
        "x0.7",
        "normal",
        "regressed",
        0.0007314778199469796,
        0.9995365243151304,
    ),
    (
        "throughput",
        "deliveries_per_s",
        "x0.97",
        "normal",
        "small change",
        0.0007314778199469796,
        0.9995365243151304,
    ),
    (
        "throughput",
        "deliveries_per_s",
        "x1.3",
        "normal",
        "improved",
        0.9995365243151304,
        0.0007314778199469836,
    ),
    (
        "throughput",
        "deliveries_per_s",
        "jitter",
        "normal",
        "small change",
        0.9995084282857886,
        0.0007725443633930663,
    ),
    ("throughput", "reliability", "first5", "normal", "not significant", 1.0, 1.0),
    (
        "throughput",
        "reliability",
        "x0.7",
        "normal",
        "regressed",
        0.00012279073443743904,
        0.9999323183671848,
    ),
    (
        "throughput",
        "reliability",
        "x0.97",
        "normal",
        "regressed",
        0.00012279073443743904,
        0.9999323183671848,
    ),
    (
        "throughput",
        "reliability",
        "x1.3",
        "normal",
        "improved",
        0.9999323183671848,
        0.00012279073443746184,
    ),
    (
        "throughput",
        "reliability",
        "jitter",
        "normal",
        "improved",
        0.9998998411538588,
        0.00017660072250299405,
    ),
]
# The two-sided 95 % t table harness.metrics.compare carried before scipy, df 1..30.
T_TABLE = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def _ci_samples() -> dict[tuple[str, str], list[float]]:
    data = json.loads(CI_BASELINE.read_text())
    samples = {}
    for entry in data["scenarios"]:
        runs = [run["figures"] for run in entry["real"]["repetitions"]]
        for name in FIGURES:
            samples[entry["name"].removeprefix("regress-"), name] = [float(r[name]) for r in runs]
    return samples


def test_regress_verdicts_on_the_committed_ci_baseline_are_unchanged() -> None:
    samples = _ci_samples()
    seen = set()
    for scenario, name, variant, method, verdict, p_worse, p_better in CI_VERDICTS:
        base = samples[scenario, name]
        new = [VARIANTS[variant](k, v) for k, v in enumerate(base[:5])]
        where = (scenario, name, variant)
        assert mann_whitney_u(new, base, "greater").method == method, where
        if name in RULES:
            result = decide(scenario, RULES[name], new, base)
        else:
            result = describe(scenario, name, *INFO_FIGURES[name], new, base)
        assert result.verdict == verdict, where
        assert result.p_worse == pytest.approx(p_worse, rel=1e-9, abs=1e-15), where
        if p_better is None:
            assert result.p_better is None, where
        else:
            assert result.p_better == pytest.approx(p_better, rel=1e-9, abs=1e-15), where
        seen.add(where)
    assert len(seen) == len(samples) * len(VARIANTS) == len(CI_VERDICTS)


def _exact_p_by_counting(u: float, n: int, m: int, alternative: str) -> float:
    """The exact p-value from ``u_counts``, the whole-number null distribution."""
    counts, total = u_counts(n, m), math.comb(n + m, n)
    below = sum(counts[: int(u) + 1]) / total
    above = sum(counts[int(u) :]) / total
    if alternative == "greater":
        return above
    if alternative == "less":
        return below
    return min(1.0, 2.0 * min(below, above))


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 5), (4, 4), (5, 7), (9, 12), (25, 25)])
def test_scipy_exact_p_equals_counting_every_split(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    for _ in range(20):
        pooled = rng.permutation(n + m).astype(float)  # untied
        x, y = list(pooled[:n]), list(pooled[n:])
        for alternative in ("greater", "less", "two-sided"):
            result = mann_whitney_u(x, y, alternative)  # type: ignore[arg-type]
            assert result.method == "exact"
            expected = _exact_p_by_counting(result.u, n, m, alternative)
            assert result.p_value == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_exact_is_kept_up_to_25_values_where_scipy_auto_would_not() -> None:
    x, y = [float(v) for v in range(0, 40, 2)], [float(v) for v in range(1, 41, 2)]
    assert mann_whitney_u(x, y).method == "exact"  # 20 and 20, untied
    assert mann_whitney_u(x + [100.0] * 6, y).method == "normal"  # 26 values, tied
    assert mann_whitney_u(x + [101.0 + v for v in range(6)], y).method == "normal"  # 26 values


def test_smallest_p_is_what_scipy_gives_for_complete_separation() -> None:
    for n, m in combinations(range(1, 9), 2):
        low, high = list(range(n)), list(range(100, 100 + m))
        exact = scipy_stats.mannwhitneyu(low, high, alternative="less", method="exact")
        assert smallest_p(n, m) == pytest.approx(exact.pvalue, rel=1e-12)
        both = scipy_stats.mannwhitneyu(low, high, method="exact")
        assert smallest_p(n, m, "two-sided") == pytest.approx(both.pvalue, rel=1e-12)


def test_ranks_and_ties_helpers_agree_with_the_definitions() -> None:
    values = [3.0, 1.0, 3.0, 2.0, 3.0, 1.0]
    assert midranks(values) == [5.0, 1.5, 5.0, 3.0, 5.0, 1.5]
    assert sorted(tie_sizes(values)) == [1, 2, 3]
    assert tie_sizes([]) == []


def test_all_tied_samples_give_p_one_in_every_direction() -> None:
    for alternative in ("greater", "less", "two-sided"):
        result = mann_whitney_u([2.0] * 3, [2.0] * 4, alternative)  # type: ignore[arg-type]
        assert (result.p_value, result.u, result.method) == (1.0, 6.0, "normal")


def test_t_critical_is_students_t_and_agrees_with_the_old_printed_table() -> None:
    for df, printed in enumerate(T_TABLE, start=1):
        assert abs(t_critical_95(df) - printed) <= 0.0005
    assert t_critical_95(31) > 2.03 and t_critical_95(500) > 1.96  # the old cut-off was 1.96
    with pytest.raises(ValueError):
        t_critical_95(0)
    values = [1.0, 2.0, 4.0, 8.0]
    ci = mean_ci(values)
    half = float(scipy_stats.t.ppf(0.975, 3)) * float(np.std(values, ddof=1)) / 2.0
    assert ci["ci_low"] == pytest.approx(3.75 - half) and ci["ci_high"] == pytest.approx(
        3.75 + half
    )
