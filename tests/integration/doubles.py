"""Loopback doubles for the unit suite: a Keycloak token endpoint and CCP routes on pytest-httpserver.

Every secret is drawn fresh per test, so a secret registered with Airflow's masker by an earlier
test can never make a masking assertion pass by accident.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_ccp.hooks.ccp import Clock

TOKEN_PATH = "/auth/realms/d4science/protocol/openid-connect/token"
CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab"
ENCODED_CONTEXT = "%2Fd4science.research-infrastructures.eu%2FD4OS%2FBlue-CloudLab"
CLIENT_ID = "blue-cloud.d4science.org"
USER = "alice"
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"


def status_body(job_id: str = "job-1", status: str = "running", **more: Any) -> dict[str, Any]:
    return {"jobID": job_id, "status": status, "message": "", **more}


@dataclass
class TokenCall:
    form: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    answer: dict[str, Any]

    @property
    def grant(self) -> str:
        return self.form.get("grant_type", "")


@dataclass
class FakeKeycloak:
    """The token endpoint: answers every grant with fresh, distinct tokens and records each request."""

    server: HTTPServer
    expires_in: float | None = 300
    refresh_expires_in: float | None = 1800
    issue_refresh_token: bool = True
    calls: list[TokenCall] = field(default_factory=list)
    refuse: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    delay: float = 0.0  # seconds each answer takes, to make concurrent callers overlap

    def __post_init__(self) -> None:
        self.server.expect_request(TOKEN_PATH, method="POST").respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for(TOKEN_PATH)

    @property
    def grants(self) -> list[str]:
        return [call.grant for call in self.calls]

    def last_access_token(self) -> str:
        return str(self.calls[-1].answer["access_token"])

    def _handle(self, request: Request) -> Response:
        pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
        form = dict(pairs)
        assert len(form) == len(pairs), f"a form field was sent twice: {[name for name, _ in pairs]}"
        call = TokenCall(form, {k.lower(): v for k, v in request.headers.items()}, {})
        self.calls.append(call)
        time.sleep(self.delay)
        if call.grant in self.refuse:
            status, body = self.refuse[call.grant]
            call.answer = body
            return Response(json.dumps(body), status=status, content_type="application/json")
        answer: dict[str, Any] = {"access_token": f"at-{secrets.token_hex(12)}", "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        if self.issue_refresh_token:
            answer["refresh_token"] = f"rt-{secrets.token_hex(12)}"
            answer["refresh_expires_in"] = self.refresh_expires_in
        call.answer = answer
        return Response(json.dumps(answer), status=200, content_type="application/json")


class ShiftedClock(Clock):
    """A hook's clock whose monotonic time jumps ``offset`` seconds ahead, nothing really sleeping longer.

    Only the hooks' view of the clock moves, so the event loop and the HTTP libraries keep real time.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class SleepRecorder(Clock):
    """A hook's clock that records the retry waits instead of waiting them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class SteppingClock(Clock):
    """A clock whose waits only move its own wall-clock time forward: an hour of polling takes no time.

    ``limit`` waits at most, so that code which reads the real clock instead fails instead of spinning.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.now = time.time()
        self.waits: list[float] = []
        self.limit = limit

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        assert len(self.waits) <= self.limit, "still waiting after the clock's limit: is the real clock read?"
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def ccp_requests(server: HTTPServer, path_prefix: str = "/jobs") -> list[Request]:
    """Requests that reached CCP routes (not the token endpoint), in order."""
    return [request for request, _ in server.log if request.path.startswith(path_prefix)]


def bearer_of(request: Request) -> str | None:
    value = request.headers.get("Authorization")
    return value.removeprefix("Bearer ") if value else None
