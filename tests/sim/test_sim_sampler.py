"""``sim.sampler.SegmentSampler``: the compiled draw gives the very values of the
piecewise rule written plainly, so a run's draws do not depend on the build."""

from __future__ import annotations

import random
from bisect import bisect_right

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.distribution import Distribution


def reference_draws(dist: Distribution, seed: int, count: int) -> list[float]:
    """The piecewise rule of ``Distribution`` (module docstring of ``sim.sampler``)."""
    rng = random.Random(seed)
    probs, values, powers = dist.probs, dist.values, dist.exponents()
    out = []
    for _ in range(count):
        u = rng.random()
        i = bisect_right(probs, u) - 1
        t = (u - probs[i]) * (1.0 / (probs[i + 1] - probs[i]))
        k = powers[i]
        out.append(values[i] + (values[i + 1] - values[i]) * (t if k == 1.0 else t**k))
    return out


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(st.floats(1e-7, 1e-2), min_size=2, max_size=400),
    seed=st.integers(0, 2**32),
)
def test_every_draw_is_the_reference_value_bit_for_bit(samples: list[float], seed: int) -> None:
    dist = Distribution.from_samples(samples, "test")
    draw = dist.sampler(random.Random(seed))
    assert [draw() for _ in range(200)] == reference_draws(dist, seed, 200)


def test_a_constant_distribution_draws_its_value() -> None:
    draw = Distribution.constant(2.5e-6).sampler(random.Random(1))
    assert {draw() for _ in range(10)} == {2.5e-6}
