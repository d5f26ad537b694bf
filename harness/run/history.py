"""The run history: one SQLite table, ``runs``, in ``reports/history.sqlite``.

``record_run`` appends one row per backend of a run, with the headline figures
taken from ``Summary.figures()``; ``(run_id, backend)`` is the primary key, so
recording the same run again replaces its rows instead of doubling them.
``list_runs`` returns the newest rows first as plain dicts. The schema is
created on first use and the database runs in WAL mode, so a reader (the
``history`` command, a dashboard) does not block a run that is writing.
Connections are opened per call and always closed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.metrics.figures import Summary

HISTORY_FILE = Path("reports") / "history.sqlite"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT NOT NULL"),
    ("created", "TEXT NOT NULL"),
    ("scenario", "TEXT NOT NULL"),
    ("backend", "TEXT NOT NULL"),
    ("transport", "TEXT"),
    ("seed", "INTEGER"),
    ("p50_ms", "REAL"),
    ("p95_ms", "REAL"),
    ("p99_ms", "REAL"),
    ("deliveries_per_s", "REAL"),
    ("ops_per_s", "REAL"),
    ("reliability", "REAL"),
    ("uptime", "REAL"),
    ("lost", "INTEGER"),
    ("agents_coordinated", "INTEGER"),
    ("wall_seconds", "REAL"),
    ("run_dir", "TEXT"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(f"{name} {kind}" for name, kind in COLUMNS)
    + ", PRIMARY KEY (run_id, backend))"
)
INDEX = "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created)"
INSERT = (
    f"INSERT OR REPLACE INTO runs ({', '.join(COLUMN_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in COLUMN_NAMES)})"
)


@contextmanager
def connect(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Open the history (creating file, schema and WAL mode if needed); commit and close."""
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA)
        conn.execute(INDEX)
        with conn:  # one transaction, committed on success
            yield conn


def _created_text(created: datetime | str) -> str:
    return created.isoformat(timespec="seconds") if isinstance(created, datetime) else created


def history_row(
    run_id: str,
    scenario_name: str,
    created: datetime | str,
    backend: str,
    summary: Summary,
    run_dir: Path | str | None = None,
) -> dict[str, Any]:
    """The row recorded for one backend's summary."""
    figures = summary.figures()
    row: dict[str, Any] = {
        "run_id": run_id,
        "created": _created_text(created),
        "scenario": scenario_name,
        "backend": backend,
        "transport": summary.transport,
        "seed": summary.seed,
        "run_dir": None if run_dir is None else str(run_dir),
    }
    for name in COLUMN_NAMES:
        if name not in row:
            row[name] = figures[name]
    return row


def record_run(
    db_path: Path,
    run_id: str,
    scenario_name: str,
    created: datetime | str,
    summaries: Mapping[str, Summary],
    *,
    run_dir: Path | str | None = None,
) -> int:
    """Append one row per backend (the mapping's keys); returns the rows written."""
    rows = [
        history_row(run_id, scenario_name, created, backend, summary, run_dir)
        for backend, summary in summaries.items()
    ]
    with connect(db_path) as conn:
        conn.executemany(INSERT, [tuple(row[name] for name in COLUMN_NAMES) for row in rows])
    return len(rows)


def list_runs(db_path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` rows (one per run and backend), newest first."""
    return query_runs(db_path, limit=limit)


def query_runs(
    db_path: Path,
    *,
    scenario: str | None = None,
    backend: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows, newest first, of one scenario, one backend
    (``sim`` takes in ``sim #2`` ...) and a span of ``created`` (ISO dates or
    times; a date alone as ``until`` takes in the whole day)."""
    if not Path(db_path).exists():
        return []
    where: list[str] = []
    values: list[Any] = []
    if scenario is not None:
        where.append("scenario = ?")
        values.append(scenario)
    if backend is not None:
        where.append("(backend = ? OR backend LIKE ?)")
        values += [backend, f"{backend} #%"]
    if since is not None:
        where.append("created >= ?")
        values.append(since)
    if until is not None:
        where.append("created <= ?")
        values.append(until + "T99" if len(until) == len("2026-01-01") else until)
    query = (
        f"SELECT {', '.join(COLUMN_NAMES)} FROM runs "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + "ORDER BY created DESC, run_id DESC, backend ASC LIMIT ?"
    )
    with connect(db_path) as conn:
        cursor = conn.execute(query, (*values, int(limit)))
        return [dict(zip(COLUMN_NAMES, row, strict=True)) for row in cursor]
