"""``swarmtwin regress``: rerun a baseline's scenarios and decide whether this build regressed.

How it works. ``run_regress(baseline, file, options, log)`` takes a baseline
read by ``harness.regress.baseline.read_baseline`` and, for each of its
scenarios (the embedded, resolved YAML, so the plan is the one the baseline
replayed):

1. **Sim, exact.** The model runs once with the calibration the baseline
   embeds (never a local file), so the result depends only on the code; the
   model is deterministic for a seed and calibration, so every figure but
   wall-clock ones must equal the baseline's (``compare_sim``).
2. **Real, statistical.** The real system runs ``repetitions`` times (by
   default as many as the baseline has), one after another, and each figure
   the scenario checks is judged against the baseline's runs by a one-sided
   Mann-Whitney U test plus a minimum effect on the ratio of medians
   (``harness.regress.decide.decide``, which says how).

Progress goes to ``log`` one line per run. ``RegressResult.regressed`` is
True when a sim figure moved or a checked real figure regressed; the CLI
exits 1 then and 0 otherwise. An invalid run (``Summary.valid`` False: its
driver reported errors) is never evidence: ``require_valid`` raises
``InvalidRunError`` as soon as one comes back, and the CLI exits 3.
``--repetitions`` is checked by the CLI's argparse type
(``harness.cli.options.REPETITIONS``). When this machine is not the baseline's kind
(CPU model, cores or Python differ) the real verdicts are advisory: shown,
with a warning, but they do not decide the exit code unless
``gate_real_anywhere`` is set. A warning also says when the test-only
slowdown hook (``real.slowdown``) is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.metrics.figures import Figure, Summary, summarize
from harness.metrics.summary import require_valid
from harness.regress.baseline import Baseline, ScenarioBaseline, this_machine
from harness.regress.decide import (
    DEFAULT_ALPHA,
    INFO_FIGURES,
    RULES,
    MetricVerdict,
    SimComparison,
    check_repetitions,
    compare_sim,
    decide,
    describe,
    missing,
)
from harness.run.runner import run_backend
from harness.scenario.compile import compile_plan
from harness.scenario.errors import ScenarioError
from harness.scenario.schema import Scenario

Log = Callable[[str], None]


@dataclass(frozen=True)
class RegressOptions:
    """What ``swarmtwin regress`` was asked to do."""

    repetitions: int | None = None  # None: as many as the baseline has
    sim: bool = True
    real: bool = True
    alpha: float = DEFAULT_ALPHA
    min_effects: Mapping[str, float] = field(default_factory=dict)  # overrides of RULES
    only: tuple[str, ...] = ()  # scenario names; empty: all
    gate_real_anywhere: bool = False  # let real figures fail the check on another machine


@dataclass
class RegressResult:
    """Everything one ``swarmtwin regress`` found."""

    baseline_file: str
    baseline_name: str
    repetitions: int
    alpha: float
    sim: list[SimComparison] = field(default_factory=list)
    real: list[MetricVerdict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    min_effects: Mapping[str, float] = field(default_factory=dict)  # overrides of RULES
    real_advisory: bool = False  # another machine's baseline: real verdicts are shown only

    @property
    def sim_changed(self) -> bool:
        return any(c.changes for c in self.sim)

    @property
    def real_regressions(self) -> list[MetricVerdict]:
        return [v for v in self.real if v.checked and v.verdict in ("regressed", "missing")]

    @property
    def regressed(self) -> bool:
        return self.sim_changed or (bool(self.real_regressions) and not self.real_advisory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline_file,
            "name": self.baseline_name,
            "regressed": self.regressed,
            "real_advisory": self.real_advisory,
            "repetitions": self.repetitions,
            "alpha": self.alpha,
            "rules": {
                k: asdict(v) | {"min_effect": self.min_effects.get(k, v.min_effect)}
                for k, v in RULES.items()
            },
            "warnings": self.warnings,
            "sim": [
                {
                    "scenario": c.scenario,
                    "compared": c.compared,
                    "added": c.added,
                    "removed": c.removed,
                    "changes": [
                        asdict(x) | {"change": x.change, "change_pct": x.change_pct}
                        for x in c.changes
                    ],
                }
                for c in self.sim
            ],
            "real": [asdict(v) | {"change_pct": v.change_pct} for v in self.real],
            "notes": self.notes,
        }


# --------------------------------------------------------------------------- running


def run_regress(
    baseline: Baseline, baseline_file: str, options: RegressOptions, log: Log
) -> RegressResult:
    """Run the baseline's scenarios on this build and compare (see the module docstring)."""
    from real.slowdown import note as slowdown_note

    if not 0 < options.alpha < 1:
        raise ScenarioError(
            "(command line)", "--alpha", f"expected 0 < alpha < 1, got {options.alpha}"
        )
    repetitions = options.repetitions or baseline.repetitions
    result = RegressResult(baseline_file, baseline.name, repetitions, options.alpha)
    result.min_effects = dict(options.min_effects)
    entries = _selected(baseline, options.only, baseline_file)
    if options.real and any(e.real is not None for e in entries):
        check_repetitions(repetitions, baseline.repetitions, options.alpha, baseline_file)
    differences = this_machine().differences(baseline.machine)
    if options.real and differences:
        result.real_advisory = not options.gate_real_anywhere
        consequence = (
            "they are gated anyway (--gate-real-anywhere)"
            if options.gate_real_anywhere
            else "they are shown but do not decide the exit code (--gate-real-anywhere to gate)"
        )
        result.warnings.append(
            "this machine is not the kind the baseline was measured on, so real figures are "
            f"not comparable ({'; '.join(differences)}): {consequence}"
        )
    hook = slowdown_note()
    if hook is not None:
        result.warnings.append(hook)
    for entry in entries:
        scenario = entry.scenario(baseline_file, f"scenario {entry.name!r}")
        if options.sim and entry.sim is not None:
            result.sim.append(_run_sim(entry, scenario, log))
        if options.real and entry.real is not None:
            runs = _run_real(entry, scenario, repetitions, log)
            result.notes[entry.name] = runs[0].notes  # the first run's, as an example
            result.real.extend(_judge(entry, runs, options))
    return result


