"""Compare the model with the real system, and aggregate repetitions.

``compare(real, sim)`` lines up the headline figures of two summaries of the
same scenario and gives the model's percentage error for each,
``(sim - real) / real * 100``; the error is None when the real figure is zero
or missing, since a relative error is then undefined.

``aggregate(summaries)`` takes the summaries of repeated runs of one backend
and gives, for every figure of ``Summary.figures()``, the median, the mean,
the sample standard deviation and a two-sided 95 % confidence interval for
the mean, ``mean +- t * s / sqrt(n)`` (``repetition_stats``). Missing
(None) values are left out of a figure's sample; an infinite latency
percentile (``Summary.infinite_figures``) stays in it as infinitely late:
``infinite`` counts those, the median is None when it lands on one (JSON has
no infinity), and the mean and its interval are None whenever there is one.
Every headline figure is at least 0, and a ratio (``RATIO_FIGURES``) at most
1, so the interval is clipped to that range: the true mean lies in it, so
the clipped interval covers it as often (with 3 repetitions, t = 4.30 would
otherwise often reach below 0 ms).

``compare_runs(reals, sims)`` is ``compare`` for backends that ran several
times (the real system's repetitions, the model's seeded replications):
each row's ``real`` and ``sim`` are the medians over their runs, the
model's error is taken between the medians, and ``real_ci_low`` /
``real_ci_high`` / ``real_n`` (``sim_...`` likewise) carry each interval.
With one run of each it is exactly ``compare``.

Student's t (``t_critical_95``) is ``scipy.stats.t.ppf(0.975, df)``, the
two-sided 95 % quantile, for every ``df``. (Before scipy, a printed table to 3
decimals up to ``df`` 30 and the normal 1.96 beyond it made intervals of 32 or
more repetitions up to 4 % too narrow.) scipy.stats is imported on first use:
it takes about half a second, and every run imports this module.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from harness.metrics.figures import Figure, Summary

COMPARED_FIGURES: tuple[tuple[str, str], ...] = (
    ("p50_ms", "ms"),
    ("p95_ms", "ms"),
    ("p99_ms", "ms"),
    ("deliveries_per_s", "msg/s"),
    ("ops_per_s", "ops/s"),
    ("reliability", "ratio"),
    ("uptime", "ratio"),
    ("agents_coordinated", "agents"),
)
TASK_FIGURES: tuple[tuple[str, str], ...] = (  # compared too when the runs had tasks
    ("task_p95_ms", "ms"),
    ("makespan_s", "s"),
)


RATIO_FIGURES: dict[str, float] = {  # figure: its largest possible value
    "reliability": 1.0,
    "data_integrity": 1.0,
    "uptime": 1.0,
    "overloaded": 1.0,
    "monitoring_coverage": 100.0,  # percent
}


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One figure measured on the real system and predicted by the model."""

    metric: str
    unit: str
    real: float | None  # the median over the real repetitions (``real_n``) when several
    sim: float | None
    error_pct: float | None
    real_n: int = 1
    real_ci_low: float | None = None  # 95 % interval of the real mean; None for one run
    real_ci_high: float | None = None
    sim_n: int = 1  # the model's seeded replications; ``sim`` is their median when several
    sim_ci_low: float | None = None  # 95 % interval of the replications' mean
    sim_ci_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonRow:
        """Rebuild a row from ``to_dict()`` output (rows from before ``real_n`` too)."""
        return cls(
            metric=data["metric"],
            unit=data["unit"],
            real=data["real"],
            sim=data["sim"],
            error_pct=data["error_pct"],
            real_n=data.get("real_n", 1),
            real_ci_low=data.get("real_ci_low"),
            real_ci_high=data.get("real_ci_high"),
            sim_n=data.get("sim_n", 1),
            sim_ci_low=data.get("sim_ci_low"),
            sim_ci_high=data.get("sim_ci_high"),
        )


def percent_error(real: Figure, sim: Figure) -> float | None:
    """The model's error relative to the measurement, in percent."""
    if real is None or sim is None or real == 0:
        return None
    return (float(sim) - float(real)) / float(real) * 100.0


def _as_float(value: Figure) -> float | None:
    return None if value is None else float(value)


def compared(runs: Sequence[Summary]) -> tuple[tuple[str, str], ...]:
    """The figures compared for these runs: ``COMPARED_FIGURES``, and the task
    figures when any of them had tasks."""
    if any(run.tasks.submitted for run in runs):
        return COMPARED_FIGURES + TASK_FIGURES
    return COMPARED_FIGURES


