"""Overload and validity: shed ops, the overloaded flag, invalid runs refused as evidence,
the median of repetitions."""

from __future__ import annotations

import json
import math

import pytest

from harness.metrics.compare import (
    aggregate,
    compare_runs,
)
from harness.metrics.figures import (
    Summary,
    invalid_reasons,
    summarize,
)
from harness.metrics.summary import InvalidRunError, require_valid
from harness.render.table import render_summary_table
from protocol.plan import OpKind
from tests.harness.synthetic_runs import done, make_plan, make_result, render_text, summary_with

# --------------------------------------------------------------------------- shed


def _shed_run() -> Summary:
    ops = [(1.0 + i, OpKind.PUBLISH, "a", 2) for i in range(4)]
    plan = make_plan(ops)
    result = make_result(
        [
            done(1, "b", 1.001),
            done(1, "c", 1.002),  # op 1: delivered
            # op 2: shed, nothing arrived
            # op 3: shed, then accepted after all (a retry); nothing arrived: lost
            done(4, "b", 4.001),  # op 4: named as shed, but one completion arrived
        ]
    )
    result.shed = [2, 3, 4, 99]  # 99 is not in the plan: ignored
    result.accepted = [1, 3]
    return summarize(plan, result)


def test_shed_ops_are_neither_delivered_nor_lost() -> None:
    summary = _shed_run()
    rel = summary.reliability
    assert (rel.shed_ops, rel.shed) == (1, 2)
    assert rel.expected == 8
    assert rel.lost == 3  # op 3's two and op 4's one; op 2's are shed
    assert (rel.lost_acked, rel.lost_unaccepted, rel.lost_origin_down) == (2, 1, 0)
    assert rel.reliability == pytest.approx(3 / 6)  # delivered over expected - shed
    assert rel.overloaded
    figures = summary.figures()
    assert (figures["shed_ops"], figures["shed"], figures["overloaded"]) == (1, 2, 1)
    assert summary.latency.incomplete == 3  # op 2 is shed: it owes nothing
    assert any("shed" in note for note in summary.notes)


def test_overloaded_below_97_percent_of_accepted_work_or_when_shedding() -> None:
    plan = make_plan([(1.0 + i * 0.01, OpKind.DIRECT, "a", 1) for i in range(100)])
    completions = [done(op.op_id, "b", op.at + 0.001) for op in plan.operations]
    at_97 = summarize(plan, make_result(completions[:97])).reliability
    assert (at_97.lost, at_97.overloaded) == (3, False)
    at_96 = summarize(plan, make_result(completions[:96])).reliability
    assert (at_96.lost, at_96.overloaded) == (4, True)
    one_shed = make_result(completions[:99])
    one_shed.shed = [100]
    rel = summarize(plan, one_shed).reliability
    assert (rel.shed_ops, rel.lost, rel.reliability, rel.overloaded) == (1, 0, 1.0, True)
    assert summarize(plan, make_result(completions)).reliability.overloaded is False


def test_table_says_when_a_run_was_overloaded() -> None:
    summary = _shed_run()
    text = render_text(render_summary_table({"sim": summary}, None))
    shed_row = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("shed"))
    assert "1" in shed_row and "ops" in shed_row
    overloaded_row = next(line for line in text.splitlines() if "overloaded  " in line)
    assert "yes" in overloaded_row
    caption = " ".join(text.split())  # the caption wraps at the table's width
    line = "overloaded (sim): 1 ops shed (2 completions), 3 accepted completions missing"
    assert line in caption
    calm = render_text(render_summary_table({"sim": summary_with(10.0, 1000.0, 1.0)}, None))
    assert "overloaded (" not in calm
    assert "no" in next(line for line in calm.splitlines() if "overloaded  " in line)


def test_shed_figures_survive_summary_json() -> None:
    summary = _shed_run()
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["reliability"]["overloaded"] is True
    assert (data["reliability"]["shed_ops"], data["reliability"]["shed"]) == (1, 2)
    assert Summary.from_dict(data, summary.histograms) == summary


# --------------------------------------------------------------------------- validity


def test_a_driver_error_makes_the_run_invalid_but_keeps_its_figures() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    fine = summarize(plan, make_result([done(1, "b", 2.003)]))
    assert fine.valid and fine.invalid_reasons == []
    result = make_result([done(1, "b", 2.003)])
    result.notes.append("worker-0 failed: boom")  # free text never decides validity
    assert summarize(plan, result).valid
    worker, core = "worker-0 failed: boom", "coordinator: core error"
    result.errors.extend([worker, core, worker])
    assert invalid_reasons(result) == [worker, core]  # in order, each once
    bad = summarize(plan, result)
    assert not bad.valid and bad.invalid_reasons == invalid_reasons(result)
    assert bad.figures() == fine.figures()  # still measured, for diagnosis
    data = json.loads(json.dumps(bad.to_dict(), allow_nan=False))
    assert data["valid"] is False and data["invalid_reasons"] == bad.invalid_reasons
    assert Summary.from_dict(data) == bad
    del data["valid"], data["invalid_reasons"]  # a summary.json from before validity
    assert Summary.from_dict(data).valid


def test_require_valid_refuses_an_invalid_run_as_evidence() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    good = summarize(plan, make_result([done(1, "b", 2.003)]))
    result = make_result([done(1, "b", 2.003)])
    result.errors.append("the coordinator did not restart: OSError()")
    bad = summarize(plan, result)
    require_valid({"real 1/3": good}, "the check")
    with pytest.raises(InvalidRunError, match=r"evidence for the check: real 2/3: the coord"):
        require_valid({"real 1/3": good, "real 2/3": bad}, "the check")


def test_the_table_shows_an_invalid_run_prominently() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    result = make_result([done(1, "b", 2.003)])
    result.errors.append("worker-1 failed: exited early")
    bad = summarize(plan, result)
    text = " ".join(render_text(render_summary_table({"real": bad}, None)).split())
    assert "valid run" in text and "NO" in text
    assert "INVALID (real): worker-1 failed: exited early; its figures are not evidence" in text
    fine = render_text(render_summary_table({"real": summary_with(1.0, 10.0, 1.0)}, None))
    assert "INVALID" not in fine and "yes" in fine


def test_the_table_shows_the_median_of_repetitions_with_an_interval() -> None:
    reals = [summary_with(p95, 1000.0, 1.0) for p95 in (10.0, 30.0, 11.0)]
    sim = summary_with(12.0, 1000.0, 1.0)
    table = render_summary_table(
        {"real": reals[-1], "sim": sim}, compare_runs(reals, [sim]), repetitions={"real": reals}
    )
    text = render_text(table)
    assert "real (median of 3)" in text and "real 95 % CI of mean" in text
    p95 = next(line for line in text.splitlines() if "latency p95" in line)
    assert "11.000" in p95 and "+9.1 %" in p95  # the median 11, not the last run's 11 by luck
    stats = aggregate(reals)["p95_ms"]
    assert f"{stats['ci_low']:,.3f} .. {stats['ci_high']:,.3f}" in p95


def test_an_infinite_percentile_stays_in_the_median() -> None:
    reals = [summary_with(p95, 1000.0, 1.0) for p95 in (10.0, math.inf, math.inf)]
    stats = aggregate(reals)["p95_ms"]
    assert stats["n"] == 3 and stats["infinite"] == 2
    assert stats["median"] is None and stats["mean"] is None and stats["ci_low"] is None
    text = render_text(render_summary_table({"real": reals[0]}, None, repetitions={"real": reals}))
    assert "∞ (incomplete)" in next(line for line in text.splitlines() if "latency p95" in line)
