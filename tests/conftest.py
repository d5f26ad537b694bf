"""Shared pytest configuration: the report header says which core runs."""

from __future__ import annotations

import protocol  # noqa: F401  (chooses the compiled or the pure core)
from native.select import STATE


def pytest_report_header() -> str:
    return f"swarmtwin core: {STATE.describe()}"
