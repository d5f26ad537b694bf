"""The scenario's ``topology``: one coordinator (``flat``, the default) or a tree.

``topology: {kind: hierarchical, branching: 10, levels: 3}`` is a root
coordinator, ``branching`` child coordinators under each inner one, ``levels``
levels in all (the root is the first), and the agents attached to the leaves,
at most ``branching`` each, round robin (``protocol.topology``). ``tasks`` says
how the tree places tasks (``protocol.stealing``): ``steal`` (the default),
``central`` or ``local``. ``check`` says what a tree cannot run yet, field by
field: faults other than ``crash_coordinator`` (whose ``node`` must name a
coordinator of the tree), and the tcp transport on the real backend
(coordinator processes that host tree nodes are not built; the model runs a
tcp tree, each coordinator on a CPU of its own); the scenario loader refuses
those with exit 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.errors import problem
from protocol.nodes import COORDINATOR_ID
from protocol.topology import attach, capacity, tree

if TYPE_CHECKING:
    from harness.scenario.schema import Scenario


class TopologySection(BaseModel):
    """How coordinators are arranged."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: Literal["flat", "hierarchical"] = "flat"
    branching: int = Field(default=10, ge=1, le=100)
    levels: int = Field(default=3, ge=1, le=6)
    tasks: Literal["steal", "central", "local"] = "steal"

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
    if scenario.transport != "inproc" and "real" in scenario.backends:
        expected = "expected transport: inproc with a hierarchical topology on the real backend"
        raise problem(f"{expected} (tree nodes in tcp processes are not built yet)", "transport")
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
