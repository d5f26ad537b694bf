"""Latency figures: nearest-rank percentiles over exact values, and HDR histograms.

``latency_figures(latency_us, incomplete)`` turns one sample of latencies
(integer microseconds) into a ``LatencyFigures``. The headline percentiles
are nearest rank (``harness.metrics.summary.nearest_rank_percentiles``) over the
exact values plus ``incomplete`` infinite ones, the expected completions of
accepted ops that never arrived; ``max`` and ``mean`` cover what arrived.
The same values also go into an HDR histogram (1 us .. 1 h, 3 significant
digits), kept in the run folder for merging and plotting: ``record_many``
counts values per HDR bucket with numpy and records each bucket once, which
gives the same counts as recording every value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from harness.metrics.summary import KindLatency, LatencyFigures, nearest_rank_percentiles

HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000
HDR_SIGNIFICANT_DIGITS = 3
HEADLINE_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0, 99.9)

IntArray = npt.NDArray[np.int64]


def new_histogram() -> HdrHistogram:
    """An empty latency histogram: microseconds, 1 us .. 1 h, 3 significant digits."""
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)


def _counts_index(hist: HdrHistogram, values: IntArray) -> IntArray:
    """Each value's index in ``hist.counts``: HdrHistogram's bucket maths, vectorised."""
    unit = int(hist.unit_magnitude)
    half_magnitude = int(hist.sub_bucket_half_count_magnitude)
    half_count = int(hist.sub_bucket_half_count)
    # frexp's exponent is the bit length of (value | sub_bucket_mask), exact below 2**53
    _, bit_length = np.frexp((values | int(hist.sub_bucket_mask)).astype(np.float64))
    bucket = bit_length.astype(np.int64) - unit - (half_magnitude + 1)
    sub_bucket = values >> (bucket + unit)
    index: IntArray = ((bucket + 1) << half_magnitude) + sub_bucket - half_count
    return index


def record_many(hist: HdrHistogram, values_us: IntArray) -> None:
    """Record many values: count them per HDR bucket with numpy, one call per bucket.

    Each occupied bucket is recorded once, at its lowest equivalent value, with
    its count. The resulting counts, total, minimum and maximum (as the
    histogram reports them) equal those of ``hist.record_value(v)`` per value.
    """
    if len(values_us) == 0:
        return
    clamped = np.clip(values_us.astype(np.int64), HDR_LOWEST_US, HDR_HIGHEST_US)
    counts = np.bincount(_counts_index(hist, clamped), minlength=hist.counts_len)
    for index in np.flatnonzero(counts).tolist():
        hist.record_value(hist.get_value_from_index(index), int(counts[index]))


def _percentiles_ms(latency_us: IntArray, incomplete: int) -> dict[float, float]:
    """Nearest-rank headline percentiles in ms; ``incomplete`` values are infinite."""
    sample = np.concatenate((latency_us.astype(np.float64), np.full(incomplete, np.inf)))
    values = nearest_rank_percentiles(sample, HEADLINE_PERCENTILES) / 1000.0
    return dict(zip(HEADLINE_PERCENTILES, values.tolist(), strict=True))


def latency_figures(latency_us: IntArray, incomplete: int) -> tuple[LatencyFigures, HdrHistogram]:
    """Figures of measured latencies plus ``incomplete`` missing (infinite) ones."""
    hist = new_histogram()
    record_many(hist, latency_us)
    measured = len(latency_us)
    if measured + incomplete == 0:
        return LatencyFigures(), hist
    pct = _percentiles_ms(latency_us, incomplete)
    figures = LatencyFigures(
        count=measured,
        p50_ms=pct[50.0],
        p95_ms=pct[95.0],
        p99_ms=pct[99.0],
        p999_ms=pct[99.9],
        max_ms=hist.get_max_value() / 1000.0 if measured else None,
        mean_ms=float(latency_us.mean()) / 1000.0 if measured else None,
        incomplete=incomplete,
    )
    return figures, hist


def kind_latency(latency_us: IntArray, incomplete: int) -> tuple[KindLatency, HdrHistogram]:
    """The per-kind subset of ``latency_figures``."""
    overall, hist = latency_figures(latency_us, incomplete)
    kind = KindLatency(
        count=overall.count,
        p50_ms=overall.p50_ms,
        p95_ms=overall.p95_ms,
        p99_ms=overall.p99_ms,
        incomplete=overall.incomplete,
    )
    return kind, hist


def encode_histogram(hist: HdrHistogram) -> str:
    """The histogram in HdrHistogram's compressed base64 form (for the run folder)."""
    encoded = hist.encode()
    return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)
