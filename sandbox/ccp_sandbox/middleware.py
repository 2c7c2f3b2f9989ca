"""Counting every request per route template and applying request-level faults before routing."""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from ccp_sandbox.counters import Counters
from ccp_sandbox.faults import Fault, FaultStore
from ccp_sandbox.hangup import hang_up
from ccp_sandbox.ogc import PROBLEM_JSON, problem, status_word

ADMIN_PREFIX = "/_sandbox/"
HTML_ERROR = "<html><head><title>{status}</title></head><body><h1>{status} {phrase}</h1></body></html>\n"


class SandboxMiddleware:
    """Admin calls are neither counted nor faulted, so a test can always repair what it broke."""

    def __init__(self, app: ASGIApp, *, router: Router, counters: Counters, faults: FaultStore) -> None:
        self.app = app
        self.router = router
        self.counters = counters
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        self.counters.requests[f"{scope['method']} {self._route_template(scope)}"] += 1
        for fault in self.faults.take_request_faults(scope["method"], scope["path"]):
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "drop":
                await hang_up(scope, receive)
                return
            else:
                await _fault_response(fault)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _route_template(self, scope: Scope) -> str:
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(getattr(route, "path", scope["path"]))
        return str(scope["path"])


def _fault_response(fault: Fault) -> Response:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
    if fault.body == "ogc":
        detail = f"Fault injected by the CCP sandbox (HTTP {fault.status})"
        body = problem(fault.status, status_word(fault.status), detail)
        return JSONResponse(body, fault.status, headers, media_type=PROBLEM_JSON)
    if fault.body == "empty":
        return Response(b"", fault.status, headers)
    if fault.body == "html":
        text = HTML_ERROR.format(status=fault.status, phrase=status_word(fault.status).replace("-", " ").title())
        return Response(text, fault.status, headers, media_type="text/html")
    return Response(fault.body, fault.status, headers, media_type="text/plain")
