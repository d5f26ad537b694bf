"""Compile a scenario into one deterministic plan that both drivers replay.

How it works:

1. Agents. Agent ``i`` is ``f"{id_prefix}-{i:05d}"``. A generator seeded
   ``"{seed}:agents"`` gives each agent each capability with probability
   ``share``; agent 0 always gets every capability, so every task has a
   capable worker. A generator seeded ``"{seed}:topics"`` picks, for each
   topic, ``fanout`` distinct agents (``rng.sample``) and writes each of those
   subscriptions either as the exact topic or as the wildcard
   ``"{prefix}.t{i}.*"`` (with probability ``wildcard_share``). Each agent's
   subscriptions are stored as a sorted tuple.
2. Expected recipients per topic are computed once, with
   ``protocol.topics.matches``: each distinct pattern is matched against every
   topic, and an agent counts for a topic when any of its patterns matches.
   Per publish that is then one list lookup.
3. Streams. Stream ``k`` of the workload gets its own generator seeded
   ``"{seed}:stream:{k}"``, so adding a stream does not change the others.
   Arrival times in ``[0, duration)``: *constant* is ``i / rate``; *poisson*
   adds exponential gaps; *ramp* is a non-homogeneous Poisson process built by
   inversion (unit-rate arrivals mapped through the inverse of the integrated
   linear rate); *steps* is a Poisson process per step. Then the stream's
   fields are drawn a whole column at a time, always in the same order:
   origins (uniform agent; for a task stream with ``submitted_at``, the same
   draw mapped onto the agents attached to that coordinator), targets (topic,
   other agent, namespace/key), sizes, and for memory the verbs; a task's
   ``work`` is copied onto each of its operations. Expected completions follow: the topic's
   recipient count for a publish, ``count - 1`` for a broadcast, 1 otherwise.
4. The columns of all streams are concatenated, stably sorted by time (so
   ties keep ``(stream index, position in stream)`` order) and turned into
   ``Operation``s numbered ``op_id = 1..N`` in that order. ``itemgetter``
   reorders each column in C and the garbage collector is paused while the
   objects are created, which keeps 500k operations to about a second.

Only ``random.Random`` instances seeded from strings are used (string seeds
are hashed with SHA-512, independent of ``PYTHONHASHSEED``), so the same
scenario gives an equal ``Plan`` in any process.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from harness.scenario.faults import compile_faults
from harness.scenario.schema import (
    BroadcastStream,
    ConstantArrival,
    DirectStream,
    MemoryStream,
    PoissonArrival,
    PublishStream,
    RampArrival,
    Scenario,
    Size,
    StepsArrival,
    TaskStream,
    TopicsSection,
)
from native.heap import gc_paused
from protocol.messages import MemVerb
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.topics import matches
from protocol.topology import TreeNode, attach, tree

Arrival = ConstantArrival | PoissonArrival | RampArrival | StepsArrival
Stream = PublishStream | DirectStream | BroadcastStream | TaskStream | MemoryStream

DELIVERY_KINDS: tuple[OpKind, ...] = (OpKind.PUBLISH, OpKind.DIRECT, OpKind.BROADCAST)
_VALUE_VERBS = frozenset({int(MemVerb.PUT), int(MemVerb.CAS)})  # verbs that carry a value


@dataclass(slots=True)
class _Columns:
    """Operation fields, one list per field, streams appended one after another."""

    at: list[float] = field(default_factory=list)
    kind: list[OpKind] = field(default_factory=list)
    origin: list[str] = field(default_factory=list)
    target: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    verb: list[int] = field(default_factory=list)
    work: list[float] = field(default_factory=list)

    def operations(self) -> tuple[Operation, ...]:
        """Operations sorted by time, ties by append order; op ids 1..N in that order."""
        order = sorted(range(len(self.at)), key=self.at.__getitem__)  # stable sort
        columns: tuple[list[Any], ...] = (self.at, self.kind, self.origin, self.target)
        columns += (self.size, self.expected, self.verb, self.work)
        return tuple(map(Operation, itertools.count(1), *(_reorder(c, order) for c in columns)))


def _reorder(column: list[Any], order: list[int]) -> Sequence[Any]:
    """``[column[i] for i in order]``, done in C by ``itemgetter``."""
    if len(order) < 2:
        return [column[i] for i in order]
    return itemgetter(*order)(column)  # type: ignore[no-any-return]


def compile_plan(scenario: Scenario) -> Plan:
    """The plan for ``scenario``: equal for equal scenarios, in any process."""
    with gc_paused():
        return _compile(scenario)


def _compile(scenario: Scenario) -> Plan:
    agents = build_agents(scenario)
    topics = scenario.topics.names()
    context = _Context(
        ids=[agent.agent_id for agent in agents],
        topics=topics,
        recipients=topic_recipients(agents, topics),
        coordinators=[agent.coordinator for agent in agents],
    )
    columns = _Columns()
    for index, stream in enumerate(scenario.workload):
        rng = random.Random(f"{scenario.seed}:stream:{index}")
        times = arrival_times(stream.arrival, scenario.duration, rng)
        _add_stream(columns, stream, times, context, rng)
    return Plan(
        seed=scenario.seed,
        duration=scenario.duration,
        warmup=scenario.warmup,
        agents=agents,
        operations=columns.operations(),
        settings=scenario.protocol_settings(),
        probe_interval=scenario.probes.interval,
        probe_deadline=scenario.probes.deadline,
        faults=compile_faults(scenario),
        tree=tree_of(scenario),
        replication=scenario.consensus.replication() if scenario.consensus else None,
        quorum=scenario.consensus.quorum() if scenario.consensus else None,
    )


def tree_of(scenario: Scenario) -> tuple[TreeNode, ...]:
    """The coordinators below the root (none for a flat topology)."""
    topology = scenario.topology
    return tree(topology.branching, topology.levels) if topology.tree else ()


# --------------------------------------------------------------------------- agents


def build_agents(scenario: Scenario) -> tuple[AgentSpec, ...]:
    """Every agent with its capabilities and sorted subscriptions."""
    section = scenario.agents
    capabilities = _assign_capabilities(scenario)
    subscriptions = _assign_subscriptions(scenario.topics, section.count, scenario.seed)
    coordinators = attach(section.count, tree_of(scenario))
    replication = scenario.consensus.replication() if scenario.consensus else None
    if replication is not None:  # every agent starts at the first replica
        coordinators = [replication.replicas[0]] * section.count
    return tuple(
        AgentSpec(
            section.agent_id(i),
            capabilities[i],
            tuple(sorted(subscriptions[i])),
            coordinators[i],
        )
        for i in range(section.count)
    )


def _assign_capabilities(scenario: Scenario) -> list[tuple[str, ...]]:
    rng = random.Random(f"{scenario.seed}:agents")
    offered = [(c.name, c.share) for c in scenario.agents.capabilities]
    every = tuple(name for name, _ in offered)
    result = [every]
    for _ in range(1, scenario.agents.count):
        result.append(tuple(name for name, share in offered if rng.random() < share))
    return result


def _assign_subscriptions(topics: TopicsSection, count: int, seed: int) -> list[list[str]]:
    rng = random.Random(f"{seed}:topics")
    result: list[list[str]] = [[] for _ in range(count)]
    for t in range(topics.count):
        exact, wildcard = topics.topic(t), topics.wildcard(t)
        for agent in rng.sample(range(count), topics.fanout):
            result[agent].append(wildcard if rng.random() < topics.wildcard_share else exact)
    return result


def topic_recipients(agents: tuple[AgentSpec, ...], topics: list[str]) -> list[int]:
    """For each topic, how many agents have at least one matching subscription."""
    patterns = {pattern for agent in agents for pattern in agent.subscriptions}
    hits = {p: {t for t, topic in enumerate(topics) if matches(p, topic)} for p in patterns}
    counts = [0] * len(topics)
    for agent in agents:
        matched: set[int] = set()
        for pattern in agent.subscriptions:
            matched |= hits[pattern]
        for t in matched:
            counts[t] += 1
    return counts


# --------------------------------------------------------------------------- arrivals


def arrival_times(arrival: Arrival, duration: float, rng: random.Random) -> list[float]:
    """Sorted arrival times in ``[0, duration)`` for one stream."""
    if isinstance(arrival, ConstantArrival):
        return _constant(arrival.rate, duration)
    if isinstance(arrival, PoissonArrival):
        return _poisson(arrival.rate, 0.0, duration, rng)
    if isinstance(arrival, RampArrival):
        return _ramp(arrival.start, arrival.end, duration, rng)
    times: list[float] = []
    for start, end, rate in arrival.segments(duration):
        if rate > 0:
            times.extend(_poisson(rate, start, end, rng))
    return times


def _constant(rate: float, duration: float) -> list[float]:
    count = math.ceil(duration * rate)
    return [t for t in (i / rate for i in range(count)) if t < duration]


def _poisson(rate: float, start: float, end: float, rng: random.Random) -> list[float]:
    times: list[float] = []
    gap = rng.expovariate
    t = start + gap(rate)
    while t < end:
        times.append(t)
        t += gap(rate)
    return times


def _ramp(start: float, end: float, duration: float, rng: random.Random) -> list[float]:
    """Rate ``start + (end - start) * t / duration``, by inverting its integral.

    The integral is ``L(t) = a t^2 + b t`` with ``a = (end - start) / (2 duration)``
    and ``b = start``; unit-rate arrivals ``s`` map to ``t = 2 s / (b + sqrt(b^2 + 4 a s))``,
    the stable form of the quadratic's root, valid for rising and falling ramps.
    """
    a = (end - start) / (2 * duration)
    b = start
    total = a * duration * duration + b * duration
    times: list[float] = []
    s = rng.expovariate(1.0)
    while s < total:
        t = 2 * s / (b + math.sqrt(max(b * b + 4 * a * s, 0.0)))
        if t < duration:
            times.append(t)
        s += rng.expovariate(1.0)
    return times


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class _Context:
    """What every stream draws from: agent ids, topic names, recipients per topic."""

    ids: list[str]
    topics: list[str]
    recipients: list[int]
    coordinators: list[str]  # each agent's

    def attached_to(self, coordinator: str) -> list[int]:
        """The indices of the agents attached to ``coordinator``."""
        return [i for i, c in enumerate(self.coordinators) if c == coordinator]


def _uniform(n: int, count: int, rng: random.Random) -> list[int]:
    """``count`` indices uniform in ``range(n)``: ``floor(random() * n)``, fast, bias ~n/2**53."""
    draw = rng.random
    return [int(draw() * n) for _ in range(count)]


def _add_stream(
    columns: _Columns, stream: Stream, times: list[float], ctx: _Context, rng: random.Random
) -> None:
    """Append one stream's operations; the random draws happen in a fixed order."""
    count = len(times)
    origins = _uniform(len(ctx.ids), count, rng)
    if isinstance(stream, TaskStream) and stream.submitted_at is not None:
        local = ctx.attached_to(stream.submitted_at)
        origins = [local[i * len(local) // len(ctx.ids)] for i in origins]
    kind, targets, expected = _targets(stream, origins, ctx, rng)
    sizes = _sizes(stream.size, count, rng)
    verbs = [0] * count
    if isinstance(stream, MemoryStream):
        verbs = _verbs(stream, count, rng)
        sizes = [s if v in _VALUE_VERBS else 0 for s, v in zip(sizes, verbs, strict=True)]
        if stream.writers == "owner":  # no draw: the same plan otherwise
            origins = _owners(stream, targets, verbs, origins, len(ctx.ids))
    columns.at.extend(times)
    columns.kind.extend([kind] * count)
    columns.origin.extend([ctx.ids[i] for i in origins])
    columns.target.extend(targets)
    columns.size.extend(sizes)
    columns.expected.extend(expected)
    columns.verb.extend(verbs)
    columns.work.extend([stream.work if isinstance(stream, TaskStream) else 0.0] * count)


def _owners(
    stream: MemoryStream, targets: list[str], verbs: list[int], origins: list[int], agents: int
) -> list[int]:
    """Each write's origin made its key's owner: key ``k`` of namespace ``n`` belongs
    to agent ``(n * keys + k) mod agents``; reads keep their origins."""
    owned = list(origins)
    for i, (target, verb) in enumerate(zip(targets, verbs, strict=True)):
        if verb != MemVerb.GET:
            namespace, key = target.split("/")
            owned[i] = (int(namespace[2:]) * stream.keys + int(key[3:])) % agents
    return owned


def _targets(
    stream: Stream, origins: list[int], ctx: _Context, rng: random.Random
) -> tuple[OpKind, list[str], list[int]]:
    """The op kind, each op's target and each op's expected completions."""
    count = len(origins)
    if isinstance(stream, PublishStream):
        picks = _uniform(len(ctx.topics), count, rng)
        return OpKind.PUBLISH, [ctx.topics[t] for t in picks], [ctx.recipients[t] for t in picks]
    if isinstance(stream, DirectStream):
        return OpKind.DIRECT, _other_agents(origins, ctx.ids, rng), [1] * count
    if isinstance(stream, BroadcastStream):
        return OpKind.BROADCAST, [""] * count, [len(ctx.ids) - 1] * count
    if isinstance(stream, TaskStream):
        return OpKind.TASK, [stream.capability] * count, [1] * count
    namespaces = _uniform(stream.namespaces, count, rng)
    keys = _uniform(stream.keys, count, rng)
    targets = [f"ns{n}/key{k}" for n, k in zip(namespaces, keys, strict=True)]
    return OpKind.MEMORY, targets, [1] * count


def _other_agents(origins: list[int], ids: list[str], rng: random.Random) -> list[str]:
    """A uniformly chosen destination different from each origin."""
    picks = _uniform(len(ids) - 1, len(origins), rng)
    return [ids[p + 1 if p >= o else p] for p, o in zip(picks, origins, strict=True)]


def _sizes(size: Size, count: int, rng: random.Random) -> list[int]:
    if size.min == size.max:
        return [size.min] * count
    return [size.min + i for i in _uniform(size.max - size.min + 1, count, rng)]


def _verbs(stream: MemoryStream, count: int, rng: random.Random) -> list[int]:
    pairs = stream.mix.weights()
    verbs = [int(verb) for verb, _ in pairs]
    cumulative = list(itertools.accumulate(weight for _, weight in pairs))
    total = cumulative[-1]
    last = len(verbs) - 1
    draw = rng.random
    return [verbs[min(bisect.bisect(cumulative, draw() * total), last)] for _ in range(count)]


# --------------------------------------------------------------------------- stats


def plan_stats(plan: Plan) -> dict[str, Any]:
    """Figures for display: ops and expected completions per kind, offered rates.

    ``expected_deliveries`` counts publish, direct and broadcast recipients (as the
    metrics module's deliveries do); ``expected_completions`` counts every kind.
    """
    ops: Counter[str] = Counter()
    completions: Counter[str] = Counter()
    for op in plan.operations:
        name = op.kind.name.lower()
        ops[name] += 1
        completions[name] += op.expected
    deliveries = sum(completions[kind.name.lower()] for kind in DELIVERY_KINDS)
    total = sum(completions.values())
    duration = plan.duration
    return {
        "agents": len(plan.agents),
        "duration": duration,
        "warmup": plan.warmup,
        "operations": len(plan.operations),
        "ops_by_kind": {kind.name.lower(): ops[kind.name.lower()] for kind in OpKind},
        "expected_by_kind": {kind.name.lower(): completions[kind.name.lower()] for kind in OpKind},
        "expected_deliveries": deliveries,
        "expected_completions": total,
        "offered_ops_per_s": len(plan.operations) / duration,
        "offered_deliveries_per_s": deliveries / duration,
        "offered_completions_per_s": total / duration,
        **({"faults": _fault_lines(plan)} if plan.faults else {}),
    }


def _fault_lines(plan: Plan) -> list[str]:
    """One line per fault: when, what, how long and which agents."""
    lines = []
    for fault in plan.faults:
        who = f"{len(fault.agents)} agents" if len(fault.agents) > 3 else ", ".join(fault.agents)
        extra = f", +{fault.delay * 1000:g} ms" if fault.delay else ""
        extra += f", loss {fault.loss:g}" if fault.loss else ""
        target = f" on {who}" if who else ""
        lines.append(
            f"{fault.at:g} s {fault.kind.name.lower()}{target} for {fault.duration:g} s{extra}"
        )
    return lines
