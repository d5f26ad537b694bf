"""A run's tables: its timeline and its completion records as DataFrames and Parquet.

``timeline_frame`` gives the 100 ms bins with the columns of
``timeline-<backend>.csv`` (``TIMELINE_COLUMNS``, with their dtypes). ``operations_frame`` turns
a plan and one backend's ``DriverResult`` into the rows of
``operations-<backend>.parquet``: one row per completion record the driver
returned, plus one row per expected completion that never arrived.
``write_parquet`` writes either with pyarrow, zstd-compressed.
``harness.run.folder.write_run`` calls them; ``harness.run.frames.load_run``
reads the files back.

The operations columns (``OPERATION_COLUMNS`` gives their dtypes):

- ``op_id``, ``kind`` (``publish`` ...), ``origin``, ``scheduled``: the op, from
  the plan (seconds of plan time);
- ``node``, ``completed``, ``duplicate``, ``intact``: the record (the receiver,
  its time in run seconds, flagged as a suppressed redelivery, checksum
  matched); null for an expected completion that never arrived, since the
  plan does not say which receiver was owed it;
- ``latency_us``: ``completed - scheduled`` in whole microseconds, clamped to
  1 us .. 1 h, exactly as the summary's latency figures take it; null when
  it never arrived;
- ``counted``: the earliest record of its ``(op_id, node)`` pair that the
  receiver did not flag (ties keep the driver's order), for an op of the
  plan: the *unique* completion. A later unflagged record of the same pair is
  a handler duplicate (``counted`` and ``duplicate`` both False);
- ``expected``: one of the op's expected completions: a counted record among
  the op's first ``n`` by completion time (an op expects ``n``), or a row of a
  completion that never arrived. A counted record past ``n`` is an excess
  delivery;
- ``accepted`` (of the op): its origin saw an ``Accepted`` or a write ack, or
  it is a memory op that got its reply. ``shed`` (of the op): named in
  ``DriverResult.shed``, not accepted, and nothing counted. ``never_sent``
  (of the op): a fault had killed its origin agent when it was due (before
  the restart began), and it was neither accepted nor shed. ``lost``: a
  completion that never arrived, of an op not shed.

These are the definitions of ``harness.metrics.figures`` (docs/design.md,
"Metrics") written with pandas, so per backend these sums equal
``summary.json``'s ``reliability``: ``expected.sum()`` is ``expected``,
``counted.sum()`` is ``unique``, ``lost.sum()`` is ``lost``,
``(expected & shed).sum()`` is ``shed``, ``op_id[shed].nunique()`` is
``shed_ops``, ``(lost & accepted).sum()`` is ``lost_acked``,
``(lost & never_sent).sum()`` is ``lost_origin_down`` and
``duplicate.sum()`` is ``suppressed_duplicates``. The latency percentiles
are nearest-rank over ``latency_us`` of the rows with ``counted`` or with
``lost`` and not ``never_sent`` (missing ones infinitely late), of ops
scheduled in the steady-state window. Records naming
an op id that is not in the plan are kept with ``kind``, ``origin`` and
``scheduled`` null and every flag False. Rows are sorted by ``op_id``, then
completion time (rows that never arrived last).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd

from harness.metrics.figures import CompletionColumns, TimelineBin, completion_columns
from harness.metrics.latency import HDR_HIGHEST_US, HDR_LOWEST_US
from protocol.plan import FaultKind, OpKind, Plan
from protocol.records import DriverResult

TIMELINE_COLUMNS: dict[str, str] = {  # name: pandas dtype, as harness.run.folder.TIMELINE_FIELDS
    "t": "float64",
    "deliveries": "int64",
    "completions": "int64",
    "p95_ms": "float64",
    "offered": "int64",
}
OPERATION_COLUMNS: dict[str, str] = {  # name: pandas dtype
    "op_id": "int64",
    "kind": "str",
    "origin": "str",
    "scheduled": "float64",
    "node": "str",
    "completed": "float64",
    "latency_us": "Int64",
    "duplicate": "bool",
    "intact": "boolean",
    "counted": "bool",
    "expected": "bool",
    "accepted": "bool",
    "shed": "bool",
    "never_sent": "bool",
    "lost": "bool",
}
COMPRESSION = "zstd"
BYTE_STREAM_SPLIT = ("completed",)  # distinct floats: split encoding compresses them better
KIND_NAMES = {int(kind): kind.name.lower() for kind in OpKind}


def timeline_frame(timeline: Sequence[TimelineBin]) -> pd.DataFrame:
    """The timeline's bins, columns ``TIMELINE_COLUMNS`` (``p95_ms`` NaN: an empty bin)."""
    rows = ((b.t, b.deliveries, b.completions, b.p95_ms, b.offered) for b in timeline)
    frame = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
    return frame.astype(TIMELINE_COLUMNS)


