"""Tasks in a tree of coordinators, by hand: work stealing against local and central
placement, the handshake, and a stealer that fails with stolen tasks.

All tasks are submitted under one leaf and each asks for 50 ms of work
(``protocol.payload.task_payload``), so where they run decides the makespan.
"""

from __future__ import annotations

from collections import Counter

import pytest

from protocol.messages import Deliver, DeliveryKind, Load, StealReply, StealRequest
from protocol.payload import task_payload
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Faults
from tests.core.test_tree import TreeCluster, build

WORK = 0.05
TASKS = 12


def settings(placement: str) -> ProtocolSettings:
    return ProtocolSettings(
        heartbeat_interval=0.05,
        failure_after=0.3,
        ack_timeout=0.02,
        max_rto=0.2,
        task_slots=1,
        task_placement=placement,
    )


def siblings(placement: str) -> TreeCluster:
    """root <- c1 (boss, w1), root <- c2 (w2, w3, w4): one worker beside the submitter,
    three idle under the sibling."""
    agents = (
        ("boss", (), (), 1),
        ("w1", ("gpu",), (), 1),
        ("w2", ("gpu",), (), 2),
        ("w3", ("gpu",), (), 2),
        ("w4", ("gpu",), (), 2),
    )
    return build(settings(placement), Faults(), 3, (0, 0), agents)


def cousins(placement: str) -> TreeCluster:
    """root <- c1 <- (c3: boss, w1; c4: w2), root <- c2 <- c5 (w3, w4, w5)."""
    agents = (
        ("boss", (), (), 3),
        ("w1", ("gpu",), (), 3),
        ("w2", ("gpu",), (), 4),
        ("w3", ("gpu",), (), 5),
        ("w4", ("gpu",), (), 5),
        ("w5", ("gpu",), (), 5),
    )
    return build(settings(placement), Faults(), 4, (0, 0, 1, 1, 2), agents)


def submit_all(net: TreeCluster, count: int = TASKS) -> float:
    """``count`` tasks of ``WORK`` seconds from boss at once; run until all are done;
    return the makespan (submission to the last result)."""
    boss = net.agents["boss"]
    start = net.now
    for op_id in range(1, count + 1):
        boss.submit_task(op_id, "gpu", task_payload(op_id, 64, WORK), net.now)
    net._flush("boss", boss)
    net.wait("quiet")
    done = [c for c in boss.completions if not c.duplicate]
    assert sorted(c.op_id for c in done) == list(range(1, count + 1))
    return max(c.at for c in done) - start


def ran_on(net: TreeCluster) -> Counter[str]:
    ran = Counter({name: len(agent._task_results) for name, agent in net.agents.items()})
    assert sum(ran.values()) == TASKS  # each task ran once
    return +ran


def test_an_idle_sibling_steals_and_the_makespan_falls() -> None:
    local, steal = siblings("local"), siblings("steal")
    local_span, steal_span = submit_all(local), submit_all(steal)
    assert ran_on(local) == {"w1": TASKS}  # nobody steals: one worker does all
    assert local_span >= TASKS * WORK
    shares = ran_on(steal)
    assert set(shares) == {"w1", "w2", "w3", "w4"}
    assert steal_span < local_span / 2  # four workers instead of one, less the moves
    root = steal.coordinator
    assert root.stats.steals_granted >= 1 and steal.children["c1"].stats.tasks_given >= 1
    assert root.stats.steal_seconds_max < 0.01  # one round trip to the victim
    # the handshake: the victim's reply follows the tasks it gave
    log = [(s, d, type(m)) for s, d, m in steal.log]
    first_reply = log.index(("c1", COORD, StealReply))
    assert ("c1", COORD, Deliver) in log[:first_reply]


def test_cousins_steal_through_the_grandparent() -> None:
    net = cousins("steal")
    span = submit_all(net)
    shares = ran_on(net)
    assert {"w3", "w4", "w5"} & set(shares)  # the far subtree ran some
    assert span < TASKS * WORK / 2
    # c1 passed up what its child gave for the root's steal
    assert any(s == COORD and d == "c1" and type(m) is StealRequest for s, d, m in net.log)
    assert any(s == "c1" and d == "c3" and type(m) is StealRequest for s, d, m in net.log)
    assert net.children["c1"].stats.tasks_given >= 1


