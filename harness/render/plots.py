"""Plots of a run: the 100 ms timeline of each backend, drawn with matplotlib (Agg).

``plot_timeline`` writes ``timeline.png`` into the run folder: completions
per second offered and achieved (top) and the p95 latency of each bin (bottom,
log scale), one line per backend, with the warm-up shaded grey and each fault
window ``[at, end)`` shaded in its kind's colour (one legend entry per kind).
``plot_recovery`` writes ``recovery.png`` when the run had faults: each
fault's recovery time as a dot, one column per fault kind, real and sim side
by side; a fault that never recovered is an ``x`` above the others.
Everything drawn comes from the ``Summary`` (timeline and fault rows), so the
pictures and ``summary.json`` always agree.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from harness.metrics.figures import BIN_SECONDS, Summary  # noqa: E402
from harness.metrics.summary import FaultRecovery  # noqa: E402

COLOURS = {"real": "tab:blue", "sim": "tab:orange"}
FAULT_COLOURS = {
    "kill_agent": "tab:red",
    "pause_agent": "tab:purple",
    "crash_coordinator": "tab:brown",  # not grey: the warm-up is shaded grey
    "partition": "tab:green",
    "link_delay": "tab:olive",
    "link_loss": "tab:cyan",
}
FAULT_ALPHA = 0.15


def fault_rows(summaries: dict[str, Summary]) -> list[FaultRecovery]:
    """The fault windows (the same plan for every backend: the first one that has them)."""
    return next((s.faults.faults for s in summaries.values() if s.faults.faults), [])


def shade_faults(axes: tuple[Axes, ...], faults: list[FaultRecovery]) -> None:
    labelled: set[str] = set()
    for fault in faults:
        colour = FAULT_COLOURS.get(fault.kind, "tab:pink")
        for index, axis in enumerate(axes):
            first = index == 0 and fault.kind not in labelled
            label = f"fault: {fault.kind}" if first else None
            axis.axvspan(fault.at, fault.end, color=colour, alpha=FAULT_ALPHA, lw=0, label=label)
        labelled.add(fault.kind)


def plot_timeline(run_dir: Path, summaries: dict[str, Summary], title: str) -> Path:
    """Draw every backend's timeline into ``run_dir/timeline.png``."""
    figure, (rates, latency) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for backend, summary in summaries.items():
        colour = COLOURS.get(backend)
        times = [b.t for b in summary.timeline]
        rates.plot(
            times,
            [b.completions / BIN_SECONDS for b in summary.timeline],
            label=f"{backend} completions (per recipient)",
            color=colour,
        )
        latency.plot(
            times,
            [b.p95_ms if b.p95_ms is not None else float("nan") for b in summary.timeline],
            label=backend,
            color=colour,
        )
    first = next(iter(summaries.values()), None)
    if first is not None:
        offered = [b.offered / BIN_SECONDS for b in first.timeline]
        rates.plot(
            [b.t for b in first.timeline],
            offered,
            label="operations offered",
            color="grey",
            linestyle=":",
        )
        for axis in (rates, latency):
            axis.axvspan(0, first.warmup, color="grey", alpha=0.12, lw=0)
    shade_faults((rates, latency), fault_rows(summaries))
    rates.set_ylabel("per second (100 ms bins)")
    rates.set_title(f"{title}: completions per second (warm-up shaded)")
    rates.legend(loc="upper right", fontsize="small")
    latency.set_yscale("log")
    latency.set_ylabel("p95 latency per bin (ms)")
    latency.set_xlabel("seconds since the run started")
    latency.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    path = run_dir / "timeline.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _strip(
    axis: Axes, backend: str, rows: list[FaultRecovery], kinds: list[str], shift: float
) -> float:
    """Dots of one backend's recovery times; returns the largest one drawn."""
    colour = COLOURS.get(backend)
    done = [(kinds.index(r.kind) + shift, r.recovery_s) for r in rows if r.recovery_s is not None]
    if done:
        xs, ys = zip(*done, strict=True)
        axis.scatter(xs, ys, color=colour, alpha=0.7, label=backend)
    return max((y for _, y in done), default=0.0)


def _unrecovered(
    axis: Axes, backend: str, rows: list[FaultRecovery], kinds: list[str], shift: float, top: float
) -> None:
    xs = [kinds.index(r.kind) + shift for r in rows if r.recovery_s is None]
    if xs:
        colour = COLOURS.get(backend)
        axis.scatter(
            xs, [top] * len(xs), marker="x", color=colour, label=f"{backend}: not recovered"
        )


def plot_recovery(run_dir: Path, summaries: dict[str, Summary], title: str) -> Path | None:
    """Recovery time per fault, by kind, backends side by side: ``run_dir/recovery.png``."""
    rows = {backend: s.faults.faults for backend, s in summaries.items() if s.faults.faults}
    if not rows:
        return None
    kinds = sorted({r.kind for faults in rows.values() for r in faults})
    figure, axis = plt.subplots(figsize=(max(5, 2 + 1.5 * len(kinds)), 4))
    width = 0.3
    shifts = {b: (i - (len(rows) - 1) / 2) * width for i, b in enumerate(rows)}
    highest = max(_strip(axis, b, faults, kinds, shifts[b]) for b, faults in rows.items())
    top = highest * 1.2 + 0.1
    for backend, faults in rows.items():
        _unrecovered(axis, backend, faults, kinds, shifts[backend], top)
    axis.set_xticks(range(len(kinds)), kinds)
    axis.set_ylabel("recovery time (s)")
    axis.set_title(f"{title}: recovery time per fault")
    axis.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    path = run_dir / "recovery.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
