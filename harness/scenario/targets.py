"""k6-style thresholds: check a scenario's targets against measured figures.

Each target (``p95_ms <= 10``) is evaluated against every backend's
``Summary.figures()``. A missing figure fails its target. A latency
percentile that is infinite (``Summary.infinite_figures()``: its rank lands
on an expected completion that never arrived) is checked as ``math.inf``, so
it fails an upper bound, and shows as "∞ (incomplete)". The verdicts are
shown as a table after a run; ``swarmtwin run --fail-on-targets`` exits 1
when a critical one fails, which is how a CI job gates on a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.table import Table

from harness.metrics.figures import Summary
from harness.render.table import INFINITE, MISSING
from harness.scenario.schema import Scenario


@dataclass(frozen=True)
class Verdict:
    """One target checked against one backend's figure."""

    backend: str
    threshold: str
    critical: bool
    actual: float | None
    passed: bool


def evaluate_targets(scenario: Scenario, summaries: dict[str, Summary]) -> list[Verdict]:
    """Every target against every backend that ran."""
    verdicts = []
    for backend, summary in summaries.items():
        figures, infinite = summary.figures(), summary.infinite_figures()
        for target in scenario.targets:
            actual = math.inf if target.metric in infinite else figures.get(target.metric)
            value = None if actual is None else float(actual)
            verdicts.append(
                Verdict(backend, target.threshold, target.critical, value, target.passes(value))
            )
    return verdicts


def render_targets(verdicts: list[Verdict]) -> Table:
    table = Table(title="targets")
    for column in ("backend", "threshold", "critical", "measured", "result"):
        table.add_column(column)
    for v in verdicts:
        if v.actual is None:
            measured = MISSING
        else:
            measured = INFINITE if math.isinf(v.actual) else f"{v.actual:,.4g}"
        result = "[green]pass[/]" if v.passed else "[red]FAIL[/]"
        table.add_row(v.backend, v.threshold, "yes" if v.critical else "no", measured, result)
    return table
