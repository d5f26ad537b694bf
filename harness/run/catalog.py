"""What the harness ships and has filed, read back: scenarios, suites, baselines, runs,
their summaries and headline figures, comparisons and reports.

The portal's HTTP API (``harness.portal.api``) and the MCP server's tools
(``harness.mcp``) both read through this module, so that a figure, a name or a
refusal is the same whichever asks. Every lookup of something that is not there
raises ``NotFound`` with a sentence naming it and where the names can be listed;
a caller turns it into a 404 or a tool error.

Names are checked before they touch the file system: a run or report id and a
file name must match ``SAFE_NAME`` (letters, digits, ``.``, ``_`` and ``-``, not
starting with a dot), and a path is only ever built under ``<reports>`` or the
shipped scenarios, so no argument can reach outside them.

A ``summary.json`` is read as filed, except that an infinite or NaN float (a
latency whose completions never came) becomes the string ``"inf"`` (``finite``),
which JSON can carry.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from harness.scenario.errors import ScenarioError
from harness.scenario.schema import Scenario, load_scenario, parse_scenario
from harness.scenario.shipped import scenarios_dir
from harness.scenario.source import parse_yaml

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
SERVED = {".png", ".svg", ".csv", ".json", ".yaml", ".md", ".html", ".parquet"}
REPORT_KINDS = {"certification": "certifications", "validation": "validation"}


class NotFound(LookupError):
    """Nothing of that name: the message says what was looked for and how to list them."""


# --- shipped scenarios and suites ------------------------------------------------------


@functools.cache
def shipped() -> dict[str, Scenario]:
    """Every shipped scenario by the name ``swarmtwin run`` takes (read once: the shipped
    files do not change under a running server); the suites beside them are not
    scenarios and are left out."""
    root = scenarios_dir()
    found: dict[str, Scenario] = {}
    for path in sorted(root.rglob("*.yaml")):
        try:
            scenario = load_scenario(path)
        except ScenarioError:
            continue  # a suite (certification, validation, regression)
        found[path.relative_to(root).with_suffix("").as_posix()] = scenario
    return found


def describe(name: str, scenario: Scenario) -> dict[str, Any]:
    """A shipped scenario in a line or two: what the lists show."""
    return {
        "name": name,
        "description": scenario.description,
        "agents": scenario.agents.count,
        "duration": scenario.duration,
        "transport": scenario.transport,
        "backends": list(scenario.backends),
        "faults": len(scenario.faults),
    }


def shipped_path(name: str) -> Path:
    """The file of the shipped scenario ``name``; ``NotFound`` if none is called that."""
    if name not in shipped():
        raise NotFound(f"no shipped scenario named {name!r}; the scenario list names them")
    return scenarios_dir() / f"{name}.yaml"


def validate(name: str | None = None, text: str | None = None) -> Scenario:
    """The shipped scenario ``name`` or the YAML ``text``, checked as ``swarmtwin check``
    checks a file; ``ScenarioError`` (its ``problems``: field and what was expected)."""
    if (name is None) == (text is None):
        raise ValueError("give exactly one of name (a shipped scenario) or text (YAML)")
    if name is not None:
        return load_scenario(shipped_path(name))
    data = parse_yaml(text or "", "<text>", aliases=False)
    return parse_scenario(data, "<text>")


def shipped_suites() -> list[str]:
    """The shipped certification suites, by the name ``swarmtwin certify`` takes."""
    root = scenarios_dir()
    found = (root / "certification").rglob("suite.yaml")
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in found)


def shipped_validation_suites() -> list[str]:
    """The shipped validation suites, by the name ``swarmtwin validate-model`` takes."""
    root = scenarios_dir()
    found = (root / "validation").glob("suite*.yaml")
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in found)


def baselines(reports: Path) -> list[str]:
    """The regression baselines under ``<reports>/baselines``, by name."""
    folder = reports / "baselines"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


# --- runs -------------------------------------------------------------------------------


def run_dir(reports: Path, run_id: str) -> Path:
    """The folder of run ``run_id``; ``NotFound`` if there is none."""
    runs = (reports / "runs").resolve()
    if not SAFE_NAME.match(run_id) or not (runs / run_id).is_dir():
        raise NotFound(f"no run {run_id!r} in {runs}; the history lists the runs")
    return runs / run_id


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float as the string JSON cannot carry
    otherwise (``"inf"``, ``"-inf"``, ``"nan"``): a latency of a run whose
    completions never came is infinite, and says so."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def read_summary(folder: Path) -> dict[str, Any] | None:
    """A run folder's ``summary.json`` (``finite``), or None when it has none."""
    path = folder / "summary.json"
    if not path.is_file():
        return None
    found: dict[str, Any] = finite(json.loads(path.read_text()))
    return found


