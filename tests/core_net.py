"""Test scaffolding for the core tests: ``Net``, settings, and settle helpers.

``Net`` extends the in-memory cluster with three test hooks: a log of every
message a node asked to send, a ``block`` predicate that silently drops
chosen messages (a partition, a lost reply), and ``checks`` run after every
step of the simulation (invariants that must hold at all times).
"""

from collections.abc import Callable

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import (
    Message,
)
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Cluster, Faults

SETTINGS = ProtocolSettings(
    heartbeat_interval=0.1,
    failure_after=0.5,
    ack_timeout=0.05,
    request_timeout=0.1,
    busy_retry=0.01,
)
QUIET = ProtocolSettings(  # nobody is declared failed while a test blocks its messages
    heartbeat_interval=0.1,
    failure_after=1000.0,
    ack_timeout=0.05,
    request_timeout=0.1,
    busy_retry=0.01,
)

Blocker = Callable[[str, str, Message], bool]


class Net(Cluster):
    """A ``Cluster`` that records sends, can block messages and checks invariants."""

    def __init__(
        self,
        settings: ProtocolSettings = SETTINGS,
        faults: Faults | None = None,
        seed: int = 0,
        durable: bool = False,
    ) -> None:
        super().__init__(settings, faults, seed)
        if durable:
            self.coordinator = Coordinator(COORD, settings, durable_memory=True)
        self.log: list[tuple[float, str, str, Message]] = []
        self.block: Blocker | None = None
        self.checks: list[Callable[[], None]] = []
        self.steps = 0
        self.max_steps = 100_000  # fail, rather than hang, if a node starts spinning

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.log.append((self.now, src, dst, msg))
        if self.block is not None and self.block(src, dst, msg):
            return
        super()._send(src, dst, msg)

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        super()._flush(src, node)
        self.steps += 1
        assert self.steps <= self.max_steps, f"runaway simulation at t={self.now:.3f}"
        for check in self.checks:
            check()

    def msgs(self, kind: type, src: str | None = None, dst: str | None = None) -> list:
        """Messages of type ``kind`` sent (before any loss), optionally by/to a node."""
        return [
            m
            for _, s, d, m in self.log
            if type(m) is kind and (src is None or s == src) and (dst is None or d == dst)
        ]

    def call(self, origin: str, method: str, *args: object, **kwargs: object) -> None:
        """Make agent ``origin`` issue a request now and put it on the wire."""
        agent = self.agents[origin]
        getattr(agent, method)(*args, now=self.now, **kwargs)
        self._flush(origin, agent)

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)


def unique(agent: Agent) -> list[int]:
    """Op ids handled (not suppressed as duplicates) at ``agent``."""
    return [c.op_id for c in agent.completions if not c.duplicate]


def quiet(net: Net) -> bool:
    """Nothing left in flight, queued or pending anywhere."""
    coordinator = net.coordinator
    return (
        all(not s.inflight and not s.backlog and not s.tasks for s in coordinator.sessions.values())
        and not coordinator.tasks
        and not coordinator.unassigned
        and not coordinator._done_pending
        and all(agent.pending == 0 for agent in net.agents.values())
    )


def settle(net: Net, limit: float = 30.0) -> None:
    """Run until nothing is left in flight (retries back off, so no fixed time)."""
    deadline = net.now + limit
    while not quiet(net) and net.now < deadline:
        net.advance(0.05)
    coordinator = net.coordinator
    for session in coordinator.sessions.values():
        assert not session.inflight, (session.node_id, session.inflight)
        assert not session.backlog, (session.node_id, session.backlog)
        assert not session.tasks, (session.node_id, session.tasks)
    assert not coordinator.tasks
    assert not coordinator.unassigned
    assert not coordinator._done_pending
    for agent in net.agents.values():
        assert agent.pending == 0, agent.node_id


def started(*agents: tuple[str, tuple[str, ...], tuple[str, ...]], **kw: object) -> Net:
    """A net with ``(id, capabilities, subscriptions)`` agents, all registered."""
    net = Net(**kw)  # type: ignore[arg-type]
    for node_id, caps, subs in agents:
        net.add_agent(node_id, caps, subs)
    net.advance(0.01)
    assert all(agent.registered for agent in net.agents.values())
    return net
