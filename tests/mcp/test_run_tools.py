"""The harness tools run real jobs: a run files its folder and history row, and the
figures the tool answers are those files' figures; long jobs can be stopped."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import statistics
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from harness.run import catalog
from tests.mcp.conftest import ok, refused, session

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_scenarios_are_listed_and_checked_as_the_cli_checks_them(tmp_path: Path) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, _):
            listed = ok(await client.call_tool("scenario_list", {}))
            assert {s["name"] for s in listed} == set(catalog.shipped())
            good = ok(await client.call_tool("scenario_validate", {"name": "smoke"}))
            assert good["valid"] and good["agents"] == catalog.shipped()["smoke"].agents.count
            bad = ok(
                await client.call_tool(
                    "scenario_validate", {"text": "name: x\nduration: -1\nworkload: []\n"}
                )
            )
            assert not bad["valid"]
            fields = {p["field"] for p in bad["problems"]}
            assert "duration" in fields and all(p["expected"] for p in bad["problems"])
            assert "no shipped scenario named 'nope'" in refused(
                await client.call_tool("scenario_validate", {"name": "nope"})
            )
            text = await client.read_resource("swarmtwin://scenarios/faults/partition")
            assert "partition" in text.contents[0].text  # type: ignore[union-attr]

    asyncio.run(body())


def test_a_run_is_filed_and_the_answer_is_its_summary(tmp_path: Path) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))

    async def body() -> dict:
        async with session(tmp_path) as (client, _):
            result = await client.call_tool(
                "run_scenario",
                {"scenario": "smoke", "backend": "sim", "duration": 1.0, "seed": 3},
                progress_callback=on_progress,
            )
            answer = ok(result)
            run_id = answer["result"]["run_id"]
            summary = ok(await client.call_tool("run_summary", {"run_id": run_id}))
            resource = await client.read_resource(f"swarmtwin://runs/{run_id}/summary")
            filed = json.loads(resource.contents[0].text)  # type: ignore[union-attr]
            same = ok(await client.call_tool("compare_runs", {"a": run_id, "b": run_id}))
            rows = ok(await client.call_tool("history", {"scenario": "smoke"}))
            assert "no run 'nope'" in refused(
                await client.call_tool("run_summary", {"run_id": "nope"})
            )
            assert "no run" in refused(
                await client.call_tool("run_summary", {"run_id": "../../etc"})
            )
            return {
                "answer": answer,
                "summary": summary,
                "filed": filed,
                "same": same,
                "rows": rows,
            }

    found = asyncio.run(body())
    answer = found["answer"]
    assert answer["state"] == "done" and answer["result"]["valid"]
    run_dir = Path(answer["result"]["run_dir"])
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert found["filed"] == catalog.finite(on_disk)
    assert answer["figures"] == catalog.headline(catalog.finite(on_disk))
    assert found["summary"]["figures"] == answer["figures"]
    sim = answer["figures"]["sim"]  # the model's three replications: each figure's median
    rows = found["rows"]
    assert {r["run_id"] for r in rows} == {answer["result"]["run_id"]}
    assert sorted(r["backend"] for r in rows) == ["sim #1", "sim #2", "sim #3"]
    assert statistics.median(r["p95_ms"] for r in rows) == pytest.approx(sim["p95_ms"])
    assert statistics.median(r["deliveries_per_s"] for r in rows) == pytest.approx(
        sim["deliveries_per_s"]
    )
    with sqlite3.connect(tmp_path / "history.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (3,)
    assert all(r["change_pct"] in (0.0, None) for r in found["same"]["rows"])
    # progress came as notifications, rising to the end
    assert len(progress) >= 3 and progress[0][0] == 0.0
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert any(m and "job" in m for _, m in progress)


def test_a_job_can_be_started_followed_refused_when_busy_and_stopped(tmp_path: Path) -> None:
    (tmp_path / "baselines").mkdir()
    shutil.copy(REPO / "reports" / "baselines" / "ci.json", tmp_path / "baselines" / "ci.json")

    async def body() -> None:
        async with session(tmp_path) as (client, state):
            assert "no baseline 'nope'" in refused(
                await client.call_tool("regress", {"baseline": "nope"})
            )
            assert "no shipped certification suite" in refused(
                await client.call_tool("certify", {"suite": "nope"})
            )
            assert "no shipped validation suite" in refused(
                await client.call_tool("fidelity_report", {"suite": "nope"})
            )
            started = ok(await client.call_tool("regress", {"baseline": "ci", "wait": False}))
            job_id = started["job_id"]
            assert started["request"]["kind"] == "regress"
            busy = refused(
                await client.call_tool("run_scenario", {"scenario": "smoke", "wait": False})
            )
            assert f"job {job_id} is still running" in busy
            for _ in range(100):
                status = ok(await client.call_tool("run_status", {"job_id": job_id}))
                if status["state"] == "running":
                    break
                await asyncio.sleep(0.1)
            assert status["state"] == "running"
            process = state.jobs.jobs[job_id].process
            assert process is not None and process.returncode is None
            stopped = ok(await client.call_tool("run_stop", {"job_id": job_id}))
            assert stopped["state"] in ("stopped", "running")
            for _ in range(100):
                if state.jobs.jobs[job_id].finished:
                    break
                await asyncio.sleep(0.1)
            assert state.jobs.jobs[job_id].state == "stopped"
            assert process.returncode is not None

    asyncio.run(body())


def test_cancelling_a_run_stops_its_job(tmp_path: Path) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, state):
            call = asyncio.ensure_future(
                client.call_tool(
                    "run_scenario", {"scenario": "smoke", "backend": "sim", "duration": 120.0}
                )
            )
            for _ in range(200):
                job = state.jobs.running
                if job is not None and job.state == "running":
                    break
                await asyncio.sleep(0.05)
            assert job is not None and job.state == "running"
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            for _ in range(200):
                if job.finished:
                    break
                await asyncio.sleep(0.05)
            assert job.state == "stopped"
            assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    asyncio.run(body())


def test_certify_files_a_report_that_reports_lists_and_a_resource_reads(tmp_path: Path) -> None:
    """The quick suite (inproc, under a minute): the same report folder as `swarmtwin
    certify`, found by `reports` and read back through the resource template."""

    async def body() -> tuple[dict, list, str]:
        async with session(tmp_path) as (client, _):
            done = ok(await client.call_tool("certify", {"suite": "certification/quick/suite"}))
            listed = ok(await client.call_tool("reports", {}))
            report_id = done["result"]["report"]["id"]
            read = await client.read_resource(
                f"swarmtwin://reports/certification/{report_id}/report.md"
            )
            with pytest.raises(MCPError) as missing:
                await client.read_resource("swarmtwin://reports/certification/nope/report.md")
            assert "no certification report file nope/report.md" in str(missing.value)
            return done, listed, read.contents[0].text  # type: ignore[union-attr]

    done, listed, text = asyncio.run(body())
    assert done["state"] == "done" and done["result"]["report"]["kind"] == "certification"
    folder = tmp_path / "certifications" / done["result"]["report"]["id"]
    assert (folder / "report.md").read_text() == text
    assert (folder / "report.json").is_file()
    assert [r["id"] for r in listed if r["kind"] == "certification"] == [folder.name]
    filed = json.loads((folder / "report.json").read_text())
    assert filed["level"] in done["result"]["verdict"]


def test_a_fidelity_report_is_filed_and_read_back(tmp_path: Path) -> None:
    """The quick validation suite: the same report folder as `swarmtwin validate-model`."""

    async def body() -> tuple[dict, str]:
        async with session(tmp_path) as (client, _):
            done = ok(
                await client.call_tool("fidelity_report", {"suite": "validation/suite-quick"})
            )
            report_id = done["result"]["report"]["id"]
            read = await client.read_resource(
                f"swarmtwin://reports/validation/{report_id}/report.json"
            )
            return done, read.contents[0].text  # type: ignore[union-attr]

    done, text = asyncio.run(body())
    assert done["state"] == "done" and done["result"]["report"]["kind"] == "validation"
    folder = tmp_path / "validation" / done["result"]["report"]["id"]
    filed = json.loads((folder / "report.json").read_text())
    assert json.loads(text) == filed
    assert [g["goal"] for g in done["result"]["goals"]] == [g["goal"] for g in filed["goals"]]
