"""Scores and levels, as docs/design.md ("Scores and levels") defines them.

How it works. A passed test scores 100. A failed one scores by how close it
came: ``value / target`` for an at-least target and ``target / value`` for
an at-most one, times 100, capped below 100; an unmeasured or infinite
figure scores 0. The overall score is the weighted mean with critical tests
counted twice. The level is FULL when every critical test passes and at
least 90 % of all tests pass, PARTIAL when at least 80 % of the critical
tests and 70 % of all tests pass, and FAILED otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from harness.certify.catalog import Criterion, Measurement

CRITICAL_WEIGHT = 2.0
FAILED_CAP = 99.9  # a failed test never shows as a full 100


def score_of(spec: Criterion, value: float | None) -> float:
    """100 for a pass; otherwise how close the figure came, 0..99.9."""
    if spec.passes(value):
        return 100.0
    if value is None or math.isnan(value) or math.isinf(value):
        return 0.0
    if spec.direction == ">=":
        ratio = value / spec.target if spec.target > 0 else 0.0
    else:
        ratio = spec.target / value if value > 0 else 0.0
    return min(max(100.0 * ratio, 0.0), FAILED_CAP)


@dataclass(frozen=True)
class Verdict:
    """The suite's outcome."""

    level: str
    score: float
    passed: int
    total: int
    critical_passed: int
    critical_total: int

    @property
    def summary(self) -> str:
        return (
            f"{self.level}: score {self.score:.1f}; {self.passed} of {self.total} tests passed, "
            f"{self.critical_passed} of {self.critical_total} critical"
        )


def overall(measurements: Sequence[Measurement]) -> Verdict:
    """Weighted score and level of all the measurements."""
    weights = [CRITICAL_WEIGHT if m.spec.critical else 1.0 for m in measurements]
    total_weight = math.fsum(weights)
    score = math.fsum(w * m.score for w, m in zip(weights, measurements, strict=True))
    critical = [m for m in measurements if m.spec.critical]
    counts = Verdict(
        level="",
        score=score / total_weight if total_weight else 0.0,
        passed=sum(m.passed for m in measurements),
        total=len(measurements),
        critical_passed=sum(m.passed for m in critical),
        critical_total=len(critical),
    )
    return replace(counts, level=level_of(counts))


def level_of(v: Verdict) -> str:
    all_share = v.passed / v.total if v.total else 0.0
    critical_share = v.critical_passed / v.critical_total if v.critical_total else 1.0
    if v.critical_passed == v.critical_total and all_share >= 0.9:
        return "FULL"
    if critical_share >= 0.8 and all_share >= 0.7:
        return "PARTIAL"
    return "FAILED"
