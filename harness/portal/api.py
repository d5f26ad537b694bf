"""The portal's HTTP API (``/api``): scenarios, runs, reports, jobs, a live coordinator
and the server itself.

Every route reads what the harness already files (the history database, run
folders, reports, the shipped scenarios and suites: ``harness.run.catalog``, which
the MCP server reads through too), acts through
``harness.jobs.manager`` (runs, certifications, regression checks) or asks the
coordinator the portal is attached to (``harness.swarm.console``); the page uses
nothing else, and FastAPI serves the OpenAPI schema at ``/openapi.json``. A route
that changes state (starting or stopping a job, writing memory, reporting render
latency) needs ``Authorization: Bearer <token>``; there are no cookies, so a page on
another site cannot act with a user's credentials. Bad input is a 4xx whose
``detail`` says what was wrong, never a 500; a coordinator that does not answer is
a 502.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from harness.jobs.manager import Busy, JobRequest
from harness.portal.state import Portal
from harness.run import catalog
from harness.run.history import query_runs
from harness.scenario.errors import ScenarioError
from harness.swarm.console import NotAttached, Unreachable
from protocol.messages import ListWhat, MemVerb

MAX_YAML = 1 << 20

T = TypeVar("T")
bearer = HTTPBearer(auto_error=False, description="the portal's token (swarmtwin serve --token)")
router = APIRouter(prefix="/api")


def portal(request: Request) -> Portal:
    found: Portal = request.app.state.portal
    return found


PortalDep = Annotated[Portal, Depends(portal)]


def authorized(
    state: PortalDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Refuse a state-changing request without the portal's token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "this request changes state: send Authorization: Bearer <token>")
    if not state.settings.accepts(credentials.credentials):
        state.refused += 1
        raise HTTPException(403, "wrong token")


Authorized = Depends(authorized)


# --- models --------------------------------------------------------------------------


class ScenarioInfo(BaseModel):
    name: str = Field(description="the name `swarmtwin run` takes, e.g. smoke or faults/partition")
    description: str
    agents: int
    duration: float
    transport: str
    backends: list[str]
    faults: int


class ValidateRequest(BaseModel):
    name: str | None = Field(None, max_length=500, description="a shipped scenario's name")
    text: str | None = Field(None, max_length=MAX_YAML, description="a scenario as YAML")


class Problem(BaseModel):
    field: str
    expected: str


class ValidateResponse(BaseModel):
    valid: bool
    name: str | None = None
    problems: list[Problem] = []
    message: str = ""


class StartRequest(BaseModel):
    kind: Literal["run", "certify", "regress"] = Field(
        "run", description="run a scenario, certify with a suite, or regress against a baseline"
    )
    scenario: str = Field(
        min_length=1,
        max_length=500,
        description="run: a shipped scenario's name; certify: a shipped suite's; "
        "regress: a baseline's (GET /api/suites lists the last two)",
    )
    backend: Literal["real", "sim", "both"] | None = None
    transport: Literal["inproc", "tcp"] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    duration: float | None = Field(None, gt=0, le=3600)
    repetitions: int | None = Field(None, ge=1, le=100, description="certify and regress")


class RenderStats(BaseModel):
    frames: int = Field(ge=0, le=10**9)
    p50_ms: float | None = Field(None, ge=0, le=1e7)
    p95_ms: float | None = Field(None, ge=0, le=1e7)
    max_ms: float | None = Field(None, ge=0, le=1e7)


# --- scenarios -------------------------------------------------------------------------


@router.get("/scenarios", response_model=list[ScenarioInfo], tags=["scenarios"])
def list_scenarios() -> list[ScenarioInfo]:
    """The shipped scenarios, as `swarmtwin run` names them."""
    return [ScenarioInfo(**catalog.describe(name, sc)) for name, sc in catalog.shipped().items()]


@router.post("/scenarios/validate", response_model=ValidateResponse, tags=["scenarios"])
def validate_scenario(body: ValidateRequest) -> ValidateResponse:
    """Check a shipped scenario (`name`) or a YAML text (`text`) as `swarmtwin check` does."""
    if (body.name is None) == (body.text is None):
        raise HTTPException(422, "give exactly one of name (a shipped scenario) or text (YAML)")
    try:
        scenario = _found(lambda: catalog.validate(body.name, body.text))
    except ScenarioError as exc:
        problems = [Problem(field=f, expected=e) for f, e in exc.problems]
        return ValidateResponse(valid=False, problems=problems, message=str(exc))
    return ValidateResponse(valid=True, name=scenario.name)


# --- runs (the history) ------------------------------------------------------------------


@router.get("/runs", tags=["runs"])
def list_runs(
    state: PortalDep,
    scenario: Annotated[str | None, Query(max_length=200)] = None,
    backend: Annotated[str | None, Query(max_length=50)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO date or time")] = None,
    until: Annotated[str | None, Query(max_length=40, description="ISO date or time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    """The run history, newest first: one row per run and backend (`swarmtwin history`)."""
    return query_runs(
        state.reports / "history.sqlite",
        scenario=scenario,
        backend=backend,
        since=since,
        until=until,
        limit=limit,
    )


def _found(read: Callable[[], T]) -> T:
    """``read()``, with ``catalog.NotFound`` as a 404."""
    try:
        return read()
    except catalog.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


@router.get("/runs/{run_id}", tags=["runs"])
def get_run(state: PortalDep, run_id: str) -> dict[str, Any]:
    """A run folder: its files, its scenario, its summary (`summary.json`) and each
    backend's headline figures (a repeated backend's: the median over its runs)."""
    return _found(lambda: catalog.run_record(state.reports, run_id))


@router.get("/runs/{run_id}/summary", tags=["runs"])
def get_summary(state: PortalDep, run_id: str) -> dict[str, Any]:
    """The run's `summary.json`, as filed."""
    return _found(lambda: catalog.summary_of(state.reports, run_id))


