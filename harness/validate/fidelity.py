"""The model's fidelity report: capacity per variant, overload, errors per point, goals, plots.

Every error is ``(sim median - real median) / real median * 100``: the median
over the real repetitions, which one stalled repetition cannot drag, against
the median of the model's seeded replications. The real figure is shown with
the 95 % confidence interval of its mean, so a reader sees how much the
machine itself varied.

- **Capacity**: for each variant (the base, each axis value, each mix) the
  delivery rate when offered far past what it carries, measured and predicted.
- **Overload**: the base at multiples of its measured capacity: goodput
  (deliveries/s) and the share of ops shed, measured and predicted.
- **Points**: p50, p95, p99 and deliveries/s. A point is *below saturation*
  when it offers at most ``BELOW_SATURATION`` of its variant's measured
  capacity and the real system kept up (delivered at least ``KEPT_UP`` of
  what was offered); the latency goals apply there. Past saturation the queue
  grows for as long as the run lasts, so latency measures the run's length.

Below saturation, under open-loop load, both backends deliver what is
offered, so a throughput error there says nothing; the goals on throughput are
about capacity and overload, where the model can be wrong (``GOALS``).

The aggregation is pandas (``summarize_errors``: a DataFrame of the points'
errors, count, median and maximum per column). ``write_report`` puts
``report.json``, ``report.md``, ``latency_vs_load.png``,
``predicted_vs_measured.png`` and ``capacity.png`` into the report folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from harness.validate.suite import COMPARED, PointResult  # noqa: E402

BELOW_SATURATION = 0.9
KEPT_UP = 0.97
HEAVY_OVERLOAD = 3.0  # the overload goal covers the multiples from this one up
BACKENDS = ("real", "sim")
MARKERS = {"load": "o", "overload": "X", "agents": "s", "size": "^", "fanout": "D", "mix": "P"}
Stats = dict[str, Any]


@dataclass(frozen=True)
class Goal:
    """One row of the issue's table: a figure, the bar this work must reach, the goal."""

    name: str
    bar: float  # % : met when the value is at most this
    goal: float  # % : the stretch goal


GOALS = (
    Goal("p95, median absolute error below saturation", 20.0, 10.0),
    Goal("p95, worst absolute error below saturation", 40.0, 25.0),
    Goal("saturation throughput, worst absolute error over every variant", 10.0, 5.0),
    Goal(f"goodput at {HEAVY_OVERLOAD:g}x capacity and more, worst absolute error", 15.0, 5.0),
    Goal("mixes as written: deliveries/s, worst absolute error", 10.0, 5.0),
    Goal("mixes as written: p95, worst absolute error", 25.0, 10.0),
)


def error_pct(real: float | None, sim: float | None) -> float | None:
    """The model's error relative to the measurement, in %; None when undefined."""
    if real is None or sim is None or real == 0:
        return None
    return (sim - real) / real * 100.0


def point_entry(result: PointResult) -> dict[str, Any]:
    """One point's figures, errors and classification, as plain data."""
    point = result.point
    real, sim = result.figures("real"), result.figures("sim")
    offered = (
        real["offered_deliveries_per_s"]["median"] or sim["offered_deliveries_per_s"]["median"]
    )
    delivered = real["deliveries_per_s"]["median"]
    kept_up = bool(offered and delivered and delivered >= KEPT_UP * float(offered))
    fraction = point.fraction
    below = point.kind != "capacity" and kept_up and fraction <= BELOW_SATURATION
    return {
        "kind": point.kind,
        "variant": point.variant,
        "axis": point.axis,
        "value": point.value,
        "label": point.label,
        "scenario_digest": point.digest,
        "offered_deliveries_per_s": offered,
        "fraction_of_capacity": None if math.isnan(fraction) else fraction,
        "below_saturation": below,
        "real": real,
        "sim": sim,
        "errors": {name: error_pct(real[name]["median"], sim[name]["median"]) for name in COMPARED},
        "shed_difference_points": _difference_points(
            real["shed_share"]["median"], sim["shed_share"]["median"]
        ),
        "runs": {backend: result.runs(backend) for backend in BACKENDS},
        "refused_runs": result.refused,
    }


def _difference_points(real: float | None, sim: float | None) -> float | None:
    """The model's error on a share, in percentage points (sim - real)."""
    return None if real is None or sim is None else (sim - real) * 100.0


