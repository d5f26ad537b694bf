"""Render summaries as a rich table: the figures of each backend side by side.

``render_summary_table`` builds one row per figure from ``Summary.figures()``
(latency, throughput, reliability, uptime, agents, wall time), one column per
backend (``real`` and ``sim`` always, any other backend after them) and a
column with the model's percentage error taken from the comparison rows.
A backend that did not run, or a figure that is undefined, shows "—"; a
latency percentile that is infinite (its rank lands on an expected
completion that never arrived, ``harness.metrics.figures``) shows "∞ (incomplete)".
The "overloaded" row says yes when a backend was overloaded
(``Reliability.overloaded``: it shed ops, or delivered less than 97 % of the
completions it accepted), and the table's caption then says so, one line per
such backend: "overloaded (real): N ops shed (M completions), K accepted
completions missing".
When a run had faults a short block follows: per fault kind the recovery
p95 (with how many faults never recovered) and the detection p95 (the
re-registration p95 for a coordinator crash), then losses of accepted ops
and acknowledged writes lost; its error column compares real with sim.
``console_print`` prints that table to a console (stdout by default), and
``render_history`` shows rows from ``harness.run.history.list_runs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.metrics.compare import ComparisonRow, percent_error
from harness.metrics.figures import Figure, Summary
from harness.metrics.summary import KindRecovery

MISSING = "—"
INFINITE = "∞ (incomplete)"
DEFAULT_BACKENDS: tuple[str, ...] = ("real", "sim")


def _ms(value: float) -> str:
    return f"{value:,.3f}"


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float) -> str:
    return f"{value * 100:.3f} %"


def _count(value: float) -> str:
    return f"{int(value):,}"


def _seconds(value: float) -> str:
    return f"{value:,.2f}"


def _yes_no(value: float) -> str:
    return "yes" if value else "no"


# (label, figure name, unit, formatter)
ROWS: tuple[tuple[str, str, str, Callable[[float], str]], ...] = (
    ("latency p50", "p50_ms", "ms", _ms),
    ("latency p95", "p95_ms", "ms", _ms),
    ("latency p99", "p99_ms", "ms", _ms),
    ("latency p99.9", "p999_ms", "ms", _ms),
    ("latency max", "max_ms", "ms", _ms),
    ("latency mean", "mean_ms", "ms", _ms),
    ("deliveries", "deliveries_per_s", "msg/s", _rate),
    ("operations completed", "ops_per_s", "ops/s", _rate),
    ("operations offered", "offered_ops_per_s", "ops/s", _rate),
    ("reliability", "reliability", "%", _ratio),
    ("not delivered by end", "lost", "msgs", _count),
    ("shed", "shed_ops", "ops", _count),
    ("overloaded", "overloaded", "", _yes_no),
    ("duplicates", "duplicates", "msgs", _count),
    ("data integrity", "data_integrity", "%", _ratio),
    ("uptime", "uptime", "%", _ratio),
    ("agents coordinated", "agents_coordinated", "agents", _count),
    ("wall time", "wall_seconds", "s", _seconds),
)


def format_figure(value: Figure, formatter: Callable[[float], str]) -> str:
    """Format a figure, or "—" when it is undefined."""
    return MISSING if value is None else formatter(float(value))


def format_error(error_pct: float | None) -> str:
    """A signed percentage such as "+3.2 %", or "—"."""
    return MISSING if error_pct is None else f"{error_pct:+.1f} %"


def overload_line(backend: str, summary: Summary) -> str | None:
    """The overload verdict of one backend's run, or None when it was not overloaded."""
    rel = summary.reliability
    if not rel.overloaded:
        return None
    return (
        f"overloaded ({backend}): {rel.shed_ops:,} ops shed ({rel.shed:,} completions), "
        f"{rel.lost:,} accepted completions missing"
    )


def _cell(
    figures: Mapping[str, Figure] | None,
    infinite: set[str],
    name: str,
    formatter: Callable[[float], str],
) -> str:
    if figures is None:
        return MISSING
    return INFINITE if name in infinite else format_figure(figures[name], formatter)


def _backends(summaries: Mapping[str, Summary]) -> list[str]:
    extra = sorted(name for name in summaries if name not in DEFAULT_BACKENDS)
    return [*DEFAULT_BACKENDS, *extra]


def _errors(comparison: Sequence[ComparisonRow] | None) -> dict[str, float | None]:
    return {row.metric: row.error_pct for row in comparison or ()}