@router.get("/runs/{run_id}/timeline", tags=["runs"])
def get_timeline(state: PortalDep, run_id: str) -> dict[str, Any]:
    """Each backend's timeline (0.1 s bins by scheduled time), from `summary.json`."""
    summary = get_summary(state, run_id)
    return {
        backend: figures.get("timeline", [])
        for backend, figures in summary.get("backends", {}).items()
    }


@router.get("/runs/{run_id}/files/{name}", tags=["runs"], response_class=FileResponse)
def get_file(state: PortalDep, run_id: str, name: str) -> FileResponse:
    """One file of the run folder (plots, tables, the scenario)."""
    return FileResponse(_found(lambda: catalog.run_file(state.reports, run_id, name)))


@router.get("/compare", tags=["runs"])
def compare(
    state: PortalDep,
    a: Annotated[str, Query(max_length=200, description="the first run's id")],
    b: Annotated[str, Query(max_length=200, description="the second run's id")],
) -> dict[str, Any]:
    """Two runs side by side: each backend's headline figures in both, and the change
    from `a` to `b` in percent (None where either is missing or `a` is zero)."""
    return _found(lambda: catalog.compare_runs(state.reports, a, b))


# --- reports (certification, validation, regression) ----------------------------------------


@router.get("/reports", tags=["reports"])
def list_reports(state: PortalDep) -> list[dict[str, Any]]:
    """Certification and fidelity reports (a folder each) and regression results (a JSON
    file each, `swarmtwin regress --json`), the most recently written first."""
    return catalog.list_reports(state.reports)


@router.get("/reports/{kind}/{report_id}/files/{name}", tags=["reports"])
def report_file(state: PortalDep, kind: str, report_id: str, name: str) -> FileResponse:
    """One file of a report (its HTML, Markdown, JSON or plots)."""
    return FileResponse(_found(lambda: catalog.report_file(state.reports, kind, report_id, name)))


# --- jobs (runs started here) -------------------------------------------------------------


@router.get("/suites", tags=["jobs"])
def list_suites(state: PortalDep) -> dict[str, list[str]]:
    """What a certify job takes (shipped suites) and what a regress job takes (baselines)."""
    return {"certify": catalog.shipped_suites(), "regress": catalog.baselines(state.reports)}


@router.post("/jobs", status_code=201, tags=["jobs"], dependencies=[Authorized])
async def start_job(state: PortalDep, body: StartRequest) -> dict[str, Any]:
    """Start a run of a shipped scenario as `swarmtwin run` would, a certification as
    `swarmtwin certify` would, or a regression check as `swarmtwin regress` would; one
    job at a time."""
    if body.kind == "run":
        try:
            _found(lambda: catalog.validate(body.scenario))
        except ScenarioError as exc:
            raise HTTPException(422, str(exc)) from exc
    else:
        known = (
            catalog.shipped_suites() if body.kind == "certify" else catalog.baselines(state.reports)
        )
        if body.scenario not in known:
            what = "shipped suite" if body.kind == "certify" else "baseline"
            raise HTTPException(
                404, f"no {what} named {body.scenario!r}; GET /api/suites lists them: {known}"
            )
    request = JobRequest(
        body.scenario,
        body.backend,
        body.transport,
        body.seed,
        body.duration,
        kind=body.kind,
        repetitions=body.repetitions,
    )
    try:
        job = await state.jobs.start(request)
    except Busy as exc:
        raise HTTPException(409, str(exc)) from exc
    return job.status()


