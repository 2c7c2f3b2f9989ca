"""The FastAPI application of one sandbox instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ccp_sandbox import admin_api, ogc_api, token_api
from ccp_sandbox.config import SandboxConfig
from ccp_sandbox.middleware import SandboxMiddleware
from ccp_sandbox.ogc import OGCError, problem_response, status_word
from ccp_sandbox.state import SandboxState


def create_app(config: SandboxConfig) -> FastAPI:
    state = SandboxState.from_config(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.runner.kill_all()

    app = FastAPI(
        title="CCP sandbox",
        summary="A local D4Science CCP (OGC API - Processes) and Keycloak stand-in",
        lifespan=lifespan,
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
    )
    app.state.sandbox = state
    app.include_router(token_api.router)
    app.include_router(ogc_api.router)
    if config.admin:
        app.include_router(admin_api.router)
    app.add_exception_handler(OGCError, _ogc_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_parameter)
    app.add_middleware(SandboxMiddleware, router=app.router, counters=state.counters, faults=state.faults)
    return app


async def _ogc_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, OGCError)
    return problem_response(error)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return problem_response(OGCError(error.status_code, status_word(error.status_code), str(error.detail)))


async def _invalid_parameter(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    return problem_response(OGCError(400, "invalid-parameter-value", details))