def _plan_ops(plan: Plan) -> pd.DataFrame:
    """One row per op of the plan, indexed by ``op_id``: its attributes, without flags."""
    ops = plan.operations
    frame = pd.DataFrame(
        {
            "kind": [KIND_NAMES[op.kind] for op in ops],
            "origin": list(map(attrgetter("origin"), ops)),
            "scheduled": np.fromiter(map(attrgetter("at"), ops), np.float64, len(ops)),
            "n_expected": np.fromiter(map(attrgetter("expected"), ops), np.int64, len(ops)),
        },
        index=pd.Index(
            np.fromiter(map(attrgetter("op_id"), ops), np.int64, len(ops)), name="op_id"
        ),
    )
    return frame.astype({"kind": "str", "origin": "str"})


def _records(columns: CompletionColumns) -> pd.DataFrame:
    """The completion records as columns, in the driver's order."""
    return pd.DataFrame(
        {
            "op_id": columns.op_id,
            "node": pd.Series(columns.node, dtype="str"),
            "completed": columns.at,
            "duplicate": columns.duplicate,
            "intact": columns.intact,
        }
    )


def _origin_down(plan: Plan, ops: pd.DataFrame) -> pd.Series:
    """Ops due while a fault had killed their origin agent (before its restart began)."""
    down = pd.Series(False, index=ops.index)
    for fault in plan.faults:
        if fault.kind == FaultKind.KILL_AGENT:
            due = ops["scheduled"].ge(fault.at) & ops["scheduled"].lt(fault.end)
            down |= due & ops["origin"].isin(fault.agents)
    return down


def operations_frame(
    plan: Plan, result: DriverResult, columns: CompletionColumns | None = None
) -> pd.DataFrame:
    """The rows of ``operations-<backend>.parquet`` (module docstring): ``OPERATION_COLUMNS``.
    ``columns``: ``completion_columns(result.completions)``, when already made."""
    ops = _plan_ops(plan)
    records = _records(columns or completion_columns(result.completions))

    # counted: the earliest unflagged record of each (op, node) pair of a planned op
    candidates = records[~records["duplicate"] & records["op_id"].isin(ops.index)]
    by_time = candidates.sort_values("completed", kind="stable")
    first = by_time[~by_time.duplicated(["op_id", "node"], keep="first")]
    records["counted"] = records.index.isin(first.index)
    # expected: the first n_expected counted records of each op, by completion time
    rank = first.groupby("op_id").cumcount()
    within = rank < ops["n_expected"].reindex(first["op_id"]).to_numpy()
    records["expected"] = records.index.isin(first.index[within])

    per_op = first.groupby("op_id").size().reindex(ops.index, fill_value=0)
    acked = ops.index.isin([*result.accepted, *(ack.op_id for ack in result.write_acks)])
    replied = (ops["kind"] == "memory") & (per_op > 0)
    ops["accepted"] = acked | replied
    ops["shed"] = ops.index.isin(result.shed) & ~ops["accepted"] & (per_op == 0)
    ops["never_sent"] = _origin_down(plan, ops) & ~ops["accepted"] & ~ops["shed"]

    missing = (ops["n_expected"] - per_op).clip(lower=0)
    owed = pd.DataFrame(
        {"op_id": ops.index.repeat(missing), "duplicate": False, "counted": False, "expected": True}
    )
    rows = pd.concat([records, owed], ignore_index=True)
    rows = rows.join(ops[["kind", "origin", "scheduled"]], on="op_id")
    rows["accepted"] = rows["op_id"].isin(ops.index[ops["accepted"]])
    rows["shed"] = rows["op_id"].isin(ops.index[ops["shed"]])
    rows["never_sent"] = rows["op_id"].isin(ops.index[ops["never_sent"]])
    rows["lost"] = rows["completed"].isna() & ~rows["shed"]
    micros = ((rows["completed"] - rows["scheduled"]) * 1e6).round()
    rows["latency_us"] = micros.clip(HDR_LOWEST_US, HDR_HIGHEST_US)
    rows = rows.sort_values(["op_id", "completed"], kind="stable", na_position="last")
    return rows.reset_index(drop=True)[list(OPERATION_COLUMNS)].astype(OPERATION_COLUMNS)


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` (no index) to ``path`` with pyarrow, ``COMPRESSION``-compressed.

    Columns in ``BYTE_STREAM_SPLIT`` are stored with that encoding, the rest
    dictionary-encoded where it pays (pyarrow falls back to plain by itself).
    """
    split = [name for name in frame.columns if name in BYTE_STREAM_SPLIT]
    frame.to_parquet(
        path,
        engine="pyarrow",
        compression=COMPRESSION,
        index=False,
        use_byte_stream_split=split or False,
        use_dictionary=[name for name in frame.columns if name not in split],
    )
    return path
