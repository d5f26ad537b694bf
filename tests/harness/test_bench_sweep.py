"""``make bench``'s capacity sweep and baselines, on made-up figures (no system is run)."""

from __future__ import annotations

from collections.abc import Callable

from harness.bench.run import (
    BASELINE_RUNS,
    OverloadRun,
    Point,
    bench_overload,
    median_baseline,
    sweep,
)


def points(achieved: dict[float, float]) -> tuple[list[float], Callable[[float], Point]]:
    """A fake ``measure_point`` over ``achieved`` (offered -> delivered) and the rates it ran."""
    ran: list[float] = []

    def measure_point(rate: float) -> Point:
        ran.append(rate)
        return Point(rate, achieved[rate], 1.0, 1.0)

    return ran, measure_point


def test_one_slow_point_does_not_end_the_sweep() -> None:
    achieved = {100.0: 100.0, 150.0: 96.0, 200.0: 190.0, 300.0: 220.0, 400.0: 230.0}
    ran, measure_point = points(achieved)
    assert sweep(measure_point, list(achieved), lambda _: None) == 230.0
    assert ran == list(achieved)


def test_two_saturated_points_in_a_row_end_it() -> None:
    achieved = {100.0: 100.0, 200.0: 150.0, 300.0: 160.0, 400.0: 170.0}
    ran, measure_point = points(achieved)
    assert sweep(measure_point, list(achieved), lambda _: None) == 160.0
    assert ran == [100.0, 200.0, 300.0]


def test_a_point_whose_reliability_failed_is_not_capacity() -> None:
    def measure_point(rate: float) -> Point:
        return Point(rate, rate, 1.0, 0.99 if rate > 100 else 1.0)

    assert sweep(measure_point, [50.0, 100.0, 200.0], lambda _: None) == 100.0


def test_a_baseline_is_the_median_of_its_runs_with_their_range_logged() -> None:
    values = iter([900.0, 1500.0, 1000.0, 1100.0, 400.0, 7.0])
    lines: list[str] = []
    assert median_baseline("toy", lambda: next(values), lines.append) == 1000.0
    assert next(values) == 7.0  # exactly BASELINE_RUNS runs were taken
    assert BASELINE_RUNS == 5
    assert lines == ["baseline: toy 1,000 msg/s (median of 5; 400 to 1,500)"]


def overload_runs(achieved: dict[float, list[float]]) -> Callable[[float], OverloadRun]:
    """A fake ``run_at``: each rate gives the next of its ``achieved`` figures."""
    left = {rate: iter(values) for rate, values in achieved.items()}

    def run_at(rate: float) -> OverloadRun:
        return OverloadRun(next(left[rate]), 30.0, int(rate), 1.0, 0)

    return run_at


def test_goodput_is_taken_against_the_capacity_measured_in_the_same_round() -> None:
    # the machine is twice as fast in round 2: each round's own capacity point says so
    run_at = overload_runs(
        {100.0: [100.0, 200.0, 90.0], 300.0: [95.0, 190.0, 81.0], 1000.0: [90.0, 170.0, 90.0]}
    )
    lines: list[str] = []
    figures = bench_overload("toy", run_at, 100.0, lines.append, rounds=3)
    assert figures["3x"]["goodput"] == 0.95
    assert (figures["3x"]["goodput_min"], figures["3x"]["goodput_max"]) == (0.9, 0.95)
    assert figures["10x"]["goodput"] == 0.9
    assert (figures["10x"]["goodput_min"], figures["10x"]["goodput_max"]) == (0.85, 1.0)
    assert figures["10x"]["achieved"] == 90.0
    assert figures["10x"]["false_failures"] == 0.0
    assert len(lines) == 3 * 3 + 2
    assert "goodput 0.90 (median of 3 rounds; 0.85 to 1.00)" in lines[-1]
    assert lines[-1].endswith("false failures 0 in all 9 runs")


def test_one_round_says_so() -> None:
    lines: list[str] = []
    bench_overload(
        "toy",
        overload_runs({10.0: [10.0], 30.0: [9.0], 100.0: [8.0]}),
        10.0,
        lines.append,
        rounds=1,
    )
    assert "goodput 0.80 (median of 1 round; 0.80 to 0.80)" in lines[-1]


def test_a_false_failure_in_any_run_of_any_round_is_counted() -> None:
    counts = iter([0, 0, 0, 2, 0, 1])

    def run_at(rate: float) -> OverloadRun:
        return OverloadRun(rate, 30.0, 0, 1.0, next(counts))

    figures = bench_overload("toy", run_at, 10.0, lambda _: None, rounds=2)
    assert figures["3x"]["false_failures"] == figures["10x"]["false_failures"] == 3.0
