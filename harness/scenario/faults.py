"""The scenario's fault timeline: its schema, its checks and its expansion into the plan.

A scenario lists faults under ``faults:``, each with a ``kind``:

- ``kill_agent``: the agents die (SIGKILL on tcp); a supervisor restarts them
  ``restart_after`` seconds later.
- ``pause_agent``: the agents stop (SIGSTOP on tcp) for ``duration`` seconds.
- ``crash_coordinator``: the coordinator dies (SIGKILL) and restarts from its
  SQLite state ``restart_after`` seconds later. In a tree, ``node`` names the
  coordinator (``coord``, the root, by default; ``coord.1.2`` a node below it):
  its agents and children re-attach to its ancestors meanwhile
  (``protocol.failover``).
- ``crash_replica``: with a replicated coordinator (``consensus``), a replica
  dies (SIGKILL) and restarts from its Raft log ``restart_after`` seconds
  later; ``node`` is ``leader`` (the replica leading when the fault hits, the
  default) or a replica id (``r2``).
- ``pause_replica``: a replica stops (SIGSTOP) for ``duration`` seconds; ``node``
  as for ``crash_replica``. Its links stay open and what is sent to it waits.
- ``partition_replica``: a replica's links to the other replicas drop every
  message, both ways, for ``duration`` seconds (the connections stay open, as
  with a firewall's DROP); the agents still reach it. ``node`` as above.
- ``partition``: the agents' links to the coordinator drop every message for
  ``duration`` seconds.
- ``link_delay`` / ``link_loss``: every message on the agents' links waits
  ``delay_ms`` more, or is lost with probability ``loss``, for ``duration``.

Which agents: ``agents:`` names them, or ``count:`` picks that many with the
scenario's seed (a fresh pick for each repetition of the fault). Link faults
without either hit every agent. ``every:`` repeats a fault until ``until``
(default: the end of the run), which is how agent churn is written.

``compile_faults`` expands all of this into ``protocol.plan.Fault`` records
in time order, so both drivers replay exactly the same timeline. On tcp an
agent lives in a worker process and shares its links, so a kill, a pause or
a link fault takes its whole worker with it: the expansion lists every agent
of that worker (agents are dealt to workers round-robin, as
``real.tcp.run.worker_specs`` does).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.scenario.errors import num, problem
from protocol.nodes import COORDINATOR_ID
from protocol.plan import Fault, FaultKind

if TYPE_CHECKING:
    from harness.scenario.schema import Scenario

FAULT_KINDS: tuple[str, ...] = (
    "kill_agent",
    "pause_agent",
    "crash_coordinator",
    "crash_replica",
    "pause_replica",
    "partition_replica",
    "partition",
    "link_delay",
    "link_loss",
)
REPLICA_KINDS: tuple[str, ...] = ("crash_replica", "pause_replica", "partition_replica")
INPROC_FAULTS: tuple[str, ...] = (
    "kill_agent",
    "pause_agent",
    "partition",
    "link_delay",
    "link_loss",
)
MAX_FAULTS = 10_000


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    at: float = Field(ge=0)
    every: float | None = Field(default=None, gt=0)
    until: float | None = Field(default=None, gt=0)

    def times(self, run_end: float) -> list[float]:
        """Every injection time of this fault."""
        if self.every is None:
            return [self.at]
        end = self.until if self.until is not None else run_end
        times: list[float] = []
        t = self.at
        while t < end and len(times) < MAX_FAULTS:
            times.append(round(t, 9))
            t = self.at + self.every * len(times)
        return times


class _AgentFault(_Fault):
    agents: list[str] | None = Field(default=None, min_length=1)
    count: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way_to_choose(self) -> _AgentFault:
        if self.agents is not None and self.count is not None:
            raise problem("expected either agents or count, not both", "count")
        return self


class KillAgent(_AgentFault):
    kind: Literal["kill_agent"]
    restart_after: float = Field(default=0.5, gt=0)


class PauseAgent(_AgentFault):
    kind: Literal["pause_agent"]
    duration: float = Field(gt=0)


class CrashCoordinator(_Fault):
    kind: Literal["crash_coordinator"]
    restart_after: float = Field(default=0.2, gt=0)
    node: str | None = None  # a node of the tree; None: the root


class CrashReplica(_Fault):
    kind: Literal["crash_replica"]
    restart_after: float = Field(default=0.5, gt=0)
    node: str = "leader"  # or a replica id


class PauseReplica(_Fault):
    kind: Literal["pause_replica"]
    duration: float = Field(gt=0)
    node: str = "leader"  # or a replica id


class PartitionReplica(_Fault):
    kind: Literal["partition_replica"]
    duration: float = Field(gt=0)
    node: str = "leader"  # or a replica id


class Partition(_AgentFault):
    kind: Literal["partition"]
    duration: float = Field(gt=0)


class LinkDelay(_AgentFault):
    kind: Literal["link_delay"]
    duration: float = Field(gt=0)
    delay_ms: float = Field(gt=0, le=60_000)


class LinkLoss(_AgentFault):
    kind: Literal["link_loss"]
    duration: float = Field(gt=0)
    loss: float = Field(gt=0, lt=1)


FaultSpec = Annotated[
    KillAgent
    | PauseAgent
    | CrashCoordinator
    | CrashReplica
    | PauseReplica
    | PartitionReplica
    | Partition
    | LinkDelay
    | LinkLoss,
    Field(discriminator="kind"),
]
_KINDS: dict[str, FaultKind] = {
    "kill_agent": FaultKind.KILL_AGENT,
    "pause_agent": FaultKind.PAUSE_AGENT,
    "crash_coordinator": FaultKind.CRASH_COORDINATOR,
    "crash_replica": FaultKind.CRASH_REPLICA,
    "pause_replica": FaultKind.PAUSE_REPLICA,
    "partition_replica": FaultKind.PARTITION_REPLICA,
    "partition": FaultKind.PARTITION,
    "link_delay": FaultKind.LINK_DELAY,
    "link_loss": FaultKind.LINK_LOSS,
}


def check_faults(scenario: Scenario) -> None:
    """Cross-field rules: named agents exist, counts fit, the transport can do it."""
    known = scenario.agents.count
    for index, fault in enumerate(scenario.faults):
        where = f"faults[{index}]"
        if fault.until is not None and fault.every is None:
            raise problem("expected every: together with until:", f"{where}.until")
        if fault.at >= scenario.duration:
            expected = f"expected a time before the end of the run ({num(scenario.duration)})"
            raise problem(f"{expected}, got {num(fault.at)}", f"{where}.at")
        if isinstance(fault, _AgentFault):
            _check_agents(scenario, fault, where, known)
        real = "real" in scenario.backends
        if fault.kind in REPLICA_KINDS or scenario.consensus is not None:
            continue  # what replicas run is checked by ``harness.scenario.consensus``
        if scenario.topology.tree:
            continue  # what a tree runs is checked by ``harness.scenario.topology``
        if real and scenario.transport == "inproc" and fault.kind not in INPROC_FAULTS:
            expected = "expected transport: tcp (the inproc coordinator shares the agents' loop"
            raise problem(f"{expected}; inproc runs {', '.join(INPROC_FAULTS)})", f"{where}.kind")


def _check_agents(scenario: Scenario, fault: _AgentFault, where: str, known: int) -> None:
    if fault.count is not None and fault.count > known:
        expected = f"expected at most agents.count ({known})"
        raise problem(f"{expected}, got {fault.count}", f"{where}.count")
    ids = {scenario.agents.agent_id(i) for i in range(known)} if fault.agents else set()
    for position, agent in enumerate(fault.agents or []):
        if agent not in ids:
            first, last = scenario.agents.agent_id(0), scenario.agents.agent_id(known - 1)
            expected = f"expected an agent id from {first} to {last}"
            raise problem(f"{expected}, got '{agent}'", f"{where}.agents[{position}]")


def compile_faults(scenario: Scenario) -> tuple[Fault, ...]:
    """Every fault injection of the timeline, in time order, with its agents chosen."""
    rng = random.Random(f"{scenario.seed}:faults")
    ids = [scenario.agents.agent_id(i) for i in range(scenario.agents.count)]
    expanded: list[tuple[float, int, Fault]] = []
    for index, spec in enumerate(scenario.faults):
        for at in spec.times(scenario.duration):
            agents = _choose(spec, ids, rng)
            if scenario.transport == "tcp" and isinstance(spec, _AgentFault):
                agents = _whole_workers(agents, ids, scenario.agents.workers)
            fault = Fault(
                fault_id=0,
                at=at,
                kind=_KINDS[spec.kind],
                duration=_duration(spec),
                agents=agents,
                delay=spec.delay_ms / 1000.0 if isinstance(spec, LinkDelay) else 0.0,
                loss=spec.loss if isinstance(spec, LinkLoss) else 0.0,
                node=_node(spec),
            )
            expanded.append((at, index, fault))
    expanded.sort(key=lambda item: (item[0], item[1]))
    return tuple(
        Fault(i, f.at, f.kind, f.duration, f.agents, f.delay, f.loss, f.node)
        for i, (_, _, f) in enumerate(expanded)
    )


def _node(spec: _Fault) -> str:
    """The coordinator a crash hits: "" for the root; a replica fault's ``node``."""
    if isinstance(spec, (CrashReplica, PauseReplica, PartitionReplica)):
        return spec.node
    node = spec.node if isinstance(spec, CrashCoordinator) else None
    return "" if node is None or node == COORDINATOR_ID else node


def _duration(spec: _Fault) -> float:
    if isinstance(spec, (KillAgent, CrashCoordinator, CrashReplica)):
        return spec.restart_after
    lasting = (PauseAgent, PauseReplica, PartitionReplica, Partition, LinkDelay, LinkLoss)
    assert isinstance(spec, lasting)
    return spec.duration


def _choose(spec: _Fault, ids: list[str], rng: random.Random) -> tuple[str, ...]:
    if not isinstance(spec, _AgentFault):
        return ()
    if spec.agents is not None:
        return tuple(spec.agents)
    if spec.count is not None:
        return tuple(sorted(rng.sample(ids, spec.count)))
    if isinstance(spec, (KillAgent, PauseAgent, Partition)):
        return (ids[rng.randrange(len(ids))],)
    return tuple(ids)


def _whole_workers(agents: tuple[str, ...], ids: list[str], workers: int) -> tuple[str, ...]:
    """Every agent sharing a worker process with one of ``agents``."""
    count = max(1, min(workers, len(ids)))
    index = {agent: i for i, agent in enumerate(ids)}
    hit = {index[agent] % count for agent in agents}
    return tuple(agent for i, agent in enumerate(ids) if i % count in hit)
