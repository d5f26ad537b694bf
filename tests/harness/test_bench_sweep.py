"""``make bench``'s capacity sweep and baselines, on made-up figures (no system is run)."""

from __future__ import annotations

from collections.abc import Callable

from harness.bench.run import BASELINE_RUNS, Point, median_baseline, sweep


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
