"""``report.html``: one self-contained file, its plots inline as data URIs.

How it works. ``render_html`` takes the same data as ``report.json`` and
renders ``harness/render/templates/certification.html.j2`` (``harness.render.jinja``),
a page with no outside references (inline CSS, PNGs as base64), so it can
be mailed, archived or attached to a CI run as one file. It opens with the
level, the score and the machine; then the table of the tests, the
plots, how each figure was measured, the security checks and the runs
(links relative to the report folder). The template autoescapes: every
text from the data is HTML-escaped.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from harness.certify.report import row_texts
from harness.render.jinja import render
from harness.run.machine import one_line

LEVEL_COLOURS = {"FULL": "#1b7f3b", "PARTIAL": "#b7791f", "FAILED": "#c53030"}
OTHER_COLOUR = "#4a5568"


def render_html(data: dict[str, Any], folder: Path) -> str:
    """The page for ``data``, its plots read from ``folder``."""
    return render(
        "certification.html.j2",
        data=data,
        colour=LEVEL_COLOURS.get(data["level"], OTHER_COLOUR),
        machine=one_line(data["machine"]),
        rows=[_test_row(t) for t in data["tests"]],
        images=[_image(name, folder) for name in data.get("plots", [])],
    )


def _test_row(t: dict[str, Any]) -> dict[str, Any]:
    """A test with its figures as text and its runs as links (label: the run id's tail)."""
    links = [{"href": run, "name": Path(run).name.split("-", 2)[-1]} for run in t["runs"]]
    return {"test": t, "text": row_texts(t), "links": links}


def _image(name: str, folder: Path) -> dict[str, str]:
    encoded = base64.b64encode((folder / name).read_bytes()).decode("ascii")
    return {"name": name, "encoded": encoded}
