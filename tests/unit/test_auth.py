"""The sans-IO token flows and the per-process cache, driven with a scripted token endpoint.

The exact requests each flow puts on the wire are proven against a real loopback server in
test_hook_http.py; here the flows' decisions are tested: reuse, refresh before login, recovery
after revocation, and what a refusal says.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable

import pytest

from airflow_provider_ccp import auth, exchange
from airflow_provider_ccp.auth import Grant, TokenAnswer, TokenRequest, TokenState
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPAuthError, CCPCredentialsError, CCPError
from airflow_provider_ccp.retries import is_final

CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab"
TOKEN_URL = "https://accounts.example.org/auth/realms/d4science/protocol/openid-connect/token"


def make_settings(auth_flow: str = "password_uma", **overrides) -> CCPConnectionSettings:
    fields = {
        "host": "https://ccp.example.org",
        "login": "alice",
        "password": "alice-password",
        "extra": {"token_url": TOKEN_URL, "client_id": "blue-cloud.d4science.org", "context": CONTEXT},
    }
    fields["extra"] = {**fields["extra"], "auth_flow": auth_flow, **overrides.pop("extra", {})}
    return CCPConnectionSettings.from_fields(**(fields | overrides))


class Endpoint:
    """A scripted token endpoint: answers by grant, counts, and can refuse a grant or a bearer."""

    def __init__(self, expires_in: float = 300, refresh: bool = True) -> None:
        self.requests: list[TokenRequest] = []
        self.expires_in = expires_in
        self.refresh = refresh
        self.refused_grants: dict[str, tuple[int, dict]] = {}
        self.revoked: set[str] = set()

    @property
    def grants(self) -> list[str]:
        return [request.grant for request in self.requests]

    def __call__(self, request: TokenRequest) -> TokenAnswer:
        self.requests.append(request)
        n = len(self.requests)
        if request.grant in self.refused_grants:
            status, body = self.refused_grants[request.grant]
            return TokenAnswer(status, json.dumps(body).encode())
        presented = request.data.get("refresh_token") or request.headers.get("Authorization", "").removeprefix(
            "Bearer "
        )
        if presented in self.revoked:
            return TokenAnswer(400, b'{"error": "invalid_grant", "error_description": "Token is not active"}')
        body = {"access_token": f"access-{n}", "expires_in": self.expires_in}
        if self.refresh:
            body |= {"refresh_token": f"refresh-{n}", "refresh_expires_in": 1800}
        return TokenAnswer(200, json.dumps(body).encode())


def run(settings: CCPConnectionSettings, state: TokenState, endpoint: Callable, now: float = 1000.0) -> Grant:
    return exchange.drive(auth.acquire(settings, state, now), endpoint)


class TestCache:
    def test_one_state_per_credentials_shared_by_everyone(self):
        cache = auth.TokenCache()
        first = cache.state(make_settings())
        assert cache.state(make_settings()) is first
        assert cache.state(make_settings(host="https://elsewhere.example.org")) is first
        assert cache.state(make_settings(password="changed")) is not first
        cache.clear()
        assert cache.state(make_settings()) is not first

    def test_usable_context_token_is_reused_without_a_request(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        assert run(settings, state, endpoint).access_token == "access-2"
        assert run(settings, state, endpoint, now=1100.0).access_token == "access-2"
        assert endpoint.grants == ["password", "uma-ticket"]
        assert state.usable_token(1100.0) == "access-2"

    def test_expiry_keeps_a_safety_margin(self):
        # Renewal comes 10 % of the lifetime early, at most 60 s early.
        assert auth._deadline(0.0, 1200) == 1140.0
        assert auth._deadline(0.0, 300) == 270.0
        assert auth._deadline(0.0, "10") == 9.0
        assert auth._deadline(0.0, 0) is None
        assert auth._deadline(0.0, None) is None

    def test_expired_context_token_is_refreshed_not_logged_in_again(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        run(settings, state, endpoint)
        grant = run(settings, state, endpoint, now=1000.0 + 271)
        assert endpoint.grants == ["password", "uma-ticket", "refresh_token"]
        assert endpoint.requests[-1].data["refresh_token"] == "refresh-2"
        assert grant.access_token == "access-3"

    def test_refused_refresh_falls_back_to_the_flow(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        run(settings, state, endpoint)
        endpoint.revoked.add("refresh-2")
        state.reject("access-2")
        grant = run(settings, state, endpoint)
        # The login token (access-1) still lives, so only the UMA exchange is redone.
        assert endpoint.grants == ["password", "uma-ticket", "refresh_token", "uma-ticket"]
        assert grant.access_token == "access-4"

    def test_revoked_login_token_leads_to_one_fresh_password_login(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        run(settings, state, endpoint)
        endpoint.revoked |= {"access-1", "refresh-1", "access-2", "refresh-2"}
        state.reject("access-2")
        grant = run(settings, state, endpoint)
        assert endpoint.grants == ["password", "uma-ticket", "refresh_token", "uma-ticket", "password", "uma-ticket"]
        assert endpoint.requests[-1].headers["Authorization"] == "Bearer access-5"
        assert grant.access_token == "access-6"

    def test_fresh_login_refused_by_uma_is_not_retried(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        endpoint.refused_grants["uma-ticket"] = (403, {"error": "access_denied", "error_description": "not_authorized"})
        with pytest.raises(CCPAuthError, match="access_denied: not_authorized"):
            run(settings, state, endpoint)
        assert endpoint.grants == ["password", "uma-ticket"]

    def test_reject_only_drops_the_token_that_was_refused(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        run(settings, state, endpoint)
        state.reject("some-older-token")
        assert state.usable_token(1000.0) == "access-2"
        state.reject("access-2")
        assert state.usable_token(1000.0) is None
        # The refresh token survives the rejection: renewal is one cheap request.
        run(settings, state, endpoint)
        assert endpoint.grants[-1] == "refresh_token"

    def test_secrets_lists_every_held_token(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        run(settings, state, endpoint)
        assert set(state.secrets()) == {"access-1", "refresh-1", "access-2", "refresh-2"}

    def test_threads_share_one_state_through_its_lock(self):
        # What the sync hook does: a thread holding the lock acquires, the others reuse.
        endpoint, state, settings = Endpoint(), TokenState(), make_settings()
        tokens: list[str] = []

        def worker() -> None:
            with state.lock:
                tokens.append(run(settings, state, endpoint).access_token)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert endpoint.grants == ["password", "uma-ticket"]
        assert set(tokens) == {"access-2"}


class TestFlows:
    def test_password_scope_and_context_header_are_one_request(self):
        for flow in ("password_scope", "context_header"):
            endpoint = Endpoint()
            assert run(make_settings(flow), TokenState(), endpoint).access_token == "access-1"
            assert endpoint.grants == ["password"]

    def test_context_header_refresh_carries_the_header(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings("context_header")
        run(settings, state, endpoint)
        run(settings, state, endpoint, now=1000.0 + 271)
        assert endpoint.requests[-1].grant == "refresh_token"
        assert (
            endpoint.requests[-1].headers[auth.CONTEXT_HEADER]
            == "%2Fd4science.research-infrastructures.eu%2FD4OS%2FBlue-CloudLab"
        )

    def test_client_credentials_is_basic_auth_uma(self):
        endpoint = Endpoint()
        settings = make_settings("client_credentials", login=None, password=None, extra={"client_secret": "s3"})
        run(settings, TokenState(), endpoint)
        request = endpoint.requests[0]
        assert request.grant == "uma-ticket"
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"blue-cloud.d4science.org:s3").decode()

    def test_refresh_token_flow_uses_the_stored_offline_token(self):
        endpoint = Endpoint()
        run(make_settings("refresh_token", login=None, password="offline-1"), TokenState(), endpoint)
        assert endpoint.requests[0].data["refresh_token"] == "offline-1"

    def test_refused_offline_token_says_what_to_do(self):
        endpoint = Endpoint()
        endpoint.revoked.add("offline-1")
        with pytest.raises(CCPAuthError, match="store a new offline token") as raised:
            run(make_settings("refresh_token", login=None, password="offline-1"), TokenState(), endpoint)
        assert "offline-1" not in str(raised.value)

    def test_token_flow_makes_no_request_and_reads_a_jwt_expiry(self):
        claims = base64.urlsafe_b64encode(json.dumps({"exp": 4102444800}).encode()).decode().rstrip("=")
        jwt = f"eyJhbGciOiJub25lIn0.{claims}.sig"
        endpoint, state = Endpoint(), TokenState()
        grant = run(make_settings("token", password=jwt), state, endpoint)
        assert endpoint.requests == []
        assert grant.access_token == jwt
        assert grant.expires_at is not None
        assert grant.expires_at > 1000.0 + 3600

    def test_token_flow_opaque_token_never_expires_until_rejected(self):
        endpoint, state, settings = Endpoint(), TokenState(), make_settings("token", password="opaque")
        assert run(settings, state, endpoint).expires_at is None
        state.reject("opaque")
        with pytest.raises(CCPAuthError, match="store a new token") as raised:
            run(settings, state, endpoint)
        assert "opaque" not in str(raised.value)
        assert endpoint.requests == []

    def test_none_flow_gets_no_token(self):
        with pytest.raises(CCPError, match="gets no token"):
            run(make_settings("none"), TokenState(), Endpoint())


class TestRefusals:
    def test_rejected_login_names_who_asked_but_not_the_password(self):
        endpoint = Endpoint()
        endpoint.refused_grants["password"] = (
            401,
            {"error": "invalid_grant", "error_description": "Invalid user credentials"},
        )
        with pytest.raises(CCPAuthError) as raised:
            run(make_settings(), TokenState(), endpoint)
        message = str(raised.value)
        assert TOKEN_URL in message
        assert "client_id='blue-cloud.d4science.org'" in message
        assert "user='alice'" in message
        assert "invalid_grant: Invalid user credentials" in message
        assert "HTTP 401" in message
        assert "alice-password" not in message
        assert raised.value.http_status == 401
        assert raised.value.title == "invalid_grant"
        assert raised.value.detail == "Invalid user credentials"

    @pytest.mark.parametrize(
        ("status", "body", "cls", "reason"),
        [
            (200, b"{}", CCPError, "no access_token in the answer"),
            (503, b"<html>busy</html>", CCPError, "no access_token in the answer"),
            (400, b"", CCPCredentialsError, "no access_token in the answer"),
        ],
    )
    def test_unreadable_answers(self, status, body, cls, reason):
        settings = make_settings()
        request = auth.password_request(settings)
        with pytest.raises(CCPError, match=reason) as raised:
            auth.read_grant(settings, request, TokenAnswer(status, body), 0.0)
        assert type(raised.value) is cls
        assert f"HTTP {status}" in str(raised.value)

    @pytest.mark.parametrize(("grant", "final"), [("password", True), ("uma-ticket", True), ("refresh_token", False)])
    def test_a_refused_login_is_final_and_a_refused_refresh_is_not(self, grant, final):
        # A refused refresh token only means "log in again"; a refused login means the credentials are wrong.
        settings = make_settings()
        request = {
            "password": auth.password_request(settings),
            "uma-ticket": auth.uma_request(settings, "login-token"),
            "refresh_token": auth.refresh_request(settings, "refresh", context_header=False),
        }[grant]
        body = b'{"error": "invalid_grant", "error_description": "Invalid user credentials"}'
        with pytest.raises(CCPAuthError) as raised:
            auth.read_grant(settings, request, TokenAnswer(401, body), 0.0)
        assert is_final(raised.value) is final

    def test_reprs_hide_the_form_and_the_answer(self):
        settings = make_settings(password="hunter2-password")
        request = auth.password_request(settings)
        assert "hunter2" not in repr(request)
        answer = TokenAnswer(200, b'{"access_token": "tok-secret", "refresh_token": "ref-secret"}')
        assert "secret" not in repr(answer)
        grant = auth.read_grant(settings, request, answer, 0.0)
        assert "secret" not in repr(grant)
        state = TokenState(login=grant, context=grant)
        assert "secret" not in repr(state)
