"""The model's fidelity report: errors per point, their summary, goals and plots.

For every point and compared figure (p50, p95, p99, deliveries/s) the error
is ``(sim mean - real mean) / real mean * 100``. Errors are summarised per
figure as the median and the worst absolute error, over the points *below
saturation* (where the goals apply) and over all points. A point is below
saturation when its offered load is at most ``BELOW_SATURATION`` of the
measured saturation throughput and the real system kept up with it (it
delivered at least ``KEPT_UP`` of what was offered). Past saturation the
queue grows for as long as the run lasts, so latency there measures the
run's length more than the system.

``write_report`` puts ``report.json``, ``report.md``, ``latency_vs_load.png``
and ``predicted_vs_measured.png`` into the report folder.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from harness.validate.suite import COMPARED, PointResult  # noqa: E402

BELOW_SATURATION = 0.9
KEPT_UP = 0.97
GOALS = (  # (figure, statistic, limit in %): the goals
    ("p95_ms", "median", 10.0),
    ("deliveries_per_s", "median", 10.0),
    ("p95_ms", "worst", 25.0),
    ("deliveries_per_s", "worst", 25.0),
)
SATURATION_GOAL = 10.0
BACKENDS = ("real", "sim")
AXIS_MARKERS = {"load": "o", "agents": "s", "size": "^", "fanout": "D", "saturation": "*"}
Stats = dict[str, float | int | None]


def error_pct(real: float | None, sim: float | None) -> float | None:
    """The model's error relative to the measurement, in %; None when undefined."""
    if real is None or sim is None or real == 0:
        return None
    return (sim - real) / real * 100.0


def point_entry(result: PointResult, capacity: float) -> dict[str, Any]:
    """One point's figures, errors and classification, as plain data."""
    real, sim = result.figures("real"), result.figures("sim")
    offered = real["offered_deliveries_per_s"]["mean"]
    delivered = real["deliveries_per_s"]["mean"]
    kept_up = bool(offered and delivered and delivered >= KEPT_UP * float(offered))
    fraction = float(offered or 0.0) / capacity if capacity else math.inf
    return {
        "axis": result.point.axis,
        "value": result.point.value,
        "label": result.point.label,
        "offered_deliveries_per_s": offered,
        "fraction_of_capacity": fraction,
        "below_saturation": kept_up and fraction <= BELOW_SATURATION,
        "real": real,
        "sim": sim,
        "errors": {name: error_pct(real[name]["mean"], sim[name]["mean"]) for name in COMPARED},
        "runs": {backend: result.runs(backend) for backend in BACKENDS},
    }


def summarize_errors(points: Sequence[dict[str, Any]]) -> dict[str, dict[str, Stats]]:
    """Median and worst absolute error per figure, below saturation and overall."""
    scopes = {
        "below_saturation": [p for p in points if p["below_saturation"]],
        "all": list(points),
    }
    out: dict[str, dict[str, Stats]] = {}
    for scope, chosen in scopes.items():
        out[scope] = {}
        for name in COMPARED:
            errors = [abs(p["errors"][name]) for p in chosen if p["errors"][name] is not None]
            out[scope][name] = {
                "n": len(errors),
                "median": statistics.median(errors) if errors else None,
                "worst": max(errors) if errors else None,
            }
    return out


def evaluate_goals(
    errors: dict[str, dict[str, Stats]], saturation_error: float | None
) -> list[dict[str, Any]]:
    """Each goal of the issue, the value reached and whether it was met."""
    goals = []
    for name, statistic, limit in GOALS:
        value = errors["below_saturation"][name][statistic]
        goals.append(
            {
                "goal": f"{statistic} absolute error of {name} below saturation <= {limit:g} %",
                "value": value,
                "met": value is not None and float(value) <= limit,
            }
        )
    sat = None if saturation_error is None else abs(saturation_error)
    goals.append(
        {
            "goal": f"saturation throughput within {SATURATION_GOAL:g} %",
            "value": sat,
            "met": sat is not None and sat <= SATURATION_GOAL,
        }
    )
    return goals