@router.get("/jobs", tags=["jobs"])
def list_jobs(state: PortalDep) -> list[dict[str, Any]]:
    """The running job and the last finished ones, newest first."""
    return [job.status() for job in reversed(state.jobs.jobs.values())]


def _job(state: Portal, job_id: str) -> Any:
    job = state.jobs.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("/jobs/{job_id}", tags=["jobs"])
def get_job(
    state: PortalDep, job_id: str, points: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    """A job's state, progress and result; with `points`, every live point so far."""
    status: dict[str, Any] = _job(state, job_id).status(points=points)
    return status


@router.post("/jobs/{job_id}/stop", tags=["jobs"], dependencies=[Authorized])
async def stop_job(state: PortalDep, job_id: str) -> dict[str, Any]:
    """Stop a running job and every process it started; a stopped run files nothing."""
    job = _job(state, job_id)
    await state.jobs.stop(job)
    status: dict[str, Any] = job.status()
    return status


# --- the live coordinator (serve --coordinator) ---------------------------------------------


class MemoryRequest(BaseModel):
    verb: Literal["get", "put", "cas", "delete"]
    namespace: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1, max_length=1024)
    value: str = Field("", max_length=1 << 18, description="UTF-8 text (put and cas)")
    expected_version: int = Field(0, ge=0, le=2**63 - 1, description="cas only")


VERBS = {"get": MemVerb.GET, "put": MemVerb.PUT, "cas": MemVerb.CAS, "delete": MemVerb.DELETE}


async def _system_call(call: Awaitable[T]) -> T:
    try:
        return await call
    except NotAttached as exc:
        raise HTTPException(404, f"{exc}: swarmtwin serve --coordinator HOST:PORT") from exc
    except Unreachable as exc:
        raise HTTPException(502, str(exc)) from exc


@router.get("/system", tags=["system"])
async def system_status(state: PortalDep) -> dict[str, Any]:
    """The attached coordinator's live status: every component's health and metrics,
    one `agent:<id>` per agent (state, credit, backlog, tasks, subscriptions)."""
    status = await _system_call(state.system.status())
    where = state.coordinator
    return {"coordinator": f"{where.host}:{where.port}" if where else None, "status": status}


LISTS = {"topics": ListWhat.TOPICS, "namespaces": ListWhat.NAMESPACES, "keys": ListWhat.KEYS}
COUNTS = {"topics": "subscribers", "namespaces": "keys", "keys": "version"}


@router.get("/system/{what}", tags=["system"])
async def system_list(
    state: PortalDep,
    what: Literal["topics", "namespaces", "keys"],
    namespace: Annotated[str, Query(max_length=256, description="keys: the namespace")] = "",
) -> dict[str, Any]:
    """The attached coordinator's subscription patterns (with their subscriber counts),
    memory namespaces (with their key counts) or one namespace's keys (with their
    versions): at most 1,000, in no particular order, and how many there are."""
    if what == "keys" and not namespace:
        raise HTTPException(422, "keys: give the namespace (?namespace=...)")
    reply = await _system_call(state.system.listing(LISTS[what], namespace))
    count = COUNTS[what]
    items = [{"name": n, count: c} for n, c in zip(reply.names, reply.counts, strict=False)]
    return {"what": what, "namespace": namespace or None, "items": items, "total": reply.total}


@router.post("/system/memory", tags=["system"], dependencies=[Authorized])
async def system_memory(state: PortalDep, body: MemoryRequest) -> dict[str, Any]:
    """Get, put, compare-and-set or delete one key of the attached coordinator's memory
    store, as an agent would (the portal's console agent)."""
    reply = await _system_call(
        state.system.memory(
            VERBS[body.verb], body.namespace, body.key, body.value.encode(), body.expected_version
        )
    )
    try:
        text: str | None = reply.value.decode()
    except UnicodeDecodeError:
        text = None
    return {
        "ok": reply.ok,
        "version": reply.version,
        "value": text,
        "value_base64": None if text is not None else base64.b64encode(reply.value).decode(),
        "error": reply.error,
    }


# --- the server ----------------------------------------------------------------------------


@router.post("/render-stats", tags=["server"], dependencies=[Authorized])
def report_render(state: PortalDep, body: RenderStats) -> dict[str, Any]:
    """A page's push-to-render latency: from a frame's server stamp to its drawing."""
    state.render = {**body.model_dump(), "reported": time.time()}
    return state.render


@router.get("/server", tags=["server"])
def server_status(state: PortalDep) -> dict[str, Any]:
    """This server: its CPU time, its pushes, the last render latency a page reported."""
    return state.describe()