def compare(real: Summary, sim: Summary) -> list[ComparisonRow]:
    """One row per compared figure: real value, sim value and the model's error."""
    real_figures, sim_figures = real.figures(), sim.figures()
    return [
        ComparisonRow(
            metric=name,
            unit=unit,
            real=_as_float(real_figures[name]),
            sim=_as_float(sim_figures[name]),
            error_pct=percent_error(real_figures[name], sim_figures[name]),
        )
        for name, unit in compared((real, sim))
    ]


def compare_runs(reals: Sequence[Summary], sims: Sequence[Summary]) -> list[ComparisonRow]:
    """``compare`` of the median of the real repetitions with the median of the model's
    replications, each with the 95 % interval of its mean when it has several runs."""
    if len(reals) == 1 and len(sims) == 1:
        return compare(reals[0], sims[0])
    figures = compared([*reals, *sims])
    real_stats, sim_stats = _stats(reals, figures), _stats(sims, figures)
    rows = []
    for name, unit in figures:
        real, sim = real_stats[name], sim_stats[name]
        rows.append(
            ComparisonRow(
                metric=name,
                unit=unit,
                real=_as_float(real["median"]),
                sim=_as_float(sim["median"]),
                error_pct=percent_error(real["median"], sim["median"]),
                real_n=int(real["n"] or 0),
                real_ci_low=real["ci_low"],
                real_ci_high=real["ci_high"],
                sim_n=int(sim["n"] or 0),
                sim_ci_low=sim["ci_low"],
                sim_ci_high=sim["ci_high"],
            )
        )
    return rows


def _stats(
    runs: Sequence[Summary], names: tuple[tuple[str, str], ...]
) -> dict[str, dict[str, float | int | None]]:
    """``aggregate`` of several runs; one run's own figures, with n = 1 and no interval."""
    if len(runs) > 1:
        return aggregate(list(runs))
    figures = runs[0].figures()
    return {
        name: {"n": 1, "median": figures[name], "ci_low": None, "ci_high": None}
        for name, _ in names
    }


def t_critical_95(df: int) -> float:
    """Two-sided 95 % critical value of Student's t for ``df`` degrees of freedom
    (``scipy.stats.t.ppf(0.975, df)``)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _t_975(df)


@cache
def _t_975(df: int) -> float:
    from scipy.stats import t as student_t  # slow to import: only when an interval is needed

    return float(student_t.ppf(0.975, df))


def mean_ci(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and 95 % confidence interval of the mean."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "stdev": None, "ci_low": None, "ci_high": None}
    mean = math.fsum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "stdev": None, "ci_low": None, "ci_high": None}
    stdev = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = t_critical_95(n - 1) * stdev / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "stdev": stdev,
        "ci_low": mean - half_width,
        "ci_high": mean + half_width,
    }


def repetition_stats(
    values: Sequence[float], highest: float | None = None
) -> dict[str, float | int | None]:
    """Median, mean, standard deviation and the mean's 95 % interval of one figure
    (at least 0, and at most ``highest`` when given: the interval is clipped to that).

    ``values`` may hold ``math.inf`` (an infinite latency percentile):
    ``infinite`` counts them, the median is None when it is infinite, and the
    mean and interval are None when any value is.
    """
    infinite = sum(1 for v in values if math.isinf(v))
    middle = statistics.median(values) if values else None
    stats = mean_ci(values) if not infinite else mean_ci([])
    if stats["ci_low"] is not None and stats["ci_high"] is not None:
        top = math.inf if highest is None else highest
        stats["ci_low"] = min(max(float(stats["ci_low"]), 0.0), top)
        stats["ci_high"] = min(max(float(stats["ci_high"]), 0.0), top)
    return {
        **stats,
        "n": len(values),
        "median": None if middle is None or math.isinf(middle) else float(middle),
        "infinite": infinite,
    }


def aggregate(summaries: list[Summary]) -> dict[str, dict[str, float | int | None]]:
    """Median, mean and 95 % confidence interval of every headline figure over repetitions."""
    samples: dict[str, list[float]] = {}
    for summary in summaries:
        infinite = summary.infinite_figures()
        for name, value in summary.figures().items():
            bucket = samples.setdefault(name, [])
            if value is not None:
                bucket.append(float(value))
            elif name in infinite:
                bucket.append(math.inf)
    return {
        name: repetition_stats(values, RATIO_FIGURES.get(name)) for name, values in samples.items()
    }
