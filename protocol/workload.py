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
    return True


def issue_due(
    agents: Mapping[str, Agent],
    ops: Sequence[Operation],
    index: int,
    stop: int,
    offset: float,
    now: float,
    lag: IssueLag,
    touched: dict[str, Agent],
    touch_shed: bool = True,
) -> int:
    """Issue each of ``ops[index:stop]`` (sorted by time) whose time ``op.at +
    offset`` has come by ``now``, on its origin agent, noting it in ``lag`` and
    the agent in ``touched``; return the index of the first op left. The real
    drivers' replay loop, kept here so that it runs compiled with the core: far
    past capacity the load generator refuses most ops at the door, and its
    cost per op decides how much CPU the system keeps. Without ``touch_shed``
    an agent that only shed ops is not noted (it has nothing to send; a driver
    that reads ``Agent.shed`` itself need not visit it)."""
    while index < stop:
        op = ops[index]
        due = op.at + offset
        if due > now:
            break
        lag.issued_at(due, now)
        origin = op.origin
        agent = agents[origin]
        if issue(agent, op, now, due) or touch_shed:
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
