"""The portal's HTTP API through Starlette's TestClient: what it reads, what it
refuses, and runs started and stopped as jobs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from harness.run.catalog import shipped
from harness.run.history import list_runs
from tests.portal.conftest import AUTH, wait_finished


def test_the_shipped_scenarios_are_listed_by_the_names_run_takes(client: TestClient) -> None:
    listed = client.get("/api/scenarios").json()
    names = [s["name"] for s in listed]
    assert "smoke" in names and "faults/partition" in names
    assert not [n for n in names if n.split("/")[-1].startswith("suite")]
    smoke = next(s for s in listed if s["name"] == "smoke")
    assert smoke["agents"] == 10 and smoke["transport"] == "inproc"
    assert set(names) == set(shipped())


def test_validate_gives_the_cli_s_problems(client: TestClient) -> None:
    assert client.post("/api/scenarios/validate", json={"name": "smoke"}).json() == {
        "valid": True,
        "name": "smoke",
        "problems": [],
        "message": "",
    }
    bad = client.post(
        "/api/scenarios/validate", json={"text": "name: x\nduration: -1\nagents: {count: 0}\n"}
    ).json()
    assert not bad["valid"]
    fields = {p["field"] for p in bad["problems"]}
    assert {"duration", "agents.count"} <= fields
    assert bad["message"].startswith("<text>: ")
    not_yaml = client.post("/api/scenarios/validate", json={"text": "a: [unclosed"}).json()
    assert not not_yaml["valid"] and not_yaml["problems"][0]["field"] == "(yaml)"
    assert not_yaml["message"].startswith("<text>: (yaml): line 1")
    # a "billion laughs" is refused before anything walks it
    laughs = "a: &a [x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    refused = client.post("/api/scenarios/validate", json={"text": laughs}).json()
    assert not refused["valid"] and "aliases" in refused["message"]
    assert client.post("/api/scenarios/validate", json={"name": "nope"}).status_code == 404
    assert client.post("/api/scenarios/validate", json={}).status_code == 422


def test_state_changing_requests_need_the_token(client: TestClient) -> None:
    for path, body in (
        ("/api/jobs", {"scenario": "smoke"}),
        ("/api/jobs/x/stop", None),
        ("/api/render-stats", {"frames": 1}),
    ):
        assert client.post(path, json=body).status_code == 401
        wrong = client.post(path, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and wrong.json()["detail"] == "wrong token"
    assert client.get("/api/server").json()["refused_tokens"] == 3
    # and no cookie is ever set, so another site's page cannot act for a user
    assert "set-cookie" not in client.get("/").headers


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 cannot read the API."""
    assert client.get("/api/scenarios", headers={"Host": "evil.example"}).status_code == 400


