"""The reports' Jinja2 templates: the Markdown filters, autoescape, and every report
(certification HTML and Markdown, fidelity, what-if) rendered from hand-made data,
ordinary and hostile, without a run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from harness.certify.catalog import TESTS
from harness.certify.html import LEVEL_COLOURS, render_html
from harness.certify.report import render_markdown
from harness.render.jinja import environment, md_code, md_escape
from harness.validate.fidelity_md import render_markdown as fidelity_markdown
from harness.validate.suite import COMPARED
from harness.validate.whatif import COLUMNS, markdown_table

TEMPLATES = Path(__file__).resolve().parents[2] / "harness" / "render" / "templates"
HOSTILE = "<script>alert(1)</script> | x"
HOSTILE_HTML = "&lt;script&gt;alert(1)&lt;/script&gt; | x"
HOSTILE_MD = "&lt;script&gt;alert(1)&lt;/script&gt; \\| x"
PLOTS = ["latency_cdf.png", "throughput.png"]


def cells(line: str) -> list[str]:
    """A Markdown table row's cells, split at the pipes no backslash escapes."""
    found, current, escaped = [], "", False
    for char in line.strip().removeprefix("|").removesuffix("|"):
        if char == "|" and not escaped:
            found.append(current.strip())
            current = ""
        else:
            current += char
        escaped = char == "\\" and not escaped
    return [*found, current.strip()]


