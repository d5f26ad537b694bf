"""``report.html``: one self-contained file, its plots inline as data URIs.

How it works. ``render_html`` takes the same data as ``report.json`` and
writes a page with no outside references (inline CSS, PNGs as base64), so
it can be mailed, archived or attached to a CI run as one file. It opens
with the level, the score and the machine; then the table of the ten tests,
the plots, how each figure was measured, the security checks and the runs
(links relative to the report folder). Every text is escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from harness.certification.report import row_texts
from harness.machine import one_line

LEVEL_COLOURS = {"FULL": "#1b7f3b", "PARTIAL": "#b7791f", "FAILED": "#c53030"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;
color:#1a202c;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #e2e8f0}
.banner{display:flex;gap:1.5rem;align-items:center;padding:1rem 1.25rem;border-radius:8px;
color:#fff;margin:1rem 0}
.level{font-size:2rem;font-weight:700;letter-spacing:.05em}.score{font-size:1.3rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{border:1px solid #e2e8f0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f7fafc}td.num{text-align:right;white-space:nowrap}
.pass{color:#1b7f3b;font-weight:600}.fail{color:#c53030;font-weight:700}
.meta{color:#4a5568;font-size:.92rem}.meta li{margin:.15rem 0}
img{max-width:100%;border:1px solid #e2e8f0;margin:.5rem 0}
.note{color:#4a5568;font-size:.88rem}code{background:#f7fafc;padding:0 .2rem}
"""


def render_html(data: dict[str, Any], folder: Path) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Certification {escape(data['id'])}: {escape(data['level'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        _header(data),
        _tests_table(data["tests"]),
        _plots(data.get("plots", []), folder),
        _methods(data["tests"]),
        _security(data["security"]),
        _runs(data["runs"]),
        _warnings(data["warnings"]),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(data: dict[str, Any]) -> str:
    colour = LEVEL_COLOURS.get(data["level"], "#4a5568")
    machine = data["machine"]
    commit = machine.get("commit") or "unknown"
    dirty = " (with uncommitted changes)" if machine.get("dirty") else ""
    return (
        f"<h1>swarmtwin certification: {escape(data['suite']['name'])}</h1>"
        f"<div class=banner style='background:{colour}'>"
        f"<span class=level>{escape(data['level'])}</span>"
        f"<span class=score>score {data['score']:.1f} / 100</span>"
        f"<span>{data['passed']} of {data['total']} tests passed, "
        f"{data['critical_passed']} of {data['critical_total']} critical</span></div>"
        "<ul class=meta>"
        f"<li>measured on <b>{escape(one_line(machine))}</b>; "
        f"{escape(str(machine.get('platform')))}</li>"
        f"<li>commit <code>{escape(commit)}</code>{dirty}; created {escape(data['created'])}"
        f" by <code>{escape(data['command'])}</code></li>"
        f"<li>suite <code>{escape(data['suite']['file'])}</code>: "
        f"{escape(data['suite']['description'])}</li>"
        f"<li>each figure is the mean of {data['repetitions']} real repetitions with its 95 % "
        "confidence interval; the model ran each scenario once and its prediction is beside "
        "the measurement</li></ul>"
    )


def _tests_table(tests: list[dict[str, Any]]) -> str:
    head = (
        "<h2>Tests</h2><table><tr><th>test</th><th>critical</th><th>measured</th>"
        "<th>95 % interval</th><th>target</th><th>result</th><th>score</th>"
        "<th>model predicts</th><th>runs</th></tr>"
    )
    return head + "".join(_test_row(t) for t in tests) + "</table>"


def _test_row(t: dict[str, Any]) -> str:
    text = {key: escape(value) for key, value in row_texts(t).items()}
    result = "<span class=pass>pass</span>" if t["passed"] else "<span class=fail>FAIL</span>"
    if t["borderline"]:
        result += "<br><span class=note>interval crosses the target</span>"
    links = " ".join(
        f"<a href='{escape(run)}'>{escape(Path(run).name.split('-', 2)[-1])}</a>"
        for run in t["runs"]
    )
    return (
        f"<tr><td>{escape(t['title'])}</td><td>{text['critical']}</td>"
        f"<td class=num>{text['measured']}</td><td class=num>{text['ci']}</td>"
        f"<td class=num>{text['target']}</td><td>{result}</td>"
        f"<td class=num>{text['score']}</td><td class=num>{text['model']}</td>"
        f"<td>{links or 'this report'}</td></tr>"
    )


def _methods(tests: list[dict[str, Any]]) -> str:
    items = "".join(
        f"<li><b>{escape(t['title'])}</b>: {escape(t['method'])}"
        + (f" {escape(t['detail'])}." if t["detail"] else "")
        + "</li>"
        for t in tests
    )
    return f"<h2>How each figure was measured</h2><ul>{items}</ul>"


def _security(security: dict[str, Any] | None) -> str:
    if security is None:
        return "<h2>Security checks</h2><p class=fail>The security checks did not run.</p>"
    rows = "".join(
        f"<tr><td>{escape(c['name'])}</td><td>"
        + ("<span class=pass>pass</span>" if c["passed"] else "<span class=fail>FAIL</span>")
        + f"</td><td>{escape(c['detail'])}</td><td class=note>{escape(c['method'])}</td></tr>"
        for c in security["checks"]
    )
    return (
        f"<h2>Security checks</h2><p class=note>seed {security['seed']}, "
        f"{security['fuzz_frames']} fuzzed frames, against a live tcp coordinator process</p>"
        "<table><tr><th>check</th><th>result</th><th>what was measured</th><th>how</th></tr>"
        f"{rows}</table>"
    )


def _plots(names: list[str], folder: Path) -> str:
    images = []
    for name in names:
        encoded = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        images.append(f"<img alt='{escape(name)}' src='data:image/png;base64,{encoded}'>")
    return "<h2>Plots</h2>" + ("".join(images) or "<p>No plots: no run had data for them.</p>")


def _runs(runs: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{escape(r['group'])}</td><td>{escape(r['scenario'])}</td>"
        f"<td>{escape(str(r['transport']))}</td><td class=num>{r['real_repetitions']}</td>"
        f"<td><a href='{escape(r['folder'])}'>{escape(r['folder'])}</a></td></tr>"
        for r in runs
    )
    return (
        "<h2>Runs</h2><table><tr><th>group</th><th>scenario</th><th>transport</th>"
        f"<th>real runs</th><th>run folder</th></tr>{rows}</table>"
    )


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f"<h2>Warnings</h2><ul>{items}</ul>"