def build_report(
    header: dict[str, Any], saturation: PointResult, results: Sequence[PointResult]
) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data."""
    capacity = float(saturation.figures("real")["deliveries_per_s"]["mean"] or 0.0)
    points = [point_entry(result, capacity) for result in results]
    errors = summarize_errors(points)
    peaks = {backend: peak_throughput(saturation, results, backend) for backend in BACKENDS}
    sat_error = error_pct(peaks["real"]["mean"], peaks["sim"]["mean"])
    overload = saturation.figures("real")["offered_deliveries_per_s"]["mean"]
    return {
        **header,
        "saturation": {
            "overload_offered_deliveries_per_s": overload,
            "overload_real": saturation.figures("real")["deliveries_per_s"],
            "overload_sim": saturation.figures("sim")["deliveries_per_s"],
            "overload_runs": {backend: saturation.runs(backend) for backend in BACKENDS},
            "real": peaks["real"],
            "sim": peaks["sim"],
            "error_pct": sat_error,
        },
        "points": points,
        "errors": errors,
        "goals": evaluate_goals(errors, sat_error),
    }


def peak_throughput(
    saturation: PointResult, results: Sequence[PointResult], backend: str
) -> dict[str, Any]:
    """The highest mean delivery rate of the overload point and the load axis.

    Past capacity an overloaded system can deliver a little less than at
    capacity (refusals and resends cost CPU), so the overload point alone
    can understate what the system carries; the peak over the load sweep
    is the saturation throughput.
    """
    candidates = [saturation, *(r for r in results if r.point.axis == "load")]
    best: dict[str, Any] = {"mean": None, "at": None}
    for result in candidates:
        stats = result.figures(backend)["deliveries_per_s"]
        if stats["mean"] is not None and (best["mean"] is None or stats["mean"] > best["mean"]):
            best = {**stats, "at": result.point.label}
    return best


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """Write the JSON, the Markdown and both plots; return the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    plot_latency_vs_load(folder / "latency_vs_load.png", report)
    plot_predicted_vs_measured(folder / "predicted_vs_measured.png", report)
    from harness.validate.fidelity_md import render_markdown

    path = folder / "report.md"
    path.write_text(render_markdown(report))
    return path


def plot_latency_vs_load(path: Path, report: dict[str, Any]) -> None:
    """p50 and p95 against offered load on the load axis: real with 95 % CI, sim as a line."""
    points = sorted(
        (p for p in report["points"] if p["axis"] == "load"),
        key=lambda p: p["offered_deliveries_per_s"] or 0.0,
    )
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    x = [p["offered_deliveries_per_s"] / 1000 for p in points]
    capacity = report["saturation"]["overload_real"]["mean"]
    for ax, name in zip(axes, ("p50_ms", "p95_ms"), strict=True):
        real = [p["real"][name] for p in points]
        means = [_nan(r["mean"]) for r in real]
        low = [m - _nan(r["ci_low"], m) for m, r in zip(means, real, strict=True)]
        high = [_nan(r["ci_high"], m) - m for m, r in zip(means, real, strict=True)]
        ax.errorbar(
            x,
            means,
            yerr=[low, high],
            fmt="o-",
            color="tab:blue",
            capsize=3,
            label="real (mean, 95 % CI)",
        )
        ax.plot(
            x,
            [_nan(p["sim"][name]["mean"]) for p in points],
            "s--",
            color="tab:orange",
            label="sim (mean)",
        )
        if capacity:
            ax.axvline(
                capacity / 1000,
                color="grey",
                linestyle=":",
                label="reference capacity (real, 2x overload)",
            )
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
        values: list[float] = []
        for axis, marker in AXIS_MARKERS.items():
            chosen = [p for p in report["points"] if p["axis"] == axis]
            pairs = [
                (p["real"][name]["mean"], p["sim"][name]["mean"], p["below_saturation"])
                for p in chosen
            ]
            pairs = [(r, s, b) for r, s, b in pairs if r and s]
            if not pairs:
                continue
            values += [v for r, s, _ in pairs for v in (r, s)]
            colours = ["tab:green" if b else "tab:red" for _, _, b in pairs]
            ax.scatter(
                [r for r, _, _ in pairs],
                [s for _, s, _ in pairs],
                marker=marker,
                c=colours,
                label=axis,
                s=28,
            )
        if values:
            lo, hi = min(values) / 1.5, max(values) * 1.5
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=1)
            for band, style in ((0.10, ":"), (0.25, "--")):
                ax.plot(
                    [lo, hi], [lo * (1 + band), hi * (1 + band)], style, color="grey", linewidth=0.8
                )
                ax.plot(
                    [lo, hi], [lo * (1 - band), hi * (1 - band)], style, color="grey", linewidth=0.8
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"measured {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, title="axis (green: below saturation)", title_fontsize=7)
    figure.suptitle("predicted (sim) against measured (real); lines: equal, ±10 %, ±25 %")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _nan(value: float | int | None, default: float = math.nan) -> float:
    return default if value is None else float(value)
