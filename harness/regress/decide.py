"""How ``swarmtwin regress`` judges figures: exact for the sim, a test and an effect for real.

``compare_sim(scenario, old, new)`` compares every deterministic figure
(all of ``Summary.figures()`` but wall-clock ones) exactly and lists each
one that moved, with old, new and the change; figures on one side only are
listed apart and do not count as moved.

``decide(scenario, rule, new, base)`` judges one checked real figure. Its
``Rule`` says which way is worse and the minimum effect (``RULES``:
deliveries/s 10 % lower, p95 20 % higher, reliability 0.1 % lower). It runs
a one-sided Mann-Whitney U test of the new runs against the baseline's in
the worse direction (``harness.metrics.stats``) and takes the ratio of medians
new / baseline, with a seeded bootstrap 95 % interval. The figure
**regressed** when ``p < alpha`` (0.05 by default) *and* the ratio is worse
than the minimum effect. The mirror image (the test in the better direction,
the effect past the minimum) is **improved**: shown, never a failure. A
significant change smaller than the minimum is "small change", everything
else "not significant". A checked figure that some new runs did not produce
at all is "missing", which fails too. ``describe`` gives the figures a
scenario does not check (``INFO_FIGURES``) a two-sided test, for reading only.

``check_repetitions`` refuses sample sizes with which the exact test can
never reach ``p < alpha`` (3 runs against 3: the smallest p is 0.05), so a
single run, or a handful, is never compared with a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.metrics.figures import Figure
from harness.metrics.stats import bootstrap_ratio, mann_whitney_u, median, smallest_p
from harness.regress.baseline import sim_figures
from harness.scenario.errors import ScenarioError

DEFAULT_ALPHA = 0.05
BOOTSTRAP_SEED = 5  # every interval is drawn from this seed: same samples, same interval
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Rule:
    """How one real figure is judged: which way is worse and by how much it must move."""

    metric: str
    label: str
    unit: str
    worse: Literal["higher", "lower"]
    min_effect: float  # a fraction of the baseline median: 0.1 = 10 %


RULES: dict[str, Rule] = {
    rule.metric: rule
    for rule in (
        Rule("deliveries_per_s", "deliveries/s", "msg/s", "lower", 0.10),
        Rule("p95_ms", "p95 ms", "ms", "higher", 0.20),
        # no losses are expected without faults; 0.1 % is the certification's 99.9 % target
        Rule("reliability", "reliability %", "ratio", "lower", 0.001),
    )
}
DEFAULT_CHECKS: tuple[str, ...] = ("p95_ms", "deliveries_per_s", "reliability")
INFO_FIGURES: dict[str, tuple[str, str]] = {  # shown when a scenario does not check them
    "p50_ms": ("p50 ms", "ms"),
    "p95_ms": ("p95 ms", "ms"),
    "p99_ms": ("p99 ms", "ms"),
    "deliveries_per_s": ("deliveries/s", "msg/s"),
}


@dataclass(frozen=True)
class SimChange:
    """A sim figure that is not what the baseline recorded."""

    scenario: str
    figure: str
    old: Figure
    new: Figure

    @property
    def change(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        return float(self.new) - float(self.old)

    @property
    def change_pct(self) -> float | None:
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (float(self.new) - float(self.old)) / abs(float(self.old)) * 100.0


@dataclass
class SimComparison:
    """The exact comparison of one scenario's sim figures."""

    scenario: str
    compared: int
    changes: list[SimChange]
    added: list[str]
    removed: list[str]
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class MetricVerdict:
    """One real figure of one scenario: the samples, the test, the effect, the verdict."""

    scenario: str
    metric: str
    label: str
    unit: str
    checked: bool
    worse: str
    min_effect: float | None
    base: list[float]
    new: list[float]
    base_median: float
    new_median: float
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p_worse: float | None  # one-sided, new worse than base; two-sided for info figures
    p_better: float | None
    verdict: (
        str  # regressed | improved | small change | not significant | missing | undefined | info
    )

    @property
    def change_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0


# --------------------------------------------------------------------------- decisions


def compare_sim(
    scenario: str, old: Mapping[str, Figure], new: Mapping[str, Figure]
) -> SimComparison:
    """Every deterministic figure of ``new`` against ``old``, exactly."""
    old_f, new_f = sim_figures(old), sim_figures(new)
    common = [name for name in new_f if name in old_f]
    changes = [
        SimChange(scenario, name, old_f[name], new_f[name])
        for name in common
        if old_f[name] != new_f[name]
    ]
    added = [name for name in new_f if name not in old_f]
    removed = [name for name in old_f if name not in new_f]
    return SimComparison(scenario, len(common), changes, added, removed)


