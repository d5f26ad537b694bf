"""Regression baselines: the versioned ``reports/baselines/NAME.json`` file.

A baseline holds what ``swarmtwin regress`` needs to rerun and judge a build
on any machine, with nothing taken from local files:

- ``format`` (``"swarmtwin-baseline"``) and ``version`` (``VERSION``);
- ``name``, ``created`` (UTC, ISO 8601), ``command``, ``git_commit`` and
  ``git_dirty`` (None outside a git work tree);
- ``machine``: hostname, CPU model, usable cores, Python version, platform
  (``harness.machine``); ``regress`` warns when the CPU model, cores or
  Python differ;
- ``sources``: the suite or scenario files it was made from;
- ``repetitions``: real runs per scenario;
- ``scenarios``: one entry per scenario, with its ``name``, ``source``
  file, ``scenario_yaml`` (``Scenario.resolved_yaml()``: every field, so a
  rerun replays exactly the same plan), ``checks`` (the figures the
  statistical test gates, ``harness.regress_decide.RULES``), ``calibration``
  (``source`` file, the loader's ``warning`` and the full calibration
  ``data``, which ``regress`` hands to the model instead of looking for a
  local file), ``sim`` (``figures``: every figure of ``Summary.figures()``
  but wall-clock ones, and the run's ``notes``; null for a real-only
  scenario) and ``real`` (``repetitions``: each run's ``Summary.figures()``
  and ``notes``; null for a sim-only scenario).

``read_baseline`` checks every field and raises ``BaselineError`` (a
``ScenarioError``, so the CLI prints ``<file>: <field>: <expected>`` and
exits 2); ``write_baseline`` writes indented, key-sorted JSON. The embedded
scenario and calibration are parsed when the file is read, so a damaged one
is reported before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.machine import SPEED_KEYS, describe_machine, git_commit, git_dirty
from harness.metrics import Figure
from harness.scenario import Scenario, parse_scenario
from harness.scenario_errors import ScenarioError, got
from sim.calibration import Calibration

KIND = "swarmtwin-baseline"
VERSION = 1
WALL_CLOCK_FIGURES: tuple[str, ...] = ("wall_seconds",)


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

        Those are ``harness.machine.SPEED_KEYS`` (CPU model, cores, Python): a
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


class _Reader:
    """Typed access to a parsed JSON document; every failure names the field."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, at: str, expected: str) -> BaselineError:
        return BaselineError(self.file, at, expected)

    def mapping(self, data: Any, at: str) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(at, f"expected a mapping, got {got(data)}")
        return data

    def get(self, data: Mapping[str, Any], key: str, at: str) -> Any:
        if key not in data:
            raise self.fail(_join(at, key), "required field is missing")
        return data[key]

    def text(self, data: Mapping[str, Any], key: str, at: str, optional: bool = False) -> Any:
        value = self.get(data, key, at)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(_join(at, key), f"expected a string, got {got(value)}")
        return value

    def integer(self, data: Mapping[str, Any], key: str, at: str, minimum: int = 0) -> int:
        value = self.get(data, key, at)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                _join(at, key), f"expected a whole number >= {minimum}, got {got(value)}"
            )
        return value

    def strings(self, data: Mapping[str, Any], key: str, at: str) -> list[str]:
        value = self.get(data, key, at)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(_join(at, key), f"expected a list of strings, got {got(value)}")
        return value

    def figures(self, data: Any, at: str) -> dict[str, Figure]:
        figures = self.mapping(data, at)
        for name, value in figures.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if value is not None and not number:
                raise self.fail(_join(at, name), f"expected a number or null, got {got(value)}")
        return dict(figures)


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def read_baseline(path: Path | str, known_checks: Sequence[str] = ()) -> Baseline:
    """Read and check a baseline file; ``BaselineError`` names the file and the field.

    ``known_checks`` lists the figures a ``checks`` entry may name (all, if empty).
    """
    file = str(path)
    reader = _Reader(file)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise reader.fail("(file)", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise reader.fail("(file)", f"cannot read the file: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise reader.fail("(json)", f"line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    data = reader.mapping(raw, "(file)")
    if data.get("format") != KIND:
        raise reader.fail("format", f"expected {KIND!r}, got {got(data.get('format'))}")
    version = reader.integer(data, "version", "")
    if version != VERSION:
        raise reader.fail(
            "version", f"expected {VERSION} (the format this swarmtwin reads), got {version}"
        )
    machine = reader.mapping(reader.get(data, "machine", ""), "machine")
    dirty = reader.get(data, "git_dirty", "")
    if dirty is not None and not isinstance(dirty, bool):
        raise reader.fail("git_dirty", f"expected true, false or null, got {got(dirty)}")
    repetitions = reader.integer(data, "repetitions", "", minimum=0)
    entries = reader.get(data, "scenarios", "")
    if not isinstance(entries, list) or not entries:
        raise reader.fail("scenarios", f"expected a non-empty list, got {got(entries)}")
    scenarios = tuple(
        _read_scenario(reader, entry, f"scenarios[{i}]", repetitions, known_checks)
        for i, entry in enumerate(entries)
    )
    return Baseline(
        name=reader.text(data, "name", ""),
        created=reader.text(data, "created", ""),
        command=reader.text(data, "command", ""),
        git_commit=reader.text(data, "git_commit", "", optional=True),
        git_dirty=dirty,
        machine=Machine(
            hostname=reader.text(machine, "hostname", "machine"),
            cpu_model=reader.text(machine, "cpu_model", "machine"),
            cores=reader.integer(machine, "cores", "machine"),
            python=reader.text(machine, "python", "machine"),
            platform=reader.text(machine, "platform", "machine"),
        ),
        sources=tuple(reader.strings(data, "sources", "")),
        repetitions=repetitions,
        scenarios=scenarios,
        version=version,
    )


def _read_scenario(
    reader: _Reader, raw: Any, at: str, repetitions: int, known_checks: Sequence[str]
) -> ScenarioBaseline:
    data = reader.mapping(raw, at)
    checks = reader.strings(data, "checks", at)
    for index, name in enumerate(checks):
        if known_checks and name not in known_checks:
            expected = f"expected one of {', '.join(known_checks)}, got {name!r}"
            raise reader.fail(f"{at}.checks[{index}]", expected)
    calibration = _read_calibration(
        reader, reader.get(data, "calibration", at), f"{at}.calibration"
    )
    sim_data = reader.get(data, "sim", at)
    sim, sim_notes = None, []
    if sim_data is not None:
        sim_map = reader.mapping(sim_data, f"{at}.sim")
        sim = reader.figures(reader.get(sim_map, "figures", f"{at}.sim"), f"{at}.sim.figures")
        sim_notes = reader.strings(sim_map, "notes", f"{at}.sim")
        if calibration is None:
            raise reader.fail(f"{at}.calibration", "expected the calibration the sim ran with")
    real_data = reader.get(data, "real", at)
    real: list[dict[str, Figure]] | None = None
    real_notes: list[list[str]] = []
    if real_data is not None:
        runs_at = f"{at}.real.repetitions"
        runs = reader.get(reader.mapping(real_data, f"{at}.real"), "repetitions", f"{at}.real")
        if not isinstance(runs, list) or len(runs) != repetitions:
            expected = f"expected a list of {repetitions} runs (the file's repetitions)"
            raise reader.fail(runs_at, f"{expected}, got {got(runs)}")
        real = []
        for i, run in enumerate(runs):
            run_map = reader.mapping(run, f"{runs_at}[{i}]")
            figures = reader.figures(
                reader.get(run_map, "figures", f"{runs_at}[{i}]"), f"{runs_at}[{i}].figures"
            )
            for name in checks:
                value = figures.get(name)
                if value is None:
                    expected = (
                        f"expected a number for the checked figure {name!r}, got {got(value)}"
                    )
                    raise reader.fail(f"{runs_at}[{i}].figures.{name}", expected)
            real.append(figures)
            real_notes.append(reader.strings(run_map, "notes", f"{runs_at}[{i}]"))
    if sim is None and real is None:
        raise reader.fail(at, "expected sim or real figures (both are null)")
    entry = ScenarioBaseline(
        name=reader.text(data, "name", at),
        source=reader.text(data, "source", at),
        scenario_yaml=reader.text(data, "scenario_yaml", at),
        checks=tuple(checks),
        calibration=calibration,
        sim=sim,
        real=real,
        sim_notes=sim_notes,
        real_notes=real_notes,
    )
    entry.scenario(reader.file, f"{at}.scenario_yaml")  # a damaged scenario fails now, not mid-run
    return entry


def _read_calibration(reader: _Reader, raw: Any, at: str) -> EmbeddedCalibration | None:
    if raw is None:
        return None
    data = reader.mapping(raw, at)
    warning = reader.text(data, "warning", at, optional=True)
    embedded = EmbeddedCalibration(
        reader.text(data, "source", at),
        warning,
        dict(reader.mapping(reader.get(data, "data", at), f"{at}.data")),
    )
    try:
        embedded.calibration()
    except (KeyError, TypeError, ValueError) as exc:
        raise reader.fail(f"{at}.data", f"expected a calibration (format 1): {exc!r}") from None
    return embedded


# --------------------------------------------------------------------------- the machine


def this_machine() -> Machine:
    """The machine this process runs on (``harness.machine.describe_machine``)."""
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
