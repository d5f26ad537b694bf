"""Write and read a run directory: ``<runs root>/<run-id>/``.

The runs root is normally ``reports/runs`` (the runner passes it in).

A run directory holds:

- ``scenario.yaml``: the resolved scenario, as given;
- ``summary.json``: ``{"run_id", "created", "backends": {name: figures},
  "comparison": [rows] | null, "histograms": {name: {histogram: file}}}``.
  It is written with sorted keys and a fixed indent, and the per-backend
  figures contain no wall-clock timestamps (``wall_seconds`` is a duration),
  so two runs with equal figures give equal files apart from the top-level
  ``run_id`` and ``created``. The timeline is left out of it because it has
  its own file. Each backend's figures include its ``faults`` section (a row
  per fault, aggregates per kind; empty without faults) and ``integrity``
  (acknowledged writes checked after coordinator restarts);
- ``timeline-<backend>.csv``: the 100 ms bins (t, deliveries, completions,
  p95_ms, offered; an empty p95_ms means an empty bin);
- ``histograms/<backend>-<name>.hdr``: the encoded HDR histograms
  (``HdrHistogram.decode`` reads them back);
- ``timeline.png``, and ``recovery.png`` when the run had faults, drawn by
  the runner with ``harness.render.plots``.

``write_run`` writes all of it; ``read_run`` rebuilds the summaries (timeline
and histograms included) and the comparison. ``new_run_id`` makes ids such as
``20261124-143012-default-3f2a``: the timestamp ``now`` as given, the
scenario name as a slug, and four random hex digits so that two runs started
in the same second do not collide.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.metrics.compare import ComparisonRow
from harness.metrics.figures import Summary, TimelineBin

RUNS_DIR = Path("reports") / "runs"  # the usual runs root, relative to the project
SUMMARY_FILE = "summary.json"
SCENARIO_FILE = "scenario.yaml"
HISTOGRAM_DIR = "histograms"
TIMELINE_FIELDS: tuple[str, ...] = ("t", "deliveries", "completions", "p95_ms", "offered")


@dataclass(slots=True)
class RunRecord:
    """A run directory read back."""

    run_id: str
    created: str
    summaries: dict[str, Summary]
    comparison: list[ComparisonRow] | None


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes: safe in a file name."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned or "run"


def new_run_id(scenario_name: str, now: datetime) -> str:
    """An id like ``20261124-143012-default-3f2a`` (the suffix is random)."""
    return f"{now:%Y%m%d-%H%M%S}-{slug(scenario_name)}-{os.urandom(2).hex()}"


def run_dir(root: Path, run_id: str) -> Path:
    """Where the run ``run_id`` lives under the runs root ``root``."""
    return Path(root) / run_id


def _timeline_csv(path: Path, timeline: list[TimelineBin]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TIMELINE_FIELDS)
        for b in timeline:
            p95 = "" if b.p95_ms is None else repr(b.p95_ms)
            writer.writerow((repr(b.t), b.deliveries, b.completions, p95, b.offered))


def _read_timeline(path: Path) -> list[TimelineBin]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            TimelineBin(
                t=float(row["t"]),
                deliveries=int(row["deliveries"]),
                completions=int(row["completions"]),
                p95_ms=float(row["p95_ms"]) if row["p95_ms"] else None,
                offered=int(row["offered"]),
            )
            for row in csv.DictReader(handle)
        ]


def histogram_file(backend: str, name: str) -> str:
    """The path, relative to the run directory, of one backend's histogram."""
    return f"{HISTOGRAM_DIR}/{slug(backend)}-{name}.hdr"


def _write_histograms(directory: Path, backend: str, histograms: dict[str, str]) -> None:
    for name, encoded in sorted(histograms.items()):
        path = directory / histogram_file(backend, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(encoded + "\n", encoding="ascii")


def _read_histograms(directory: Path, files: dict[str, str]) -> dict[str, str]:
    return {
        name: (directory / relative).read_text(encoding="ascii").strip()
        for name, relative in files.items()
    }


def summary_document(
    run_id: str,
    created: datetime,
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None,
) -> dict[str, Any]:
    """The content of ``summary.json``."""
    return {
        "run_id": run_id,
        "created": created.isoformat(timespec="seconds"),
        "backends": {
            name: summary.to_dict(include_timeline=False) for name, summary in summaries.items()
        },
        "comparison": None if comparison is None else [row.to_dict() for row in comparison],
        "histograms": {
            backend: {name: histogram_file(backend, name) for name in summary.histograms}
            for backend, summary in summaries.items()
        },
    }


def write_run(
    root: Path,
    run_id: str,
    scenario_yaml: str,
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None,
    *,
    created: datetime | None = None,
) -> Path:
    """Write ``<root>/<run_id>/`` (``root`` is e.g. ``reports/runs``) and return its path.

    ``created`` (default: now, UTC) goes only into the top level of ``summary.json``.
    """
    directory = run_dir(root, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SCENARIO_FILE).write_text(scenario_yaml, encoding="utf-8")
    document = summary_document(run_id, created or datetime.now(UTC), summaries, comparison)
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False)
    (directory / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    for backend, summary in summaries.items():
        _timeline_csv(directory / f"timeline-{slug(backend)}.csv", summary.timeline)
        _write_histograms(directory, backend, summary.histograms)
    return directory


def read_run(directory: Path) -> RunRecord:
    """Read a run directory back: summaries with their timelines and histograms."""
    directory = Path(directory)
    document = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    summaries: dict[str, Summary] = {}
    files = document.get("histograms", {})
    for backend, data in document["backends"].items():
        histograms = _read_histograms(directory, files.get(backend, {}))
        summary = Summary.from_dict(data, histograms)
        summary.timeline = _read_timeline(directory / f"timeline-{slug(backend)}.csv")
        summaries[backend] = summary
    rows = document.get("comparison")
    return RunRecord(
        run_id=document["run_id"],
        created=document["created"],
        summaries=summaries,
        comparison=None if rows is None else [ComparisonRow.from_dict(r) for r in rows],
    )
