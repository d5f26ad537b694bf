"""The fidelity report as Markdown: goals, capacity, overload, error summary, every point.

Renders the data ``harness.validate.fidelity.build_report`` made, and nothing else,
so ``report.md`` and ``report.json`` always agree. The layout is
``harness/render/templates/fidelity.md.j2`` (``harness.render.jinja``); the
figures are formatted here and every text is escaped for Markdown there.
"""

from __future__ import annotations

from typing import Any

from harness.render.jinja import render
from harness.validate.suite import COMPARED

UNITS = {"p50_ms": "ms", "p95_ms": "ms", "p99_ms": "ms", "deliveries_per_s": "/s"}
SCOPES = ("below_saturation", "all")  # the error summary's, in its order


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report: ``harness/render/templates/fidelity.md.j2``, every cell escaped."""
    return render(
        "fidelity.md.j2",
        report=report,
        refused=[
            point for point in [*report["capacity"], *report["points"]] if point.get("refused_runs")
        ],
        compared=COMPARED,
        scopes=SCOPES,
        num=_num,
        med=_median,
        pct=_pct,
        share=_share,
        signed=_signed,
    )


def _median(stats: dict[str, Any]) -> str:
    """The median, ± the half-width of the mean's 95 % interval when there is one;
    ``∞`` when the median is an infinite percentile (the runs lost their tail)."""
    middle = stats["median"]
    if middle is None:
        return "∞" if stats.get("infinite") else "n/a"
    if stats.get("ci_low") is None or stats.get("ci_high") is None:
        return _num(middle)
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    return f"{_num(middle)} ± {_num(half)}"


def _share(value: float | None) -> str:
    return (
        "n/a"
        if value is None
        else f"{value * 100:.0f} %"
        if value >= 0.01 or value == 0
        else f"{value * 100:.2f} %"
    )


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"