def summarize_errors(points: Sequence[dict[str, Any]]) -> dict[str, dict[str, Stats]]:
    """Median and worst absolute error per figure, below saturation and overall."""
    errors = pd.DataFrame(
        [{name: p["errors"][name] for name in COMPARED} for p in points],
        columns=list(COMPARED),
        dtype="float64",
    ).abs()
    below = np.array([bool(p["below_saturation"]) for p in points], dtype=np.bool_)
    scopes = {"below_saturation": errors.loc[below], "all": errors}
    return {scope: _error_stats(frame) for scope, frame in scopes.items()}


def _error_stats(errors: pd.DataFrame) -> dict[str, Stats]:
    stats = errors.agg(["count", "median", "max"])  # undefined (NaN) errors left out
    return {
        name: {
            "n": int(stats.at["count", name]),
            "median": _none(stats.at["median", name]),
            "worst": _none(stats.at["max", name]),
        }
        for name in COMPARED
    }


def evaluate_goals(
    errors: dict[str, dict[str, Stats]], points: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each goal of ``GOALS``: the value reached (an absolute % error), and whether the
    bar and the stretch goal are met. A goal with nothing to measure is not met."""
    capacity = [p for p in points if p["kind"] == "capacity"]
    heavy = [p for p in points if p["kind"] == "overload" and p["value"] >= HEAVY_OVERLOAD]
    written = [p for p in points if p["kind"] == "nominal"]
    values = (
        errors["below_saturation"]["p95_ms"]["median"],
        errors["below_saturation"]["p95_ms"]["worst"],
        _worst(capacity, "deliveries_per_s"),
        _worst(heavy, "deliveries_per_s"),
        _worst(written, "deliveries_per_s"),
        _worst(written, "p95_ms"),
    )
    return [
        {
            "goal": goal.name,
            "bar": goal.bar,
            "target": goal.goal,
            "value": value,
            "met": value is not None and value <= goal.bar,
            "met_target": value is not None and value <= goal.goal,
        }
        for goal, value in zip(GOALS, values, strict=True)
    ]


def _worst(points: Sequence[dict[str, Any]], name: str) -> float | None:
    """The largest absolute error of ``name`` over ``points``; None when there is no point
    or any of them has no error (a figure missing on one backend is not a small error)."""
    found = [p["errors"][name] for p in points]
    if not found or any(value is None for value in found):
        return None
    return max(abs(float(value)) for value in found)


def build_report(
    header: dict[str, Any],
    capacities: Sequence[PointResult],
    results: Sequence[PointResult],
) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data."""
    capacity = [point_entry(result) for result in capacities]
    points = [point_entry(result) for result in results]
    errors = summarize_errors(points)
    return {
        **header,
        "capacity": capacity,
        "points": points,
        "errors": errors,
        "goals": evaluate_goals(errors, [*capacity, *points]),
    }


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """Write the JSON, the Markdown and the plots; return the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    plot_latency_vs_load(folder / "latency_vs_load.png", report)
    plot_predicted_vs_measured(folder / "predicted_vs_measured.png", report)
    plot_capacity(folder / "capacity.png", report)
    from harness.validate.fidelity_md import render_markdown

    path = folder / "report.md"
    path.write_text(render_markdown(report))
    return path


FRAME_COLUMNS = {  # figure_frame's columns: name, dtype
    "kind": "str",
    "axis": "str",
    "label": "str",
    "offered": "float64",
    "below": "bool",
    "real": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "sim": "float64",
}


def figure_frame(points: Sequence[dict[str, Any]], name: str) -> pd.DataFrame:
    """One row per point: its kind, axis, label, offered load and class, then the figure
    ``name``'s real median and 95 % interval and the sim median (NaN where None)."""
    rows = [
        (
            p["kind"],
            p["axis"],
            p["label"],
            p["offered_deliveries_per_s"],
            p["below_saturation"],
            p["real"][name]["median"],
            p["real"][name]["ci_low"],
            p["real"][name]["ci_high"],
            p["sim"][name]["median"],
        )
        for p in points
    ]
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    return frame.astype(FRAME_COLUMNS)


def plot_latency_vs_load(path: Path, report: dict[str, Any]) -> None:
    """p50 and p95 against offered load, the base's load and overload points: real median
    with the 95 % interval of its mean, sim median as a line."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    base = next((c for c in report["capacity"] if c["variant"] == "base"), None)
    capacity = None if base is None else base["real"]["deliveries_per_s"]["median"]
    for ax, name in zip(axes, ("p50_ms", "p95_ms"), strict=True):
        frame = figure_frame(report["points"], name)
        load = frame[frame["kind"].isin(["load", "overload"])].sort_values("offered", kind="stable")
        x = load["offered"] / 1000
        low = (load["real"] - load["ci_low"].fillna(load["real"])).clip(lower=0)
        high = (load["ci_high"].fillna(load["real"]) - load["real"]).clip(lower=0)
        ax.errorbar(
            x,
            load["real"],
            yerr=[low, high],
            fmt="o-",
            color="tab:blue",
            capsize=3,
            label="real (median; 95 % CI of the mean)",
        )
        ax.plot(x, load["sim"], "s--", color="tab:orange", label="sim (median)")
        if capacity:
            ax.axvline(capacity / 1000, color="grey", linestyle=":", label="measured capacity")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered deliveries/s (thousands)")
        ax.set_ylabel(f"{name[:-3]} latency (ms)")
        ax.set_title(f"{name[:-3]} latency against offered load")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"{report['suite']}: {report['transport']} on {report['machine']['host']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_predicted_vs_measured(path: Path, report: dict[str, Any]) -> None:
    """Sim against real for each compared figure, log-log, with the ±10 % and ±25 % bands."""
    figure, axes = plt.subplots(1, len(COMPARED), figsize=(4.2 * len(COMPARED), 4.3))
    for ax, name in zip(axes, COMPARED, strict=True):
        frame = figure_frame([*report["capacity"], *report["points"]], name)
        shown = frame[
            frame["real"].fillna(0).gt(0)  # a log scale shows neither missing nor zero
            & frame["sim"].fillna(0).gt(0)
        ]
        for axis, marker in MARKERS.items():
            chosen = shown[(shown["axis"] == axis) & (shown["kind"] != "capacity")]
            if not chosen.empty:
                ax.scatter(
                    chosen["real"],
                    chosen["sim"],
                    marker=marker,
                    c=["tab:green" if below else "tab:red" for below in chosen["below"]],
                    label=axis,
                    s=28,
                )
        chosen = shown[shown["kind"] == "capacity"]
        if not chosen.empty:
            ax.scatter(chosen["real"], chosen["sim"], marker="*", c="black", s=50, label="capacity")
        if not shown.empty:
            lo = min(shown["real"].min(), shown["sim"].min()) / 1.5
            hi = max(shown["real"].max(), shown["sim"].max()) * 1.5
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
            for band, style in ((0.10, ":"), (0.25, "--")):
                for sign in (1, -1):
                    scale = 1 + sign * band
                    ax.plot([lo, hi], [lo * scale, hi * scale], style, color="grey", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {name} (median)")
        ax.set_ylabel(f"predicted {name} (median)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, title="green: below saturation", title_fontsize=7)
    figure.suptitle("predicted (sim) against measured (real); lines: equal, ±10 %, ±25 %")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_capacity(path: Path, report: dict[str, Any]) -> None:
    """Each variant's saturation throughput: real median with its interval, and sim."""
    frame = figure_frame(report["capacity"], "deliveries_per_s")
    figure, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(frame) + 2), 4.5))
    x = np.arange(len(frame))
    low = (frame["real"] - frame["ci_low"].fillna(frame["real"])).clip(lower=0)
    high = (frame["ci_high"].fillna(frame["real"]) - frame["real"]).clip(lower=0)
    ax.bar(
        x - 0.2,
        frame["real"] / 1000,
        0.4,
        yerr=[low / 1000, high / 1000],
        capsize=3,
        color="tab:blue",
        label="real (median; 95 % CI of the mean)",
    )
    ax.bar(x + 0.2, frame["sim"] / 1000, 0.4, color="tab:orange", label="sim (median)")
    ax.set_xticks(x, [label.removeprefix("capacity ") for label in frame["label"]], rotation=30)
    ax.set_ylabel("deliveries/s at saturation (thousands)")
    ax.set_title(f"saturation throughput per variant ({report['transport']})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _none(value: float) -> float | None:
    """A statistic for the report: None where pandas has NaN (no values)."""
    return None if math.isnan(value) else float(value)
