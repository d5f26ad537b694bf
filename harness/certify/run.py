"""Run a certification suite and write its report.

How it works. ``certify`` runs every scenario of the suite, group by group,
on the real system (``repetitions`` times, one after another) and on the
model (its seeded replications, all but the last on this machine's process
pool, or on a Dask cluster with ``cluster``, once that scenario's real runs
are over: ``harness.run.replications``), through the same ``run_scenario`` as
``swarmtwin run`` (so each scenario also gets its ordinary run folder). Then it runs the security
checks against a live tcp coordinator (``harness.certify.security.suite``), measures the
tests (``catalog.measure``; the two failover tests only when the suite has a
``failover`` group), scores them (``scoring``) and writes
``reports/certifications/<id>/`` with ``report.json``, ``report.md``,
``report.html`` and the plots. Nothing in the report is typed in: every
figure comes from a run folder the report links to. An invalid run (its
driver reported errors: ``Summary.valid`` False) is never evidence: the
certification stops with ``InvalidRunError`` (exit 3) naming the run folder,
which keeps ``"valid": false`` in its ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.certify.catalog import (
    Criterion,
    Measurement,
    ScenarioRuns,
    finish,
    measure,
    with_targets,
)
from harness.certify.html import render_html
from harness.certify.plots import draw_all
from harness.certify.report import render_markdown, report_data
from harness.certify.scoring import Verdict, overall, score_of
from harness.certify.suite import Suite, SuiteScenario
from harness.metrics.figures import Summary
from harness.metrics.summary import require_valid
from harness.run.folder import new_run_id
from harness.run.machine import describe_machine
from harness.run.runner import labelled_repetitions, run_scenario
from harness.sweep.executor import local_workers, sweep_executor

if TYPE_CHECKING:
    from harness.certify.security.suite import SecurityReport

Say = Callable[[str], None]
Progress = Callable[[str, float], None]


@dataclass
class Certification:
    """Everything a certification produced."""

    cert_id: str
    folder: Path
    suite: Suite
    created: datetime
    machine: dict[str, object]
    command: str
    runs: list[ScenarioRuns]
    measurements: list[Measurement]
    verdict: Verdict
    security: SecurityReport | None
    warnings: list[str] = field(default_factory=list)


def certify(
    suite: Suite,
    reports: Path,
    command: str,
    say: Say = lambda _line: None,
    progress: Progress | None = None,
    cluster: str | None = None,
) -> Certification:
    """Run the suite, measure and score its tests, write the report folder."""
    created = datetime.now(UTC)
    cert_id = new_run_id(suite.settings.name, created)
    folder = reports / "certifications" / cert_id
    warnings: list[str] = []
    with sweep_executor(cluster, local_workers()) as pool:  # the model's replications
        runs = [
            _run_member(m, suite, reports, say, progress, warnings, pool) for m in suite.scenarios
        ]
    say("security checks against a live tcp coordinator")
    security = _security(suite, say)
    specs = [spec for spec in with_targets(suite.settings.targets) if in_suite(spec, suite)]
    if not suite.group("failover"):
        warnings.append(
            "the suite names no failover scenario: the failover tests (uptime through a "
            "leader crash, leader failover) were not run and are not scored"
        )
    measurements = [_measure(spec, runs, security) for spec in specs]
    for item in measurements:
        item.score = score_of(item.spec, item.value)
    cert = Certification(
        cert_id,
        folder,
        suite,
        created,
        describe_machine(),
        command,
        runs,
        measurements,
        overall(measurements),
        security,
        sorted(set(warnings)),
    )
    write_report(cert)
    return cert


def _run_member(
    member: SuiteScenario,
    suite: Suite,
    reports: Path,
    say: Say,
    progress: Progress | None,
    warnings: list[str],
    executor: Executor,
) -> ScenarioRuns:
    reps = suite.settings.repetitions
    scenario = member.scenario.model_copy(update={"repetitions": reps})
    say(
        f"{member.group}: {scenario.name} ({member.path}), {reps} real run(s) on "
        f"{scenario.transport} and {scenario.model.replications} seeded model run(s), "
        f"{scenario.duration:g} s each"
    )
    named = None if progress is None else _prefixed(progress, scenario.name)
    outcome = run_scenario(scenario, ("real", "sim"), reports, named, executor=executor)
    warnings.extend(outcome.warnings)
    runs = {
        f"{scenario.name} {label} (run folder {outcome.run_dir})": summary
        for label, summary in labelled_repetitions(outcome).items()
    }
    require_valid(runs, "certification")
    real = outcome.repetitions.get("real", [])
    sims = outcome.repetitions.get("sim", [])
    return ScenarioRuns(member.group, scenario.name, outcome.run_dir, real, sims)


def in_suite(spec: Criterion, suite: Suite) -> bool:
    """Every test but the failover ones, which need the optional ``failover`` group."""
    return spec.group != "failover" or bool(suite.group("failover"))


def _prefixed(progress: Progress, name: str) -> Progress:
    return lambda label, fraction: progress(f"{name} {label}", fraction)


def _security(suite: Suite, say: Say) -> SecurityReport:
    from harness.certify.cli_check import cli_check
    from harness.certify.security.suite import run_security_checks

    settings = suite.settings.security
    report = run_security_checks(settings.seed, settings.fuzz_frames, lambda line: say(f"  {line}"))
    return dataclasses.replace(report, checks=(*report.checks, *cli_check()))


def _measure(
    spec: Criterion, runs: list[ScenarioRuns], security: SecurityReport | None
) -> Measurement:
    if spec.key == "uptime":
        return _uptime(spec, runs)
    if spec.group != "security":
        return measure(spec, runs)
    if security is None:
        return finish(spec, [None], [])
    item = finish(spec, [security.compliance], [])
    passed = sum(check.passed for check in security.checks)
    item.detail = f"{passed} of {len(security.checks)} checks passed"
    return item


def _uptime(spec: Criterion, runs: list[ScenarioRuns]) -> Measurement:
    """Uptime of the load runs, with the fault runs' own uptime beside it as detail."""
    item = measure(spec, runs)
    faulted = [
        f"{r.name} {100 * u:.1f} %"
        for r in runs
        if r.group == "recovery"
        for u in [_mean_uptime(r.real)]
        if u is not None
    ]
    if faulted:
        item.detail = "Uptime of the recovery runs, faults included: " + ", ".join(faulted)
    return item


def _mean_uptime(summaries: list[Summary]) -> float | None:
    values = [s.availability.uptime for s in summaries]
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known and len(known) == len(values) else None


def write_report(cert: Certification) -> Path:
    """Draw the plots and write report.json, report.md and report.html; the folder."""
    cert.folder.mkdir(parents=True, exist_ok=True)
    plots = draw_all(cert.folder, cert.runs)
    data = report_data(cert)
    data["plots"] = [p.name for p in plots]
    (cert.folder / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (cert.folder / "report.md").write_text(render_markdown(data, data["plots"]))
    (cert.folder / "report.html").write_text(render_html(data, cert.folder))
    return cert.folder
