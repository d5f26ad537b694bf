"""The task figures: makespan from the schedule to the last result, steals summed over
a tree's coordinators, and imbalance over its leaves."""

from __future__ import annotations

import numpy as np
import pytest

from harness.metrics.tasks import task_section
from protocol.plan import OpKind
from protocol.records import CoordinatorFigures, TaskStamp


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


IDS = np.array([1, 2, 3, 4])
AT = np.array([0.5, 1.0, 1.2, 2.0])
KIND = np.array([int(OpKind.TASK), int(OpKind.PUBLISH), int(OpKind.TASK), int(OpKind.TASK)])


def test_makespan_runs_from_the_first_task_scheduled_to_the_last_result() -> None:
    # op 0 done at 0.9 (and a later duplicate at 3.0 is not in unique), op 2 at 1.4, op 3 at 2.5
    figures = task_section(
        IDS, AT, KIND, np.array([0, 1, 2, 3]), np.array([0.9, 9.0, 1.4, 2.5]), []
    )
    assert figures.submitted == 3 and figures.unfinished == 0
    assert figures.makespan_s == 2.0  # 2.5 - 0.5; the publish at 9.0 does not count
    assert figures.steals == 0 and figures.imbalance is None and not figures.coordinators


def test_an_unfinished_task_leaves_no_makespan() -> None:
    figures = task_section(IDS, AT, KIND, np.array([0, 2]), np.array([0.9, 1.4]), [])
    assert figures.unfinished == 1 and figures.makespan_s is None


def test_steals_and_imbalance_come_from_the_coordinators_rows() -> None:
    rows = [
        row("coord", 0, steals=4, granted=3),
        row("coord.1", 0, steals=2, granted=1, given=5),
        row("coord.1.1", 6),
        row("coord.1.2", 2),
    ]
    figures = task_section(IDS[:1], AT[:1], KIND[:1], np.array([0]), np.array([1.0]), rows)
    assert (figures.steals, figures.steals_granted, figures.steals_refused) == (6, 4, 2)
    assert figures.tasks_moved == 5
    assert figures.imbalance == 1.5  # 6 over the leaves' mean of 4
    assert figures.steal_ms_max == 2.0 and figures.steal_ms_mean == 1.0
    assert figures.coordinators[2]["node_id"] == "coord.1.1"


def test_task_latency_splits_into_wait_service_and_transfer() -> None:
    """Task 1 (scheduled 0.5, result at 0.9): waited 10 ms at its leaf, was stolen,
    waited 20 ms at the parent and 5 ms at the thief, ran 100 ms there; the other
    265 ms are transfer. Task 3 ran twice after a failover: the first run counts."""
    stamps = [
        TaskStamp("a", 1, "leaf", 0.50, 0.51, 0.89, False),
        TaskStamp("a", 1, "parent", 0.52, 0.54, 0.88, False),
        TaskStamp("a", 1, "thief", 0.55, 0.555, 0.655, True),
        TaskStamp("a", 3, "leaf", 1.2, 1.2, 1.3, True),
        TaskStamp("a", 3, "leaf", 1.2, 1.25, 1.45, True),
    ]
    done = np.array([0, 2, 3])
    figures = task_section(IDS, AT, KIND, done, np.array([0.9, 1.4, 2.5]), [], stamps)
    wait = (0.01 + 0.02 + 0.005) * 1000  # op 1's; op 3 waited 0 + 50 ms (its two lives)
    assert figures.wait_mean_ms == pytest.approx((wait + 50) / 2)
    assert figures.wait_p95_ms == pytest.approx(50)
    assert figures.service_mean_ms == pytest.approx(100)  # both: op 3's first run
    assert figures.transfer_p95_ms == pytest.approx(400 - wait - 100)  # op 1: 0.4 s total
    assert figures.transfer_mean_ms == pytest.approx((400 - wait - 100 + 200 - 50 - 100) / 2)
