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

Validity comes first: the "valid run" row says yes or NO per backend, and
for an invalid one the caption starts with "INVALID (real): <reasons>; its
figures are not evidence" (``Summary.invalid_reasons``).

A backend that ran several times (``repetitions``: backend to all its
summaries) shows the median of every figure over its runs, headed "real
(median of N)", and a column beside it with the 95 % confidence interval of
the mean (``harness.metrics.compare.aggregate``); its fault rows show the
median over the runs too, and each run that was overloaded or invalid gets
its own caption line (``real #2``).
``console_print`` prints that table to a console (stdout by default), and
``render_history`` shows rows from ``harness.run.history.list_runs``.
"""

from __future__ import annotations

import io
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.metrics.compare import ComparisonRow, aggregate, percent_error
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


def _seconds_fine(value: float) -> str:
    return f"{value:,.3f}"


def _times(value: float) -> str:
    return f"{value:,.2f}x"


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
    ("linearizable", "linearizable", "", _yes_no),
    ("uptime", "uptime", "%", _ratio),
    ("agents coordinated", "agents_coordinated", "agents", _count),
    ("all registered", "spawn_all_s", "s", _seconds_fine),
    ("wall time", "wall_seconds", "s", _seconds),
)
# shown when a run has tasks (``Summary.tasks``)
TASK_ROWS: tuple[tuple[str, str, str, Callable[[float], str]], ...] = (
    ("task latency p95", "task_p95_ms", "ms", _ms),
    ("task makespan", "makespan_s", "s", _seconds_fine),
    ("steals granted", "steals_granted", "steals", _count),
    ("task imbalance", "imbalance", "max/mean", _times),
    ("occupancy imbalance", "occupancy_imbalance", "max/mean", _times),
)
# shown for a tree of coordinators (``Summary.tasks.coordinators``)
TREE_ROWS: tuple[tuple[str, str, str, Callable[[float], str]], ...] = (
    ("coordinators per op", "coordinators_per_op", "nodes", _seconds),
    ("ops reaching the root", "root_share", "%", _ratio),
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


def _cell(value: Figure, formatter: Callable[[float], str]) -> str:
    """A figure's cell: "—" when undefined, "∞ (incomplete)" when infinite."""
    if value is not None and math.isinf(value):
        return INFINITE
    return format_figure(value, formatter)


def _figures(runs: Sequence[Summary]) -> dict[str, Figure]:
    """One backend's figures: its own with one run (infinite ones as ``math.inf``),
    else the median of each over its runs."""
    if len(runs) == 1:
        figures = dict(runs[0].figures())
        figures.update({name: math.inf for name in runs[0].infinite_figures()})
        return figures
    shown: dict[str, Figure] = {}
    for name, stats in aggregate(list(runs)).items():
        median = stats["median"]
        shown[name] = math.inf if median is None and stats["infinite"] else median
    return shown


def _interval(runs: Sequence[Summary]) -> dict[str, tuple[Figure, Figure]]:
    stats = aggregate(list(runs))
    return {name: (s["ci_low"], s["ci_high"]) for name, s in stats.items()}


def _interval_cell(bounds: tuple[Figure, Figure], formatter: Callable[[float], str]) -> str:
    low, high = bounds
    if low is None or high is None or formatter is _yes_no:  # no interval of a yes/no
        return MISSING
    return f"{formatter(float(low))} .. {formatter(float(high))}"


def _labelled(backend: str, runs: Sequence[Summary]) -> list[tuple[str, Summary]]:
    if len(runs) == 1:
        return [(backend, runs[0])]
    return [(f"{backend} #{k + 1}", run) for k, run in enumerate(runs)]


def invalid_line(label: str, summary: Summary) -> str | None:
    """The validity verdict of one run, or None when it was valid."""
    if summary.valid:
        return None
    reasons = "; ".join(summary.invalid_reasons)
    return f"INVALID ({label}): {reasons}; its figures are not evidence"


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
    repetitions: Mapping[str, Sequence[Summary]] | None = None,
) -> Table:
    """A table of figures: metric, one column per backend, model error %.

    ``repetitions`` maps a backend to all its runs; one with several shows
    their medians and a 95 % interval column instead of ``summaries[backend]``.
    """
    backends = _backends(summaries)
    runs = {name: list((repetitions or {}).get(name) or [s]) for name, s in summaries.items()}
    repeated = {name for name, items in runs.items() if len(items) > 1}
    figures = {name: _figures(items) for name, items in runs.items()}
    intervals = {name: _interval(runs[name]) for name in repeated}
    errors = _errors(comparison)
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("unit")
    for backend in backends:
        header = f"{backend} (median of {len(runs[backend])})" if backend in repeated else backend
        table.add_column(header, justify="right")
        if backend in repeated:
            table.add_column(f"{backend} 95 % CI of mean", justify="right")
    table.add_column("model error %", justify="right")
    validity = []
    for backend in backends:
        validity.append(_validity_cell(runs.get(backend)))
        if backend in repeated:
            validity.append("")
    table.add_row("valid run", "", *validity, "")
    tasks = any(run.tasks.submitted for items in runs.values() for run in items)
    tree = any(run.tasks.coordinators for items in runs.values() for run in items)
    extra = (TASK_ROWS if tasks else ()) + (TREE_ROWS if tree else ())
    for label, name, unit, formatter in ROWS + extra:
        cells = []
        for backend in backends:
            shown = figures.get(backend)
            cells.append(MISSING if shown is None else _cell(shown[name], formatter))
            if backend in repeated:
                cells.append(_interval_cell(intervals[backend][name], formatter))
        table.add_row(label, unit, *cells, format_error(errors.get(name)))
    _add_fault_block(table, runs, backends, repeated)
    lines = []
    for backend in backends:
        for label, run in _labelled(backend, runs.get(backend, [])):
            lines.append(invalid_line(label, run))
    for backend in backends:
        for label, run in _labelled(backend, runs.get(backend, [])):
            lines.append(overload_line(label, run))
    shown_lines = [line for line in lines if line is not None]
    if shown_lines:
        table.caption = "\n".join(shown_lines)
        table.caption_style = "bold red"
        table.caption_justify = "left"
    return table


