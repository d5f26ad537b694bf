"""The scenario's ``topology``: one coordinator (``flat``, the default) or a tree.

``topology: {kind: hierarchical, branching: 10, levels: 3}`` is a root
coordinator, ``branching`` child coordinators under each inner one, ``levels``
levels in all (the root is the first), and the agents attached to the leaves,
at most ``branching`` each, round robin (``protocol.topology``). ``tasks`` says
how the tree places tasks (``protocol.stealing``): ``steal`` (the default),
``central`` or ``local``. On tcp, ``processes`` coordinator processes host the
tree's nodes (``real.tcp.treeservers``), and the model puts them on those
processes' CPUs; 0 gives each coordinator a process (and a CPU) of its own,
for the model's what-ifs about trees spread over many machines. ``check`` says
what a tree cannot run yet, field by field: faults other than
``crash_coordinator`` (whose ``node`` must name a coordinator of the tree),
and, on tcp on the real backend, ``processes`` outside 1 to
``MAX_REAL_PROCESSES``; the scenario loader refuses those with exit 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.errors import problem
from harness.scenario.faults import REPLICA_KINDS
from protocol.nodes import COORDINATOR_ID
from protocol.topology import attach, capacity, tree

if TYPE_CHECKING:
    from harness.scenario.schema import Scenario

MAX_REAL_PROCESSES = 64  # coordinator processes a real tcp tree may start


class TopologySection(BaseModel):
    """How coordinators are arranged."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: Literal["flat", "hierarchical"] = "flat"
    branching: int = Field(default=10, ge=1, le=100)
    levels: int = Field(default=3, ge=1, le=6)
    tasks: Literal["steal", "central", "local"] = "steal"
    processes: int = Field(default=1, ge=0, le=100_000)  # a tcp tree's; 0: one each

    @property
    def tree(self) -> bool:
        return self.kind == "hierarchical" and self.levels > 1


def check(scenario: Scenario) -> None:
    """Raise a scenario problem for what a tree does not run yet, or for a task stream
    submitted at a coordinator that has no agents."""
    topology = scenario.topology
    nodes = tree(topology.branching, topology.levels) if topology.tree else ()
    ends = list(dict.fromkeys(attach(scenario.agents.count, nodes)))  # with agents, in order
    for index, stream in enumerate(scenario.workload):
        where = getattr(stream, "submitted_at", None)
        if where is not None and where not in ends:
            shown = ", ".join(ends[:3]) + (", ..." if len(ends) > 3 else "")
            expected = f"expected a coordinator agents attach to ({shown})"
            raise problem(f"{expected}, got {where!r}", f"workload[{index}].submitted_at")
    if not topology.tree:
        for index, fault in enumerate(scenario.faults):
            if fault.kind in REPLICA_KINDS:
                continue  # a replica's node: ``harness.scenario.consensus``
            node = getattr(fault, "node", None)
            if node is not None and node != COORDINATOR_ID:
                expected = f"expected {COORDINATOR_ID!r} (the one coordinator of a flat run)"
                raise problem(f"{expected}, got {node!r}", f"faults[{index}].node")
        return
    most = capacity(topology.branching, topology.levels)
    if scenario.agents.count > most:
        expected = (
            f"expected at most branching ** levels = {most} agents for this tree "
            f"({topology.branching} per leaf)"
        )
        raise problem(f"{expected}, got {scenario.agents.count}", "agents.count")
    on_tcp = scenario.transport == "tcp" and "real" in scenario.backends
    if on_tcp and not 1 <= topology.processes <= MAX_REAL_PROCESSES:
        expected = f"expected 1 to {MAX_REAL_PROCESSES} coordinator processes on the real backend"
        raise problem(
            f"{expected} (0, one per coordinator, is for the model), got {topology.processes}",
            "topology.processes",
        )
    names = {COORDINATOR_ID, *(node.node_id for node in nodes)}
    for index, fault in enumerate(scenario.faults):
        where = f"faults[{index}]"
        if fault.kind != "crash_coordinator":
            expected = "expected kind: crash_coordinator (the only fault a tree runs yet)"
            raise problem(f"{expected}, got {fault.kind}", f"{where}.kind")
        node = getattr(fault, "node", None)
        if node is not None and node not in names:
            shown = ", ".join(sorted(names)[:4])
            expected = f"expected a coordinator of the tree ({shown}, ...)"
            raise problem(f"{expected}, got {node!r}", f"{where}.node")
