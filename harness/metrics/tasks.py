"""The task figures of a run: makespan, and in a tree, steals and imbalance.

``task_section`` reads the plan's task operations and the earliest result of
each at its submitter (from ``harness.metrics.figures``' unique completions),
and the per-coordinator rows both drivers take from a tree's coordinators
(``protocol.peers.tree_figures``). The makespan runs from the first task's
scheduled time to the last result; a task without a result makes it None.
Imbalance is the most tasks run under one leaf over the mean of the leaves,
the leaves being the coordinators of the deepest level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import numpy.typing as npt

from harness.metrics.summary import TaskFigures
from protocol.plan import OpKind
from protocol.records import CoordinatorFigures


def task_section(
    op_at: npt.NDArray[np.float64],
    op_kind: npt.NDArray[np.int64],
    done_op: npt.NDArray[np.int64],
    done_at: npt.NDArray[np.float64],
    rows: Sequence[CoordinatorFigures],
) -> TaskFigures:
    """``op_at``/``op_kind``: every op's scheduled time and kind, in plan order;
    ``done_op``/``done_at``: the index and time of each op's unique completions."""
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
    if rows:
        _steals(figures, rows)
    return figures


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
