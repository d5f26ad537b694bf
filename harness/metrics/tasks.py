"""The task figures of a run: makespan, and in a tree, steals, imbalance and paths.

``task_section`` reads the plan's task operations and the earliest result of
each at its submitter (from ``harness.metrics.figures``' unique completions),
and the per-coordinator rows both drivers take from a tree's coordinators
(``protocol.treereport.tree_figures``). The makespan runs from the first task's
scheduled time to the last result; a task without a result makes it None.
Imbalance is the most tasks run under one leaf over the mean of the leaves,
the leaves being the coordinators of the deepest level; the coordinators per
bus op and the share of them that reached the root come from the coordinators'
counters of ops entered and routed. Each finished task's
latency (scheduled time to result) is split with the ``TaskStamp``s of the
coordinators it passed: wait (the sum over them of assignment less arrival),
service (assignment to an agent until its result, where it ran; the first run
if it ran twice), transfer (the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import numpy.typing as npt

from harness.metrics.summary import TaskFigures, nearest_rank_percentiles
from protocol.plan import OpKind
from protocol.records import CoordinatorFigures, TaskStamp


def task_section(
    op_ids: npt.NDArray[np.int64],
    op_at: npt.NDArray[np.float64],
    op_kind: npt.NDArray[np.int64],
    done_op: npt.NDArray[np.int64],
    done_at: npt.NDArray[np.float64],
    rows: Sequence[CoordinatorFigures],
    stamps: Sequence[TaskStamp] = (),
) -> TaskFigures:
    """``op_ids``/``op_at``/``op_kind``: every op's id, scheduled time and kind, in
    plan order; ``done_op``/``done_at``: the index and time of each op's unique
    completions; ``stamps``: the coordinators' ``TaskStamp``s."""
    figures = TaskFigures(coordinators=[asdict(row) for row in rows])
    tasks = op_kind == int(OpKind.TASK)
    figures.submitted = int(np.count_nonzero(tasks))
    if figures.submitted:
        is_task = tasks[done_op]
        last = np.full(len(op_at), -np.inf)
        np.maximum.at(last, done_op[is_task], done_at[is_task])
        finished = np.isfinite(last) & tasks
        figures.unfinished = figures.submitted - int(np.count_nonzero(finished))
        if not figures.unfinished:
            figures.makespan_s = float(last[tasks].max() - op_at[tasks].min())
        if stamps:
            _split(figures, op_ids, op_at, last, finished, stamps)
    if rows:
        _steals(figures, rows)
        _paths(figures, rows)
    return figures


def _split(
    figures: TaskFigures,
    op_ids: npt.NDArray[np.int64],
    op_at: npt.NDArray[np.float64],
    last: npt.NDArray[np.float64],
    finished: npt.NDArray[np.bool_],
    stamps: Sequence[TaskStamp],
) -> None:
    """Wait, service and transfer of each finished task that has stamps."""
    by_op: dict[int, list[TaskStamp]] = {}
    for stamp in stamps:
        by_op.setdefault(stamp.op_id, []).append(stamp)
    parts: list[tuple[float, float, float]] = []
    for index in np.flatnonzero(finished).tolist():
        own = by_op.get(int(op_ids[index]))
        ran = [s for s in own or () if s.ran_here]
        if not own or not ran:
            continue
        wait = sum(s.assigned_at - s.queued_at for s in own)
        first = min(ran, key=lambda s: s.done_at)  # a task placed again may run twice
        service = first.done_at - first.assigned_at
        total = float(last[index] - op_at[index])
        parts.append((wait, service, max(total - wait - service, 0.0)))
    if not parts:
        return
    columns = np.array(parts) * 1000.0
    p95 = [float(nearest_rank_percentiles(columns[:, k], (95,))[0]) for k in range(3)]
    mean = columns.mean(axis=0).tolist()
    figures.wait_p95_ms, figures.service_p95_ms, figures.transfer_p95_ms = p95
    figures.wait_mean_ms, figures.service_mean_ms, figures.transfer_mean_ms = mean


def _paths(figures: TaskFigures, rows: Sequence[CoordinatorFigures]) -> None:
    """How far a tree's bus ops travelled: each coordinator counts the ops that
    entered at it and the ops it routed (once each), so their totals give the
    coordinators per op, and the root's count the share that climbed to it."""
    entered = sum(row.ops_entered for row in rows)
    if entered:
        figures.coordinators_per_op = sum(row.ops_routed for row in rows) / entered
        figures.root_share = sum(row.ops_routed for row in rows if row.level == 1) / entered


def _steals(figures: TaskFigures, rows: Sequence[CoordinatorFigures]) -> None:
    figures.steals = sum(row.steals for row in rows)
    figures.steals_granted = sum(row.steals_granted for row in rows)
    figures.steals_refused = sum(row.steals_refused for row in rows)
    figures.tasks_moved = sum(row.tasks_given for row in rows)
    answered = figures.steals_granted + figures.steals_refused
    timed = sum(row.steal_seconds for row in rows)
    if figures.steals and answered:
        figures.steal_ms_mean = timed / max(answered, 1) * 1000.0
        figures.steal_ms_max = max(row.steal_seconds_max for row in rows) * 1000.0
    deepest = max(row.level for row in rows)
    leaves = [row.tasks_run for row in rows if row.level == deepest]
    mean = sum(leaves) / len(leaves)
    if mean > 0:
        figures.imbalance = max(leaves) / mean
    peaks = [row.occupancy_peak_s for row in rows if row.level == deepest]
    mean_peak = sum(peaks) / len(peaks)
    if mean_peak > 0:
        figures.occupancy_imbalance = max(peaks) / mean_peak
