"""A tree of coordinators on tcp: coordinator processes hosting tree nodes, each node a
server on its own port and connected to its parent over loopback, agents in worker
processes on links to their leaves; and ``swarmtwin coordinator --parent`` joining a
tree by hand. Nothing here asserts a time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.cli.serve import tree_place
from harness.metrics.figures import summarize
from protocol.messages import Deliver, Subscribe
from protocol.nodes import COORDINATOR_ID
from protocol.settings import DEV_TOKEN
from protocol.topology import processes, tree
from real.tcp.client import Bystander
from real.tcp.run import run_plan
from tests.real.test_inproc_tree import crashing_tree, healed
from tests.sim.test_sim_tree import burst, tree_plan

ROOT = Path(__file__).resolve().parents[2]


def test_nodes_are_dealt_to_processes_by_subtree() -> None:
    nodes = tree(3, 3)
    hosted = processes(nodes, 2)
    assert hosted[0][0] == COORDINATOR_ID and sum(map(len, hosted)) == 13
    assert [n for n in hosted[1] if n.count(".") == 1] == ["coord.2"]
    home = {node: index for index, ids in enumerate(hosted) for node in ids}
    assert all(home[n.node_id] == home[n.parent] for n in nodes if n.parent != COORDINATOR_ID)
    assert processes(nodes, 1) == [[COORDINATOR_ID, *(n.node_id for n in nodes)]]
    assert processes(nodes, 0) == [[COORDINATOR_ID], *([n.node_id] for n in nodes)]


def test_a_tree_of_coordinator_processes_delivers_everything_once() -> None:
    plan = tree_plan(
        duration=1.5,
        agents={"count": 27, "capabilities": [{"name": "c", "share": 0.5}]},
        workload=[
            {"kind": "publish", "arrival": {"process": "poisson", "rate": 300}},
            {"kind": "direct", "arrival": {"process": "poisson", "rate": 100}},
            {"kind": "broadcast", "arrival": {"process": "poisson", "rate": 10}},
            {"kind": "task", "arrival": {"process": "poisson", "rate": 50}, "capability": "c"},
            {"kind": "memory", "arrival": {"process": "poisson", "rate": 50}},
        ],
    )
    result = run_plan(plan, workers=2, connections=1, use_uvloop=False, coordinator_processes=2)
    assert result.errors == []
    got = [(c.op_id, c.node) for c in result.completions if not c.duplicate]
    assert len(got) == len(set(got)) == plan.expected_total
    assert all(c.intact for c in result.completions)
    assert {row.node_id for row in result.coordinators} == {
        COORDINATOR_ID,
        *(n.node_id for n in plan.tree),
    }
    status = result.status
    assert status is not None  # the root's, asked over the prober's own connection
    peers = sorted(name for name in status if name.startswith("peer:"))
    assert peers == ["peer:coord.1", "peer:coord.2", "peer:coord.3"]
    assert not any(name.startswith("agent:") for name in status)  # agents are on the leaves
    summary = summarize(plan, result)
    assert summary.reliability.lost_acked == 0 and summary.integrity.acked_writes_lost == 0
    assert summary.tasks.unfinished == 0 and summary.tasks.wait_p95_ms is not None
    names = [usage.name for usage in result.processes]
    assert sum(name.startswith("coordinators (") for name in names) == 2


def test_a_burst_is_stolen_across_a_tree_on_tcp_and_each_task_runs_once() -> None:
    plan = burst("steal")
    result = run_plan(plan, workers=2, connections=1, use_uvloop=False)
    assert result.errors == []
    done = [c.op_id for c in result.completions if not c.duplicate]
    assert sorted(done) == [op.op_id for op in plan.operations]
    rows = {row.node_id: row for row in result.coordinators}
    assert rows["coord.1.1"].tasks_run < len(plan.operations)  # others ran some
    assert sum(row.steals_granted for row in rows.values()) > 0


def test_a_crashed_leaf_and_inner_node_lose_nothing_over_tcp() -> None:
    """A leaf, then an inner node, is SIGKILLed under load (each in a coordinator
    process of its own) and restarts from its SQLite journal on its old port: its
    agents fail over to the parent, its children re-parent to the root, and every
    accepted op is still handled once where it should be."""
    plan = crashing_tree(reconnect_max=0.1)
    result = run_plan(plan, workers=2, connections=1, use_uvloop=False)
    assert result.errors == []
    kinds = healed(plan, result)
    assert ("injected", "coord.2.3") in kinds and ("healed", "coord.3") in kinds
    assert ("reparented", "coord.3.1") in kinds
    restarted = [n for n in result.notes if "restarted in" in n]
    assert len(restarted) == 2 and restarted[0].startswith("coordinator coord.2.3 restarted")


# --- swarmtwin coordinator --parent --------------------------------------------------


def test_parent_options_name_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    place = tree_place("coord.1.1", ["coord.1@10.0.0.2:7401", "10.0.0.1:7400"])
    assert place is not None and place.chain == ("coord.1", COORDINATOR_ID)
    assert place.addresses == {"coord.1": ("10.0.0.2", 7401), COORDINATOR_ID: ("10.0.0.1", 7400)}
    assert tree_place(None, []) is None
    for node, parents, said in [
        (None, ["127.0.0.1:7400"], "needs its own --node-id"),
        ("coord.1", ["127.0.0.1"], "expected [NODE@]HOST:PORT"),
        ("coord.1", ["127.0.0.1:99999"], "expected [NODE@]HOST:PORT"),
        ("coord.1.1", ["coord.1@127.0.0.1:7401"], "the last --parent must be the root"),
        ("coord.1", [], "needs --parent"),
        ("coord.1", ["coord.1@127.0.0.1:7401", "127.0.0.1:7400"], "appears twice"),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)):
            tree_place(node, parents)
    assert main(["coordinator", "--node-id", "coord.1", "--parent", "nowhere"]) == 2
    assert "expected [NODE@]HOST:PORT" in capsys.readouterr().err


async def _listening(process: subprocess.Popen[str]) -> int:
    """The port a ``swarmtwin coordinator --port 0`` printed it listens on."""
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30.0)
    assert "listening on 127.0.0.1:" in line, line
    return int(line.split("127.0.0.1:")[1].split()[0].rstrip(";,"))


def _coordinator(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "harness.cli", "coordinator", "--port", "0", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_a_coordinator_started_with_parent_joins_the_tree(tmp_path: Path) -> None:
    """A root and a child started by hand: a publish at the child reaches a subscriber
    at the root, and one at the root reaches a subscriber at the child."""

    async def scenario() -> None:
        root = _coordinator("--db", str(tmp_path / "root.sqlite"))
        child = None
        try:
            root_port = await _listening(root)
            child = _coordinator("--node-id", "coord.1", "--parent", f"127.0.0.1:{root_port}")
            child_port = await _listening(child)
            token = DEV_TOKEN
            up = await Bystander.register(root_port, "at-root", token, 0.2)
            down = await Bystander.register(child_port, "at-child", token, 0.2)
            up.send(Subscribe("news.*"))
            down.send(Subscribe("alerts.*"))
            for _ in range(200):  # until the child's interest reached the root and back
                await down.publish("news.a", 2.0)
                await up.publish("alerts.b", 2.0)
                await asyncio.sleep(0.05)
                got_up = any(isinstance(d, Deliver) for d in up.deliveries)
                got_down = any(isinstance(d, Deliver) for d in down.deliveries)
                if got_up and got_down:
                    break
            assert {d.topic for d in up.deliveries} == {"news.a"}
            assert {d.topic for d in down.deliveries} == {"alerts.b"}
            await up.close()
            await down.close()
        finally:
            for process in (child, root):
                if process is not None:
                    process.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(10)
                    if process.poll() is None:
                        process.kill()
                        process.wait()

    asyncio.run(scenario())