def _validity_cell(runs: Sequence[Summary] | None) -> str:
    if not runs:
        return MISSING
    bad = sum(1 for run in runs if not run.valid)
    if not bad:
        return "yes"
    return "NO" if len(runs) == 1 else f"NO ({bad} of {len(runs)})"


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


def _kinds(runs: Sequence[Summary], kind: str) -> list[KindRecovery]:
    return [k for run in runs if (k := run.faults.by_kind.get(kind)) is not None]


def _median_value(stats: Sequence[KindRecovery], attr: str) -> Figure:
    """The median of ``attr`` over the runs; a recovery that never came counts as
    infinitely slow, other missing values are left out (None when all are)."""
    values = [getattr(k, attr) for k in stats]
    if attr == RECOVERY_ROW[1]:
        values = [math.inf if v is None else v for v in values]
    known = [float(v) for v in values if v is not None]
    if not known:
        return None
    middle = statistics.median(known)
    return None if math.isinf(middle) else middle


def _recovery_cell(stats: Sequence[KindRecovery], attr: str) -> str:
    if not stats:
        return MISSING
    cell = format_figure(_median_value(stats, attr), _seconds)
    unrecovered = sum(k.unrecovered for k in stats)
    if attr == RECOVERY_ROW[1] and unrecovered:
        cell += f" ({unrecovered}/{sum(k.count for k in stats)} never)"
    return cell


def _pair_error(values: Mapping[str, Figure]) -> str:
    return format_error(percent_error(values.get("real"), values.get("sim")))


def _add_kind_rows(
    table: Table, runs: Mapping[str, list[Summary]], backends: list[str], repeated: set[str]
) -> None:
    kinds = sorted({kind for items in runs.values() for s in items for kind in s.faults.by_kind})
    for kind in kinds:
        detection = DETECTION_ROWS.get(kind, DEFAULT_DETECTION_ROW)
        for label, attr in (RECOVERY_ROW, detection):
            stats = {b: _kinds(runs.get(b, []), kind) for b in backends}
            values = {b: _median_value(k, attr) if k else None for b, k in stats.items()}
            if attr != RECOVERY_ROW[1] and all(v is None for v in values.values()):
                continue
            cells = []
            for backend in backends:
                cells.append(_recovery_cell(stats[backend], attr))
                if backend in repeated:
                    cells.append("")
            table.add_row(f"{kind} {label}", "s", *cells, _pair_error(values))


def _add_fault_block(
    table: Table, runs: Mapping[str, list[Summary]], backends: list[str], repeated: set[str]
) -> None:
    """The fault rows, after a section line; nothing when no backend had faults."""
    if not any(s.faults.faults for items in runs.values() for s in items):
        return
    table.add_section()
    _add_kind_rows(table, runs, backends, repeated)
    figures = {name: _figures(items) for name, items in runs.items()}
    for label, name, unit in FAULT_TOTALS:
        values = {b: figures[b][name] for b in figures}
        cells = []
        for backend in backends:
            cells.append(format_figure(values[backend], _count) if backend in values else MISSING)
            if backend in repeated:
                cells.append("")
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


def as_text(renderable: object, width: int = 120) -> str:
    """A rich table (or any renderable) as plain text, as a terminal ``width`` wide shows it."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