def tables(markdown: str) -> list[list[str]]:
    """Every table of ``markdown``: its lines, header first."""
    found: list[list[str]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                found.append([])
            found[-1].append(line)
        previous = line
    return found


def assert_tables_keep_their_columns(markdown: str) -> None:
    for table in tables(markdown):
        width = len(cells(table[0]))
        assert set(cells(table[1])) == {"---"} and len(cells(table[1])) == width, table[1]
        for row in table[2:]:
            assert len(cells(row)) == width, row


def rendered(markdown: str) -> str:
    """``markdown`` as HTML, rendered as GitHub does: tables, raw HTML passed through."""
    html: str = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    assert "<script" not in html and "<Type" not in html
    return html


# --- the filters and the environment ---------------------------------------------


def test_md_escape_keeps_a_value_in_its_cell_and_adds_no_html() -> None:
    assert md_escape("p95 | p99") == "p95 \\| p99"
    assert md_escape("one\ntwo\r\nthree\rfour") == "one<br>two<br>three<br>four"
    assert md_escape("<b>&amp;</b>") == "&lt;b&gt;&amp;amp;&lt;/b&gt;"
    assert md_escape("a\\|b") == "a\\\\\\|b"  # the backslash cannot eat the pipe's escape
    assert md_escape(HOSTILE) == HOSTILE_MD
    assert md_escape(12.5) == "12.5" and md_escape(None) == "None"
    ordinary = "Latency P95: 0.657 ms, 1,506 msg/s, 99.9 % (at load=0.3) `code` **b**"
    assert md_escape(ordinary) == ordinary


def test_md_code_is_one_literal_code_span() -> None:
    assert md_code("swarmtwin certify") == "`swarmtwin certify`"
    assert md_code("a `b` c") == "``a `b` c``"
    assert md_code("`x") == "`` `x ``"
    assert md_code(" a ") == "`  a  `"
    assert md_code("<script>\nx") == "`<script> x`"  # literal in a code span, one line


def test_html_templates_autoescape_and_markdown_ones_use_the_filters() -> None:
    env = environment()
    assert env is environment()  # made once
    assert env.autoescape("certification.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("fidelity.md.j2") is False  # type: ignore[operator]
    assert env.autoescape("unknown.txt.j2") is True  # type: ignore[operator]
    names = sorted(path.name for path in TEMPLATES.glob("*.j2"))
    assert names == [
        "certification.html.j2",
        "certification.md.j2",
        "fidelity.md.j2",
        "whatif.md.j2",
    ]
    for path in TEMPLATES.glob("*.j2"):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path.name
        if path.name.endswith(".md.j2"):
            for expression in re.findall(r"\{\{(.*?)\}\}", text, flags=re.S):
                last = expression.strip().rsplit("|", 1)[-1].strip()
                assert last in ("md", "md_code", "urlencode"), (path.name, expression)


# --- the certification report ----------------------------------------------------


def certification_data() -> dict[str, Any]:
    """report.json's data for an ordinary certification, made by hand."""
    tests = []
    for index, spec in enumerate(TESTS):
        value = spec.target * (0.5 if spec.direction == "<=" or index == 1 else 1.0)
        tests.append(
            {
                "key": spec.key,
                "title": spec.title,
                "unit": spec.unit,
                "critical": spec.critical,
                "target": spec.target,
                "direction": spec.direction,
                "value": value,
                "ci_low": value * 0.9,
                "ci_high": value * 1.1,
                "samples": [value, value],
                "model": value if index % 2 else None,
                "model_ci_low": value * 0.8 if index == 1 else None,
                "model_ci_high": value * 1.2 if index == 1 else None,
                "passed": index != 1,
                "borderline": index == 2,
                "score": 100.0 if index != 1 else 42.0,
                "method": spec.method,
                "detail": "3 of 3 checks passed" if index == 4 else "",
                "runs": [f"../../runs/20261205-193323-quick-load-{index:04d}"],
            }
        )
    return {
        "version": 1,
        "id": "20261205-193319-quick-2630",
        "suite": {
            "name": "quick",
            "file": "scenarios/certification/quick/suite.yaml",
            "description": "Every part of certify in under a minute.",
        },
        "created": "2026-12-05T19:33:19+00:00",
        "command": "swarmtwin certify",
        "machine": {
            "host": "vm",
            "cpu_model": "AMD EPYC",
            "cores": 2,
            "python": "3.11.7",
            "platform": "Linux-6.18-x86_64",
            "commit": "319c8da1100cadce1b7a24706ca621068894fd83",
            "dirty": True,
        },
        "level": "PARTIAL",
        "score": 80.17,
        "passed": 9,
        "total": 10,
        "critical_passed": 7,
        "critical_total": 8,
        "repetitions": 2,
        "replications": 3,
        "tests": tests,
        "security": {
            "seed": 3,
            "fuzz_frames": 100,
            "compliance": 50.0,
            "checks": [
                {"name": "wrong_token_rejected", "passed": True, "detail": "5 of 5", "method": "m"},
                {"name": "flood_memory_bounded", "passed": False, "detail": "grew", "method": "m"},
            ],
        },
        "runs": [
            {
                "group": "load",
                "scenario": "quick-load",
                "folder": "../../runs/20261205-193323-quick-load-0000",
                "real_repetitions": 2,
                "transport": "inproc",
                "duration_s": 1.5,
            }
        ],
        "warnings": ["run `swarmtwin calibrate --transport inproc`"],
        "plots": PLOTS,
    }


def hostile_certification() -> dict[str, Any]:
    """The ordinary data with a hostile string in every free text."""
    data = certification_data()
    data["suite"]["name"] = data["suite"]["description"] = HOSTILE
    data["command"] = f"swarmtwin certify {HOSTILE}"
    data["machine"]["platform"] = data["machine"]["host"] = HOSTILE
    data["tests"][0]["title"] = HOSTILE
    data["tests"][3]["detail"] = f"{HOSTILE}\nsecond line"
    data["tests"][5]["runs"] = [f"../../runs/{HOSTILE}"]
    data["security"]["checks"][0]["name"] = HOSTILE
    data["security"]["checks"][1]["detail"] = f"Error('<Type> before registration') {HOSTILE}"
    data["runs"][0]["scenario"] = data["runs"][0]["folder"] = HOSTILE
    data["warnings"] = [HOSTILE, "line one\nline two"]
    return data


@pytest.fixture
def plot_folder(tmp_path: Path) -> Path:
    for name in PLOTS:
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n" + name.encode())
    return tmp_path


def test_the_certification_markdown_lays_out_every_section(plot_folder: Path) -> None:
    data = certification_data()
    markdown = render_markdown(data, PLOTS)
    lines = markdown.splitlines()
    assert lines[0] == "# Certification 20261205-193319-quick-2630: **PARTIAL**, score 80.2"
    assert "- suite: `scenarios/certification/quick/suite.yaml` (quick)" in lines
    assert "- commit: 319c8da1100cadce1b7a24706ca621068894fd83 (with uncommitted changes)" in lines
    assert "- created 2026-12-05T19:33:19+00:00 by `swarmtwin certify`" in lines
    assert (
        "| Throughput | yes | 50,000 msg/s | 45,000 msg/s to 55,000 msg/s | &gt;= 100,000 msg/s "
        "| **FAIL** | 42.0 | 50,000 msg/s (40,000 msg/s to 60,000 msg/s) |"
    ) in lines
    assert "the model ran 3 seeded replications of each scenario" in markdown
    assert "(interval crosses the target)" in lines[13]
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## How each figure was measured",
        "## Security checks (seed 3, 100 fuzzed frames)",
        "## Plots",
        "## Warnings",
    ]
    assert "| flood_memory_bounded | **FAIL** | grew |" in lines
    assert "![throughput.png](throughput.png)" in lines
    assert "- run `swarmtwin calibrate --transport inproc`" in lines
    assert lines.count("") == 10 and markdown.endswith("\n") and not markdown.endswith("\n\n")
    assert sum(line.startswith("- **") for line in lines) == len(TESTS)
    assert (
        "Runs: [20261205-193323-quick-load-0001](../../runs/20261205-193323-quick-load-0001)."
        in (markdown)
    )
    assert_tables_keep_their_columns(markdown)
    [tests_table, security_table] = tables(markdown)
    assert len(tests_table) == 2 + len(TESTS) and len(security_table) == 4


def test_the_certification_markdown_without_security_plots_or_warnings() -> None:
    data = certification_data()
    data["security"], data["warnings"], data["machine"]["dirty"] = None, [], False
    data["machine"]["commit"] = None
    data["tests"][0]["runs"] = []
    markdown = render_markdown(data, [])
    assert "- commit: unknown\n" in markdown
    assert markdown.endswith(
        "## Security checks\n\nThe security checks did not run.\n\n## Plots\n\n"
    )
    assert "Runs: this report." in markdown


def test_the_certification_html_lays_out_every_section(plot_folder: Path) -> None:
    data = certification_data()
    html = render_html(data, plot_folder)
    assert html.startswith("<!doctype html><html lang=en><head><meta charset=utf-8>\n")
    assert "<title>Certification 20261205-193319-quick-2630: PARTIAL</title>" in html
    assert f"style='background:{LEVEL_COLOURS['PARTIAL']}'" in html
    assert "<span class=score>score 80.2 / 100</span>" in html
    assert (
        "<code>319c8da1100cadce1b7a24706ca621068894fd83</code> (with uncommitted changes);" in html
    )
    assert html.count("src='data:image/png;base64,") == len(PLOTS)
    assert "http://" not in html and "https://" not in html  # self-contained
    assert html.count("<tr>") == 1 + len(TESTS) + 1 + 2 + 1 + 1
    assert html.count("<span class=fail>FAIL</span>") == 2
    assert html.count("interval crosses the target") == 1
    assert "<td class=num>&gt;= 100,000 msg/s</td>" in html
    assert "<a href='../../runs/20261205-193323-quick-load-0001'>quick-load-0001</a>" in html
    assert "<li><b>Uptime</b>: " in html and " 3 of 3 checks passed.</li>" in html
    assert html.endswith("</body></html>\n")
    for heading in ("Tests", "Plots", "How each figure was measured", "Security checks", "Runs"):
        assert f"<h2>{heading}</h2>" in html
    assert "<h2>Warnings</h2><ul>" in re.sub(r">\s+<", "><", html)


def test_the_certification_html_without_security_plots_or_warnings(plot_folder: Path) -> None:
    data = certification_data()
    data["security"], data["warnings"], data["plots"] = None, [], []
    data["tests"][0]["runs"] = []
    html = render_html(data, plot_folder)
    assert "<p class=fail>The security checks did not run.</p>" in html
    assert "<p>No plots: no run had data for them.</p>" in html
    assert "<h2>Warnings</h2>" not in html
    assert "<td>this report</td>" in html


def test_a_hostile_text_is_escaped_in_the_certification_html(plot_folder: Path) -> None:
    html = render_html(hostile_certification(), plot_folder)
    assert "<script>" not in html and "<Type>" not in html
    assert html.count(HOSTILE_HTML) >= 10
    assert "<title>Certification 20261205-193319-quick-2630: PARTIAL</title>" in html
    assert f"<a href='{HOSTILE_HTML}'>{HOSTILE_HTML}</a>" in html
    ordinary = render_html(certification_data(), plot_folder)
    for tag in ("<tr>", "<td", "<li>", "<table>", "<h2>"):
        assert html.count(tag) == ordinary.count(tag) + (tag == "<li>"), tag  # one more warning


def test_a_hostile_text_is_escaped_in_the_certification_markdown() -> None:
    data = hostile_certification()
    markdown = render_markdown(data, PLOTS)
    code_span = f"`swarmtwin certify {HOSTILE}`"  # literal text inside a code span
    assert "<script>" not in markdown.replace(code_span, "") and "<Type>" not in markdown
    assert markdown.count(HOSTILE_MD) >= 7
    assert_tables_keep_their_columns(markdown)
    assert f"| {HOSTILE_MD} | yes | " in markdown  # the title: still the first cell
    assert f"{HOSTILE_MD}<br>second line." in markdown  # a detail stays on its line
    assert f"- {HOSTILE_MD}\n- line one<br>line two\n" in markdown
    assert f"- suite: `scenarios/certification/quick/suite.yaml` ({HOSTILE_MD})" in markdown
    assert f"by {code_span}\n" in markdown
    html = rendered(markdown)
    assert f"<td>{HOSTILE_HTML}</td>" in html  # one cell, shown as written
    assert f"<code>swarmtwin certify {HOSTILE_HTML}</code>" in html
    link = "(../../runs/%3Cscript%3Ealert%281%29%3C/script%3E%20%7C%20x)"
    assert f"[{HOSTILE_MD.removeprefix('&lt;script&gt;alert(1)&lt;/')}]{link}" in markdown
    ordinary = render_markdown(certification_data(), PLOTS)
    assert markdown.count("\n") == ordinary.count("\n") + 1  # one more warning, no other line


# --- the fidelity report ---------------------------------------------------------


def _stats(median: float | None, half: float | None = None) -> dict[str, Any]:
    low = None if half is None or median is None else median - half
    high = None if half is None or median is None else median + half
    return {"median": median, "mean": median, "ci_low": low, "ci_high": high, "n": 2, "infinite": 0}


def _figures(value: float, half: float | None = None) -> dict[str, Any]:
    figures = {name: _stats(value, half) for name in COMPARED}
    figures["shed_share"] = _stats(0.0)
    return figures


def fidelity_report() -> dict[str, Any]:
    """harness.validate.fidelity.build_report's data for an ordinary run, made by hand."""
    point: dict[str, Any] = {
        "kind": "load",
        "variant": "base",
        "axis": "load",
        "value": 0.3,
        "label": "load=0.3",
        "offered_deliveries_per_s": 45473.33,
        "fraction_of_capacity": 0.299,
        "below_saturation": True,
        "real": _figures(0.0295, 0.00635),
        "sim": _figures(0.04),
        "errors": {name: 35.59 for name in COMPARED},
        "shed_difference_points": 0.0,
    }
    point["real"]["deliveries_per_s"] = _stats(45466.67, 0.0)
    capacity: dict[str, Any] = {
        **point,
        "kind": "capacity",
        "label": "capacity base",
        "fraction_of_capacity": None,
        "below_saturation": False,
        "offered_deliveries_per_s": 152040.0,
        "real": {**_figures(9.5, 1.0), "deliveries_per_s": _stats(152076.0, 203.3)},
        "sim": {**_figures(8.0), "deliveries_per_s": _stats(152160.0)},
        "errors": {**{name: -15.8 for name in COMPARED}, "deliveries_per_s": 0.0552},
    }
    capacity["real"]["shed_share"] = _stats(0.25, 0.01)
    capacity["sim"]["shed_share"] = _stats(0.3)
    overload = {**capacity, "kind": "overload", "label": "overload=3x", "value": 3.0}
    return {
        "suite": "tiny",
        "created": "2026-12-05T19:37:07+00:00",
        "command": "swarmtwin validate-model tiny.yaml",
        "machine": {"host": "vm", "cpus": 2, "python": "3.11.7"},
        "transport": "inproc",
        "base": "scenarios/validation/base.yaml",
        "repetitions": 2,
        "replications": 2,
        "calibration": {
            "source": "sim/calibrations/default.json",
            "host": "vm",
            "date": "2026-12-05T17:12:48Z",
            "warning": "no calibration for host 'vm'; run `swarmtwin calibrate`",
        },
        "wall_seconds": 12.4,
        "goals": [
            {
                "goal": "p95, median absolute error below saturation",
                "bar": 20.0,
                "target": 10.0,
                "value": 52.49,
                "met": False,
                "met_target": False,
            },
            {
                "goal": "saturation throughput, worst absolute error over every variant",
                "bar": 10.0,
                "target": 5.0,
                "value": None,
                "met": False,
                "met_target": False,
            },
        ],
        "capacity": [capacity],
        "errors": {
            scope: {name: {"n": 2, "median": 57.14, "worst": None} for name in COMPARED}
            for scope in ("below_saturation", "all")
        },
        "points": [
            point,
            {**point, "kind": "axis", "label": "agents=10", "below_saturation": False},
            overload,
        ],
    }


def test_the_fidelity_markdown_lays_out_every_section() -> None:
    markdown = fidelity_markdown(fidelity_report())
    lines = markdown.splitlines()
    assert lines[:3] == [
        "# Model fidelity: tiny",
        "",
        "- created 2026-12-05T19:37:07+00:00 with `swarmtwin validate-model tiny.yaml`",
    ]
    assert "- wall time: 12 s" in lines
    assert "**Warning:** no calibration for host 'vm'; run `swarmtwin calibrate`" in lines
    assert (
        "| p95, median absolute error below saturation | 20.0 % | 10.0 % | 52.5 % | **no** |"
        in lines
    )
    assert (
        "| saturation throughput, worst absolute error over every variant | 10.0 % | 5.0 % "
        "| n/a | **no** |"
    ) in lines
    assert "| p50_ms | below saturation | 2 | 57.1 % | n/a |" in lines
    assert "| deliveries_per_s | all | 2 | 57.1 % | n/a |" in lines
    assert "| base | 152,040 | 152,076 ± 203.3 | 152,160 | +0.1 % | 25 % | 30 % |" in lines
    assert (
        "| 3x | 152,040 | 152,076 ± 203.3 | 152,160 | +0.1 % | 25 % | 30 % | 9.5 ± 1 | 8 |"
    ) in lines
    header = "| point | offered/s | of capacity | below sat. |" + "".join(
        f" {name} real | sim | err |" for name in COMPARED
    )
    assert header in lines
    assert (
        "| load=0.3 | 45,473 | 30 % | yes | 0.0295 ± 0.00635 | 0.04 | +35.6 % |"
        " 0.0295 ± 0.00635 | 0.04 | +35.6 % | 0.0295 ± 0.00635 | 0.04 | +35.6 % |"
        " 45,467 ± 0 | 0.04 | +35.6 % |"
    ) in lines
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == [
        "## Goals",
        "## Saturation throughput per variant",
        "## Overload",
        "## Error summary (absolute % error)",
        "## Every point",
        "## Plots",
    ]
    assert markdown.endswith("\n\n![predicted against measured](predicted_vs_measured.png)\n")
    assert_tables_keep_their_columns(markdown)
    goals, capacity, overload, errors, points = tables(markdown)
    assert (len(goals), len(capacity), len(overload)) == (4, 3, 3)
    assert (len(errors), len(points)) == (2 + 2 * len(COMPARED), 5)


def test_the_fidelity_markdown_without_a_calibration_warning() -> None:
    report = fidelity_report()
    del report["calibration"]["warning"]
    markdown = fidelity_markdown(report)
    assert "Warning" not in markdown
    assert "interval of their mean.\n\n## Goals\n" in markdown


def test_a_hostile_text_is_escaped_in_the_fidelity_markdown() -> None:
    report = fidelity_report()
    report["suite"] = report["machine"]["host"] = report["transport"] = HOSTILE
    report["calibration"]["warning"] = f"{HOSTILE}\nsecond line"
    report["goals"][0]["goal"] = HOSTILE
    report["points"][0]["label"] = HOSTILE
    report["capacity"][0]["variant"] = HOSTILE
    report["base"] = HOSTILE
    markdown = fidelity_markdown(report)
    assert "<script>" not in markdown.replace(f"`{HOSTILE}`", "")  # literal in its code span
    assert markdown.count(HOSTILE_MD) == 7
    assert f"| {HOSTILE_MD} | 20.0 % | 10.0 % | 52.5 % | **no** |" in markdown
    assert f"| {HOSTILE_MD} | 45,473 | 30 % | yes |" in markdown
    assert f"| {HOSTILE_MD} | 152,040 |" in markdown
    assert f"**Warning:** {HOSTILE_MD}<br>second line\n" in markdown
    assert f"<td>{HOSTILE_HTML}</td>" in rendered(markdown)
    assert_tables_keep_their_columns(markdown)


# --- the what-if table -----------------------------------------------------------


def _whatif_row(scenario: str) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "agents": 100_000,
        "simulated s": 12.345,
        "wall s": 3.0,
        "sim msgs / wall s": 123456.7,
        "peak RSS MiB": 512.4,
        "p95 ms": 1234.5678,
        "deliveries/s": 99999.9,
        "reliability": 0.99987,
    }


def test_the_whatif_table_is_unchanged_for_ordinary_rows() -> None:
    empty = {name: None for name in COLUMNS} | {"scenario": "s2", "wall s": 0.0}
    table = markdown_table([_whatif_row("s1"), empty])
    assert table == (
        "| scenario | agents | simulated s | wall s | sim msgs / wall s | peak RSS MiB | p95 ms "
        "| deliveries/s | reliability |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| s1 | 100,000 | 12.35 | 3.00 | 123,457 | 512 | 1,234.568 | 100,000 | 99.987 % |\n"
        "| s2 | — | — | 0.00 | — | — | — | — | — |"
    )
    assert markdown_table([]).count("\n") == 1


def test_a_hostile_scenario_is_escaped_in_the_whatif_table() -> None:
    table = markdown_table([_whatif_row(f"{HOSTILE}\nx")])
    assert "<script>" not in table and table.count("\n") == 2
    assert table.splitlines()[2].startswith(f"| {HOSTILE_MD}<br>x | 100,000 |")
    assert f"<td>{HOSTILE_HTML}<br>x</td>" in rendered(table)
    assert_tables_keep_their_columns(table)
