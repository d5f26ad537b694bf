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
   ``<file>: <field>: <expected>``: the location becomes a dotted, indexed path
   (``workload[0].arrival.rate``; pydantic's discriminator tags are dropped),
   and the error type is mapped to what was expected and what was found.
   All lines go into one ``ScenarioError``; its ``field`` and ``expected`` are
   the first problem's.

The ``protocol:`` section is a model generated from ``ProtocolSettings``'s
dataclass fields and types, so a new protocol setting is accepted here as
soon as it exists. ``Scenario.resolved_yaml()`` writes the scenario back with
every default filled in; loading that text again gives an equal ``Scenario``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
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
from pydantic_core import ErrorDetails, PydanticCustomError

from protocol.messages import MemVerb
from protocol.settings import ProtocolSettings

MAX_AGENTS = 200_000
MIN_SIZE = 8
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


# --------------------------------------------------------------------------- errors


class ScenarioError(Exception):
    """A scenario could not be loaded: names the file, the field and what was expected.

    ``problems`` lists every ``(field, expected)`` pair found; ``field`` and
    ``expected`` are the first one. ``str()`` gives one line per problem.
    """

    def __init__(
        self,
        file: str,
        field: str,
        expected: str,
        *,
        more: Sequence[tuple[str, str]] = (),
        line: int | None = None,
    ) -> None:
        self.file = file
        self.field = field
        self.expected = expected
        self.line = line
        self.problems: list[tuple[str, str]] = [(field, expected), *more]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{self.file}: {field}: {what}" for field, what in self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with every problem (the default would call ``cls(str(self))``)."""
        state = {"problems": self.problems, "line": self.line}
        return (ScenarioError, (self.file, self.field, self.expected), state)

    @classmethod
    def from_problems(cls, file: str, problems: Sequence[tuple[str, str]]) -> ScenarioError:
        """One error listing all ``problems`` (at least one)."""
        (field, expected), *rest = problems
        return cls(file, field, expected, more=rest)


def _problem(expected: str, at: str = "") -> PydanticCustomError:
    """A validation error at ``at`` (a path relative to the model being validated)."""
    return PydanticCustomError("scenario", "{expected}", {"expected": expected, "at": at})


def _num(value: Any) -> str:
    """A number as a person would write it: ``0`` not ``0.0``, ``1048576`` not ``1.05e+06``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


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
                raise _problem(f"duplicate capability '{capability.name}'", f"[{index}].name")
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


def _protocol_section() -> type[BaseModel]:
    """A model with one optional field per ``ProtocolSettings`` field, same type and default."""
    hints = typing.get_type_hints(ProtocolSettings)
    fields: dict[str, Any] = {}
    for item in dataclasses.fields(ProtocolSettings):
        kind = hints[item.name]
        limits: dict[str, Any] = {"ge": 0} if kind in (int, float) else {"min_length": 1}
        fields[item.name] = (kind, Field(default=item.default, **limits))
    return create_model("ProtocolSection", __base__=_Section, **fields)


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
            raise _problem("expected a rate > 0 at one end of the ramp, got 0 and 0", "to")
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
            first = _num(self.steps[0].at)
            raise _problem(f"expected 0 for the first step, got {first}", "steps[0].at")
        for index in range(1, len(self.steps)):
            before, now = self.steps[index - 1].at, self.steps[index].at
            if now <= before:
                message = f"expected a time after the previous step ({_num(before)})"
                message += f", got {_num(now)}"
                raise _problem(message, f"steps[{index}].at")
        if all(step.rate == 0 for step in self.steps):
            raise _problem("expected at least one step with a rate > 0", "steps")
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
            raise _problem(f"expected a value >= min ({self.min}), got {self.max}", "max")
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
                raise _problem(f"expected a size in bytes {MIN_SIZE}..{MAX_SIZE}, got {value}")
            return {"min": value, "max": value}
        if isinstance(value, (dict, Size)):
            return value
        expected = f"expected a size in bytes ({MIN_SIZE}..{MAX_SIZE}) or {{min: a, max: b}}"
        raise _problem(f"{expected}, got {_got(value)}")


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
    """Tasks needing ``capability``; the result goes back to the submitter."""

    kind: Literal["task"]
    capability: Name


class Mix(_Section):
    """Relative weights of the memory verbs; a verb left out has weight 0."""

    get: float = Field(default=0.0, ge=0)
    put: float = Field(default=0.0, ge=0)
    cas: float = Field(default=0.0, ge=0)
    delete: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Mix:
        if self.get + self.put + self.cas + self.delete <= 0:
            raise _problem("expected at least one verb with a weight > 0")
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
        raise _problem(f"{expected}, got {_got(value)}")

    @field_validator("threshold")
    @classmethod
    def _parse(cls, value: str) -> str:
        metric, op, number = _split_threshold(value)
        return f"{metric} {op} {_num(number)}"

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
        raise _problem(f"expected '<metric> <op> <number>' such as 'p95_ms <= 10', got {text!r}")
    metric, op, number = found.groups()
    if metric not in TARGET_METRICS:
        hint = _did_you_mean(metric, TARGET_METRICS)
        known = ", ".join(TARGET_METRICS)
        raise _problem(f"unknown metric '{metric}'{hint}; expected one of {known}")
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
    topics: TopicsSection = Field(default_factory=TopicsSection)
    protocol: ProtocolSection = Field(default_factory=ProtocolSection)
    probes: ProbesSection = Field(default_factory=ProbesSection)
    workload: list[Stream] = Field(min_length=1)
    faults: list[Any] = Field(default_factory=list)
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
            raise _problem(f"expected each backend at most once, got {', '.join(value)}")
        return value

    @field_validator("faults")
    @classmethod
    def _no_faults_yet(cls, value: list[Any]) -> list[Any]:
        if value:
            raise _problem("faults are not implemented yet (issue 4)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.warmup >= self.duration:
            expected = f"expected a number >= 0 and < duration ({_num(self.duration)})"
            raise _problem(f"{expected}, got {_num(self.warmup)}", "warmup")
        if self.topics.fanout > self.agents.count:
            expected = f"expected at most agents.count ({self.agents.count}) subscribers per topic"
            raise _problem(f"{expected}, got {self.topics.fanout}", "topics.fanout")
        for index, stream in enumerate(self.workload):
            self._check_stream(index, stream)
        return self

    def _check_stream(self, index: int, stream: _Stream) -> None:
        if isinstance(stream, DirectStream) and self.agents.count < 2:
            message = "direct messages need at least 2 agents (agents.count is 1)"
            raise _problem(message, f"workload[{index}].kind")
        if isinstance(stream, TaskStream):
            names = [capability.name for capability in self.agents.capabilities]
            if stream.capability not in names:
                offered = ", ".join(names) if names else "none are listed"
                expected = f"expected a capability from agents.capabilities ({offered})"
                at = f"workload[{index}].capability"
                raise _problem(f"{expected}, got '{stream.capability}'", at)

    def protocol_settings(self) -> ProtocolSettings:
        """The protocol tunables for both drivers."""
        return ProtocolSettings(**self.protocol.model_dump())

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


class _ScenarioLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys and reads ``1e3`` as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_scenario(path: str | Path) -> Scenario:
    """Read, validate and return the scenario in ``path``; raise ``ScenarioError`` if bad."""
    source = str(path)
    return parse_scenario(_read_yaml(Path(path), source), source)


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data; ``source`` names it in errors."""
    if not isinstance(data, dict):
        expected = f"expected a mapping of scenario fields, got {_got(data)}"
        raise ScenarioError(source, "(file)", expected)
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        problems = [_describe(error) for error in err.errors(include_url=False)]
        raise ScenarioError.from_problems(source, problems) from None


def _read_yaml(path: Path, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "(file)", "file not found") from None
    except UnicodeDecodeError:
        raise ScenarioError(source, "(file)", "expected UTF-8 text") from None
    except OSError as exc:
        raise ScenarioError(source, "(file)", f"cannot read the file: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_ScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f"line {line}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "not valid YAML"
        raise ScenarioError(source, "(yaml)", f"{where}{problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(source, "(yaml)", f"not valid YAML: {exc}") from None


# --------------------------------------------------------------------------- error text

_EXPECTED_TYPE = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "literal_error": "",
}
_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def _got(value: Any) -> str:
    """A short description of a value that was given."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else _num(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """One pydantic error as ``(field path, plain-English expectation)``."""
    loc, kind = error["loc"], error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    path = _path(loc)
    if kind == "scenario":
        return _join(path, ctx["at"]), ctx["expected"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _describe_tag(path, kind, ctx, error["input"])
    if kind == "extra_forbidden":
        return path, _describe_extra(loc)
    return path, _describe_value(kind, ctx, error)


def _describe_value(kind: str, ctx: dict[str, Any], error: ErrorDetails) -> str:
    got = _got(error["input"])
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {got}"
    if kind in _EXPECTED_TYPE:
        return f"expected {_EXPECTED_TYPE[kind]}, got {got}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"expected a number {sign} {_num(ctx[key])}, got {got}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
    if kind == "too_long":
        return f"expected at most {ctx['max_length']} item(s), got {ctx['actual_length']}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "string_too_long":
        return f"expected at most {ctx['max_length']} characters, got {got}"
    if kind == "string_pattern_mismatch":
        words = _PATTERN_WORDS.get(ctx["pattern"], f"expected text matching {ctx['pattern']}")
        return f"{words}, got {got}"
    return str(error["msg"]).removeprefix("Value error, ")


def _describe_tag(path: str, kind: str, ctx: dict[str, Any], given: Any) -> tuple[str, str]:
    discriminator = str(ctx["discriminator"]).strip("'")
    choices = ", ".join(STREAM_KINDS if discriminator == "kind" else ARRIVAL_PROCESSES)
    if kind == "union_tag_invalid":
        return _join(path, discriminator), f"expected one of {choices}, got {_got(ctx['tag'])}"
    if not isinstance(given, dict):
        return path, f"expected a mapping with a '{discriminator}' field, got {_got(given)}"
    return _join(path, discriminator), f"required field is missing (one of {choices})"


def _describe_extra(loc: tuple[int | str, ...]) -> str:
    name = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown field '{name}'"
    allowed = [info.alias or field for field, info in model.model_fields.items()]
    hint = _did_you_mean(name, allowed)
    return f"unknown field '{name}'{hint}; expected one of {', '.join(allowed)}"


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_tag(previous: Sequence[int | str], part: int | str) -> bool:
    """Whether ``part`` is a discriminator tag pydantic put into a location."""
    if not previous or not isinstance(part, str):
        return False
    if previous[-1] == "arrival" and part in ARRIVAL_PROCESSES:
        return True
    in_workload = len(previous) >= 2 and previous[-2] == "workload"
    return in_workload and isinstance(previous[-1], int) and part in STREAM_KINDS


def _path(loc: tuple[int | str, ...]) -> str:
    """``('workload', 0, 'poisson', 'rate')`` -> ``'workload[0].rate'`` without tags."""
    kept: list[int | str] = []
    for part in loc:
        if not _is_tag(kept, part):
            kept.append(part)
    text = ""
    for part in kept:
        text = _join(text, f"[{part}]" if isinstance(part, int) else str(part))
    return text


def _join(base: str, tail: str) -> str:
    if not tail:
        return base
    if not base or tail.startswith("["):
        return base + tail
    return f"{base}.{tail}"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class at a raw pydantic location (tags select union members)."""
    current: Any = Scenario
    for part in loc:
        current = _step(current, part)
        if current is None:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _step(annotation: Any, part: int | str) -> Any:
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if isinstance(part, int):
        return typing.get_args(annotation)[0] if origin is list else None
    if origin in (Union, types.UnionType):
        return _union_member(annotation, part)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    return None


def _union_member(annotation: Any, tag: str) -> Any:
    for member in typing.get_args(annotation):
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for info in member.model_fields.values():
            if typing.get_origin(info.annotation) is Literal and tag in typing.get_args(
                info.annotation
            ):
                return member
    return None