def render_summary_table(
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None,
    *,
    title: str | None = None,
) -> Table:
    """A table of figures: metric, one column per backend, model error %."""
    backends = _backends(summaries)
    figures = {name: summary.figures() for name, summary in summaries.items()}
    infinite = {name: summary.infinite_figures() for name, summary in summaries.items()}
    errors = _errors(comparison)
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("unit")
    for backend in backends:
        table.add_column(backend, justify="right")
    table.add_column("model error %", justify="right")
    for label, name, unit, formatter in ROWS:
        cells = [_cell(figures.get(b), infinite.get(b, set()), name, formatter) for b in backends]
        table.add_row(label, unit, *cells, format_error(errors.get(name)))
    _add_fault_block(table, summaries, backends)
    verdicts = [overload_line(b, summaries[b]) for b in backends if b in summaries]
    lines = [line for line in verdicts if line is not None]
    if lines:
        table.caption = "\n".join(lines)
        table.caption_style = "bold red"
        table.caption_justify = "left"
    return table


# (label, KindRecovery attribute) per fault kind; the second is the detection row
RECOVERY_ROW = ("recovery p95", "recovery_p95_s")
DETECTION_ROWS: dict[str, tuple[str, str]] = {
    "crash_coordinator": ("re-registered p95", "reregistered_p95_s"),
}
DEFAULT_DETECTION_ROW = ("detection p95", "detection_p95_s")
FAULT_TOTALS: tuple[tuple[str, str, str], ...] = (
    ("lost after acceptance", "lost_acked", "msgs"),
    ("acked writes lost", "acked_writes_lost", "writes"),
)


def _kind(summary: Summary | None, kind: str) -> KindRecovery | None:
    return None if summary is None else summary.faults.by_kind.get(kind)


def _recovery_cell(figures: KindRecovery | None, attr: str) -> str:
    if figures is None:
        return MISSING
    cell = format_figure(getattr(figures, attr), _seconds)
    if attr == RECOVERY_ROW[1] and figures.unrecovered:
        cell += f" ({figures.unrecovered}/{figures.count} never)"
    return cell


def _pair_error(values: Mapping[str, Figure]) -> str:
    return format_error(percent_error(values.get("real"), values.get("sim")))


def _add_kind_rows(table: Table, summaries: Mapping[str, Summary], backends: list[str]) -> None:
    kinds = sorted({kind for s in summaries.values() for kind in s.faults.by_kind})
    for kind in kinds:
        detection = DETECTION_ROWS.get(kind, DEFAULT_DETECTION_ROW)
        for label, attr in (RECOVERY_ROW, detection):
            stats = {b: _kind(summaries.get(b), kind) for b in backends}
            values = {b: None if k is None else getattr(k, attr) for b, k in stats.items()}
            if attr != RECOVERY_ROW[1] and all(v is None for v in values.values()):
                continue
            cells = [_recovery_cell(stats[b], attr) for b in backends]
            table.add_row(f"{kind} {label}", "s", *cells, _pair_error(values))


def _add_fault_block(table: Table, summaries: Mapping[str, Summary], backends: list[str]) -> None:
    """The fault rows, after a section line; nothing when no backend had faults."""
    if not any(s.faults.faults for s in summaries.values()):
        return
    table.add_section()
    _add_kind_rows(table, summaries, backends)
    figures = {name: summary.figures() for name, summary in summaries.items()}
    for label, name, unit in FAULT_TOTALS:
        values = {b: figures[b][name] for b in figures}
        cells = [format_figure(values[b], _count) if b in values else MISSING for b in backends]
        table.add_row(label, unit, *cells, _pair_error(values))


def console_print(
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None = None,
    *,
    title: str | None = None,
    console: Console | None = None,
) -> None:
    """Print the summary table to ``console`` (a new stdout console by default)."""
    (console or Console()).print(render_summary_table(summaries, comparison, title=title))


# (header, history column, formatter)
HISTORY_COLUMNS: tuple[tuple[str, str, Callable[[float], str] | None], ...] = (
    ("created", "created", None),
    ("run id", "run_id", None),
    ("scenario", "scenario", None),
    ("backend", "backend", None),
    ("transport", "transport", None),
    ("p95 ms", "p95_ms", _ms),
    ("msg/s", "deliveries_per_s", _rate),
    ("reliability", "reliability", _ratio),
    ("uptime", "uptime", _ratio),
    ("lost", "lost", _count),
    ("agents", "agents_coordinated", _count),
    ("wall s", "wall_seconds", _seconds),
)


def _history_cell(value: Any, formatter: Callable[[float], str] | None) -> str:
    if value is None:
        return MISSING
    return str(value) if formatter is None else formatter(float(value))


def render_history(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Table:
    """A table of run-history rows (as returned by ``list_runs``), newest first."""
    table = Table(title=title or "run history")
    for header, _, formatter in HISTORY_COLUMNS:
        table.add_column(header, justify="left" if formatter is None else "right")
    for row in rows:
        table.add_row(*(_history_cell(row.get(key), fmt) for _, key, fmt in HISTORY_COLUMNS))
    return table