def test_central_placement_sends_every_task_through_the_root() -> None:
    net = siblings("central")
    submit_all(net)
    to_root = {
        m.op_id
        for s, d, m in net.log
        if type(m) is Deliver and m.kind == DeliveryKind.TASK and d == COORD
    }
    assert to_root == set(range(1, TASKS + 1))
    assert set(ran_on(net)) == {"w1", "w2", "w3", "w4"}


def test_a_task_nobody_below_can_run_climbs_to_one_who_can() -> None:
    agents = (("boss", (), (), 1), ("w1", ("cpu",), (), 1), ("g", ("gpu",), (), 2))
    net = build(settings("local"), Faults(), 5, (0, 0), agents)
    submit_all(net, 1)
    assert net.agents["g"]._task_results  # c1 has no gpu: the task went up and over


def test_load_reports_ride_on_the_heartbeat() -> None:
    """A child's beat to its parent is its Load; the parent still beats with Heartbeat."""
    net = siblings("steal")
    net.run_until(net.now + 0.2)
    up = Counter(type(m).__name__ for s, d, m in net.log if s == "c1" and d == COORD)
    down = Counter(type(m).__name__ for s, d, m in net.log if s == COORD and d == "c1")
    assert up["Load"] >= 3 and up["Heartbeat"] == 0
    assert down["Heartbeat"] >= 3
    last = [m for s, d, m in net.log if s == "c2" and type(m) is Load][-1]
    assert (last.queued, last.free, last.agents, last.capabilities) == (0, 3, 3, ("gpu",))


@pytest.mark.parametrize("seed", range(4))
def test_a_lossy_network_loses_no_stolen_task(seed: int) -> None:
    lossy = Faults(drop=0.1, duplicate=0.1, min_delay=0.0001, max_delay=0.003)
    agents = (
        ("boss", (), (), 1),
        ("w1", ("gpu",), (), 1),
        ("w2", ("gpu",), (), 2),
        ("w3", ("gpu",), (), 2),
    )
    net = build(settings("steal"), lossy, seed, (0, 0), agents)
    submit_all(net)
    ran = Counter(key for agent in net.agents.values() for key in agent._task_results)
    assert ran == Counter(("boss", op_id) for op_id in range(1, TASKS + 1))


def test_a_stealer_that_fails_gives_its_tasks_back() -> None:
    """The root steals from c1 for c2, then c2's subtree goes silent for good: the root
    declares c2 failed and places its tasks again; c1 keeps each task it gave until
    its result is back, so nothing is lost (a task may run twice, its result reaches
    boss once)."""
    net = siblings("steal")
    boss = net.agents["boss"]
    for op_id in range(1, TASKS + 1):
        boss.submit_task(op_id, "gpu", task_payload(op_id, 64, WORK), net.now)
    net._flush("boss", boss)
    net.run_until(net.now + 0.03)
    assert any(type(m) is Deliver and d == "c2" for _, d, m in net.log)  # stolen for c2
    dead = {"c2", "w2", "w3", "w4"}
    net.children.pop("c2")
    for name in ("w2", "w3", "w4"):
        net.agents.pop(name)
    net._wire = [w for w in net._wire if w[3] not in dead]
    original = net._send

    def cut(src: str, dst: str, msg: object) -> None:
        if dst not in dead and src not in dead:
            original(src, dst, msg)  # type: ignore[arg-type]

    net._send = cut  # type: ignore[method-assign]
    while len({c.op_id for c in boss.completions}) < TASKS:
        assert net.now < 10, "tasks were lost"
        net.run_until(net.now + 0.05)
    assert net.coordinator.stats.tasks_reassigned >= 1
    done = Counter(c.op_id for c in boss.completions if not c.duplicate)
    assert done == Counter(range(1, TASKS + 1))
