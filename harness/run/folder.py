"""Write and read a run directory: ``<runs root>/<run-id>/``.

The runs root is normally ``reports/runs`` (the runner passes it in).

A run directory holds:

- ``scenario.yaml``: the resolved scenario, as given;
- ``summary.json``: ``{"run_id", "created", "valid", "backends": {name: figures},
  "comparison": [rows] | null, "histograms": {name: {histogram: file}}}``.
  Each backend's figures say ``"valid"`` and ``"invalid_reasons"`` (true and
  [] when nothing went wrong with the run itself); the top-level ``valid`` is
  true when every backend's is. A backend that ran more than once (a
  scenario's ``repetitions``) is described by all its runs instead:
  ``{"backend", "transport", "seed", "duration", "warmup", "valid",
  "invalid_reasons", "figures": {figure: {"n", "median", "mean", "stdev",
  "ci_low", "ci_high", "infinite"}}, "repetitions": [each run's figures]}``
  (``harness.metrics.compare.aggregate``; invalid reasons are prefixed
  "repetition K: "), its ``histograms`` entry is a list (a map per
  repetition), its files are named per repetition (``real #2`` gives
  ``timeline-real-2.csv``, ``histograms/real-2-latency.hdr``), and the
  comparison's ``real`` is the median, with ``real_n``, ``real_ci_low`` and
  ``real_ci_high``.
  It is written with sorted keys and a fixed indent, and the per-backend
  figures contain no wall-clock timestamps (``wall_seconds`` is a duration),
  so two runs with equal figures give equal files apart from the top-level
  ``run_id`` and ``created``. The timeline is left out of it because it has
  its own file. Each backend's figures include its ``faults`` section (a row
  per fault, aggregates per kind; empty without faults) and ``integrity``
  (acknowledged writes checked after coordinator restarts);
- ``timeline-<backend>.csv``: the 100 ms bins (t, deliveries, completions,
  p95_ms, offered; an empty p95_ms means an empty bin);
- ``timeline-<backend>.parquet``: the same columns (p95_ms null for an
  empty bin), and, when ``write_run`` is given the plan and the drivers'
  results, ``operations-<backend>.parquet``: one row per completion record
  and per expected completion that never arrived, with its op's kind,
  origin, scheduled time, latency and flags (``harness.run.tables`` has the
  schema). Both are written with pyarrow, zstd-compressed; pandas and
  pyarrow are imported only then, so a command that just needs
  ``new_run_id`` starts without them. ``harness.run.frames.load_run`` reads
  a run folder back as DataFrames;
- ``histograms/<backend>-<name>.hdr``: the encoded HDR histograms
  (``HdrHistogram.decode`` reads them back);
- ``timeline.png``, and ``recovery.png`` when the run had faults, drawn by
  the runner with ``harness.render.plots``.

``write_run`` writes all of it; ``read_run`` rebuilds the summaries (timeline
and histograms included), every repetition and the comparison. ``new_run_id`` makes ids such as
``20261124-143012-default-3f2a``: the timestamp ``now`` as given, the
scenario name as a slug, and four random hex digits so that two runs started
in the same second do not collide.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metrics.compare import ComparisonRow, aggregate
from harness.metrics.figures import CompletionColumns, Summary, TimelineBin
from native.heap import gc_paused

if TYPE_CHECKING:
    from protocol.plan import Plan
    from protocol.records import DriverResult

RUNS_DIR = Path("reports") / "runs"  # the usual runs root, relative to the project
SUMMARY_FILE = "summary.json"
SCENARIO_FILE = "scenario.yaml"
HISTOGRAM_DIR = "histograms"
TIMELINE_FIELDS: tuple[str, ...] = ("t", "deliveries", "completions", "p95_ms", "offered")


def timeline_file(backend: str, suffix: str = "csv") -> str:
    """``timeline-<backend>.csv`` (or ``.parquet``), relative to the run directory."""
    return f"timeline-{slug(backend)}.{suffix}"


def operations_file(backend: str) -> str:
    """``operations-<backend>.parquet``, relative to the run directory."""
    return f"operations-{slug(backend)}.parquet"


@dataclass(slots=True)
class RunRecord:
    """A run directory read back."""

    run_id: str
    created: str
    summaries: dict[str, Summary]  # the backends that ran once
    comparison: list[ComparisonRow] | None
    repetitions: dict[str, list[Summary]] = field(default_factory=dict)  # every backend's runs


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


def repetition_label(backend: str, index: int) -> str:
    """The label of a backend's repetition ``index`` (0-based): ``real #2``."""
    return f"{backend} #{index + 1}"


def repeated_reasons(runs: Sequence[Summary]) -> list[str]:
    """The invalid reasons of a backend's runs, prefixed with the repetition when several."""
    if len(runs) == 1:
        return list(runs[0].invalid_reasons)
    return [
        f"repetition {index + 1}: {reason}"
        for index, run in enumerate(runs)
        for reason in run.invalid_reasons
    ]


def _histogram_files(label: str, summary: Summary) -> dict[str, str]:
    return {name: histogram_file(label, name) for name in summary.histograms}


