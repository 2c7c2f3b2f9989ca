"""CCP's OGC API - Processes endpoints, plus its /executions extension and a stand-in for its web UI."""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ccp_sandbox.config import TOKEN_PATH
from ccp_sandbox.faults import Fault
from ccp_sandbox.hangup import hang_up
from ccp_sandbox.jobs import DISMISSED, FAILED, SUCCESSFUL, Job
from ccp_sandbox.methods import InputError
from ccp_sandbox.ogc import (
    CONFORMANCE_BASE,
    CONFORMANCE_CLASSES,
    PROBLEM_JSON,
    OGCError,
    problem,
    status_word,
)
from ccp_sandbox.output import DamagedZip
from ccp_sandbox.state import SandboxState, base_url, sandbox_state
from ccp_sandbox.tokens import Principal, TokenError

router = APIRouter(tags=["CCP"])
State = Annotated[SandboxState, Depends(sandbox_state)]
T = TypeVar("T")


def caller(request: Request, state: State) -> Principal:
    """The context-bound principal of the request's bearer token, or a 401 clients can react to."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError(401, "invalid_token", "Missing bearer token")
        principal = state.tokens.verify_access(token.strip())
        if principal.context is None:
            raise TokenError(
                401, "invalid_token", "Token is not bound to a context (use UMA, d4s-context or the header)"
            )
    except TokenError as error:
        challenge = f'Bearer realm="d4science", error="invalid_token", error_description="{error.description}"'
        raise OGCError(401, "unauthorized", error.description, {"WWW-Authenticate": challenge}) from None
    return principal


Caller = Annotated[Principal, Depends(caller)]


@router.get("/")
def landing(request: Request, _: Caller) -> dict[str, Any]:
    base = base_url(request)
    return {
        "title": "CCP sandbox",
        "description": "A local stand-in for the D4Science Cloud Computing Platform (OGC API - Processes 1.0).",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": "application/json"},
            {"href": f"{base}/api", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0"},
            {"href": f"{base}/conformance", "rel": "http://www.opengis.net/def/rel/ogc/1.0/conformance"},
            {"href": f"{base}/processes", "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes"},
            {"href": f"{base}/jobs", "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list"},
            {"href": f"{base}{TOKEN_PATH}", "rel": "token", "type": "application/json"},
        ],
    }


@router.get("/conformance")
def conformance(_: Caller) -> dict[str, list[str]]:
    return {"conformsTo": [CONFORMANCE_BASE + name for name in CONFORMANCE_CLASSES]}


@router.get("/processes")
def processes(
    request: Request,
    state: State,
    _: Caller,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    page, links = _page(request, state.catalog.all(), limit, offset)
    return {"processes": [method.summary() for method in page], "links": links}


@router.get("/processes/{process_id}")
def process(process_id: str, state: State, _: Caller) -> dict[str, Any]:
    method = state.catalog.get(process_id)
    if method is None:
        raise OGCError(404, "no-such-process", f"No Method with id '{process_id}'")
    return method.description()


@router.post("/processes/{process_id}/execution", status_code=201)
async def execute(process_id: str, request: Request, state: State, who: Caller) -> Response:
    method = state.catalog.get(process_id)
    if method is None:
        raise OGCError(404, "no-such-process", f"No Method with id '{process_id}'")
    body = await _json_object(request)
    try:
        plan = method.plan(body.get("inputs"))
    except InputError as error:
        raise OGCError(400, "invalid-parameter-value", str(error)) from None
    assert who.context is not None  # guaranteed by caller()
    job_id = str(uuid.uuid4())
    job = Job(job_id, method, who.context, who.user, body, plan, state.config.data_dir / "jobs" / job_id)
    ccp_env = {
        "ccpcontext": who.context,
        "ccpiamurl": base_url(request) + TOKEN_PATH,
        "ccpclientid": who.client_id,
        "ccpreplicas": str(plan.replicas),
        "ccpimage": plan.image,
    }
    state.runner.prepare(job, ccp_env)
    state.jobs.add(job)
    state.counters.executions[method.id] += 1
    if state.faults.take("hold", method_id=method.id) is None:
        state.runner.start(job, ccp_env)
    base = base_url(request)
    lost = state.faults.take("lose_answer", method_id=method.id)
    if lost is not None:
        return await _lose_answer(lost, request)
    headers = {"Location": f"{base}/jobs/{job.id}"}
    if "respond-async" in request.headers.get("prefer", ""):
        headers["Preference-Applied"] = "respond-async"
    return JSONResponse(job.status_info(base, state.job_status), 201, headers=headers)


async def _lose_answer(fault: Fault, request: Request) -> Response:
    """The job exists, but the client never learns it: a proxy's error status, or a hang-up."""
    if fault.mode == "drop":
        await hang_up(request.scope, request.receive)
        return Response(status_code=204)  # never sent: uvicorn drops what follows a disconnect
    detail = "Fault injected by the CCP sandbox after creating the job"
    return JSONResponse(problem(fault.status, status_word(fault.status), detail), fault.status, media_type=PROBLEM_JSON)


