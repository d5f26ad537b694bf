"""The task figures: makespan from the schedule to the last result, steals summed over
a tree's coordinators, and imbalance over its leaves."""

from __future__ import annotations

import numpy as np

from harness.metrics.tasks import task_section
from protocol.plan import OpKind
from protocol.records import CoordinatorFigures


def row(
    node: str, ran: int, steals: int = 0, granted: int = 0, given: int = 0
) -> CoordinatorFigures:
    level = node.count(".") + 1
    return CoordinatorFigures(
        node,
        level,
        0,
        0,
        0,
        0,
        ran,
        0,
        steals,
        granted,
        steals - granted,
        given,
        0.001 * steals,
        0.002,
    )


AT = np.array([0.5, 1.0, 1.2, 2.0])
KIND = np.array([int(OpKind.TASK), int(OpKind.PUBLISH), int(OpKind.TASK), int(OpKind.TASK)])


def test_makespan_runs_from_the_first_task_scheduled_to_the_last_result() -> None:
    # op 0 done at 0.9 (and a later duplicate at 3.0 is not in unique), op 2 at 1.4, op 3 at 2.5
    figures = task_section(AT, KIND, np.array([0, 1, 2, 3]), np.array([0.9, 9.0, 1.4, 2.5]), [])
    assert figures.submitted == 3 and figures.unfinished == 0
    assert figures.makespan_s == 2.0  # 2.5 - 0.5; the publish at 9.0 does not count
    assert figures.steals == 0 and figures.imbalance is None and not figures.coordinators


def test_an_unfinished_task_leaves_no_makespan() -> None:
    figures = task_section(AT, KIND, np.array([0, 2]), np.array([0.9, 1.4]), [])
    assert figures.unfinished == 1 and figures.makespan_s is None


def test_steals_and_imbalance_come_from_the_coordinators_rows() -> None:
    rows = [
        row("coord", 0, steals=4, granted=3),
        row("coord.1", 0, steals=2, granted=1, given=5),
        row("coord.1.1", 6),
        row("coord.1.2", 2),
    ]
    figures = task_section(AT[:1], KIND[:1], np.array([0]), np.array([1.0]), rows)
    assert (figures.steals, figures.steals_granted, figures.steals_refused) == (6, 4, 2)
    assert figures.tasks_moved == 5
    assert figures.imbalance == 1.5  # 6 over the leaves' mean of 4
    assert figures.steal_ms_max == 2.0 and figures.steal_ms_mean == 1.0
    assert figures.coordinators[2]["node_id"] == "coord.1.1"
