"""``/_sandbox/*``: fault injection and counters, mounted only with --admin (and unauthenticated)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ccp_sandbox.config import JOB_STATUS_STYLES
from ccp_sandbox.faults import FaultSpecError, parse_fault
from ccp_sandbox.state import SandboxState, sandbox_state

router = APIRouter(prefix="/_sandbox", tags=["Sandbox admin"])
State = Annotated[SandboxState, Depends(sandbox_state)]


@router.post("/faults")
async def add_fault(request: Request, state: State) -> JSONResponse:
    try:
        spec = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body must be a JSON object describing one fault"}, 400)
    if not isinstance(spec, dict):
        return JSONResponse({"detail": "body must be a JSON object describing one fault"}, 400)
    if spec.get("kind") == "revoke_tokens":
        # Not a rule but an event: every token issued so far dies now, later ones work.
        state.tokens.revoke_all()
        return JSONResponse({"revoked": True, "faults": state.faults.active()})
    try:
        state.faults.add(parse_fault(spec))
    except FaultSpecError as error:
        return JSONResponse({"detail": str(error)}, 400)
    return JSONResponse({"faults": state.faults.active()}, 201)


@router.get("/faults")
def list_faults(state: State) -> dict[str, Any]:
    return {"faults": state.faults.active()}


@router.delete("/faults")
def clear_faults(state: State) -> dict[str, Any]:
    state.faults.clear()
    return {"faults": []}


@router.get("/counters")
def counters(state: State) -> dict[str, dict[str, int]]:
    return state.counters.snapshot()


async def _member(request: Request, name: str) -> Any:
    """A member of the JSON object the request carries, None when there is no such object or member."""
    try:
        return (await request.json()).get(name)
    except (ValueError, AttributeError):
        return None


@router.put("/job-status")
async def set_job_status(request: Request, state: State) -> JSONResponse:
    """Switch the style of every job-status document from now on (``{"style": "ccp"}``); reset restores it."""
    style = await _member(request, "style")
    if style not in JOB_STATUS_STYLES:
        return JSONResponse({"detail": f'body must be {{"style": one of {list(JOB_STATUS_STYLES)}}}'}, 400)
    state.job_status = style
    return JSONResponse({"style": style})


@router.put("/ignore-process-id")
async def set_ignore_process_id(request: Request, state: State) -> JSONResponse:
    """``{"ignore": true}``: ``GET /jobs`` ignores its ``processID`` filter from now on; reset honours it again."""
    ignore = await _member(request, "ignore")
    if not isinstance(ignore, bool):
        return JSONResponse({"detail": 'body must be {"ignore": true or false}'}, 400)
    state.ignore_process_id = ignore
    return JSONResponse({"ignore": ignore})


@router.post("/reset")
def reset(state: State) -> dict[str, Any]:
    state.faults.clear()
    state.counters.reset()
    state.job_status = state.config.job_status
    state.ignore_process_id = False
    return {"faults": [], "counters": state.counters.snapshot(), "job_status": state.job_status}
