"""The scenario's ``consensus``: a replicated coordinator instead of a single one.

``consensus: {protocol: raft, replicas: 3}`` runs the coordinator as
``replicas`` replicas that agree through Raft (``protocol.consensus``), the
agents following the leader. ``tick_ms`` is Raft's tick (a leader's heartbeat
interval) and ``election_ticks`` a follower's patience in ticks (its election
timeout is between that and twice that). Absent, the coordinator is one process.

``protocol: pbft`` runs the same replicated coordinator on PBFT
(``protocol.consensus.pbft``), with 4 or 7 replicas (3f+1); ``election_ticks``
is then a backup's patience with a silent primary.

``protocol: fast-paxos`` runs it on Fast Paxos (``protocol.consensus.fastpaxos``),
with 3 to 7 replicas (classic quorum a majority, fast quorum as Lamport gives
it: 3 of 3, 4 of 5); ``election_ticks`` is a follower's patience with a silent
coordinator.

``protocol: quorum`` leaves the coordinator alone (the bus) and keeps the memory
store on ``replicas`` storage replicas instead (Dynamo's N/R/W,
``protocol.consensus.quorum``): each agent reads a key from ``read`` of them and
writes it to ``write`` (majorities by default), and ``repair`` says whether a
read that found a stale replica repairs it before answering (``sync``, the
default: linearizable with one writer per key when R + W > N) or after
(``async``, Dynamo's). ``tick_ms`` is then a client's first wait before it asks
silent replicas again. ``read``, ``write`` and ``repair`` are for quorum only.

``check`` says what cannot run, field by field, and the loader refuses it
with exit 2: pbft with other than 4 or 7 replicas; fast-paxos with fewer than
3; read or write quorums larger than the replicas; a transport other than tcp
(replicas run as tcp processes); a tree; faults other than ``crash_replica``,
``pause_replica`` and ``partition_replica`` (whose ``node`` is ``leader`` or a
replica id); with quorum, ``leader`` (storage replicas have none) and
``partition_replica`` (not built for storage replicas yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.errors import problem
from harness.scenario.faults import REPLICA_KINDS
from protocol.consensus.quorum import QuorumConfig, default_quorums
from protocol.plan import Replication

if TYPE_CHECKING:
    from harness.scenario.schema import Scenario

BUILT = ("raft", "quorum", "pbft", "fast-paxos")


class ConsensusSection(BaseModel):
    """How the coordinator is replicated."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    protocol: Literal["raft", "quorum", "pbft", "fast-paxos"] = "raft"
    replicas: int = Field(default=3, ge=1, le=7)
    tick_ms: float = Field(default=50.0, gt=0, le=10_000)
    election_ticks: int = Field(default=10, ge=2, le=1000)
    read: int | None = Field(default=None, ge=1, le=7)
    write: int | None = Field(default=None, ge=1, le=7)
    repair: Literal["sync", "async"] | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(f"r{i}" for i in range(1, self.replicas + 1))

    def replication(self) -> Replication | None:
        """The replicated coordinator (None with quorum: the coordinator is one)."""
        if self.protocol == "quorum":
            return None
        return Replication(self.protocol, self.ids, self.tick_ms / 1000, self.election_ticks)

    def quorum(self) -> QuorumConfig | None:
        """The quorum store's configuration (None unless the protocol is quorum)."""
        if self.protocol != "quorum":
            return None
        read, write = default_quorums(self.replicas)
        return QuorumConfig(
            self.ids,
            self.read or read,
            self.write or write,
            self.repair or "sync",
            self.tick_ms / 1000,
        )


def check(scenario: Scenario) -> None:
    section = scenario.consensus
    if section is None:
        for index, fault in enumerate(scenario.faults):
            if fault.kind in REPLICA_KINDS:
                expected = f"expected a consensus section (a replica for {fault.kind})"
                raise problem(f"{expected}, got none", f"faults[{index}].kind")
        return
    if section.protocol not in BUILT:
        built = " or ".join(BUILT)
        expected = f"expected protocol: {built} (the ones built yet; {section.protocol} is not)"
        raise problem(f"{expected}, got {section.protocol}", "consensus.protocol")
    if section.protocol != "quorum":
        for name in ("read", "write", "repair"):
            if getattr(section, name) is not None:
                expected = f"expected no {name} (it is quorum's), or protocol: quorum"
                raise problem(
                    f"{expected}, got {name} with {section.protocol}", f"consensus.{name}"
                )
    for name in ("read", "write"):
        size = getattr(section, name)
        if size is not None and size > section.replicas:
            expected = f"expected {name} at most replicas ({section.replicas})"
            raise problem(f"{expected}, got {size}", f"consensus.{name}")
    if section.protocol == "pbft" and section.replicas not in (4, 7):
        expected = "expected replicas: 4 or 7 for pbft (3f+1 replicas tolerate f that lie)"
        raise problem(f"{expected}, got {section.replicas}", "consensus.replicas")
    if section.protocol == "fast-paxos" and section.replicas < 3:
        expected = "expected replicas: 3 to 7 for fast-paxos (a fast quorum of fewer is all)"
        raise problem(f"{expected}, got {section.replicas}", "consensus.replicas")
    if scenario.transport != "tcp":
        expected = "expected transport: tcp (replicas run as processes on loopback)"
        raise problem(f"{expected}, got {scenario.transport}", "transport")
    if scenario.topology.tree:
        expected = "expected topology kind: flat (replicated trees are not built)"
        raise problem(f"{expected}, got hierarchical", "topology.kind")
    for index, fault in enumerate(scenario.faults):
        where = f"faults[{index}]"
        if fault.kind not in REPLICA_KINDS:
            kinds = ", ".join(REPLICA_KINDS)
            expected = f"expected kind: {kinds} (the faults replicas run yet)"
            raise problem(f"{expected}, got {fault.kind}", f"{where}.kind")
        ids = section.ids
        node = getattr(fault, "node", "leader")
        if section.protocol == "quorum":
            _check_quorum_fault(fault.kind, node, ids, where)
        elif node != "leader" and node not in ids:
            expected = f"expected leader or a replica id ({', '.join(ids)})"
            raise problem(f"{expected}, got {node!r}", f"{where}.node")


def _check_quorum_fault(kind: str, node: str, ids: tuple[str, ...], where: str) -> None:
    """A storage replica's fault: a crash or pause of a named replica."""
    if kind == "partition_replica":
        expected = (
            "expected crash_replica or pause_replica (storage replicas are not partitioned yet)"
        )
        raise problem(f"{expected}, got {kind}", f"{where}.kind")
    if node not in ids:
        expected = f"expected a replica id ({', '.join(ids)}; a quorum store has no leader)"
        raise problem(f"{expected}, got {node!r}", f"{where}.node")
