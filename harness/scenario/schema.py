"""The scenario schema: one YAML file that drives both the real system and the model.

How it works:

1. ``load_scenario(path)`` reads the file with a safe YAML loader that also
   rejects duplicate keys and reads ``1e3`` as a number (YAML 1.2 style).
   A missing file or broken YAML raises ``ScenarioError`` with the field
   ``(file)`` or ``(yaml)``; YAML errors carry the line and column.
2. The parsed mapping is validated by the pydantic v2 models below, all strict
   (no silent ``"10"`` -> ``10`` coercion; an integer is still accepted where a
   number is expected), frozen and with ``extra="forbid"`` so that a misspelt
   field is an error rather than a silently ignored default.
3. Cross-field rules (warm-up shorter than the run, fan-out not above the
   agent count, a task's capability being offered by some agent, ...) run in
   ``Scenario``'s after-validator. They raise ``PydanticCustomError`` of type
   ``"scenario"`` whose context carries the field path relative to the model.
4. Every pydantic error is turned into one plain-English line
   ``<file>: <field>: <expected>`` by ``harness.scenario.errors``. All lines go
   into one ``ScenarioError``; its ``field`` and ``expected`` are the first
   problem's.

The ``protocol:`` section is a model generated from ``ProtocolSettings``'s
dataclass fields and types, so a new protocol setting is accepted here as
soon as it exists. The ``model:`` section holds what-ifs that only the
simulator runs (a scenario using them may not ask for the ``real`` backend).
``Scenario.resolved_yaml()`` writes the scenario back with
every default filled in; loading that text again gives an equal ``Scenario``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.scenario.consensus import ConsensusSection
from harness.scenario.consensus import check as check_consensus
from harness.scenario.errors import (
    ScenarioError,
    Vocabulary,
    did_you_mean,
    from_validation,
    got,
    num,
    problem,
)
from harness.scenario.faults import FAULT_KINDS, FaultSpec, check_faults
from harness.scenario.source import read_yaml
from harness.scenario.topology import TopologySection
from harness.scenario.topology import check as check_topology
from protocol.messages import MemVerb
from protocol.payload import WORK_BYTES
from protocol.settings import ProtocolSettings

MAX_AGENTS = 200_000
MIN_SIZE = WORK_BYTES  # 8: room for a task's work (``protocol.payload``)
MAX_SIZE = 1_048_576
STREAM_KINDS: tuple[str, ...] = ("publish", "direct", "broadcast", "task", "memory")
ARRIVAL_PROCESSES: tuple[str, ...] = ("constant", "poisson", "ramp", "steps")
TARGET_METRICS: tuple[str, ...] = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "deliveries_per_s",
    "ops_per_s",
    "reliability",
    "uptime",
    "agents_coordinated",
    "lost",
    "duplicates",
    "recovery_p95_s",
    "detection_p95_s",
    "reregistered_p95_s",
    "lost_acked",
    "acked_writes_lost",
    "linearizable",
    "monitoring_coverage",
    "shed_ops",
    "overloaded",
    "latency_incomplete",
    "makespan_s",
    "imbalance",
    "occupancy_imbalance",
)
TARGET_OPS: tuple[str, ...] = ("<=", "<", ">=", ">", "==")

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_IDENT_PATTERN = r"^[A-Za-z0-9_-]+$"
_TOPIC_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
_PATTERN_WORDS = {
    _NAME_PATTERN: "expected letters, digits, '_', '-' or '.', starting with a letter or digit",
    _IDENT_PATTERN: "expected letters, digits, '_' or '-'",
    _TOPIC_PATTERN: "expected dot-separated levels of letters, digits, '_' or '-' (no wildcards)",
}
_THRESHOLD_RE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|<|>)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME_PATTERN)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=_IDENT_PATTERN)]
TopicPrefix = Annotated[str, Field(min_length=1, max_length=200, pattern=_TOPIC_PATTERN)]


# --------------------------------------------------------------------------- sections


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Capability(_Section):
    """A capability and the share of agents (chosen with the seed) that have it."""

    name: Name
    share: float = Field(gt=0, le=1)


def _default_capabilities() -> list[Capability]:
    return [Capability(name="compute", share=0.5)]


class AgentsSection(_Section):
    """How many agents, what they are called and what they can do."""

    count: int = Field(default=100, ge=1, le=MAX_AGENTS)
    id_prefix: Identifier = "agent"
    capabilities: list[Capability] = Field(default_factory=_default_capabilities)
    connections: Literal["multiplexed", "per_agent"] = "multiplexed"
    workers: int = Field(default=2, ge=1, le=256)

    @field_validator("capabilities")
    @classmethod
    def _unique_names(cls, value: list[Capability]) -> list[Capability]:
        seen: set[str] = set()
        for index, capability in enumerate(value):
            if capability.name in seen:
                raise problem(f"duplicate capability '{capability.name}'", f"[{index}].name")
            seen.add(capability.name)
        return value

    def agent_id(self, index: int) -> str:
        """The id of agent ``index`` (0-based)."""
        return f"{self.id_prefix}-{index:05d}"


class TopicsSection(_Section):
    """The topics publishes go to and how many agents follow each."""

    count: int = Field(default=10, ge=1, le=100_000)
    prefix: TopicPrefix = "swarm"
    fanout: int = Field(default=5, ge=0)
    wildcard_share: float = Field(default=0.2, ge=0, le=1)

    def topic(self, index: int) -> str:
        """The name of topic ``index``."""
        return f"{self.prefix}.t{index}.events"

    def wildcard(self, index: int) -> str:
        """The wildcard pattern that matches topic ``index``."""
        return f"{self.prefix}.t{index}.*"

    def names(self) -> list[str]:
        """Every topic name, in index order."""
        return [self.topic(i) for i in range(self.count)]


class ProbesSection(_Section):
    """Availability probes through the coordinator, for the uptime figure."""

    interval: float = Field(default=0.1, gt=0)
    deadline: float = Field(default=0.05, gt=0)


FROM_TOPOLOGY = ("task_placement",)  # settings the topology section sets (``tasks``)


def _protocol_section() -> type[BaseModel]:
    """A model with one optional field per ``ProtocolSettings`` field, same type and default."""
    hints = typing.get_type_hints(ProtocolSettings)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(ProtocolSettings):
        if item.name in FROM_TOPOLOGY:
            continue
        kind = hints[item.name]
        limits: dict[str, Any] = {int: {"ge": 0}, float: {"ge": 0}, str: {"min_length": 1}}.get(
            kind, {}
        )
        fields[item.name] = (kind, Field(default=item.default, **limits))
    return create_model("ProtocolSection", __base__=_Section, **fields)


class ModelSection(_Section):
    """How the model runs: its seeded replications, and what-ifs only the model runs
    (``sim``): a constant hop, a longer hop between coordinators of a tree, a
    coordinator on N hosts."""

    replications: int = Field(default=3, ge=1, le=100)
    hop_ms: float | None = Field(default=None, gt=0, le=60_000)
    tree_hop_ms: float | None = Field(default=None, gt=0, le=60_000)
    coordinator_hosts: int = Field(default=1, ge=1, le=1024)

    def what_ifs(self) -> list[str]:
        """The fields that ask for something the real system cannot run here."""
        asked = {
            "hop_ms": self.hop_ms is not None,
            "tree_hop_ms": self.tree_hop_ms is not None,
            "coordinator_hosts": self.coordinator_hosts > 1,
        }
        return [name for name, is_asked in asked.items() if is_asked]


if TYPE_CHECKING:  # a generated class is no type to a type checker; the base class is
    ProtocolSection = _Section
else:
    ProtocolSection = _protocol_section()


# --------------------------------------------------------------------------- arrivals


class ConstantArrival(_Section):
    """Evenly spaced arrivals, ``rate`` per second."""

    process: Literal["constant"]
    rate: float = Field(gt=0)

    def expected_count(self, duration: float) -> float:
        return self.rate * duration


class PoissonArrival(_Section):
    """A Poisson process: exponential gaps with mean ``1 / rate``."""

    process: Literal["poisson"]
    rate: float = Field(gt=0)

    def expected_count(self, duration: float) -> float:
        return self.rate * duration


class RampArrival(_Section):
    """A Poisson process whose rate goes linearly from ``from`` to ``to`` over the run."""

    process: Literal["ramp"]
    start: float = Field(alias="from", ge=0)
    end: float = Field(alias="to", ge=0)

    @model_validator(mode="after")
    def _not_zero(self) -> RampArrival:
        if self.start == 0 and self.end == 0:
            raise problem("expected a rate > 0 at one end of the ramp, got 0 and 0", "to")
        return self

    def expected_count(self, duration: float) -> float:
        return (self.start + self.end) / 2 * duration


class Step(_Section):
    """From ``at`` seconds on, arrivals come at ``rate`` per second."""

    at: float = Field(ge=0)
    rate: float = Field(ge=0)


class StepsArrival(_Section):
    """A piecewise-constant Poisson process; steps at or after the duration are ignored."""

    process: Literal["steps"]
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> StepsArrival:
        if self.steps[0].at != 0:
            first = num(self.steps[0].at)
            raise problem(f"expected 0 for the first step, got {first}", "steps[0].at")
        for index in range(1, len(self.steps)):
            before, now = self.steps[index - 1].at, self.steps[index].at
            if now <= before:
                message = f"expected a time after the previous step ({num(before)})"
                message += f", got {num(now)}"
                raise problem(message, f"steps[{index}].at")
        if all(step.rate == 0 for step in self.steps):
            raise problem("expected at least one step with a rate > 0", "steps")
        return self

    def segments(self, duration: float) -> list[tuple[float, float, float]]:
        """``(start, end, rate)`` for each step, clipped to ``[0, duration)``."""
        bounds = [step.at for step in self.steps[1:]] + [duration]
        return [
            (step.at, min(end, duration), step.rate)
            for step, end in zip(self.steps, bounds, strict=True)
            if step.at < duration
        ]

    def expected_count(self, duration: float) -> float:
        return sum((end - start) * rate for start, end, rate in self.segments(duration))


Arrival = Annotated[
    Union[ConstantArrival, PoissonArrival, RampArrival, StepsArrival],  # noqa: UP007
    Field(discriminator="process"),
]


# --------------------------------------------------------------------------- workload


class Size(_Section):
    """Payload size in bytes, drawn uniformly from ``[min, max]``; written as an int if fixed."""

    min: int = Field(ge=MIN_SIZE, le=MAX_SIZE)
    max: int = Field(ge=MIN_SIZE, le=MAX_SIZE)

    @model_validator(mode="after")
    def _ordered(self) -> Size:
        if self.max < self.min:
            raise problem(f"expected a value >= min ({self.min}), got {self.max}", "max")
        return self

    @model_serializer(mode="plain")
    def _compact(self) -> int | dict[str, int]:
        return self.min if self.min == self.max else {"min": self.min, "max": self.max}


def _default_size() -> Size:
    return Size(min=256, max=256)


class _Stream(_Section):
    kind: str
    arrival: Arrival
    size: Size = Field(default_factory=_default_size)

    @field_validator("size", mode="before")
    @classmethod
    def _size_from_int(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if not MIN_SIZE <= value <= MAX_SIZE:
                raise problem(f"expected a size in bytes {MIN_SIZE}..{MAX_SIZE}, got {value}")
            return {"min": value, "max": value}
        if isinstance(value, (dict, Size)):
            return value
        expected = f"expected a size in bytes ({MIN_SIZE}..{MAX_SIZE}) or {{min: a, max: b}}"
        raise problem(f"{expected}, got {got(value)}")


class PublishStream(_Stream):
    """Publishes to a uniformly chosen topic; delivered to every subscriber."""

    kind: Literal["publish"]


class DirectStream(_Stream):
    """Direct messages to a uniformly chosen other agent."""

    kind: Literal["direct"]


class BroadcastStream(_Stream):
    """Broadcasts to every other agent."""

    kind: Literal["broadcast"]


class TaskStream(_Stream):
    """Tasks needing ``capability``; the result goes back to the submitter.

    The built-in handler works ``work`` seconds on each (``protocol.payload``),
    and an agent runs one task at a time. ``submitted_at`` names a coordinator of
    the tree: only the agents attached to it submit (checked by
    ``harness.scenario.topology``)."""

    kind: Literal["task"]
    capability: Name
    work: float = Field(default=0.0, ge=0, le=60)
    submitted_at: str | None = None


class Mix(_Section):
    """Relative weights of the memory verbs; a verb left out has weight 0."""

    get: float = Field(default=0.0, ge=0)
    put: float = Field(default=0.0, ge=0)
    cas: float = Field(default=0.0, ge=0)
    delete: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Mix:
        if self.get + self.put + self.cas + self.delete <= 0:
            raise problem("expected at least one verb with a weight > 0")
        return self

    def weights(self) -> list[tuple[MemVerb, float]]:
        """``(verb, weight)`` for the verbs with a weight > 0, in a fixed order."""
        pairs = [
            (MemVerb.GET, self.get),
            (MemVerb.PUT, self.put),
            (MemVerb.CAS, self.cas),
            (MemVerb.DELETE, self.delete),
        ]
        return [(verb, weight) for verb, weight in pairs if weight > 0]


def _default_mix() -> Mix:
    return Mix(get=0.4, put=0.4, cas=0.1, delete=0.1)


class MemoryStream(_Stream):
    """Memory-store operations on ``keys`` keys in each of ``namespaces`` namespaces."""

    kind: Literal["memory"]
    mix: Mix = Field(default_factory=_default_mix)
    namespaces: int = Field(default=4, ge=1, le=10_000)
    keys: int = Field(default=100, ge=1, le=1_000_000)
    # "any": any agent writes any key; "owner": each key has one writer (its owner,
    # agents dealt the keys in turn), reads still come from any agent
    writers: Literal["any", "owner"] = "any"


Stream = Annotated[
    Union[PublishStream, DirectStream, BroadcastStream, TaskStream, MemoryStream],  # noqa: UP007
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- targets


class Target(_Section):
    """A k6-style threshold ``<metric> <op> <number>``; written as a string or a mapping."""

    threshold: str
    critical: bool = True

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"threshold": value}
        if isinstance(value, (dict, Target)):
            return value
        expected = "expected a threshold such as 'p95_ms <= 10' or {threshold: ..., critical: ...}"
        raise problem(f"{expected}, got {got(value)}")

    @field_validator("threshold")
    @classmethod
    def _parse(cls, value: str) -> str:
        metric, op, number = _split_threshold(value)
        return f"{metric} {op} {num(number)}"

    @property
    def metric(self) -> str:
        return _split_threshold(self.threshold)[0]

    @property
    def op(self) -> str:
        return _split_threshold(self.threshold)[1]

    @property
    def value(self) -> float:
        return _split_threshold(self.threshold)[2]

    def passes(self, actual: float | None) -> bool:
        """Whether a measured figure meets the threshold (a missing figure never does)."""
        if actual is None:
            return False
        compare = {
            "<=": actual <= self.value,
            "<": actual < self.value,
            ">=": actual >= self.value,
            ">": actual > self.value,
            "==": actual == self.value,
        }
        return compare[self.op]


def _split_threshold(text: str) -> tuple[str, str, float]:
    found = _THRESHOLD_RE.match(text)
    if found is None:
        raise problem(f"expected '<metric> <op> <number>' such as 'p95_ms <= 10', got {text!r}")
    metric, op, number = found.groups()
    if metric not in TARGET_METRICS:
        hint = did_you_mean(metric, TARGET_METRICS)
        known = ", ".join(TARGET_METRICS)
        raise problem(f"unknown metric '{metric}'{hint}; expected one of {known}")
    return metric, op, float(number)


# --------------------------------------------------------------------------- scenario


def _default_backends() -> list[Literal["real", "sim"]]:
    return ["real", "sim"]


class Scenario(_Section):
    """One scenario file, validated, with every default filled in."""

    name: Name
    description: str = ""
    seed: int = 42
    duration: float = Field(default=30.0, gt=0, le=86_400)
    warmup: float = Field(default=5.0, ge=0)
    backends: list[Literal["real", "sim"]] = Field(default_factory=_default_backends, min_length=1)
    transport: Literal["inproc", "tcp"] = "inproc"
    repetitions: int = Field(default=1, ge=1, le=1000)
    agents: AgentsSection = Field(default_factory=AgentsSection)
    topology: TopologySection = Field(default_factory=TopologySection)
    consensus: ConsensusSection | None = None
    topics: TopicsSection = Field(default_factory=TopicsSection)
    protocol: ProtocolSection = Field(default_factory=ProtocolSection)
    probes: ProbesSection = Field(default_factory=ProbesSection)
    model: ModelSection = Field(default_factory=ModelSection)
    workload: list[Stream] = Field(min_length=1)
    faults: list[FaultSpec] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _default_warmup(cls, data: Any) -> Any:
        """Without a warmup, use 5 s, or 20 % of the duration when that is shorter."""
        if isinstance(data, dict) and "warmup" not in data:
            duration = data.get("duration", 30.0)
            number = isinstance(duration, (int, float)) and not isinstance(duration, bool)
            if number and duration > 0:
                return {**data, "warmup": min(5.0, 0.2 * duration)}
        return data

    @field_validator("backends")
    @classmethod
    def _unique_backends(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise problem(f"expected each backend at most once, got {', '.join(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.warmup >= self.duration:
            expected = f"expected a number >= 0 and < duration ({num(self.duration)})"
            raise problem(f"{expected}, got {num(self.warmup)}", "warmup")
        if self.topics.fanout > self.agents.count:
            expected = f"expected at most agents.count ({self.agents.count}) subscribers per topic"
            raise problem(f"{expected}, got {self.topics.fanout}", "topics.fanout")
        for index, stream in enumerate(self.workload):
            self._check_stream(index, stream)
        check_faults(self)
        check_topology(self)
        check_consensus(self)
        for name in self.model.what_ifs():
            if "real" in self.backends:
                expected = "expected backends to list only sim: the real system cannot run"
                raise problem(f"{expected} this what-if (model: is for sim only)", f"model.{name}")
        if self.model.tree_hop_ms is not None and not (self.topology.tree or self.consensus):
            expected = (
                "expected a hierarchical topology or a consensus section (it lengthens"
                " hops between coordinators: a tree's levels, or replicas)"
            )
            raise problem(f"{expected}, got topology kind: flat", "model.tree_hop_ms")
        if self.model.coordinator_hosts > 1 and self.transport == "inproc":
            expected = "expected 1 with transport: inproc (all nodes share one event loop there)"
            raise problem(f"{expected}; use transport: tcp", "model.coordinator_hosts")
        return self

    def _check_stream(self, index: int, stream: _Stream) -> None:
        if isinstance(stream, DirectStream) and self.agents.count < 2:
            message = "direct messages need at least 2 agents (agents.count is 1)"
            raise problem(message, f"workload[{index}].kind")
        if isinstance(stream, TaskStream):
            names = [capability.name for capability in self.agents.capabilities]
            if stream.capability not in names:
                offered = ", ".join(names) if names else "none are listed"
                expected = f"expected a capability from agents.capabilities ({offered})"
                at = f"workload[{index}].capability"
                raise problem(f"{expected}, got '{stream.capability}'", at)

    def protocol_settings(self) -> ProtocolSettings:
        """The protocol tunables for both drivers."""
        placement = self.topology.tasks
        return ProtocolSettings(**self.protocol.model_dump(), task_placement=placement)

    def with_overrides(
        self,
        seed: int | None = None,
        duration: float | None = None,
        transport: str | None = None,
    ) -> Scenario:
        """A copy with command-line overrides applied and validated again.

        When the new duration is not longer than the warm-up, the warm-up
        becomes 20 % of the new duration.
        """
        data = self.model_dump(by_alias=True)
        if seed is not None:
            data["seed"] = seed
        if transport is not None:
            data["transport"] = transport
        if duration is not None:
            data["duration"] = duration
            if self.warmup >= duration:
                data["warmup"] = duration * 0.2
        return parse_scenario(data, "(overrides)")

    def resolved_yaml(self) -> str:
        """Every field with defaults filled in, as YAML (loads back to an equal scenario)."""
        data = self.model_dump(mode="json", by_alias=True)
        header = f"# scenario '{self.name}', resolved: every field, defaults filled in\n"
        return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# --------------------------------------------------------------------------- loading


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and return the scenario in ``path``; raise ``ScenarioError`` if bad."""
    source = str(path)
    return parse_scenario(read_yaml(Path(path), source), source)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data; ``source`` names it in errors."""
    if not isinstance(data, dict):
        expected = f"expected a mapping of scenario fields, got {got(data)}"
        raise ScenarioError(source, "(file)", expected)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        vocab = Vocabulary(Scenario, STREAM_KINDS, ARRIVAL_PROCESSES, _PATTERN_WORDS, FAULT_KINDS)
        raise from_validation(source, err, vocab) from None
