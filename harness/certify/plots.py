"""The certification report's pictures, drawn with matplotlib (Agg).

- ``latency_cdf.png``: the latency distribution of the load runs, read back
  from their HDR histograms: one line per real repetition and one for the
  model, latency on a log axis against the share of operations at or below it.
- ``throughput.png``: completions per second over time in each recovery and
  resilience scenario (its last real repetition and the model), with the
  faults shaded in their kind's colour.
- ``recovery.png``: every fault's recovery time, one column per scenario,
  real repetitions and the model side by side; a fault that never
  recovered is an ``x`` at the top.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from hdrh.histogram import HdrHistogram  # noqa: E402

from harness.certify.catalog import ScenarioRuns  # noqa: E402
from harness.metrics.figures import BIN_SECONDS, Summary  # noqa: E402
from harness.render.plots import COLOURS, fault_rows, shade_faults  # noqa: E402

PERCENTILES = np.unique(
    np.concatenate([np.linspace(0.0, 90.0, 46), 100.0 * (1.0 - 10.0 ** -np.linspace(1, 4, 61))])
)
FAULT_GROUPS = ("recovery", "resilience", "failover")


def latency_curve(summary: Summary) -> tuple[list[float], list[float]] | None:
    """(latency ms, percentile) points of a run's overall latency histogram."""
    encoded = summary.histograms.get("latency")
    if not encoded:
        return None
    hist = HdrHistogram.decode(encoded)
    if hist.get_total_count() == 0:
        return None
    values = [hist.get_value_at_percentile(float(p)) / 1000.0 for p in PERCENTILES]
    return values, [float(p) for p in PERCENTILES]


def plot_latency_cdf(folder: Path, runs: list[ScenarioRuns]) -> Path | None:
    load = [r for r in runs if r.group == "load"]
    curves: list[tuple[str, str | None, str, tuple[list[float], list[float]]]] = []
    for member in load:
        for index, summary in enumerate(member.real):
            curve = latency_curve(summary)
            label = f"real {member.name} #{index + 1}"
            if curve:
                curves.append((label, COLOURS["real"], "-", curve))
        for index, summary in enumerate(member.sim):
            model = latency_curve(summary)
            if model:
                label = f"model {member.name}" + (f" #{index + 1}" if len(member.sim) > 1 else "")
                curves.append((label, COLOURS["sim"], "--", model))
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for label, colour, style, (values, percentiles) in curves:
        axis.plot(values, percentiles, label=label, color=colour, linestyle=style, alpha=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("end-to-end latency (ms, log scale)")
    axis.set_ylabel("operations at or below (%)")
    axis.set_title("Latency CDF of the load runs (steady-state window)")
    axis.axhline(95, color="grey", linewidth=0.8, linestyle=":")
    axis.grid(True, which="both", alpha=0.2)
    axis.legend(loc="lower right", fontsize="small")
    return _save(figure, folder / "latency_cdf.png")


def plot_throughput(folder: Path, runs: list[ScenarioRuns]) -> Path | None:
    members = [r for r in runs if r.group in FAULT_GROUPS and r.real]
    if not members:
        return None
    figure, axes = plt.subplots(len(members), 1, figsize=(9, 2.4 * len(members)), squeeze=False)
    for axis, member in zip(axes[:, 0], members, strict=True):
        shown = {"real": member.real[-1]}
        if member.sim:
            shown["sim"] = member.sim[-1]
        for backend, summary in shown.items():
            times = [b.t for b in summary.timeline]
            rates = [b.completions / BIN_SECONDS for b in summary.timeline]
            axis.plot(times, rates, color=COLOURS[backend], label=backend, linewidth=1)
        shade_faults((axis,), fault_rows(shown))
        axis.set_xlim(0, max(s.duration for s in shown.values()) + 0.5)  # not the drain
        axis.set_title(f"{member.name}: completions per second (100 ms bins)", fontsize="medium")
        axis.legend(loc="lower right", fontsize="x-small")
    axes[-1, 0].set_xlabel("seconds since the run started")
    return _save(figure, folder / "throughput.png")


def plot_recovery(folder: Path, runs: list[ScenarioRuns]) -> Path | None:
    members = [r for r in runs if any(s.faults.faults for s in r.real)]
    if not members:
        return None
    figure, axis = plt.subplots(figsize=(max(5.0, 2 + 1.8 * len(members)), 4))
    points: dict[str, tuple[list[float], list[float]]] = {"real": ([], []), "sim": ([], [])}
    lost: dict[str, list[float]] = {"real": [], "sim": []}
    for column, member in enumerate(members):
        pairs = [("real", s) for s in member.real] + [("sim", s) for s in member.sim]
        for backend, summary in pairs:
            x = column + (-0.15 if backend == "real" else 0.15)
            for row in summary.faults.faults:
                if row.recovery_s is None:
                    lost[backend].append(x)
                else:
                    points[backend][0].append(x)
                    points[backend][1].append(row.recovery_s)
    top = max((y for _, ys in points.values() for y in ys), default=0.0) * 1.2 + 0.1
    for backend, (xs, ys) in points.items():
        label = "model" if backend == "sim" else "real"
        axis.scatter(xs, ys, color=COLOURS[backend], alpha=0.7, label=label)
        if lost[backend]:
            axis.scatter(
                lost[backend],
                [top] * len(lost[backend]),
                marker="x",
                color=COLOURS[backend],
                label=f"{label}: not recovered",
            )
    axis.set_xticks(range(len(members)), [m.name for m in members])
    axis.set_ylabel("recovery time (s)")
    axis.set_title("Recovery time of every fault")
    axis.legend(loc="upper right", fontsize="small")
    return _save(figure, folder / "recovery.png")


def draw_all(folder: Path, runs: list[ScenarioRuns]) -> list[Path]:
    """Every plot that has data, in report order."""
    drawn = [
        plot_latency_cdf(folder, runs),
        plot_throughput(folder, runs),
        plot_recovery(folder, runs),
    ]
    return [path for path in drawn if path is not None]


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
