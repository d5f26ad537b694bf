"""What the coordinators of a tree report at the end of a run, for both drivers.

``tree_figures`` gives one ``CoordinatorFigures`` row per coordinator (its
counters: routed, Busy, redelivered, tasks run, steals), which the harness puts in
``summary.json``; ``tree_note`` one line on how the levels shared the work.
"""

from __future__ import annotations

from collections.abc import Sequence

from protocol.peers import PeerRouting
from protocol.records import CoordinatorFigures


def tree_figures(coordinators: Sequence[PeerRouting]) -> list[CoordinatorFigures]:
    """One row per coordinator of a tree, for the run's summary (both drivers)."""
    rows = []
    for coordinator in coordinators:
        stats = coordinator.stats
        rows.append(
            CoordinatorFigures(
                coordinator.node_id,
                coordinator.node_id.count(".") + 1,
                stats.received,
                stats.sent,
                stats.busy,
                stats.redelivered,
                stats.tasks_run_here,
                stats.queue_peak,
                stats.steals,
                stats.steals_granted,
                stats.steals_refused,
                stats.tasks_given,
                stats.steal_seconds,
                stats.steal_seconds_max,
                stats.ops_entered,
                stats.ops_routed,
                stats.occupancy_peak,
            )
        )
    return rows


def tree_note(rows: Sequence[CoordinatorFigures]) -> str:
    """One line on how a tree's coordinators shared the work, level by level (the root
    is level 1), from their ``tree_figures`` rows: how many there are, the messages
    each level sent (mean per node and the busiest), and the ``Busy`` refusals and
    redeliveries; every driver notes it."""
    levels: dict[int, list[CoordinatorFigures]] = {}
    for row in rows:
        levels.setdefault(row.level, []).append(row)
    parts = []
    for level in sorted(levels):
        nodes = levels[level]
        sent = [row.sent for row in nodes]
        busy = sum(row.busy for row in nodes)
        again = sum(row.redelivered for row in nodes)
        parts.append(
            f"level {level}: {len(nodes)} sent {sum(sent) // len(nodes)} each "
            f"(most {max(sent)}), Busy {busy}, redelivered {again}"
        )
    return f"tree of {len(rows)} coordinators: " + "; ".join(parts)
