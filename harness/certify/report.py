"""The certification report as data (``report.json``) and Markdown (``report.md``).

How it works. ``report_data`` turns a ``Certification`` into plain data,
the one source for all three formats: the level, the score and the machine
first, then one row per test (figure, 95 % interval over the real
repetitions, target, pass or fail, score, the model's prediction, how it was
measured and the run folders it came from, as paths relative to the
report), the security checks one by one, and the runs. ``render_markdown``
lays it out with ``harness/render/templates/certification.md.j2``, every text
from the data escaped for Markdown (``harness.render.jinja``).
``harness.certify.run.write_report`` draws the plots and writes the three
files (the HTML from ``harness.certify.html``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.render.jinja import render
from harness.run.machine import one_line

if TYPE_CHECKING:
    from harness.certify.catalog import Measurement
    from harness.certify.run import Certification

REPORT_VERSION = 1


def fmt(value: float | None, unit: str) -> str:
    """A figure for people: ``12.3 ms``, ``98,765 msg/s``, ``99.987 %``."""
    if value is None:
        return "not measured"
    if math.isinf(value):
        return "never (∞)"
    if unit == "msg/s":
        return f"{value:,.0f} msg/s"
    if unit == "agents":
        return f"{value:,.0f} agents"
    if unit == "%":  # truncated, not rounded: 99.8996 % must not show as the 99.9 % target
        return f"{math.floor(value * 1000) / 1000:.3f} %" if value >= 99 else f"{value:.1f} %"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3g} {unit}"


def interval(m: Measurement) -> str:
    if m.ci_low is None or m.ci_high is None:
        n = sum(s is not None for s in m.samples)
        return f"n = {n}, no interval" if n <= 1 else "no interval (a run did not recover)"
    unit = m.spec.unit
    return f"{fmt(m.ci_low, unit)} to {fmt(m.ci_high, unit)} (n = {len(m.samples)})"


def _test_row(m: Measurement, folder: Path) -> dict[str, Any]:
    spec = m.spec
    return {
        "key": spec.key,
        "title": spec.title,
        "unit": spec.unit,
        "critical": spec.critical,
        "target": spec.target,
        "direction": spec.direction,
        "value": _jsonnumber(m.value),
        "ci_low": m.ci_low,
        "ci_high": m.ci_high,
        "samples": [_jsonnumber(s) for s in m.samples],
        "model": _jsonnumber(m.model),
        "model_ci_low": m.model_low,
        "model_ci_high": m.model_high,
        "passed": m.passed,
        "borderline": m.borderline,
        "score": round(m.score, 2),
        "method": spec.method,
        "detail": m.detail,
        "runs": [os.path.relpath(run, folder) for run in m.runs],
    }


def _jsonnumber(value: float | None) -> float | str | None:
    return "inf" if value is not None and math.isinf(value) else value


def report_data(cert: Certification) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data."""
    verdict, settings = cert.verdict, cert.suite.settings
    security = cert.security
    return {
        "version": REPORT_VERSION,
        "id": cert.cert_id,
        "suite": {
            "name": settings.name,
            "file": cert.suite.source,
            "description": settings.description,
        },
        "created": cert.created.isoformat(timespec="seconds"),
        "command": cert.command,
        "machine": cert.machine,
        "level": verdict.level,
        "score": round(verdict.score, 2),
        "passed": verdict.passed,
        "total": verdict.total,
        "critical_passed": verdict.critical_passed,
        "critical_total": verdict.critical_total,
        "repetitions": settings.repetitions,
        "replications": min((len(r.sim) for r in cert.runs), default=0),
        "tests": [_test_row(m, cert.folder) for m in cert.measurements],
        "security": None
        if security is None
        else {
            "seed": security.seed,
            "fuzz_frames": security.fuzz_frames,
            "compliance": security.compliance,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail, "method": c.method}
                for c in security.checks
            ],
        },
        "runs": [
            {
                "group": r.group,
                "scenario": r.name,
                "folder": os.path.relpath(r.run_dir, cert.folder),
                "real_repetitions": len(r.real),
                "model_replications": len(r.sim),
                "transport": r.real[0].transport if r.real else None,
                "duration_s": r.real[0].duration if r.real else None,
            }
            for r in cert.runs
        ],
        "warnings": cert.warnings,
    }


def render_markdown(data: dict[str, Any], plots: list[str]) -> str:
    """``report.md``: ``harness/render/templates/certification.md.j2``, every cell escaped."""
    return render(
        "certification.md.j2",
        data=data,
        machine=one_line(data["machine"]),
        rows=[_markdown_test(t) for t in data["tests"]],
        plots=plots,
    )


def model_text(value: Any, low: float | None, high: float | None, unit: str) -> str:
    """The model's prediction: the mean of its replications and their 95 % interval."""
    if value is None:
        return "not modelled"
    shown = fmt(number(value), unit)
    if low is None or high is None:
        return shown
    return f"{shown} ({fmt(low, unit)} to {fmt(high, unit)})"


def row_texts(t: dict[str, Any]) -> dict[str, str]:
    """A test row's figures as text, shared by the Markdown and HTML tables."""
    unit = t["unit"]
    low, high = t["ci_low"], t["ci_high"]
    return {
        "measured": fmt(number(t["value"]), unit),
        "ci": f"{fmt(low, unit)} to {fmt(high, unit)}"
        if low is not None and high is not None
        else "—",
        "target": f"{t['direction']} {fmt(t['target'], unit)}",
        "model": model_text(t["model"], t.get("model_ci_low"), t.get("model_ci_high"), unit),
        "critical": "yes" if t["critical"] else "no",
        "score": f"{t['score']:.1f}",
    }


def _markdown_test(t: dict[str, Any]) -> dict[str, Any]:
    """A test with its figures as text and its runs as links (label: the run folder)."""
    links = [{"href": run, "name": Path(run).name} for run in t["runs"]]
    return {"test": t, "text": row_texts(t), "links": links}


def number(value: float | str | None) -> float | None:
    return math.inf if value == "inf" else (None if value is None else float(value))
