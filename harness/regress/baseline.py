"""Regression baselines: the versioned ``reports/baselines/NAME.json`` file.

A baseline holds what ``swarmtwin regress`` needs to rerun and judge a build
on any machine, with nothing taken from local files:

- ``format`` (``"swarmtwin-baseline"``) and ``version`` (``VERSION``);
- ``name``, ``created`` (UTC, ISO 8601), ``command``, ``git_commit`` and
  ``git_dirty`` (None outside a git work tree);
- ``machine``: hostname, CPU model, usable cores, Python version, platform
  (``harness.run.machine``); ``regress`` warns when the CPU model, cores or
  Python differ;
- ``sources``: the suite or scenario files it was made from;
- ``repetitions``: real runs per scenario;
- ``scenarios``: one entry per scenario, with its ``name``, ``source``
  file, ``scenario_yaml`` (``Scenario.resolved_yaml()``: every field, so a
  rerun replays exactly the same plan), ``checks`` (the figures the
  statistical test gates, ``harness.regress.decide.RULES``), ``calibration``
  (``source`` file, the loader's ``warning`` and the full calibration
  ``data``, which ``regress`` hands to the model instead of looking for a
  local file), ``sim`` (``figures``: every figure of ``Summary.figures()``
  but wall-clock ones, and the run's ``notes``; null for a real-only
  scenario) and ``real`` (``repetitions``: each run's ``Summary.figures()``
  and ``notes``; null for a sim-only scenario).

``read_baseline`` checks every field against pydantic models of the file
(``_BaselineFile`` and its parts; strict: no numbers as text, no true or
false as a number, no 2.0 as a count; keys it does not know are ignored),
turns them into the dataclasses below, and raises ``BaselineError`` (a
``ScenarioError``, so the CLI prints ``<file>: <field>: <expected>`` and
exits 2) with one line per problem, each translated to plain English by
``harness.scenario.errors.from_validation`` (``scenarios[0].sim.figures.p95_ms:
expected a number or null, got 'fast'``). ``format`` and ``version`` are
checked first and alone, so a file of another kind or version gives one
line, not one per field. The rules that span fields are validators of the
models: ``checks`` name known figures (``known_checks``, passed as
validation context), a sim part needs its calibration, every real run has
each checked figure and there are ``repetitions`` of them.
``write_baseline`` writes indented, key-sorted JSON. The embedded scenario
and calibration are parsed when the file is read, so a damaged one is
reported before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness.metrics.figures import Figure
from harness.run.machine import SPEED_KEYS, describe_machine, git_commit, git_dirty
from harness.scenario.errors import ScenarioError, Vocabulary, from_validation, got, problem
from harness.scenario.schema import Scenario, parse_scenario
from sim.calibration import Calibration

KIND = "swarmtwin-baseline"
VERSION = 1
WALL_CLOCK_FIGURES: tuple[str, ...] = ("wall_seconds",)
FileT = TypeVar("FileT", bound=BaseModel)


class BaselineError(ScenarioError):
    """A baseline file could not be read: names the file, the field and what was expected."""


@dataclass(frozen=True)
class Machine:
    """The machine a baseline was measured on."""

    hostname: str
    cpu_model: str
    cores: int
    python: str
    platform: str

    def differences(self, other: Machine) -> list[str]:
        """``field: this vs other`` for each field that decides speed and differs.

        Those are ``harness.run.machine.SPEED_KEYS`` (CPU model, cores, Python): a
        fresh machine of the same kind, such as CI's, differs only in name.
        """
        return [
            f"{name}: {getattr(self, name)!r} here, {getattr(other, name)!r} in the baseline"
            for name in SPEED_KEYS
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class EmbeddedCalibration:
    """The calibration the model ran with, in full, and where it came from."""

    source: str
    warning: str | None
    data: dict[str, Any]

    def calibration(self) -> Calibration:
        return Calibration.from_dict(self.data, source=self.source)


@dataclass(frozen=True)
class ScenarioBaseline:
    """One scenario of a baseline: what ran and what it measured."""

    name: str
    source: str
    scenario_yaml: str
    checks: tuple[str, ...]
    calibration: EmbeddedCalibration | None
    sim: dict[str, Figure] | None
    real: list[dict[str, Figure]] | None
    sim_notes: list[str] = field(default_factory=list)
    real_notes: list[list[str]] = field(default_factory=list)

    def scenario(self, file: str = "<baseline>", at: str = "scenario_yaml") -> Scenario:
        """The embedded scenario, parsed and validated again."""
        try:
            data = yaml.safe_load(self.scenario_yaml)
        except yaml.YAMLError as exc:
            raise BaselineError(file, at, f"expected a scenario in YAML: {exc}") from None
        return parse_scenario(data, f"{file} ({at})")


@dataclass(frozen=True)
class Baseline:
    """A whole baseline file."""

    name: str
    created: str
    command: str
    git_commit: str | None
    git_dirty: bool | None
    machine: Machine
    sources: tuple[str, ...]
    repetitions: int
    scenarios: tuple[ScenarioBaseline, ...]
    version: int = VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": KIND,
            "version": self.version,
            "name": self.name,
            "created": self.created,
            "command": self.command,
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "machine": asdict(self.machine),
            "sources": list(self.sources),
            "repetitions": self.repetitions,
            "scenarios": [_scenario_dict(entry) for entry in self.scenarios],
        }


def _scenario_dict(entry: ScenarioBaseline) -> dict[str, Any]:
    calibration = entry.calibration
    return {
        "name": entry.name,
        "source": entry.source,
        "scenario_yaml": entry.scenario_yaml,
        "checks": list(entry.checks),
        "calibration": None
        if calibration is None
        else {
            "source": calibration.source,
            "warning": calibration.warning,
            "data": calibration.data,
        },
        "sim": None if entry.sim is None else {"figures": entry.sim, "notes": entry.sim_notes},
        "real": None
        if entry.real is None
        else {
            "repetitions": [
                {"figures": figures, "notes": notes}
                for figures, notes in zip(
                    entry.real, _pad(entry.real_notes, entry.real), strict=True
                )
            ]
        },
    }


def _pad(notes: list[list[str]], runs: Sequence[object]) -> list[list[str]]:
    return notes + [[] for _ in range(len(runs) - len(notes))]


def write_baseline(path: Path, baseline: Baseline) -> Path:
    """Write ``baseline`` as indented, key-sorted JSON (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(baseline.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


# --------------------------------------------------------------------------- reading


class _FileModel(BaseModel):
    """A part of the baseline file: strict types, unknown keys ignored (as before)."""

    model_config = ConfigDict(strict=True, extra="ignore")


def _figure(value: Any) -> Figure:
    """A figure: a number (not true or false) or null, kept as int or float."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is not None and not number:
        raise problem(f"expected a number or null, got {got(value)}")
    return value  # type: ignore[no-any-return]


def _flag(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise problem(f"expected true, false or null, got {got(value)}")
    return value


FigureValue = Annotated[Figure, PlainValidator(_figure)]
Flag = Annotated[bool | None, PlainValidator(_flag)]


class _HeaderFile(_FileModel):
    """What is read first: a file of another kind or version fails here, alone."""

    format: Literal["swarmtwin-baseline"]  # KIND (a Literal needs the text itself)
    version: int

    @field_validator("version")
    @classmethod
    def _this_version(cls, value: int) -> int:
        if value != VERSION:
            raise problem(f"expected {VERSION} (the format this swarmtwin reads), got {value}")
        return value


class _MachineFile(_FileModel):
    hostname: str
    cpu_model: str
    cores: int = Field(ge=0)
    python: str
    platform: str


class _CalibrationFile(_FileModel):
    source: str
    warning: str | None
    data: dict[str, Any]

    @model_validator(mode="after")
    def _loads(self) -> Self:
        try:
            Calibration.from_dict(self.data, source=self.source)
        except (KeyError, TypeError, ValueError) as exc:
            raise problem(f"expected a calibration (format 1): {exc!r}", "data") from None
        return self


class _RunFile(_FileModel):
    """The sim's one run, or one real run: its figures and notes."""

    figures: dict[str, FigureValue]
    notes: list[str]


class _RealFile(_FileModel):
    repetitions: list[_RunFile]


class _ScenarioFile(_FileModel):
    name: str
    source: str
    scenario_yaml: str
    checks: list[str]
    calibration: _CalibrationFile | None
    sim: _RunFile | None
    real: _RealFile | None

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, value: list[str], info: ValidationInfo) -> list[str]:
        known: Sequence[str] = (info.context or {}).get("known_checks", ())
        for index, name in enumerate(value):
            if known and name not in known:
                raise problem(f"expected one of {', '.join(known)}, got {name!r}", f"[{index}]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.sim is None and self.real is None:
            raise problem("expected sim or real figures (both are null)")
        if self.sim is not None and self.calibration is None:
            raise problem("expected the calibration the sim ran with", "calibration")
        for index, run in enumerate(self.real.repetitions if self.real else []):
            for name in self.checks:
                value = run.figures.get(name)
                if value is None:
                    expected = f"expected a number for the checked figure {name!r}"
                    at = f"real.repetitions[{index}].figures.{name}"
                    raise problem(f"{expected}, got {got(value)}", at)
        return self


class _BaselineFile(_HeaderFile):
    name: str
    created: str
    command: str
    git_commit: str | None
    git_dirty: Flag
    machine: _MachineFile
    sources: list[str]
    repetitions: int = Field(ge=0)
    scenarios: list[_ScenarioFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _all_runs(self) -> Self:
        for index, entry in enumerate(self.scenarios):
            runs = None if entry.real is None else len(entry.real.repetitions)
            if runs is not None and runs != self.repetitions:
                expected = f"expected a list of {self.repetitions} runs (the file's repetitions)"
                raise problem(f"{expected}, got {runs}", f"scenarios[{index}].real.repetitions")
        return self


_VOCABULARY = Vocabulary(_BaselineFile, stream_kinds=(), arrivals=(), pattern_words={})


def _validated(model: type[FileT], data: Any, file: str, known_checks: Sequence[str]) -> FileT:
    """``model`` from ``data``; every problem pydantic finds as one ``BaselineError``."""
    try:
        return model.model_validate(data, context={"known_checks": tuple(known_checks)})
    except ValidationError as err:
        problems = [
            (field or "(file)", expected)
            for field, expected in from_validation(file, err, _VOCABULARY).problems
        ]
        raise BaselineError.from_problems(file, problems) from None


def read_baseline(path: Path | str, known_checks: Sequence[str] = ()) -> Baseline:
    """Read and check a baseline file; ``BaselineError`` names the file and the field.

    ``known_checks`` lists the figures a ``checks`` entry may name (all, if empty).
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(file, "(file)", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(file, "(file)", f"cannot read the file: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        expected = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise BaselineError(file, "(json)", expected) from None
    _validated(_HeaderFile, raw, file, known_checks)  # another kind or version: stop here
    data = _validated(_BaselineFile, raw, file, known_checks)
    baseline = Baseline(
        name=data.name,
        created=data.created,
        command=data.command,
        git_commit=data.git_commit,
        git_dirty=data.git_dirty,
        machine=Machine(**data.machine.model_dump()),
        sources=tuple(data.sources),
        repetitions=data.repetitions,
        scenarios=tuple(_scenario(entry) for entry in data.scenarios),
        version=data.version,
    )
    for index, entry in enumerate(baseline.scenarios):  # a damaged scenario fails now, not mid-run
        entry.scenario(file, f"scenarios[{index}].scenario_yaml")
    return baseline


def _scenario(entry: _ScenarioFile) -> ScenarioBaseline:
    calibration = entry.calibration
    return ScenarioBaseline(
        name=entry.name,
        source=entry.source,
        scenario_yaml=entry.scenario_yaml,
        checks=tuple(entry.checks),
        calibration=None
        if calibration is None
        else EmbeddedCalibration(calibration.source, calibration.warning, calibration.data),
        sim=None if entry.sim is None else entry.sim.figures,
        real=None if entry.real is None else [run.figures for run in entry.real.repetitions],
        sim_notes=[] if entry.sim is None else entry.sim.notes,
        real_notes=[] if entry.real is None else [run.notes for run in entry.real.repetitions],
    )


# --------------------------------------------------------------------------- the machine


def this_machine() -> Machine:
    """The machine this process runs on (``harness.run.machine.describe_machine``)."""
    found = describe_machine()
    return Machine(
        hostname=str(found["host"]),
        cpu_model=str(found["cpu_model"]),
        cores=int(found["cores"]),
        python=str(found["python"]),
        platform=str(found["platform"]),
    )


def git_state() -> tuple[str | None, bool | None]:
    """The commit checked out and whether tracked files have changes; Nones outside git."""
    return git_commit(), git_dirty()


def sim_figures(figures: Mapping[str, Figure]) -> dict[str, Figure]:
    """The deterministic figures of a sim run: all but the wall-clock ones."""
    return {k: v for k, v in figures.items() if k not in WALL_CLOCK_FIGURES}
