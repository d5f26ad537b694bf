"""The fidelity report as Markdown: goals, saturation, every point, error summary.

Renders the data ``harness.fidelity.build_report`` made, and nothing else,
so ``report.md`` and ``report.json`` always agree.
"""

from __future__ import annotations

from typing import Any

from harness.validation import COMPARED

UNITS = {"p50_ms": "ms", "p95_ms": "ms", "p99_ms": "ms", "deliveries_per_s": "/s"}


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report."""
    parts = [
        _header(report),
        _goals(report["goals"]),
        _saturation(report["saturation"]),
        _errors(report["errors"]),
        _points(report["points"]),
        "## Plots\n\n![latency against offered load](latency_vs_load.png)\n\n"
        "![predicted against measured](predicted_vs_measured.png)\n",
    ]
    return "\n".join(parts)


def _header(report: dict[str, Any]) -> str:
    machine, calibration = report["machine"], report["calibration"]
    lines = [
        f"# Model fidelity: {report['suite']}",
        "",
        f"- created {report['created']} with `{report['command']}`",
        f"- machine: {machine['host']}, {machine['cpus']} CPUs, Python {machine['python']}",
        f"- transport: {report['transport']}; base scenario `{report['base']}`",
        f"- real: {report['repetitions']} repetitions per point, one at a time; "
        f"sim: {report['replications']} seeded replications per point in parallel processes",
        f"- calibration: `{calibration['source']}` (measured on {calibration['host']}, "
        f"{calibration['date']})",
        f"- wall time: {report['wall_seconds']:.0f} s",
        "",
        "Error = (sim − real) / real, on the means. Real figures are means with their "
        "95 % confidence interval over the repetitions.",
    ]
    if calibration.get("warning"):
        lines.append(f"\n**Warning:** {calibration['warning']}")
    return "\n".join(lines) + "\n"


def _goals(goals: list[dict[str, Any]]) -> str:
    rows = ["## Goals", "", "| goal | reached | met |", "|---|---|---|"]
    for goal in goals:
        value = "n/a" if goal["value"] is None else f"{goal['value']:.1f} %"
        rows.append(f"| {goal['goal']} | {value} | {'yes' if goal['met'] else '**no**'} |")
    return "\n".join(rows) + "\n"


def _saturation(sat: dict[str, Any]) -> str:
    return (
        "## Saturation throughput\n\n"
        f"The highest mean delivery rate over the load sweep and the overload point: "
        f"measured {_ci(sat['real'])} (at {sat['real']['at']}), predicted "
        f"{_num(sat['sim']['mean'])} (at {sat['sim']['at']}), "
        f"error {_signed(sat['error_pct'])}.\n\n"
        f"At the overload point ({_num(sat['overload_offered_deliveries_per_s'])} deliveries/s "
        f"offered) the real system delivered {_ci(sat['overload_real'])} and the model "
        f"{_num(sat['overload_sim']['mean'])}. The load axis is laid out as fractions of that "
        "measured overload rate (the reference capacity).\n"
    )


def _errors(errors: dict[str, Any]) -> str:
    rows = [
        "## Error summary (absolute % error)",
        "",
        "| figure | scope | points | median | worst |",
    ]
    rows.append("|---|---|---|---|---|")
    for scope in ("below_saturation", "all"):
        for name in COMPARED:
            stats = errors[scope][name]
            rows.append(
                f"| {name} | {scope.replace('_', ' ')} | {stats['n']} | "
                f"{_pct(stats['median'])} | {_pct(stats['worst'])} |"
            )
    return "\n".join(rows) + "\n"


def _points(points: list[dict[str, Any]]) -> str:
    head = "| point | offered/s | of capacity | below sat. |"
    head += "".join(f" {name} real | sim | err |" for name in COMPARED)
    rows = ["## Every point", "", head, "|" + "---|" * (4 + 3 * len(COMPARED))]
    for p in points:
        cells = [
            p["label"],
            _num(p["offered_deliveries_per_s"]),
            f"{p['fraction_of_capacity'] * 100:.0f} %",
            "yes" if p["below_saturation"] else "no",
        ]
        for name in COMPARED:
            cells += [
                _ci(p["real"][name]),
                _num(p["sim"][name]["mean"]),
                _signed(p["errors"][name]),
            ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _ci(stats: dict[str, Any]) -> str:
    mean = stats["mean"]
    if mean is None:
        return "n/a"
    if stats.get("ci_low") is None:
        return _num(mean)
    half = (stats["ci_high"] - stats["ci_low"]) / 2
    return f"{_num(mean)} ± {_num(half)}"


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
