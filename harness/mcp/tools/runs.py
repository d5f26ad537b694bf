"""Harness tools: the shipped scenarios, runs of them on the real system and the model,
the run history, comparisons, and the long jobs (certification, regression check,
fidelity report), through ``harness.jobs`` and ``harness.run.catalog``.

A run, a certification, a regression check and a fidelity report each run as one
job, a subprocess filing exactly what the CLI files; one job at a time on the
machine (a second would share the cores and spoil both measurements). With
``wait`` (the default) the tool reports the job's progress as MCP progress
notifications and returns its result; a client that cancels the call stops the
job and every process it started. Without ``wait`` it returns the job's id at
once, for ``run_status`` and ``run_stop``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer

from harness.jobs.manager import Job, JobRequest
from harness.mcp.state import McpState
from harness.mcp.tools.errors import tool_errors
from harness.run import catalog
from harness.run.history import query_runs
from harness.scenario.errors import ScenarioError

FINAL = ("done", "invalid", "failed", "stopped")


def register(server: MCPServer, state: McpState) -> None:
    async def follow(job: Job, ctx: Context) -> dict[str, Any]:
        """Progress notifications until ``job`` ends; its status. Cancelled: stop it."""
        queue = state.watch(job.job_id)
        try:
            await ctx.report_progress(0.0, 1.0, f"job {job.job_id} started")
            while not job.finished:
                try:
                    event = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    continue
                if event.get("type") in ("progress", "log"):
                    labels = job.info.get("labels") or list(job.progress) or ["job"]
                    done = sum(job.progress.get(label, 0.0) for label in labels) / len(labels)
                    label = str(event.get("label"))
                    what = event.get("line") or f"{label} {job.progress.get(label, 0.0):.0%}"
                    await ctx.report_progress(round(done, 4), 1.0, str(what)[:200])
        except BaseException:
            if not job.finished:  # the client cancelled the call: the job goes with it
                await state.jobs.stop(job)
            raise
        finally:
            state.unwatch(job.job_id, queue)
        return result(job)

    def result(job: Job) -> dict[str, Any]:
        found = job.status()
        done = job.result or {}
        run_id = done.get("run_id")
        if run_id:
            found["figures"] = catalog.run_record(state.reports, str(run_id))["figures"]
        return found

    async def start(request: JobRequest, wait: bool, ctx: Context) -> dict[str, Any]:
        job = await state.jobs.start(request)
        if not wait:
            return job.status()
        return await follow(job, ctx)

    async def scenario_list() -> list[dict[str, Any]]:
        """The shipped scenarios by the name run_scenario takes (smoke, default,
        faults/partition, ...): what each is, its agents, duration, transport, backends
        and faults."""
        return [catalog.describe(name, sc) for name, sc in catalog.shipped().items()]

    async def scenario_validate(name: str | None = None, text: str | None = None) -> dict[str, Any]:
        """Check a shipped scenario (`name`) or a scenario written out as YAML (`text`)
        as `swarmtwin check` does: valid, or each problem's field and what was expected."""
        try:
            scenario = catalog.validate(name, text)
        except ScenarioError as exc:
            problems = [{"field": f, "expected": e} for f, e in exc.problems]
            return {"valid": False, "problems": problems, "message": str(exc)}
        return {
            "valid": True,
            "name": scenario.name,
            **catalog.describe(name or "<text>", scenario),
        }

    async def run_scenario(
        ctx: Context,
        scenario: str,
        backend: Literal["real", "sim", "both"] | None = None,
        transport: Literal["inproc", "tcp"] | None = None,
        seed: int | None = None,
        duration: float | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Run a shipped scenario as `swarmtwin run` does, on the real system, the model
        or both (default: the scenario's backends), optionally with another transport,
        seed or duration (seconds, at most 3,600). It is filed as the CLI files it: a run
        folder under <reports>/runs and a history row. With `wait`, progress comes as
        notifications and the answer is the job's status with the run's id and headline
        figures (identical to its summary.json); cancelling the call stops the run.
        Without it, the job's id comes back at once (run_status, run_stop). Cost: the
        scenario's duration per backend run plus the drain, with the machine's cores."""
        if duration is not None and not 0 < duration <= 3600:
            raise ValueError(f"duration: expected more than 0 and at most 3,600 s, got {duration}")
        catalog.validate(scenario)
        request = JobRequest(scenario, backend, transport, seed, duration, kind="run")
        return await start(request, wait, ctx)

    async def run_status(job_id: str) -> dict[str, Any]:
        """A job's state (starting, running, done, invalid, failed, stopped), progress
        per run, its last log lines and, once done, its result: a run's id and headline
        figures, or a report's kind and id."""
        job = state.jobs.jobs.get(job_id)
        if job is None:
            known = ", ".join(state.jobs.jobs) or "none"
            raise catalog.NotFound(f"no job {job_id!r} (jobs: {known})")
        return result(job)

    async def run_stop(job_id: str) -> dict[str, Any]:
        """Stop a running job and every process it started; a stopped run files nothing."""
        job = state.jobs.jobs.get(job_id)
        if job is None:
            raise catalog.NotFound(f"no job {job_id!r}")
        await state.jobs.stop(job)
        return job.status()

    async def run_summary(run_id: str) -> dict[str, Any]:
        """A filed run's headline figures per backend and its whole summary.json."""
        record = catalog.run_record(state.reports, run_id)
        return {"run_id": run_id, "figures": record["figures"], "summary": record["summary"]}

    async def compare_runs(a: str, b: str) -> dict[str, Any]:
        """Two filed runs side by side: each backend's headline figures in both, and the
        change from `a` to `b` in percent."""
        return catalog.compare_runs(state.reports, a, b)

    async def history(
        scenario: str | None = None,
        backend: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """The run history (`swarmtwin history`), newest first: one row per run and
        backend with its headline figures, filtered by scenario, backend and a span of
        ISO dates or times; at most `limit` (1 to 1,000) rows."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: expected 1 to 1,000, got {limit}")
        return query_runs(
            state.reports / "history.sqlite",
            scenario=scenario,
            backend=backend,
            since=since,
            until=until,
            limit=limit,
        )

    async def certify(
        ctx: Context,
        suite: str = "certification/suite",
        repetitions: int | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Certify as `swarmtwin certify` does with a shipped suite: its load, capacity,
        recovery and resilience runs on the real system and the model, and the security
        checks; the report goes to <reports>/certifications/. Cost: about 10 minutes on
        2 cores for the full suite (certification/quick is shorter)."""
        known = catalog.shipped_suites()
        if suite not in known:
            raise catalog.NotFound(f"no shipped certification suite {suite!r}: {known}")
        request = JobRequest(suite, kind="certify", repetitions=repetitions)
        return await start(request, wait, ctx)

    async def regress(
        ctx: Context, baseline: str, repetitions: int | None = None, wait: bool = True
    ) -> dict[str, Any]:
        """Check for a regression as `swarmtwin regress` does, against a baseline under
        <reports>/baselines/ (by name, without .json): the model bit for bit, the real
        system against its recorded spread; the result goes to <reports>/regress-job-*.json."""
        known = catalog.baselines(state.reports)
        if baseline not in known:
            raise catalog.NotFound(f"no baseline {baseline!r} in <reports>/baselines: {known}")
        request = JobRequest(baseline, kind="regress", repetitions=repetitions)
        return await start(request, wait, ctx)

    async def fidelity_report(
        ctx: Context,
        suite: str = "validation/suite",
        repetitions: int | None = None,
        replications: int | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Measure how well the model predicts the real system, as `swarmtwin
        validate-model` does: the suite's points on both, and the fidelity report (errors
        per figure, goals met or missed) under <reports>/validation/. Cost: many minutes;
        fewer repetitions and replications make it shorter and its intervals wider."""
        known = catalog.shipped_validation_suites()
        if suite not in known:
            raise catalog.NotFound(f"no shipped validation suite {suite!r}: {known}")
        request = JobRequest(
            suite, kind="validate", repetitions=repetitions, replications=replications
        )
        return await start(request, wait, ctx)

    async def reports() -> list[dict[str, Any]]:
        """Certification and fidelity reports and regression results, newest first, with
        their files (read them as resources: swarmtwin://reports/{kind}/{id}/{name})."""
        return catalog.list_reports(state.reports)

    for fn in (
        scenario_list,
        scenario_validate,
        run_scenario,
        run_status,
        run_stop,
        run_summary,
        compare_runs,
        history,
        certify,
        regress,
        fidelity_report,
        reports,
    ):
        server.tool()(tool_errors(fn))
