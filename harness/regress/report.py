"""Rich tables and JSON for a ``swarmtwin regress`` result.

``render_sim`` is one table of every sim figure that moved (scenario,
figure, baseline, now, change), or None when every figure was identical.
``render_real`` is one row per real figure: the baseline's and this run's
median with their run counts, the change of the median, the bootstrap 95 %
interval of the ratio, the one-sided p-value in the worse direction, the
minimum effect and the verdict (regressions in red, improvements in green).
``verdict_lines`` are the closing lines: what regressed, or that nothing
did. ``write_json`` writes ``RegressResult.to_dict()``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

from harness.metrics.figures import Figure
from harness.regress.check import RegressResult
from harness.regress.decide import MetricVerdict
from harness.render.table import MISSING

STYLE = {
    "regressed": "bold red",
    "missing": "bold red",
    "improved": "green",
    "small change": "yellow",
    "not significant": "",
    "undefined": "yellow",
    "info": "dim",
}


def _value(value: float | Figure, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    number = float(value)
    if unit == "msg/s":
        return f"{number:,.0f}"
    if unit == "ratio":
        return f"{number * 100:.3f} %"
    if unit == "ms":
        return f"{number:,.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{number:.6g}"


def _pct(value: float | None) -> str:
    """A signed change in percent; past +1000 % as a factor (``x35``)."""
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "+inf"
    return f"x{value / 100 + 1:,.0f}" if value >= 1000 else f"{value:+.1f} %"


def render_sim(result: RegressResult) -> Table | None:
    """Every sim figure that is not what the baseline has, or None."""
    changes = [change for comparison in result.sim for change in comparison.changes]
    if not changes:
        return None
    table = Table(title="sim figures that moved (exact comparison)")
    for name in ("scenario", "figure", "baseline", "now", "change", "change %"):
        table.add_column(name, justify="left" if name in ("scenario", "figure") else "right")
    for change in changes:
        delta = change.change
        table.add_row(
            change.scenario,
            change.figure,
            _value(change.old),
            _value(change.new),
            MISSING if delta is None else f"{delta:+.6g}",
            _pct(change.change_pct),
            style="red",
        )
    return table


def _interval(verdict: MetricVerdict) -> str:
    if verdict.ci_low is None or verdict.ci_high is None:
        return MISSING
    low, high = (verdict.ci_low - 1) * 100, (verdict.ci_high - 1) * 100
    return f"{_pct(low)} .. {_pct(high)}"


def _threshold(verdict: MetricVerdict) -> str:
    if verdict.min_effect is None:
        return "not checked"
    sign = "+" if verdict.worse == "higher" else "-"
    return f"{sign}{verdict.min_effect * 100:g} %"


def _p(value: float | None) -> str:
    if value is None:
        return MISSING
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def render_real(result: RegressResult) -> Table | None:
    """One row per real figure compared, or None when nothing real ran."""
    if not result.real:
        return None
    table = Table(
        title=f"real figures: this build against the baseline (alpha {result.alpha:g})",
        caption="p: one-sided Mann-Whitney U, new runs worse than the baseline's (two-sided "
        "where not checked); change: of the median; 95 % CI: of the ratio of medians (bootstrap)",
        caption_justify="left",
    )
    base_n, new_n = len(result.real[0].base), len(result.real[0].new)
    table.add_column("scenario", no_wrap=True)
    table.add_column("figure", no_wrap=True)
    for name in (f"baseline (n={base_n})", f"now (n={new_n})", "change", "95 % CI", "p"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("min effect", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for v in result.real:
        style = STYLE.get(v.verdict, "")
        table.add_row(
            v.scenario,
            v.label,
            _value(v.base_median, v.unit),
            _value(v.new_median, v.unit),
            _pct(v.change_pct),
            _interval(v),
            _p(v.p_worse),
            _threshold(v),
            f"[{style}]{v.verdict}[/]" if style else v.verdict,
        )
    return table


def verdict_lines(result: RegressResult) -> list[str]:
    """The closing lines: each regression, or that there was none."""
    lines = []
    for comparison in result.sim:
        moved = len(comparison.changes)
        if moved:
            lines.append(
                f"[red]sim {comparison.scenario}: {moved} of {comparison.compared} figures "
                "moved; the model's behaviour changed (update the baseline if intended)[/]"
            )
        else:
            lines.append(
                f"sim {comparison.scenario}: all {comparison.compared} figures identical "
                "to the baseline"
            )
        if comparison.added or comparison.removed:
            lines.append(
                f"sim {comparison.scenario}: not compared (on one side only): "
                + ", ".join(comparison.added + comparison.removed)
            )
    advisory = " (advisory: another machine's baseline)" if result.real_advisory else ""
    for v in result.real_regressions:
        lines.append(
            f"[red]real {v.scenario}: {v.label} regressed{advisory}: median "
            f"{_value(v.base_median, v.unit)} -> {_value(v.new_median, v.unit)} {v.unit} "
            f"({_pct(v.change_pct)}, threshold {_threshold(v)})[/]"
        )
    lines.append("[bold red]REGRESSED[/]" if result.regressed else "[bold green]no regression[/]")
    return lines


def write_json(result: RegressResult, path: Path) -> Path:
    """``result.to_dict()`` as indented JSON (non-finite numbers written as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _finite(result.to_dict())
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