def test_bad_input_is_a_4xx_with_a_message(client: TestClient) -> None:
    cases = [
        client.post("/api/jobs", json={"scenario": "nope"}, headers=AUTH),
        client.post("/api/jobs", json={"scenario": "smoke", "duration": -1}, headers=AUTH),
        client.post("/api/jobs", json={"scenario": "smoke", "backend": "x"}, headers=AUTH),
        client.post("/api/jobs", content=b"{not json", headers=AUTH),
        client.get("/api/runs/..%2F..%2Fetc"),
        client.get("/api/runs/nope/files/summary.json"),
        client.get("/api/runs", params={"limit": 0}),
        client.get("/api/jobs/nope"),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["detail"]


def test_a_job_runs_a_scenario_as_run_does_and_files_it(client: TestClient, reports: Path) -> None:
    started = client.post(
        "/api/jobs", json={"scenario": "smoke", "backend": "sim", "duration": 1.0}, headers=AUTH
    )
    assert started.status_code == 201
    job_id = started.json()["job_id"]
    busy = client.post("/api/jobs", json={"scenario": "smoke"}, headers=AUTH)
    if busy.status_code != 201:  # unless the first finished already: one at a time
        assert busy.status_code == 409 and "one run at a time" in busy.json()["detail"]
    job = wait_finished(client, job_id)
    assert job["state"] == "done", job
    assert job["info"]["labels"] == ["sim #1", "sim #2", "sim #3"]
    assert job["progress"] == {"sim #1": 1.0, "sim #2": 1.0, "sim #3": 1.0}
    run_id = job["result"]["run_id"]
    assert "latency p95" in job["result"]["table"]  # the CLI's table, as text
    points = client.get(f"/api/jobs/{job_id}", params={"points": True}).json()["points"]
    assert {p["label"] for p in points} == {"sim #1", "sim #2", "sim #3"}
    assert all(p["count"] >= 0 and p["t"] <= 1.0 + 5.0 for p in points)
    # filed like any run: a folder, a summary and history rows
    run = client.get(f"/api/runs/{run_id}").json()
    on_disk = json.loads((reports / "runs" / run_id / "summary.json").read_text())
    assert run["summary"] == on_disk
    assert (
        run["figures"]["sim"]["p95_ms"] == on_disk["backends"]["sim"]["figures"]["p95_ms"]["median"]
    )
    assert "timeline.png" in run["files"]
    assert client.get(f"/api/runs/{run_id}/files/timeline.png").content[:4] == b"\x89PNG"
    assert client.get(f"/api/runs/{run_id}/summary").json() == on_disk
    assert set(client.get(f"/api/runs/{run_id}/timeline").json()) <= {"sim"}
    rows = client.get("/api/runs", params={"scenario": "smoke", "backend": "sim"}).json()
    assert {r["run_id"] for r in rows} == {run_id}
    assert rows == [
        r for r in list_runs(reports / "history.sqlite") if r["backend"].startswith("sim")
    ]
    assert client.get("/api/runs", params={"scenario": "other"}).json() == []


@pytest.mark.slow
def test_a_stopped_job_ends_every_process_and_files_nothing(
    client: TestClient, reports: Path
) -> None:
    import psutil

    started = client.post(
        "/api/jobs",
        json={"scenario": "smoke", "backend": "real", "transport": "tcp", "duration": 30},
        headers=AUTH,
    )
    job_id = started.json()["job_id"]
    for _ in range(300):  # until the run is under way (its workers report progress)
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["progress"].get("real", 0) > 0.02:
            break
        time.sleep(0.1)
    me = psutil.Process()
    assert me.children(recursive=True), "the job and its processes are running"
    stopped = client.post(f"/api/jobs/{job_id}/stop", headers=AUTH).json()
    assert stopped["state"] in ("running", "stopped")
    assert wait_finished(client, job_id, 30)["state"] == "stopped"
    gone, alive = psutil.wait_procs(me.children(recursive=True), timeout=10)
    assert not alive, f"left behind: {alive}"
    assert not (reports / "runs").exists() or not list((reports / "runs").iterdir())


def test_two_runs_are_compared_figure_by_figure(client: TestClient, reports: Path) -> None:
    from harness.run.runner import run_scenario
    from harness.scenario.schema import load_scenario
    from harness.scenario.shipped import resolve

    smoke = load_scenario(resolve("smoke")).with_overrides(duration=1.0)
    model = smoke.model.model_copy(update={"replications": 1})
    first = run_scenario(smoke.model_copy(update={"model": model}), ("sim",), reports)
    later = smoke.with_overrides(seed=8).model_copy(update={"model": model})
    second = run_scenario(later, ("sim",), reports)
    found = client.get("/api/compare", params={"a": first.run_id, "b": second.run_id}).json()
    assert found["backends"] == ["sim"]
    rows = {row["figure"]: row for row in found["rows"]}
    p95 = rows["p95_ms"]
    assert p95["a"] == first.summaries["sim"].latency.p95_ms
    assert p95["b"] == second.summaries["sim"].latency.p95_ms
    assert p95["change_pct"] == pytest.approx((p95["b"] - p95["a"]) / p95["a"] * 100)
    assert rows["overloaded"]["change_pct"] is None  # not a number
    missing = client.get("/api/compare", params={"a": first.run_id, "b": "nope"})
    assert missing.status_code == 404


def test_reports_are_listed_and_served_and_nothing_else(client: TestClient, reports: Path) -> None:
    cert = reports / "certifications" / "20261206-010203-certification-ab12"
    fidelity = reports / "validation" / "20261206-010204-validation-tcp-cd34"
    for at, (folder, names) in enumerate(
        ((cert, ("report.html", "throughput.png")), (fidelity, ("report.md",)))
    ):
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text(f"{name} of {folder.name}")
        os.utime(folder, (1e9 + at, 1e9 + at))
    (reports / "regress-ci.json").write_text("{}")  # written now: the newest
    (reports / "secret.txt").write_text("not a report")
    listed = client.get("/api/reports").json()
    assert [(r["kind"], r["id"]) for r in listed] == [
        ("regression", "regress-ci"),
        ("validation", fidelity.name),
        ("certification", cert.name),
    ]
    assert listed[2]["files"] == ["report.html", "throughput.png"]
    page = client.get(f"/api/reports/certification/{cert.name}/files/report.html")
    assert page.status_code == 200 and page.text == f"report.html of {cert.name}"
    assert client.get("/api/reports/regression/regress-ci/files/regress-ci.json").json() == {}
    for path in (
        "/api/reports/regression/secret/files/secret.txt",
        f"/api/reports/certification/{cert.name}/files/..%2F..%2Fsecret.txt",
        "/api/reports/other/x/files/report.html",
        f"/api/reports/validation/{cert.name}/files/report.html",
    ):
        response = client.get(path)
        assert response.status_code == 404, path


def test_certify_and_regress_jobs_name_what_they_take(client: TestClient) -> None:
    suites = client.get("/api/suites").json()
    assert "certification/quick/suite" in suites["certify"] and suites["regress"] == []
    for kind in ("certify", "regress"):
        refused = client.post("/api/jobs", json={"kind": kind, "scenario": "nope"}, headers=AUTH)
        assert refused.status_code == 404 and "GET /api/suites" in refused.json()["detail"]


@pytest.mark.slow
def test_a_certification_runs_as_a_job_and_its_report_is_listed(client: TestClient) -> None:
    body = {"kind": "certify", "scenario": "certification/quick/suite", "repetitions": 1}
    job_id = client.post("/api/jobs", json=body, headers=AUTH).json()["job_id"]
    job = wait_finished(client, job_id, 300)
    assert job["state"] == "done", job
    report = job["result"]["report"]
    assert report["kind"] == "certification" and job["result"]["verdict"]
    assert job["log"] and job["progress"]  # it said what it was doing as it went
    listed = client.get("/api/reports").json()
    assert (report["kind"], report["id"]) in {(r["kind"], r["id"]) for r in listed}
    html = client.get(f"/api/reports/certification/{report['id']}/files/report.html")
    assert html.status_code == 200 and "<html" in html.text.lower()


@pytest.mark.slow
def test_a_regression_check_runs_as_a_job(client: TestClient, reports: Path) -> None:
    import shutil

    (reports / "baselines").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[2] / "reports/baselines/ci.json", reports / "baselines")
    body = {"kind": "regress", "scenario": "ci", "repetitions": 2}
    job_id = client.post("/api/jobs", json=body, headers=AUTH).json()["job_id"]
    job = wait_finished(client, job_id, 300)
    assert job["state"] == "done", job
    result = job["result"]
    assert result["report"]["kind"] == "regression" and isinstance(result["regressed"], bool)
    assert "regress-latency" in result["table"]
    written = reports / f"{result['report']['id']}.json"
    assert json.loads(written.read_text())["baseline"]
