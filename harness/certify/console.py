"""The certification's table for the terminal (rich), the same rows as the report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from harness.certify.report import fmt, model_text

if TYPE_CHECKING:
    from harness.certify.run import Certification


def render_certification(cert: Certification) -> Table:
    table = Table(title=f"certification {cert.cert_id}")
    for column in ("test", "critical", "measured", "95 % interval", "target", "result", "score"):
        table.add_column(column)
    table.add_column("model predicts")
    for m in cert.measurements:
        unit = m.spec.unit
        low, high = m.ci_low, m.ci_high
        ci = "—" if low is None or high is None else f"{fmt(low, unit)} to {fmt(high, unit)}"
        result = "[green]pass[/]" if m.passed else "[red]FAIL[/]"
        model = model_text(m.model, m.model_low, m.model_high, unit)
        table.add_row(
            m.spec.title,
            "yes" if m.spec.critical else "no",
            fmt(m.value, unit),
            ci,
            f"{m.spec.direction} {fmt(m.spec.target, unit)}",
            result,
            f"{m.score:.1f}",
            model,
        )
    return table
