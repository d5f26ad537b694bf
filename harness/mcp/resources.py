"""Resources: run summaries, report files and scenario files, by URI template.

- ``swarmtwin://runs/{run_id}/summary``: a run's ``summary.json``;
- ``swarmtwin://reports/{kind}/{report_id}/{name}``: one file of a certification
  (``certification``), fidelity (``validation``) or regression (``regression``)
  report, as ``reports`` lists them: text as text, a plot as bytes;
- ``swarmtwin://scenarios/{+name}``: a shipped scenario's YAML (``smoke``,
  ``faults/partition``).

Every name is looked up through ``harness.run.catalog``, which takes only names it
lists and never builds a path outside ``<reports>`` or the shipped scenarios; the
SDK refuses ``..`` and absolute paths in a template parameter first. Something
that is not there is ``ResourceNotFoundError`` (MCP error -32602) with the
catalog's sentence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from harness.mcp.state import McpState
from harness.run import catalog

TEXT = {".json", ".md", ".yaml", ".csv", ".html", ".svg"}
T = TypeVar("T")


def _found(read: Callable[[], T]) -> T:
    try:
        return read()
    except catalog.NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from exc


def register(server: MCPServer, state: McpState) -> None:
    @server.resource("swarmtwin://runs/{run_id}/summary", mime_type="application/json")
    def run_summary(run_id: str) -> str:
        """A filed run's summary.json: every figure of every backend, with its method."""
        return json.dumps(_found(lambda: catalog.summary_of(state.reports, run_id)), indent=2)

    @server.resource("swarmtwin://reports/{kind}/{report_id}/{name}")
    def report_file(kind: str, report_id: str, name: str) -> str | bytes:
        """One file of a certification, fidelity or regression report."""
        path = _found(lambda: catalog.report_file(state.reports, kind, report_id, name))
        return path.read_text() if path.suffix in TEXT else path.read_bytes()

    @server.resource("swarmtwin://scenarios/{+name}", mime_type="application/yaml")
    def scenario_file(name: str) -> str:
        """A shipped scenario's YAML, by the name run_scenario takes."""
        return _found(lambda: catalog.shipped_path(name)).read_text()
