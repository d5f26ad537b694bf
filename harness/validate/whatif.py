"""The what-if table: what each model run simulated and what it cost, from run folders.

``python -m harness.validate.whatif RUN_DIR [RUN_DIR ...]`` prints one Markdown row
per run folder (as ``swarmtwin run`` writes them), read from its
``scenario.yaml`` and the ``sim`` backend's figures in ``summary.json`` (its
first replication when it ran several)
(laid out by ``harness/render/templates/whatif.md.j2``, every cell escaped):

- simulated seconds: from the agents' start (the registration lead before
  time 0, from the note ``agents started at -X s``) to the run's end;
- wall seconds: the whole ``sim.run_plan`` call (``wall_seconds``);
- simulated messages (the note ``model: N simulated messages``) per wall
  second, as ``sim.last_stats()["messages_per_wall_s"]`` gives it;
- peak RSS of the process by the end of the simulation (plan included);
- p95 latency, deliveries per second and reliability, the simulated
  system's figures.

docs/whatif.md shows the table for ``scenarios/whatif/``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.render.jinja import render

COLUMNS = (
    "scenario",
    "agents",
    "simulated s",
    "wall s",
    "sim msgs / wall s",
    "peak RSS MiB",
    "p95 ms",
    "deliveries/s",
    "reliability",
)
_STARTED = re.compile(r"agents started at (-?[0-9.]+) s")
_MESSAGES = re.compile(r"model: ([0-9]+) simulated messages")


def whatif_row(run_dir: Path) -> dict[str, Any]:
    """The figures of the ``sim`` run in ``run_dir``, keyed by ``COLUMNS``."""
    scenario = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    sim = json.loads((run_dir / "summary.json").read_text())["backends"]["sim"]
    if "repetitions" in sim:  # several seeded replications: the first, the scenario's seed
        sim = sim["repetitions"][0]
    notes = " ".join(sim["notes"])
    started = _STARTED.search(notes)
    counted = _MESSAGES.search(notes)
    start = float(started.group(1)) if started else 0.0
    messages = int(counted.group(1)) if counted else 0
    wall = float(sim["wall_seconds"])
    return {
        "scenario": scenario["name"],
        "agents": sim["agents"]["registered"],
        "simulated s": sim["end_time"] - start,
        "wall s": wall,
        "sim msgs / wall s": messages / wall if wall > 0 else 0.0,
        "peak RSS MiB": max((r["peak_rss_mb"] for r in sim["resources"]), default=0.0),
        "p95 ms": sim["latency"]["p95_ms"],
        "deliveries/s": sim["throughput"]["deliveries_per_s"],
        "reliability": sim["reliability"]["reliability"],
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table, numbers rounded for reading, every cell escaped.

    Laid out by ``harness/render/templates/whatif.md.j2``; no newline after the
    last row (``print`` adds it).
    """
    cells = [[_cell(name, row[name]) for name in COLUMNS] for row in rows]
    return render("whatif.md.j2", columns=COLUMNS, rows=cells).removesuffix("\n")


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "—"
    if name == "reliability":
        return f"{100 * value:.3f} %"
    if name in ("simulated s", "wall s"):
        return f"{value:.2f}"
    if name == "p95 ms":
        return f"{value:,.3f}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table for the run folders named in ``argv``."""
    folders = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not folders:
        print("usage: python -m harness.validate.whatif RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    print(markdown_table([whatif_row(folder) for folder in folders]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
