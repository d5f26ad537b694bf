"""``validate-model --reuse REPORT``: predict a report's recorded real points again, sim only.

A fidelity report keeps every real repetition's figures (``report.json``,
each point's ``runs.real``) and its refused runs. Model work changes the
model, not the real system, so it does not need the real runs again: this
rebuilds the report's points from its suite file and its measured
capacities, takes the real figures from the report, and runs only the
model's replications. A tcp suite's 15 minutes of real runs become about
4 minutes of sim runs on 2 cores.

The points must be the ones the report measured. The suite file is read
again from the report's ``source``, with the report's repetitions,
duration and warm-up, and every rebuilt point must carry the recorded
label and the recorded digest of its scenario (``Point.digest``; a report
from before digests: offer what the real runs were offered, within
``OFFER_TOLERANCE``); otherwise the suite changed since the report, and
this refuses with ``ScenarioError`` (exit 2) rather than compare a new
point's prediction with an old point's measurement. The new report names
the report it reused (``reused``), so its figures are never mistaken for a
fresh measurement of the real system.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.scenario.errors import ScenarioError
from harness.validate.model import Progress, predict_and_file
from harness.validate.suite import (
    BASE,
    PointResult,
    RecordedRun,
    capacity_point,
    load_suite,
    offered_deliveries,
    sweep_points,
)

OFFER_TOLERANCE = 0.1  # a rebuilt point's expected offer against the real runs' (old reports)


def read_report(path: Path) -> tuple[Path, dict[str, Any]]:
    """A fidelity report's ``report.json`` (``path`` is the file or its folder)."""
    file = path / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise ScenarioError(str(path), "report.json", "expected a fidelity report folder or file")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ScenarioError(str(file), "(file)", f"expected JSON ({exc})") from exc
    for key in ("source", "capacity", "points", "repetitions", "duration", "warmup"):
        if key not in data:
            raise ScenarioError(str(file), key, "expected a fidelity report with this field")
    return file, data


def reuse_report(
    path: Path,
    reports: Path = Path("reports"),
    progress: Progress = lambda line: None,
    command: str = "swarmtwin validate-model --reuse",
    replications: int | None = None,
    calibration: Path | None = None,
    cluster: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Predict the points of the report at ``path`` again (on the Dask cluster at
    ``cluster`` when given); file a new report."""
    started = time.perf_counter()
    file, old = read_report(path)
    overrides: dict[str, Any] = {
        "repetitions": old["repetitions"],
        "duration": old["duration"],
        "warmup": old["warmup"],
    }
    if replications is not None:
        overrides["replications"] = replications
    source = Path(old["source"])
    if not source.is_file():
        raise ScenarioError(str(file), "source", f"expected the suite file, {source} is missing")
    suite = load_suite(source, overrides)
    variants = {variant.name: variant for variant in suite.variants}
    base_capacity = _capacity(old, BASE)
    measured = []
    capacities: dict[str, float] = {}
    for entry in old["capacity"]:
        variant = variants.get(entry["variant"])
        if variant is None:
            raise _changed(file, entry["label"], "a variant the suite no longer has")
        point = capacity_point(suite, variant, None if variant.name == BASE else base_capacity)
        measured.append(_recorded(file, point, entry))
        found = entry["real"]["deliveries_per_s"]["median"]
        if found is not None:
            capacities[variant.name] = float(found)
    points = sweep_points(suite, capacities)
    if len(points) != len(old["points"]):
        raise _changed(
            file, "points", f"{len(old['points'])} points, the suite now gives {len(points)}"
        )
    results = [_recorded(file, p, entry) for p, entry in zip(points, old["points"], strict=True)]
    progress(f"reusing the real runs of {file} ({old.get('created', 'undated')})")
    reused = {"report": str(file), "created": old.get("created"), "command": old.get("command")}
    return predict_and_file(
        suite, measured, results, reports, progress, command, calibration, started, reused, cluster
    )


def _capacity(report: dict[str, Any], name: str) -> float:
    for entry in report["capacity"]:
        if entry["variant"] == name and entry["real"]["deliveries_per_s"]["median"] is not None:
            return float(entry["real"]["deliveries_per_s"]["median"])
    raise ScenarioError("report.json", "capacity", f"expected a measured capacity of {name!r}")


def _recorded(file: Path, point: Any, entry: dict[str, Any]) -> PointResult:
    """The rebuilt ``point`` with the report's real runs, after checking it is the same."""
    if point.label != entry["label"]:
        raise _changed(file, entry["label"], f"the suite now gives {point.label!r} there")
    digest = entry.get("scenario_digest")
    if digest is not None and digest != point.digest:
        raise _changed(file, entry["label"], "its scenario is not the one measured")
    recorded = entry["offered_deliveries_per_s"]
    if digest is None and recorded:  # a report from before digests: its offered load
        offered = offered_deliveries(point.scenario)
        if abs(offered - recorded) > OFFER_TOLERANCE * recorded:
            raise _changed(
                file,
                entry["label"],
                f"it offered {recorded:,.0f}/s, the suite now {offered:,.0f}/s",
            )
    result = PointResult(point)
    result.real = [RecordedRun.from_dict(run) for run in entry["runs"]["real"]]
    result.refused = [list(reasons) for reasons in entry.get("refused_runs", [])]
    return result


def _changed(file: Path, where: str, what: str) -> ScenarioError:
    expected = f"the suite as it was when the report was made ({what}); run without --reuse"
    return ScenarioError(str(file), where, expected)