def summary_of(reports: Path, run_id: str) -> dict[str, Any]:
    """Run ``run_id``'s ``summary.json``; ``NotFound`` without the run or the file."""
    found = read_summary(run_dir(reports, run_id))
    if found is None:
        raise NotFound(f"run {run_id!r} has no summary.json")
    return found


def headline(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each backend's headline figures from a ``summary.json``: a backend that ran once
    gives ``Summary.figures()``; one that ran several times, the median of each."""
    from harness.metrics.summary import Summary

    found: dict[str, dict[str, Any]] = {}
    for backend, data in summary.get("backends", {}).items():
        if "figures" in data:  # repeated: every figure's median and interval
            found[backend] = {name: entry.get("median") for name, entry in data["figures"].items()}
        else:
            found[backend] = finite(dict(Summary.from_dict(data).figures()))
    return found


def run_record(reports: Path, run_id: str) -> dict[str, Any]:
    """A run folder: its files, its scenario, its summary and each backend's headline."""
    folder = run_dir(reports, run_id)
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in SERVED)
    scenario = folder / "scenario.yaml"
    summary = read_summary(folder)
    return {
        "run_id": run_id,
        "files": files,
        "scenario": scenario.read_text() if scenario.is_file() else None,
        "summary": summary,
        "figures": headline(summary) if summary is not None else {},
    }


def run_file(reports: Path, run_id: str, name: str) -> Path:
    """One served file of a run folder; ``NotFound`` otherwise."""
    path = run_dir(reports, run_id) / name
    if not SAFE_NAME.match(name) or path.suffix not in SERVED or not path.is_file():
        raise NotFound(f"run {run_id!r} has no file {name!r}")
    return path


def compare_runs(reports: Path, a: str, b: str) -> dict[str, Any]:
    """Two runs side by side: each backend's headline figures in both, and the change
    from ``a`` to ``b`` in percent (None where either is missing or ``a`` is zero)."""
    figures = {}
    for run_id in (a, b):
        summary = read_summary(run_dir(reports, run_id))
        figures[run_id] = headline(summary) if summary is not None else {}
    rows = []
    backends = [x for x in figures[a] if x in figures[b]]
    for backend in backends:
        first, second = figures[a][backend], figures[b][backend]
        for name in first:
            left, right = first.get(name), second.get(name)
            change = None
            numbers = all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in (left, right)
            )
            if numbers and left:
                change = (right - left) / abs(left) * 100.0
            rows.append(
                {"backend": backend, "figure": name, "a": left, "b": right, "change_pct": change}
            )
    return {"a": a, "b": b, "backends": backends, "rows": rows}


# --- reports -------------------------------------------------------------------------------


def list_reports(reports: Path) -> list[dict[str, Any]]:
    """Certification and fidelity reports (a folder each) and regression results (a JSON
    file each, ``swarmtwin regress --json``), the most recently written first."""
    found: list[dict[str, Any]] = []
    for kind, folder in REPORT_KINDS.items():
        root = reports / folder
        if root.is_dir():
            for path in root.iterdir():
                if path.is_dir() and SAFE_NAME.match(path.name):
                    files = sorted(p.name for p in path.iterdir() if p.suffix in SERVED)
                    found.append(_report(kind, path, files))
    for path in reports.glob("regress*.json"):
        found.append(_report("regression", path, [path.name]))
    return sorted(found, key=lambda r: r["modified"], reverse=True)


def _report(kind: str, path: Path, files: list[str]) -> dict[str, Any]:
    modified = path.stat().st_mtime
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(modified))
    return {
        "kind": kind,
        "id": path.stem if kind == "regression" else path.name,
        "files": files,
        "modified": modified,
        "modified_utc": when,
    }


def report_file(reports: Path, kind: str, report_id: str, name: str) -> Path:
    """One file of a report (its HTML, Markdown, JSON or plots); ``NotFound`` otherwise."""
    if kind == "regression":
        path = reports / name
        ok = name == f"{report_id}.json" and SAFE_NAME.match(name) is not None
    else:
        folder = REPORT_KINDS.get(kind)
        ok = folder is not None and bool(SAFE_NAME.match(report_id) and SAFE_NAME.match(name))
        path = reports / (folder or "-") / report_id / name
    if not ok or path.suffix not in SERVED or not path.is_file():
        raise NotFound(f"no {kind} report file {report_id}/{name}")
    return path
