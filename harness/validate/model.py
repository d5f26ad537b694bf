"""Run a validation suite end to end and file its fidelity report.

``validate_model`` measures the base's capacity (real), then every other
variant's, places the points against those measured capacities
(``harness.validate.suite``), runs every point's real repetitions one at a
time, then every capacity point's and every point's sim replications in
parallel, and writes ``reports/validation/<id>/`` (``harness.validate.fidelity``).
``progress`` gets one line per finished step, so a long sweep shows where it is.

An invalid run (``Summary.valid`` False: its driver reported that the run
itself went wrong) is refused as evidence: it is left out of the point's
figures, and its reasons go into the point's ``refused_runs`` in the report.
A variant whose capacity has no valid run gets no points. When every run of
the base's capacity point is invalid the sweep cannot be sized and stops with
``InvalidRunError`` (exit 3).
"""

from __future__ import annotations

import platform
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.metrics.summary import InvalidRunError
from harness.run.folder import new_run_id
from harness.sweep.executor import describe
from harness.sweep.executor import local_workers as sim_workers
from harness.validate.fidelity import build_report, write_report
from harness.validate.suite import (
    BASE,
    PointResult,
    Suite,
    capacity_point,
    run_real,
    run_sim,
    sweep_points,
)

Progress = Callable[[str], None]


def validate_model(
    suite: Suite,
    reports: Path = Path("reports"),
    progress: Progress = lambda line: None,
    command: str = "swarmtwin validate-model",
    calibration: Path | None = None,
    cluster: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run the suite; return the report folder and the report's data. The model uses
    the calibration file ``calibration`` when given, else this machine's (or the default);
    its runs go to the Dask cluster at ``cluster`` when given (``harness.sweep``)."""
    started = time.perf_counter()
    settings = suite.settings
    base = PointResult(capacity_point(suite, suite.variants[0], None))
    _real(base, settings.repetitions, progress)
    base_capacity = base.median("real", "deliveries_per_s")
    if base_capacity is None:
        raise InvalidRunError(
            f"every real run of {base.point.label} was invalid: "
            + "; ".join(", ".join(reasons) for reasons in base.refused)
        )
    progress(f"capacity of the base (real, median): {base_capacity:,.0f} deliveries/s")
    capacities = {BASE: base_capacity}
    measured = [base]
    for variant in suite.variants[1:]:
        result = PointResult(capacity_point(suite, variant, base_capacity))
        _real(result, settings.repetitions, progress)
        found = result.median("real", "deliveries_per_s")
        if found is not None:
            capacities[variant.name] = found
        measured.append(result)
    points = sweep_points(suite, capacities)
    results = [PointResult(point) for point in points]
    for index, result in enumerate(results, 1):
        _real(result, settings.repetitions, progress, f"{index}/{len(results)}")
    return predict_and_file(
        suite, measured, results, reports, progress, command, calibration, started, None, cluster
    )


def predict_and_file(
    suite: Suite,
    measured: list[PointResult],
    results: list[PointResult],
    reports: Path,
    progress: Progress,
    command: str,
    calibration: Path | None,
    started: float,
    reused: dict[str, Any] | None = None,
    cluster: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run every point's sim replications, then build and write the report."""
    settings = suite.settings
    everything = [*measured, *results]
    workers = sim_workers()
    progress(
        f"sim: {len(everything)} points x {settings.replications} replications "
        f"on {describe(cluster, workers)}"
    )
    points = [r.point for r in everything]
    sims = run_sim(points, settings.replications, workers, reports, calibration, cluster)
    for result, runs in zip(everything, sims, strict=True):
        result.sim = list(runs)
    header = _header(suite, command, time.perf_counter() - started, reports, calibration)
    if reused is not None:
        header["reused"] = reused
    report = build_report(header, measured, results)
    folder = reports / "validation" / new_run_id(settings.name, datetime.now(UTC))
    write_report(folder, report)
    return folder, report


def _real(result: PointResult, repetitions: int, progress: Progress, counter: str = "") -> None:
    """Measure a point's real repetitions; keep the valid ones, refuse the others."""
    point = result.point
    runs = run_real(point, repetitions)
    kept = [run for run in runs if run.valid]
    result.real = list(kept)
    result.refused = [run.invalid_reasons for run in runs if not run.valid]
    p95 = [run.latency.p95_ms for run in kept]
    rates = [run.throughput.deliveries_per_s for run in kept]
    shown = ", ".join("n/a" if v is None else f"{v:.2f}" for v in p95)
    progress(
        f"real {counter} {point.label}: deliveries/s "
        + ", ".join(f"{r:,.0f}" for r in rates)
        + f"; p95 ms {shown}"
    )
    for reasons in result.refused:
        progress(f"  refused, an invalid run: {', '.join(reasons)}")


def _header(
    suite: Suite, command: str, wall: float, reports: Path, chosen: Path | None
) -> dict[str, Any]:
    from sim.calibration import calibrations_dir, load_calibration

    directory = calibrations_dir(reports)
    calibration, warning = load_calibration(
        chosen, transport=suite.base.transport, directory=directory
    )
    settings = suite.settings
    return {
        "suite": settings.name,
        "source": suite.source,
        "base": settings.base,
        "variants": [
            {"name": v.name, "axis": v.axis, "nominal_deliveries_per_s": v.nominal}
            for v in suite.variants
        ],
        "saturation_factor": settings.saturation_factor,
        "axis_load": settings.axis_load,
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "transport": suite.base.transport,
        "repetitions": settings.repetitions,
        "replications": settings.replications,
        "duration": settings.duration,
        "warmup": settings.warmup,
        "wall_seconds": wall,
        "machine": {
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "cpus": sim_workers(),
            "platform": platform.platform(),
            "executable": sys.executable,
        },
        "calibration": {
            "source": calibration.source,
            "host": calibration.host,
            "date": calibration.date,
            "how": calibration.how,
            "warning": warning,
        },
    }
