"""``swarmtwin baseline update NAME``: measure the scenarios and write a regression baseline.

What it measures. ``--scenario FILE`` (repeatable) names either a scenario
file or a **regression suite**: a YAML file listing scenario files (paths
relative to the suite) with the figures each one gates::

    name: ci
    repetitions: 10          # real runs per scenario in the baseline
    scenarios:
      - file: latency-tcp.yaml
        checks: [p95_ms, deliveries_per_s, reliability]
      - file: throughput-inproc.yaml
        checks: [deliveries_per_s, reliability]

A plain scenario file gates ``harness.regress.decide.DEFAULT_CHECKS``. Without
``--scenario`` the files the existing ``reports/baselines/NAME.json``
was made from are read again (so an edited scenario is picked up; if they
are gone, the scenarios embedded in it are reused), and without a baseline
``scenarios/regression/NAME.yaml`` (in the working directory, else the one
shipped with swarmtwin: ``harness.scenario.shipped``, which also resolves every
``--scenario``). Repetitions: ``--repetitions``, else the suite's, else the
old baseline's, else ``DEFAULT_REPETITIONS``.

How. For each scenario, the resolved YAML is parsed back (the baseline
replays exactly what it embeds). If the scenario lists ``sim``, the model
runs once with the calibration ``sim.calibration.load_calibration`` picks
for its transport from ``<reports>/calibrations`` (or ``--calibration
FILE``), passed through its own JSON form, which is what the baseline
embeds and what ``regress`` will use. If it
lists ``real``, the real system runs ``repetitions`` times, one after
another. A baseline is never measured with the test-only slowdown hook on,
nor from an invalid run (``require_valid``: ``InvalidRunError``, exit 3).
"""

from __future__ import annotations

import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from harness.metrics.figures import summarize
from harness.metrics.summary import require_valid
from harness.regress.baseline import (
    Baseline,
    EmbeddedCalibration,
    ScenarioBaseline,
    git_state,
    read_baseline,
    sim_figures,
    this_machine,
)
from harness.regress.check import brief
from harness.regress.decide import DEFAULT_CHECKS, RULES
from harness.run.machine import ROOT
from harness.run.runner import run_backend
from harness.scenario.compile import compile_plan
from harness.scenario.errors import ScenarioError, validate_file
from harness.scenario.schema import Scenario, load_scenario, parse_scenario
from harness.scenario.shipped import locate, resolve, scenarios_dir
from harness.scenario.source import read_yaml

