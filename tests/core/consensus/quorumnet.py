"""An in-memory quorum store: storage replicas, clients, a faulty network, and the history.

Replicas and clients are nodes of one ``LossyWire`` (loss, duplication,
reordering, partitions, crashes). A replica's driver loop is ``flush``: take
what it must make durable and its answers, write the cells to its storage (a
dict that survives a crash), then put the answers on the wire. ``crash``
forgets a replica; with ``torn`` it dies in the middle of its next flush,
after writing a prefix of the cells and before sending anything. ``restart``
builds it again from its storage. Clients (``QuorumClient``) never crash here.

Time advances by ``TICK`` each round. Every operation a client submits is
recorded with the time it was submitted and the time its answer was collected,
as a ``MemOp`` for the linearizability checker (``history``; an operation not
answered yet is pending).
"""

from __future__ import annotations

import random
from typing import NamedTuple

from harness.metrics.linearizable import VERB_OF, MemOp
from protocol.consensus.quorum import Cell, QuorumConfig, StorageReplica
from protocol.consensus.quorumclient import QuorumClient
from protocol.messages import MemReply, MemRequest, MemVerb, Message
from protocol.payload import checksum
from protocol.settings import ProtocolSettings
from tests.core.consensus.lossywire import LossyWire

TICK = 0.01
SETTINGS = ProtocolSettings()


class Wired(NamedTuple):
    src: str
    dst: str
    msg: Message


class ReplicaNode:
    def __init__(self, net: QuorumNet, replica: StorageReplica) -> None:
        self.net, self.replica = net, replica

    def step(self, m: Wired) -> None:
        self.replica.receive(m.src, m.msg)

    def tick(self) -> None:
        pass


class ClientNode:
    def __init__(self, net: QuorumNet, client: QuorumClient) -> None:
        self.net, self.client = net, client

    def step(self, m: Wired) -> None:
        self.client.receive(m.src, m.msg, self.net.now)

    def tick(self) -> None:
        deadline = self.client.next_deadline()
        if deadline is not None and deadline <= self.net.now:
            self.client.on_timer(self.net.now)


class QuorumNet(LossyWire):
    def __init__(
        self,
        replicas: int = 3,
        clients: int = 2,
        read: int | None = None,
        write: int | None = None,
        repair: str = "sync",
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
    ) -> None:
        super().__init__()
        majority = replicas // 2 + 1
        self.replicas = tuple(f"s{i}" for i in range(1, replicas + 1))
        self.clients = tuple(f"c{i}" for i in range(1, clients + 1))
        self.ids = self.replicas + self.clients
        self.config = QuorumConfig(
            self.replicas, read or majority, write or majority, repair, retry=3 * TICK
        )
        self.rng = random.Random(seed)
        self.loss, self.duplicate = loss, duplicate
        self.now = 0.0
        self.stored: dict[str, dict[tuple[str, str], Cell]] = {r: {} for r in self.replicas}
        self.tearing: set[str] = set()
        self.nodes: dict[str, ReplicaNode | ClientNode] = {}
        for replica in self.replicas:
            self._start(replica)
        for client in self.clients:
            quorum = QuorumClient(client, self.config, SETTINGS.token)
            self.nodes[client] = ClientNode(self, quorum)
        self.calls: dict[tuple[str, int], MemOp] = {}  # (client, op id) -> as submitted
        self.answered: list[MemOp] = []
        self.replies: list[MemReply] = []  # every answer, as the clients got them
        self.next_op = 0

    def _start(self, replica: str) -> None:
        self.nodes[replica] = ReplicaNode(
            self, StorageReplica(replica, SETTINGS, cells=self.stored[replica])
        )

    def client(self, name: str) -> QuorumClient:
        node = self.nodes[name]
        assert isinstance(node, ClientNode)
        return node.client

    def replica(self, name: str) -> StorageReplica:
        node = self.nodes[name]
        assert isinstance(node, ReplicaNode)
        return node.replica

    def flush(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if isinstance(node, ReplicaNode):
            durable, out = node.replica.take()
            if node_id in self.tearing:
                kept = self.rng.randrange(len(durable) + 1)
                durable = durable[:kept]
            storage = self.stored[node_id]
            for write in durable:
                storage[(write.namespace, write.key)] = write.cell
            if node_id in self.tearing:
                self.tearing.discard(node_id)
                self.dead.add(node_id)
                return
        else:
            out = node.client.drain()
            self.replies.extend(node.client.replies)
            for reply in node.client.replies:
                self._answer(node_id, reply.op_id, reply.ok, reply.version, reply.value)
            node.client.replies.clear()
        self.wire.extend(Wired(node_id, dst, msg) for dst, msg in out)

    def round(self) -> None:
        self.now += TICK
        super().round()

    # --- faults --------------------------------------------------------------------

    def crash(self, replica: str, torn: bool = False) -> None:
        if torn:
            self.tearing.add(replica)  # dies in its next flush
        else:
            self.dead.add(replica)

    def restart(self, replica: str) -> None:
        self.tearing.discard(replica)
        self.dead.discard(replica)
        self._start(replica)

    # --- operations and their history ------------------------------------------------

    def submit(
        self, client: str, verb: MemVerb, key: str, value: bytes = b"", expected: int = 0
    ) -> int:
        self.next_op += 1
        op_id = self.next_op
        written = checksum(value) if verb in (MemVerb.PUT, MemVerb.CAS) else 0
        self.calls[(client, op_id)] = MemOp(
            client, "ns", key, VERB_OF[verb], self.now, checksum=written, expected=expected
        )
        request = MemRequest(op_id, verb, "ns", key, value, expected)
        self.client(client).submit(request, self.now)
        self.flush(client)
        return op_id

    def _answer(self, client: str, op_id: int, ok: bool, version: int, value: bytes) -> None:
        op = self.calls.pop((client, op_id))
        read = checksum(value) if op.verb is VERB_OF[MemVerb.GET] and ok else 0
        self.answered.append(
            MemOp(
                op.client,
                op.namespace,
                op.key,
                op.verb,
                op.invoked,
                self.now,
                op.checksum,
                op.expected,
                ok,
                version,
                read,
            )
        )

    @property
    def pending(self) -> list[MemOp]:
        return list(self.calls.values())

    def done(self) -> bool:
        return not self.calls

    def resubmit(self) -> None:
        pass  # a client asks again on its own

    def history(self) -> list[MemOp]:
        return [*self.answered, *self.pending]