def _repeated_document(runs: Sequence[Summary]) -> dict[str, Any]:
    first = runs[0]
    reasons = repeated_reasons(runs)
    return {
        "backend": first.backend,
        "transport": first.transport,
        "seed": first.seed,
        "duration": first.duration,
        "warmup": first.warmup,
        "valid": not reasons,
        "invalid_reasons": reasons,
        "figures": aggregate(list(runs)),
        "repetitions": [run.to_dict(include_timeline=False) for run in runs],
    }


def _runs_of(
    summaries: Mapping[str, Summary], repetitions: Mapping[str, Sequence[Summary]] | None
) -> dict[str, list[Summary]]:
    return {name: list((repetitions or {}).get(name) or [s]) for name, s in summaries.items()}


def summary_document(
    run_id: str,
    created: datetime,
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None,
    repetitions: Mapping[str, Sequence[Summary]] | None = None,
) -> dict[str, Any]:
    """The content of ``summary.json``.

    A backend with more than one run in ``repetitions`` is described by all of
    them (medians and intervals, then each run), not by ``summaries[backend]``.
    """
    backends: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    for name, runs in _runs_of(summaries, repetitions).items():
        if len(runs) == 1:
            backends[name] = runs[0].to_dict(include_timeline=False)
            histograms[name] = _histogram_files(name, runs[0])
        else:
            backends[name] = _repeated_document(runs)
            histograms[name] = [
                _histogram_files(repetition_label(name, k), run) for k, run in enumerate(runs)
            ]
    return {
        "run_id": run_id,
        "created": created.isoformat(timespec="seconds"),
        "valid": all(backend["valid"] for backend in backends.values()),
        "backends": backends,
        "comparison": None if comparison is None else [row.to_dict() for row in comparison],
        "histograms": histograms,
    }


def filed_summaries(
    summaries: Mapping[str, Summary], repetitions: Mapping[str, Sequence[Summary]] | None
) -> dict[str, Summary]:
    """Every summary under the label its files take: the backend, or each repetition's."""
    filed: dict[str, Summary] = {}
    for name, runs in _runs_of(summaries, repetitions).items():
        if len(runs) == 1:
            filed[name] = runs[0]
        else:
            filed.update({repetition_label(name, k): run for k, run in enumerate(runs)})
    return filed


@gc_paused()  # writing the per-operation tables allocates per record (native.heap)
def write_run(
    root: Path,
    run_id: str,
    scenario_yaml: str,
    summaries: dict[str, Summary],
    comparison: list[ComparisonRow] | None,
    *,
    created: datetime | None = None,
    plan: Plan | None = None,
    results: Mapping[str, DriverResult] | None = None,
    repetitions: Mapping[str, Sequence[Summary]] | None = None,
    columns: Mapping[str, CompletionColumns] | None = None,
) -> Path:
    """Write ``<root>/<run_id>/`` (``root`` is e.g. ``reports/runs``) and return its path.

    ``created`` (default: now, UTC) goes only into the top level of ``summary.json``.
    ``plan`` and ``results`` (the ``DriverResult`` each summary was made
    from, keyed like the files: the backend, or ``real #2`` for a repetition)
    add ``operations-<label>.parquet``; without them there is none.
    ``repetitions`` maps a backend to all its runs: one with several is
    described by all of them, and filed per repetition (``real #1`` ...).
    ``columns`` has, by the same keys, the results' completions as columns where
    they were made already (``harness.metrics.figures.completion_columns``).
    """
    from harness.run.tables import operations_frame, timeline_frame, write_parquet

    directory = run_dir(root, run_id)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SCENARIO_FILE).write_text(scenario_yaml, encoding="utf-8")
    created = created or datetime.now(UTC)
    document = summary_document(run_id, created, summaries, comparison, repetitions)
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False)
    (directory / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    for backend, summary in filed_summaries(summaries, repetitions).items():
        _timeline_csv(directory / timeline_file(backend), summary.timeline)
        write_parquet(
            timeline_frame(summary.timeline), directory / timeline_file(backend, "parquet")
        )
        _write_histograms(directory, backend, summary.histograms)
    if plan is not None:
        for backend, result in (results or {}).items():
            frame = operations_frame(plan, result, (columns or {}).get(backend))
            write_parquet(frame, directory / operations_file(backend))
    return directory


def read_run(directory: Path) -> RunRecord:
    """Read a run directory back: summaries with their timelines and histograms."""
    directory = Path(directory)
    document = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    summaries: dict[str, Summary] = {}
    repetitions: dict[str, list[Summary]] = {}
    files = document.get("histograms", {})
    for backend, data in document["backends"].items():
        if "repetitions" in data:  # a backend that ran several times
            repetitions[backend] = [
                _read_summary(directory, repetition_label(backend, k), run, files[backend][k])
                for k, run in enumerate(data["repetitions"])
            ]
            continue
        summaries[backend] = _read_summary(directory, backend, data, files.get(backend, {}))
        repetitions[backend] = [summaries[backend]]
    rows = document.get("comparison")
    return RunRecord(
        run_id=document["run_id"],
        created=document["created"],
        summaries=summaries,
        comparison=None if rows is None else [ComparisonRow.from_dict(r) for r in rows],
        repetitions=repetitions,
    )


def _read_summary(
    directory: Path, label: str, data: Mapping[str, Any], files: Mapping[str, str]
) -> Summary:
    summary = Summary.from_dict(data, _read_histograms(directory, dict(files)))
    summary.timeline = _read_timeline(directory / timeline_file(label))
    return summary