def _selected(baseline: Baseline, only: Sequence[str], file: str) -> list[ScenarioBaseline]:
    names = [entry.name for entry in baseline.scenarios]
    missing = [name for name in only if name not in names]
    if missing:
        expected = f"expected scenario names from the baseline ({', '.join(names)})"
        raise ScenarioError(file, "--only", f"{expected}, got {', '.join(missing)}")
    return [entry for entry in baseline.scenarios if not only or entry.name in only]


def _run_sim(entry: ScenarioBaseline, scenario: Scenario, log: Log) -> SimComparison:
    assert entry.sim is not None and entry.calibration is not None
    log(f"sim  {entry.name}: running with the baseline's calibration ({entry.calibration.source})")
    start = time.perf_counter()
    plan = compile_plan(scenario)
    calibration = entry.calibration.calibration()
    summary = summarize(plan, run_backend(plan, "sim", scenario, calibration=calibration))
    require_valid({f"sim {entry.name}": summary}, "the regression check")
    comparison = compare_sim(entry.name, entry.sim, summary.figures())
    comparison.wall_seconds = time.perf_counter() - start
    moved = f"{len(comparison.changes)} moved" if comparison.changes else "all identical"
    seconds = comparison.wall_seconds
    log(f"sim  {entry.name}: {comparison.compared} figures, {moved} ({seconds:.1f} s)")
    return comparison


def _run_real(
    entry: ScenarioBaseline, scenario: Scenario, repetitions: int, log: Log
) -> list[Summary]:
    plan = compile_plan(scenario)
    runs = []
    for index in range(repetitions):
        start = time.perf_counter()
        summary = summarize(plan, run_backend(plan, "real", scenario))
        runs.append(summary)
        label = f"real {entry.name} {index + 1}/{repetitions}"
        log(f"{label}: {brief(summary.figures())} ({time.perf_counter() - start:.1f} s)")
        require_valid({label: summary}, "the regression check")
    return runs


def brief(figures: Mapping[str, Figure]) -> str:
    """One line of a run's headline figures, for progress output."""
    p95 = figures.get("p95_ms")
    rate = figures.get("deliveries_per_s") or 0
    reliability = figures.get("reliability")
    shown = "n/a" if p95 is None else f"{float(p95):.3f} ms"
    rel = "n/a" if reliability is None else f"{float(reliability) * 100:.3f} %"
    return f"p95 {shown}, {float(rate):,.0f} deliveries/s, reliability {rel}"


def _judge(
    entry: ScenarioBaseline, runs: list[Summary], options: RegressOptions
) -> list[MetricVerdict]:
    assert entry.real is not None
    new_figures = [run.figures() for run in runs]
    verdicts = []
    for name in entry.checks:
        new, base = _samples(new_figures, name), _samples(entry.real, name)
        rule, effect = RULES[name], options.min_effects.get(name)
        if len(new) < len(new_figures):  # e.g. no latency at all: nothing was delivered
            verdicts.append(missing(entry.name, rule, base, len(new_figures) - len(new)))
            continue
        verdicts.append(decide(entry.name, rule, new, base, options.alpha, effect))
    for name, (label, unit) in INFO_FIGURES.items():
        new, base = _samples(new_figures, name), _samples(entry.real, name)
        if new and base and name not in entry.checks:
            verdicts.append(describe(entry.name, name, label, unit, new, base))
    return verdicts


def _samples(runs: Sequence[Mapping[str, Figure]], name: str) -> list[float]:
    return [float(value) for run in runs if (value := run.get(name)) is not None]