@router.get("/jobs")
def jobs(
    request: Request,
    state: State,
    who: Caller,
    status: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies query defaults
    process_ids: Annotated[list[str], Query(alias="processID")] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=10000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    assert who.context is not None
    wanted_status, wanted_process = _csv(status), _csv(process_ids)
    selected = [
        job
        for job in state.jobs.visible(who.context, who.user)
        if (not wanted_status or job.status in wanted_status)
        and (not wanted_process or state.ignore_process_id or job.method.id in wanted_process)
    ]
    page, links = _page(request, selected, limit, offset)
    return {"jobs": [job.status_info(base_url(request), state.job_status) for job in page], "links": links}


@router.get("/jobs/{job_id}")
def job_status(job_id: str, request: Request, state: State, who: Caller) -> dict[str, Any]:
    return _job(state, who, job_id).status_info(base_url(request), state.job_status)


@router.delete("/jobs/{job_id}")
async def dismiss(job_id: str, request: Request, state: State, who: Caller) -> dict[str, Any]:
    job = _job(state, who, job_id)
    await state.runner.dismiss(job)
    return job.status_info(base_url(request), state.job_status)


@router.get("/jobs/{job_id}/results")
def results(job_id: str, request: Request, state: State, who: Caller) -> dict[str, Any]:
    job = _job(state, who, job_id)
    if job.status == SUCCESSFUL:
        href = f"{base_url(request)}/executions/{job.id}/outputs/output.zip"
        return {"output": {"href": href, "type": "application/zip"}}
    if job.status == FAILED:
        raise OGCError(500, "execution-failed", job.message)
    if job.status == DISMISSED:
        raise OGCError(410, "job-dismissed", f"Job '{job.id}' was dismissed")
    raise OGCError(404, "result-not-ready", f"Job '{job.id}' is {job.status}")


@router.get("/executions")
def executions(
    request: Request,
    state: State,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    assert who.context is not None
    page, links = _page(request, state.jobs.visible(who.context, who.user), limit, offset)
    return {"executions": [job.record(base_url(request), state.job_status) for job in page], "links": links}


@router.get("/executions/{job_id}")
def execution(job_id: str, request: Request, state: State, who: Caller) -> dict[str, Any]:
    return _job(state, who, job_id).record(base_url(request), state.job_status)


@router.get("/executions/{job_id}/outputs/output.zip")
def output_zip(job_id: str, state: State, who: Caller) -> Response:
    job = _job(state, who, job_id)
    if not job.terminal:
        raise OGCError(404, "result-not-ready", f"Job '{job.id}' is {job.status}; output.zip exists once it ends")
    fault = state.faults.take("corrupt_output", job_id=job.id)
    if fault is not None and fault.mode == "replace":
        return Response(fault.archive, media_type="application/zip")
    if fault is not None:
        return DamagedZip(job.archive, fault.mode)
    return FileResponse(job.archive, media_type="application/zip", filename="output.zip")


@router.get("/ui/executions/{job_id}", response_class=HTMLResponse)
def execution_page(job_id: str, state: State) -> str:
    """What the provider's 'CCP execution' link opens; a browser has no bearer token, so this is public."""
    job = next((job for job in state.jobs.all() if job.id == job_id), None)
    if job is None:
        raise OGCError(404, "no-such-job", f"No job with id '{job_id}'")
    rows = {
        "Method": f"{job.method.document.get('title')} ({job.method.id})",
        "Status": f"{job.status}: {job.message}",
        "Context": job.context,
        "User": job.user,
        "Image": job.plan.image,
    }
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return (
        f"<!doctype html><html><head><title>CCP sandbox execution {job.id}</title></head>"
        f"<body><h1>Execution {job.id}</h1><table>{table}</table>"
        f"<h2>Request</h2><pre>{html.escape(json.dumps(_without_secrets(job), indent=2))}</pre></body></html>"
    )


def _without_secrets(job: Job) -> dict[str, Any]:
    """The request as the public page shows it: values of ``format: secret`` inputs masked."""
    inputs = {
        name: "********" if job.method.inputs.get(name, {}).get("schema", {}).get("format") == "secret" else value
        for name, value in job.request.get("inputs", {}).items()
    }
    return {**job.request, "inputs": inputs}


def _job(state: SandboxState, who: Principal, job_id: str) -> Job:
    assert who.context is not None
    job = state.jobs.get(job_id, who.context, who.user)
    if job is None:
        raise OGCError(404, "no-such-job", f"No job with id '{job_id}'")
    return job


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise OGCError(400, "invalid-parameter-value", "The execute request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise OGCError(400, "invalid-parameter-value", "The execute request body must be a JSON object")
    return body


def _csv(values: list[str]) -> set[str]:
    """OGC array parameters arrive repeated (?status=a&status=b) or comma-joined (?status=a,b)."""
    return {item.strip() for value in values for item in value.split(",") if item.strip()}


def _page(request: Request, items: Sequence[T], limit: int, offset: int) -> tuple[Sequence[T], list[dict[str, str]]]:
    links = [{"href": str(request.url), "rel": "self", "type": "application/json"}]
    if offset + limit < len(items):
        following = request.url.include_query_params(limit=limit, offset=offset + limit)
        links.append({"href": str(following), "rel": "next", "type": "application/json"})
    return items[offset : offset + limit], links
