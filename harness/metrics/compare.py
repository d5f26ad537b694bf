"""Compare the model with the real system, and aggregate repetitions.

``compare(real, sim)`` lines up the headline figures of two summaries of the
same scenario and gives the model's percentage error for each,
``(sim - real) / real * 100``; the error is None when the real figure is zero
or missing, since a relative error is then undefined.

``aggregate(summaries)`` takes the summaries of repeated runs of one backend
and gives, for every figure of ``Summary.figures()``, the mean, the sample
standard deviation and a two-sided 95 % confidence interval for the mean,
``mean +- t * s / sqrt(n)``. Missing (None) values are left out of a
figure's sample.

Student's t (``t_critical_95``) is ``scipy.stats.t.ppf(0.975, df)``, the
two-sided 95 % quantile, for every ``df``. (Before scipy, a printed table to 3
decimals up to ``df`` 30 and the normal 1.96 beyond it made intervals of 32 or
more repetitions up to 4 % too narrow.) scipy.stats is imported on first use:
it takes about half a second, and every run imports this module.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One figure measured on the real system and predicted by the model."""

    metric: str
    unit: str
    real: float | None
    sim: float | None
    error_pct: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ComparisonRow:
        """Rebuild a row from ``to_dict()`` output."""
        return cls(
            metric=data["metric"],
            unit=data["unit"],
            real=data["real"],
            sim=data["sim"],
            error_pct=data["error_pct"],
        )


def percent_error(real: Figure, sim: Figure) -> float | None:
    """The model's error relative to the measurement, in percent."""
    if real is None or sim is None or real == 0:
        return None
    return (float(sim) - float(real)) / float(real) * 100.0


def _as_float(value: Figure) -> float | None:
    return None if value is None else float(value)


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
        for name, unit in COMPARED_FIGURES
    ]


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


def aggregate(summaries: list[Summary]) -> dict[str, dict[str, float | int | None]]:
    """Mean and 95 % confidence interval of every headline figure over repetitions."""
    samples: dict[str, list[float]] = {}
    for summary in summaries:
        for name, value in summary.figures().items():
            bucket = samples.setdefault(name, [])
            if value is not None:
                bucket.append(float(value))
    return {name: mean_ci(values) for name, values in samples.items()}