Log = Callable[[str], None]
DEFAULT_REPETITIONS = 10
SUITES_DIR = Path("scenarios/regression")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SuiteEntry(BaseModel):
    """One scenario of a regression suite and the figures it gates."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    file: str = Field(min_length=1)
    checks: list[str] = Field(default_factory=lambda: list(DEFAULT_CHECKS), min_length=1)


class SuiteFile(BaseModel):
    """A regression suite: scenario files and how many real runs a baseline takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    name: str = Field(min_length=1)
    description: str = ""
    repetitions: int = Field(default=DEFAULT_REPETITIONS, ge=1, le=1000)
    scenarios: list[SuiteEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Planned:
    """A scenario to measure, where it came from and what it gates."""

    source: str
    scenario: Scenario
    checks: tuple[str, ...]


def baseline_path(reports: Path, name: str) -> Path:
    """``<reports>/baselines/NAME.json``; ``ScenarioError`` for a name that is not a plain word."""
    if not NAME_PATTERN.match(name):
        expected = "expected letters, digits, '_', '-' or '.', starting with a letter or digit"
        raise ScenarioError("(command line)", "NAME", f"{expected}, got {name!r}")
    return reports / "baselines" / f"{name}.json"


def load_sources(files: Sequence[str]) -> tuple[list[Planned], int | None]:
    """The scenarios named by suite or scenario ``files``, and a suite's repetitions."""
    planned: list[Planned] = []
    repetitions = None
    for file in files:
        path = resolve(file, "scenario or regression suite")
        data = read_yaml(path, file)
        if isinstance(data, dict) and "scenarios" in data and "workload" not in data:
            entries, reps = _load_suite(file, path, data)
            planned.extend(entries)
            repetitions = reps if repetitions is None else max(repetitions, reps)
        else:
            planned.append(Planned(file, load_scenario(path), DEFAULT_CHECKS))
    names = [p.scenario.name for p in planned]
    for name in names:
        if names.count(name) > 1:
            raise ScenarioError(
                ", ".join(files), "name", f"expected unique scenario names, {name!r} repeats"
            )
    return planned, repetitions


def _load_suite(file: str, path: Path, data: dict[str, Any]) -> tuple[list[Planned], int]:
    suite = validate_file(SuiteFile, data, file)
    planned = []
    for index, entry in enumerate(suite.scenarios):
        for k, check in enumerate(entry.checks):
            if check not in RULES:
                expected = f"expected one of {', '.join(RULES)}, got {check!r}"
                raise ScenarioError(file, f"scenarios[{index}].checks[{k}]", expected)
        member = path.parent / entry.file
        planned.append(Planned(str(member), load_scenario(member), tuple(entry.checks)))
    return planned, suite.repetitions


def plan_update(
    name: str, files: Sequence[str], existing: Path, repetitions: int | None, log: Log
) -> tuple[list[Planned], int, tuple[str, ...]]:
    """What ``baseline update`` measures, how often, and the files it came from
    (``repetitions`` is checked by the CLI's argparse type)."""
    old = read_baseline(existing, tuple(RULES)) if existing.exists() else None
    if files:
        planned, suite_reps = load_sources(files)
        sources = tuple(files)
    elif old is not None and all(locate(s) is not None for s in old.sources):
        log(f"scenarios: {', '.join(old.sources)} (recorded in {existing})")
        planned, suite_reps = load_sources(old.sources)
        sources = old.sources
    elif old is not None:
        log(f"scenarios: those embedded in {existing} (its source files are gone)")
        planned = [
            Planned(e.source, e.scenario(str(existing), f"scenario {e.name!r}"), e.checks)
            for e in old.scenarios
        ]
        suite_reps, sources = None, old.sources
    else:
        default = SUITES_DIR / f"{name}.yaml"
        found = locate(default)
        if found is None:
            expected = (
                f"a --scenario FILE: there is no {existing} to reuse, no {default} in the "
                f"working directory and no regression/{name}.yaml in {scenarios_dir()}"
            )
            raise ScenarioError("(command line)", "--scenario", f"expected {expected}")
        log(f"scenarios: {found} (the default for baseline {name!r})")
        planned, suite_reps = load_sources([str(default)])
        sources = (str(default),)
    old_reps = old.repetitions if old is not None else None
    reps = repetitions or suite_reps or old_reps or DEFAULT_REPETITIONS
    return planned, reps, sources


def make_baseline(
    name: str,
    planned: Sequence[Planned],
    repetitions: int,
    sources: Sequence[str],
    log: Log,
    calibration_path: str | None = None,
    command: str | None = None,
    reports: Path | None = None,
) -> Baseline:
    """Measure every planned scenario (sim once, real ``repetitions`` times).

    Without ``calibration_path`` the sim's calibration comes from
    ``<reports>/calibrations`` (``reports/calibrations`` when ``reports`` is None).
    """
    from real.slowdown import ENV_VAR, note

    if note() is not None and any("real" in p.scenario.backends for p in planned):
        expected = "unset: a baseline measured with the test-only slowdown hook would be wrong"
        raise ScenarioError("(environment)", ENV_VAR, f"expected {expected}")
    commit, dirty = git_state()
    entries = tuple(_measure(p, repetitions, calibration_path, log, reports) for p in planned)
    return Baseline(
        name=name,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command or shlex.join(["swarmtwin", *sys.argv[1:]]),
        git_commit=commit,
        git_dirty=dirty,
        machine=this_machine(),
        sources=tuple(sources),
        repetitions=repetitions,
        scenarios=entries,
    )


def _in_repo(path: str) -> str:
    """``path`` relative to the checkout when it is inside it (a shipped calibration)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return path


def _measure(
    planned: Planned,
    repetitions: int,
    calibration_path: str | None,
    log: Log,
    reports: Path | None = None,
) -> ScenarioBaseline:
    text = planned.scenario.resolved_yaml()
    scenario = parse_scenario(yaml.safe_load(text), planned.source)  # exactly what is embedded
    plan = compile_plan(scenario)
    name = scenario.name
    embedded, sim, sim_notes = None, None, []
    if "sim" in scenario.backends:
        from sim.calibration import calibrations_dir, load_calibration

        directory = None if reports is None else calibrations_dir(reports)
        calibration, warning = load_calibration(
            calibration_path, transport=scenario.transport, directory=directory
        )
        source = _in_repo(calibration.source)
        embedded = EmbeddedCalibration(source, warning, calibration.to_dict())
        if warning:
            log(f"warning: {warning}")
        start = time.perf_counter()
        result = run_backend(plan, "sim", scenario, calibration=embedded.calibration())
        summary = summarize(plan, result)
        require_valid({f"sim {name}": summary}, "a regression baseline")
        sim, sim_notes = sim_figures(summary.figures()), summary.notes
        log(f"sim  {name}: {brief(sim)} ({time.perf_counter() - start:.1f} s)")
    real, real_notes = None, []
    if "real" in scenario.backends:
        real = []
        for index in range(repetitions):
            start = time.perf_counter()
            summary = summarize(plan, run_backend(plan, "real", scenario))
            require_valid(
                {f"real {name} {index + 1}/{repetitions}": summary}, "a regression baseline"
            )
            real.append(summary.figures())
            real_notes.append(summary.notes)
            elapsed = time.perf_counter() - start
            log(f"real {name} {index + 1}/{repetitions}: {brief(real[-1])} ({elapsed:.1f} s)")
    return ScenarioBaseline(
        name=name,
        source=planned.source,
        scenario_yaml=text,
        checks=planned.checks,
        calibration=embedded,
        sim=sim,
        real=real,
        sim_notes=sim_notes,
        real_notes=real_notes,
    )
