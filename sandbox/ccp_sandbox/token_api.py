"""The Keycloak-like endpoints of the ``d4science`` realm."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ccp_sandbox.config import REALM_PATH, TOKEN_PATH
from ccp_sandbox.state import SandboxState, base_url, sandbox_state
from ccp_sandbox.tokens import TokenError

router = APIRouter(tags=["Keycloak"])
FORM = "application/x-www-form-urlencoded"


@router.post(TOKEN_PATH)
async def token(request: Request, state: Annotated[SandboxState, Depends(sandbox_state)]) -> JSONResponse:
    try:
        form = await _form(request)
        grant, answer = state.tokens.grant(form, request.headers, base_url(request) + REALM_PATH)
    except TokenError as error:
        return JSONResponse({"error": error.error, "error_description": error.description}, error.status)
    state.counters.token_grants[grant] += 1
    return JSONResponse(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.get(f"{REALM_PATH}/.well-known/openid-configuration")
def openid_configuration(request: Request) -> dict[str, object]:
    issuer = base_url(request) + REALM_PATH
    return {
        "issuer": issuer,
        "token_endpoint": base_url(request) + TOKEN_PATH,
        "grant_types_supported": [
            "password",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:uma-ticket",
        ],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }


async def _form(request: Request) -> dict[str, str]:
    # Parsed by hand: FastAPI's Form() would need python-multipart, which the sandbox does not depend on.
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise TokenError(400, "invalid_request", f"Token requests must be {FORM}")
    try:
        return dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise TokenError(400, "invalid_request", "Form body is not UTF-8") from None