def decide(
    scenario: str,
    rule: Rule,
    new: Sequence[float],
    base: Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    min_effect: float | None = None,
) -> MetricVerdict:
    """Judge one checked figure: significant (``p < alpha``) and past the minimum effect."""
    effect = rule.min_effect if min_effect is None else min_effect
    worse_alt: Literal["greater", "less"] = "greater" if rule.worse == "higher" else "less"
    better_alt: Literal["greater", "less"] = "less" if worse_alt == "greater" else "greater"
    p_worse = mann_whitney_u(new, base, worse_alt).p_value
    p_better = mann_whitney_u(new, base, better_alt).p_value
    ratio, low, high = _ratio(new, base)
    if ratio is None:
        verdict = "undefined"
    else:
        change = ratio - 1.0
        worse_by = change if rule.worse == "higher" else -change
        if p_worse < alpha and worse_by >= effect:
            verdict = "regressed"
        elif p_better < alpha and -worse_by >= effect:
            verdict = "improved"
        elif min(p_worse, p_better) < alpha:
            verdict = "small change"
        else:
            verdict = "not significant"
    return MetricVerdict(
        scenario, rule.metric, rule.label, rule.unit, True, rule.worse, effect,
        [float(v) for v in base], [float(v) for v in new], median(base), median(new),
        ratio, low, high, p_worse, p_better, verdict,
    )  # fmt: skip


def missing(scenario: str, rule: Rule, base: Sequence[float], runs: int) -> MetricVerdict:
    """A checked figure some new runs did not produce at all: a regression."""
    return MetricVerdict(
        scenario, rule.metric, f"{rule.label} (none in {runs} runs)", rule.unit, True,
        rule.worse, rule.min_effect, [float(v) for v in base], [], median(base), float("nan"),
        None, None, None, None, None, "missing",
    )  # fmt: skip


def describe(
    scenario: str, metric: str, label: str, unit: str, new: Sequence[float], base: Sequence[float]
) -> MetricVerdict:
    """An informational figure: ratio, interval and a two-sided p-value; decides nothing."""
    p = mann_whitney_u(new, base, "two-sided").p_value
    ratio, low, high = _ratio(new, base)
    return MetricVerdict(
        scenario, metric, label, unit, False, "", None, [float(v) for v in base],
        [float(v) for v in new], median(base), median(new), ratio, low, high, p, None, "info",
    )  # fmt: skip


def _ratio(new: Sequence[float], base: Sequence[float]) -> tuple[float | None, ...]:
    if median(base) == 0:  # a ratio to 0 is undefined, unless both are 0
        return (1.0, 1.0, 1.0) if median(new) == 0 else (None, None, None)
    interval = bootstrap_ratio(new, base, seed=BOOTSTRAP_SEED, resamples=BOOTSTRAP_RESAMPLES)
    return interval.ratio, interval.low, interval.high


def check_repetitions(new: int, base: int, alpha: float, where: str) -> None:
    """Refuse sample sizes with which the one-sided test can never reach ``p < alpha``."""
    floor = smallest_p(new, base, "greater") if new and base else 1.0
    if floor >= alpha:
        expected = (
            f"enough repetitions for the test to reach p < {alpha:g}: with {new} new runs "
            f"against {base} baseline runs the smallest p-value is {floor:.3g}"
        )
        raise ScenarioError(where, "repetitions", f"expected {expected}")


def parse_min_effects(items: Sequence[str]) -> dict[str, float]:
    """``--min-effect p95_ms=30`` (percent) as ``{"p95_ms": 0.3}``; ``ScenarioError`` if bad."""
    effects = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in RULES:
            expected = f"expected METRIC=PERCENT with METRIC one of {', '.join(RULES)}"
            raise ScenarioError("(command line)", "--min-effect", f"{expected}, got {item!r}")
        try:
            percent = float(value)
        except ValueError:
            percent = -1.0
        if not 0 <= percent < 1000:
            expected = "expected METRIC=PERCENT with PERCENT a number from 0 to 1000"
            raise ScenarioError("(command line)", "--min-effect", f"{expected}, got {item!r}")
        effects[name] = percent / 100.0
    return effects
