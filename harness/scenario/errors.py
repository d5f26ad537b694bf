"""Plain-English scenario errors: ``ScenarioError`` and pydantic's errors translated.

Every pydantic validation error becomes one line ``<file>: <field>: <expected>``.
The location becomes a dotted, indexed path (``workload[0].arrival.rate``, with
pydantic's discriminator tags dropped), and the error type becomes what was
expected and what was found. An unknown field lists the model's real fields
with a "did you mean". The schema's vocabulary (the root model, stream kinds,
arrival processes, pattern descriptions) comes in as a ``Vocabulary`` so that
this module does not import the schema.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError


@dataclass(frozen=True)
class Vocabulary:
    """What the translation needs to know about the schema."""

    root: type[BaseModel]
    stream_kinds: tuple[str, ...]
    arrivals: tuple[str, ...]
    pattern_words: Mapping[str, str]
    fault_kinds: tuple[str, ...] = ()


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


def problem(expected: str, at: str = "") -> PydanticCustomError:
    """A validation error at ``at`` (a path relative to the model being validated)."""
    return PydanticCustomError("scenario", "{expected}", {"expected": expected, "at": at})


def num(value: Any) -> str:
    """A number as a person would write it: ``0`` not ``0.0``, ``1048576`` not ``1.05e+06``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def from_validation(source: str, err: ValidationError, vocab: Vocabulary) -> ScenarioError:
    """One ``ScenarioError`` listing every problem pydantic found."""
    problems = [_describe(error, vocab) for error in err.errors(include_url=False)]
    return ScenarioError.from_problems(source, problems)


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


def got(value: Any) -> str:
    """A short description of a value that was given."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value) if isinstance(value, str) else num(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: ErrorDetails, vocab: Vocabulary) -> tuple[str, str]:
    """One pydantic error as ``(field path, plain-English expectation)``."""
    loc, kind = error["loc"], error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    path = _path(loc, vocab)
    if kind == "scenario":
        return _join(path, ctx["at"]), ctx["expected"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _describe_tag(path, kind, ctx, error["input"], vocab)
    if kind == "extra_forbidden":
        return path, _describe_extra(loc, vocab)
    return path, _describe_value(kind, ctx, error, vocab)


def _describe_value(kind: str, ctx: dict[str, Any], error: ErrorDetails, vocab: Vocabulary) -> str:
    given = got(error["input"])
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {given}"
    if kind in _EXPECTED_TYPE:
        return f"expected {_EXPECTED_TYPE[kind]}, got {given}"
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"expected a number {sign} {num(ctx[key])}, got {given}"
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
    if kind == "too_long":
        return f"expected at most {ctx['max_length']} item(s), got {ctx['actual_length']}"
    if kind == "string_too_short":
        return "expected a non-empty string"
    if kind == "string_too_long":
        return f"expected at most {ctx['max_length']} characters, got {given}"
    if kind == "string_pattern_mismatch":
        words = vocab.pattern_words.get(ctx["pattern"], f"expected text matching {ctx['pattern']}")
        return f"{words}, got {given}"
    return str(error["msg"]).removeprefix("Value error, ")


def _describe_tag(
    path: str, kind: str, ctx: dict[str, Any], given: Any, vocab: Vocabulary
) -> tuple[str, str]:
    discriminator = str(ctx["discriminator"]).strip("'")
    kinds = vocab.fault_kinds if path.startswith("faults") else vocab.stream_kinds
    choices = ", ".join(kinds if discriminator == "kind" else vocab.arrivals)
    if kind == "union_tag_invalid":
        return _join(path, discriminator), f"expected one of {choices}, got {got(ctx['tag'])}"
    if not isinstance(given, dict):
        return path, f"expected a mapping with a '{discriminator}' field, got {got(given)}"
    return _join(path, discriminator), f"required field is missing (one of {choices})"


def _describe_extra(loc: tuple[int | str, ...], vocab: Vocabulary) -> str:
    name = str(loc[-1])
    model = _model_at(loc[:-1], vocab.root)
    if model is None:
        return f"unknown field '{name}'"
    allowed = [info.alias or field for field, info in model.model_fields.items()]
    hint = did_you_mean(name, allowed)
    return f"unknown field '{name}'{hint}; expected one of {', '.join(allowed)}"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_tag(previous: Sequence[int | str], part: int | str, vocab: Vocabulary) -> bool:
    """Whether ``part`` is a discriminator tag pydantic put into a location."""
    if not previous or not isinstance(part, str):
        return False
    if previous[-1] == "arrival" and part in vocab.arrivals:
        return True
    if len(previous) < 2 or not isinstance(previous[-1], int):
        return False
    if previous[-2] == "faults":
        return part in vocab.fault_kinds
    return previous[-2] == "workload" and part in vocab.stream_kinds


def _path(loc: tuple[int | str, ...], vocab: Vocabulary) -> str:
    """``('workload', 0, 'poisson', 'rate')`` -> ``'workload[0].rate'`` without tags."""
    kept: list[int | str] = []
    for part in loc:
        if not _is_tag(kept, part, vocab):
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


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class at a raw pydantic location (tags select union members)."""
    current: Any = root
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


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_file(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate a settings file (a suite, a baseline suite) against ``model``.

    The first problem becomes a ``ScenarioError`` naming ``source`` and the
    field's path (``scenarios[1].checks[0]``), so the CLI exits 2.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise ScenarioError(source, where.lstrip(".") or "(file)", first["msg"]) from None
