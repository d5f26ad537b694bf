"""Plots of a run: the 100 ms timeline of each backend, drawn with matplotlib (Agg).

``plot_timeline`` writes ``timeline.png`` into the run folder: completions
per second offered and achieved (top) and the p95 latency of each bin (bottom,
log scale), one line per backend, with the warm-up shaded. Everything drawn
comes from the ``Summary`` timeline, so the picture and ``summary.json``
always agree.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from harness.metrics import BIN_SECONDS, Summary  # noqa: E402

COLOURS = {"real": "tab:blue", "sim": "tab:orange"}


def plot_timeline(run_dir: Path, summaries: dict[str, Summary], title: str) -> Path:
    """Draw every backend's timeline into ``run_dir/timeline.png``."""
    figure, (rates, latency) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for backend, summary in summaries.items():
        colour = COLOURS.get(backend)
        times = [b.t for b in summary.timeline]
        rates.plot(
            times,
            [b.completions / BIN_SECONDS for b in summary.timeline],
            label=f"{backend} completions (per recipient)",
            color=colour,
        )
        latency.plot(
            times,
            [b.p95_ms if b.p95_ms is not None else float("nan") for b in summary.timeline],
            label=backend,
            color=colour,
        )
    first = next(iter(summaries.values()), None)
    if first is not None:
        offered = [b.offered / BIN_SECONDS for b in first.timeline]
        rates.plot(
            [b.t for b in first.timeline],
            offered,
            label="operations offered",
            color="grey",
            linestyle=":",
        )
        for axis in (rates, latency):
            axis.axvspan(0, first.warmup, color="grey", alpha=0.12, lw=0)
    rates.set_ylabel("per second (100 ms bins)")
    rates.set_title(f"{title}: completions per second (warm-up shaded)")
    rates.legend(loc="upper right", fontsize="small")
    latency.set_yscale("log")
    latency.set_ylabel("p95 latency per bin (ms)")
    latency.set_xlabel("seconds since the run started")
    latency.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    path = run_dir / "timeline.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
