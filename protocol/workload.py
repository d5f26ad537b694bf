"""Turning a plan operation into a request on the origin agent.

Both drivers call ``issue(agent, op, now)`` at the operation's scheduled
time, so the real system and the model send byte-identical requests.
``remembered`` gives a restarted agent what its earlier lives handled.
``IssueLag`` keeps how late a driver's load generator issued ops, so a run
whose generator fell behind says so (as k6 warns of dropped iterations).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from protocol.agent import Agent
from protocol.messages import MemVerb
from protocol.payload import make_payload, task_payload
from protocol.plan import Operation, OpKind
from protocol.records import Completion


def split_memory_target(target: str) -> tuple[str, str]:
    """``"ns3/key17"`` -> ``("ns3", "key17")``."""
    namespace, _, key = target.partition("/")
    return namespace, key


def issue(agent: Agent, op: Operation, now: float, due: float | None = None) -> bool:
    """Make ``agent`` send the request for ``op``, or shed it at the door: when the
    agent's queue is already longer than it can send in time (``Agent.admits``),
    or when ``due``, the op's arrival time on the agent's clock (its scheduled
    time), lies ``shed_after`` or more before ``now``: a generator that fell
    that far behind has made the op wait its whole budget already. Then nothing
    is built, and a refusal costs next to nothing. Returns whether a request was
    made (False: shed at the door)."""
    if not agent.admits(now if due is None else due, now):
        agent.refuse(op.op_id)
        return False
    _send(agent, op, now)
    return True


def _send(agent: Agent, op: Operation, now: float) -> None:
    """Build ``op``'s request and queue it on ``agent`` (admitted at the door)."""
    kind = op.kind
    if kind == OpKind.PUBLISH:
        agent.publish(op.op_id, op.target, make_payload(op.op_id, op.size), now)
    elif kind == OpKind.DIRECT:
        agent.direct(op.op_id, op.target, make_payload(op.op_id, op.size), now)
    elif kind == OpKind.BROADCAST:
        agent.broadcast(op.op_id, make_payload(op.op_id, op.size), now)
    elif kind == OpKind.TASK:
        agent.submit_task(op.op_id, op.target, task_payload(op.op_id, op.size, op.work), now)
    else:
        namespace, key = split_memory_target(op.target)
        writes = op.verb in (MemVerb.PUT, MemVerb.CAS)
        value = make_payload(op.op_id, op.size) if writes else b""
        agent.memory(op.op_id, op.verb, namespace, key, value, now)


class Schedule:
    """A run's ops in time order, with the three fields the replay loop reads for
    every op (time, origin, id) taken out once into lists.

    Far past capacity the loop refuses most of the ops it reads, so what it costs
    to read one decides how much CPU the system keeps. ``Operation`` is a frozen
    dataclass that compiled code reads through generic attribute lookups; reading
    the columns instead took a refusal at the door from 159 ns to 85-91 ns
    (compiled; 4M refusals in a row)."""

    def __init__(self, ops: Sequence[Operation]) -> None:
        self.ops: list[Operation] = list(ops)
        self.times: list[float] = [op.at for op in self.ops]
        self.origins: list[str] = [op.origin for op in self.ops]
        self.ids: list[int] = [op.op_id for op in self.ops]

    def __len__(self) -> int:
        return len(self.ops)


def issue_due(
    agents: Mapping[str, Agent],
    schedule: Schedule,
    index: int,
    stop: int,
    offset: float,
    now: float,
    lag: IssueLag,
    touched: dict[str, Agent],
    touch_shed: bool = True,
) -> int:
    """Issue each op of ``schedule`` from ``index`` up to ``stop`` whose time plus
    ``offset`` has come by ``now``, on its origin agent, noting it in ``lag`` and
    the agent in ``touched``; return the index of the first op left. The real
    drivers' replay loop, kept here so that it runs compiled with the core: far
    past capacity the load generator refuses most ops at the door, and its
    cost per op decides how much CPU the system keeps. Without ``touch_shed``
    an agent that only shed ops is not noted (it has nothing to send; a driver
    that reads ``Agent.shed`` itself need not visit it)."""
    times, origins = schedule.times, schedule.origins
    while index < stop:
        due = times[index] + offset
        if due > now:
            break
        lag.issued_at(due, now)
        origin = origins[index]
        agent = agents[origin]
        if agent.admits(due, now):
            _send(agent, schedule.ops[index], now)
            touched[origin] = agent
        else:
            agent.refuse(schedule.ids[index])
            if touch_shed:
                touched[origin] = agent
        index += 1
    return index


def remembered(
    ops: Mapping[int, Operation], completions: Iterable[Completion]
) -> tuple[list[tuple[str, int]], list[int]]:
    """What an agent's earlier lives handled, for ``Agent.recall``: the
    ``(origin, op_id)`` of its deliveries and the op ids of its task results."""
    handled: list[tuple[str, int]] = []
    results: list[int] = []
    for completion in completions:
        op = ops.get(completion.op_id)
        if op is None or completion.duplicate:
            continue
        if op.kind == OpKind.TASK:
            results.append(op.op_id)
        elif op.kind != OpKind.MEMORY:
            handled.append((op.origin, op.op_id))
    return handled, results


LATE = 0.01  # an op issued this long after its scheduled time counts as late


class IssueLag:
    """How far behind its schedule a load generator issued ops."""

    __slots__ = ("late", "worst", "issued")

    def __init__(self) -> None:
        self.late = 0
        self.worst = 0.0
        self.issued = 0

    def issued_at(self, scheduled: float, now: float) -> None:
        """One op due at ``scheduled`` was issued at ``now`` (same clock)."""
        self.issued += 1
        lag = now - scheduled
        if lag > LATE:
            self.late += 1
            if lag > self.worst:
                self.worst = lag

    def note(self) -> str | None:
        """A line for the run's notes when ops went out late, else None."""
        if not self.late:
            return None
        return (
            f"load generator behind: {self.late} of {self.issued} ops issued more than "
            f"{LATE * 1000:g} ms after their scheduled time (worst {self.worst * 1000:,.1f} ms); "
            "their latency counts from the schedule, so it includes that lag"
        )
