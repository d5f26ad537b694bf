"""Runs as pandas DataFrames: ``load_run(run_dir)`` and ``load_history(reports)``.

``load_run`` reads one run folder (``harness.run.folder``) into a
:class:`RunFrames`. Everything is keyed by the label a run's files take:
the backend (``sim``), or, for a backend that ran several times (a
scenario's ``repetitions``), each repetition's label (``real #1``,
``real #2`` ...):

- ``summary``: one row per label (the index, named ``run``) with its
  ``backend``, ``repetition`` (1-based), transport, seed, duration,
  warm-up and ``valid``, then every headline figure of ``Summary.figures()``
  (``p95_ms``, ``deliveries_per_s``, ``reliability``, ``lost``,
  ``shed_ops`` ...). As there, a figure without a finite value (an infinite
  percentile, no probes) is missing: NaN. The medians and intervals over
  repetitions are a ``groupby("backend")`` away;
- ``timelines``: per label, the 100 ms bins, from
  ``timeline-<label>.parquet`` (from the CSV for a folder written before the
  Parquet files existed);
- ``operations``: per label, the rows of ``operations-<label>.parquet``
  (``harness.run.tables`` describes them), for the labels that have one;
- ``comparison``: the real-against-sim rows of ``summary.json`` (metric,
  unit, real, sim, error_pct ...), or None for a run of one backend.

``load_history`` reads the run history (``harness.run.history``) with
``pandas.read_sql_query``: one row per run and backend (per repetition
label when a backend ran several times, as ``record_run`` filed it), oldest
first, with ``created`` as a UTC timestamp; an empty frame with the same
columns when there is no history yet.

Nothing here writes a run's files: they come from
``harness.run.folder.write_run`` and ``harness.run.history.record_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.run.folder import operations_file, read_run, repetition_label, timeline_file
from harness.run.history import COLUMN_NAMES, HISTORY_FILE, connect
from harness.run.tables import timeline_frame

TEXT_COLUMNS = ("backend", "transport", "valid")  # the summary's columns that are not numbers


@dataclass(slots=True)
class RunFrames:
    """One run folder as DataFrames (see the module docstring)."""

    run_id: str
    created: str
    directory: Path
    summary: pd.DataFrame
    timelines: dict[str, pd.DataFrame]
    operations: dict[str, pd.DataFrame]
    comparison: pd.DataFrame | None


def load_run(run_dir: Path | str) -> RunFrames:
    """Read the run folder ``run_dir`` (e.g. ``reports/runs/<run-id>``) as DataFrames."""
    directory = Path(run_dir)
    record = read_run(directory)
    filed = {
        (backend if len(runs) == 1 else repetition_label(backend, k)): (backend, k + 1, summary)
        for backend, runs in record.repetitions.items()
        for k, summary in enumerate(runs)
    }
    rows = {
        label: {
            "backend": backend,
            "repetition": repetition,
            "transport": s.transport,
            "seed": s.seed,
            "duration": s.duration,
            "warmup": s.warmup,
            "valid": s.valid,
            **s.figures(),
        }
        for label, (backend, repetition, s) in filed.items()
    }
    summary = pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")
    figures = [name for name in summary.columns if name not in TEXT_COLUMNS]
    summary[figures] = summary[figures].apply(pd.to_numeric)  # None: NaN
    timelines = {}
    for label, (_, _, s) in filed.items():
        path = directory / timeline_file(label, "parquet")
        timelines[label] = pd.read_parquet(path) if path.exists() else timeline_frame(s.timeline)
    operations = {
        label: pd.read_parquet(directory / operations_file(label))
        for label in filed
        if (directory / operations_file(label)).exists()
    }
    comparison = None
    if record.comparison is not None:
        comparison = pd.DataFrame([row.to_dict() for row in record.comparison])
    return RunFrames(
        run_id=record.run_id,
        created=record.created,
        directory=directory,
        summary=summary,
        timelines=timelines,
        operations=operations,
        comparison=comparison,
    )


def load_history(reports: Path | str = "reports") -> pd.DataFrame:
    """The run history under the reports folder ``reports`` (the CLI's ``--reports``).

    ``reports`` may also name the ``.sqlite`` file itself. One row per run and
    backend, oldest first, with the columns of ``harness.run.history.COLUMNS``.
    """
    path = Path(reports)
    if path.suffix != ".sqlite":
        path = path / HISTORY_FILE.name
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMN_NAMES))
    query = (
        f"SELECT {', '.join(COLUMN_NAMES)} FROM runs ORDER BY created ASC, run_id ASC, backend ASC"
    )
    with connect(path) as conn:
        frame = pd.read_sql_query(query, conn)
    frame["created"] = pd.to_datetime(frame["created"], utc=True, format="ISO8601")
    return frame
