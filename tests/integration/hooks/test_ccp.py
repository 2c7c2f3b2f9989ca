"""CCPHook against real HTTP on loopback (pytest-httpserver): token flows, cache, 401, retries, errors, outputs."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
from itertools import chain, repeat

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_ccp import auth, retries
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPDownloadError,
    CCPError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    CCPProtocolError,
    CCPSubmissionLostError,
    CCPTrustError,
)
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.protocol import StatusInfo, SyncResults
from tests.integration.doubles import (
    CLIENT_ID,
    CONTEXT,
    ENCODED_CONTEXT,
    UMA,
    USER,
    FakeKeycloak,
    SleepRecorder,
    SteppingClock,
    bearer_of,
    ccp_requests,
    status_body,
)

FORM = "application/x-www-form-urlencoded"
FAST = 0.01  # retry_delay for tests that wait their retries
MiB = 1024 * 1024


def serve_job(httpserver: HTTPServer, job_id: str = "j1", status: str = "running") -> None:
    httpserver.expect_request(f"/jobs/{job_id}", method="GET").respond_with_json(status_body(job_id, status))


def one_ccp_call(conn_id: str, httpserver: HTTPServer) -> Request:
    serve_job(httpserver)
    assert CCPHook(conn_id).get_job("j1").job_id == "j1"
    (request,) = ccp_requests(httpserver)
    return request


@pytest.fixture
def retry_sleeps() -> SleepRecorder:
    return SleepRecorder()


# ====================================================================== 1. each auth_flow on the wire


class TestAuthFlowsOnTheWire:
    def test_password_uma(self, make_conn, keycloak, httpserver, password):
        request = one_ccp_call(make_conn(auth_flow="password_uma"), httpserver)
        login, uma = keycloak.calls
        assert login.form == {"grant_type": "password", "client_id": CLIENT_ID, "username": USER, "password": password}
        assert login.headers["content-type"] == FORM
        assert "authorization" not in login.headers
        assert "x-d4science-context" not in login.headers
        assert uma.form == {"grant_type": UMA, "audience": ENCODED_CONTEXT}
        assert uma.headers["content-type"] == FORM
        assert uma.headers["authorization"] == f"Bearer {login.answer['access_token']}"
        assert bearer_of(request) == uma.answer["access_token"]

    def test_password_uma_with_a_confidential_client_sends_its_secret(self, make_conn, keycloak, httpserver, password):
        one_ccp_call(make_conn(auth_flow="password_uma", client_secret="gateway-secret"), httpserver)
        login, uma = keycloak.calls
        assert login.form == {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "client_secret": "gateway-secret",
            "username": USER,
            "password": password,
        }
        assert uma.form == {"grant_type": UMA, "audience": ENCODED_CONTEXT}

    def test_password_scope(self, make_conn, keycloak, httpserver, password):
        request = one_ccp_call(make_conn(auth_flow="password_scope"), httpserver)
        (login,) = keycloak.calls
        assert login.form == {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "username": USER,
            "password": password,
            "scope": f"d4s-context:{CONTEXT}",
        }
        assert login.headers["content-type"] == FORM
        assert "x-d4science-context" not in login.headers
        assert "authorization" not in login.headers
        assert bearer_of(request) == login.answer["access_token"]

    def test_context_header(self, make_conn, keycloak, httpserver, password):
        request = one_ccp_call(make_conn(auth_flow="context_header"), httpserver)
        (login,) = keycloak.calls
        assert login.form == {"grant_type": "password", "client_id": CLIENT_ID, "username": USER, "password": password}
        assert login.headers["x-d4science-context"] == ENCODED_CONTEXT
        assert login.headers["content-type"] == FORM
        assert bearer_of(request) == login.answer["access_token"]

    def test_client_credentials(self, make_conn, keycloak, httpserver, client_secret):
        conn = make_conn(auth_flow="client_credentials", login=None, secret="", client_secret=client_secret)
        request = one_ccp_call(conn, httpserver)
        (grant,) = keycloak.calls
        assert grant.form == {"grant_type": UMA, "audience": ENCODED_CONTEXT}
        basic = base64.b64encode(f"{CLIENT_ID}:{client_secret}".encode()).decode()
        assert grant.headers["authorization"] == f"Basic {basic}"
        assert grant.headers["content-type"] == FORM
        assert bearer_of(request) == grant.answer["access_token"]

    def test_refresh_token(self, make_conn, keycloak, httpserver):
        request = one_ccp_call(make_conn(auth_flow="refresh_token", login=None, secret="offline-token-1"), httpserver)
        (grant,) = keycloak.calls
        assert grant.form == {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": "offline-token-1"}
        assert grant.headers["x-d4science-context"] == ENCODED_CONTEXT
        assert grant.headers["content-type"] == FORM
        assert "authorization" not in grant.headers
        assert bearer_of(request) == grant.answer["access_token"]

    def test_token(self, make_conn, keycloak, httpserver):
        request = one_ccp_call(make_conn(auth_flow="token", login=None, secret="pre-issued-bearer"), httpserver)
        assert keycloak.calls == []
        assert request.headers["Authorization"] == "Bearer pre-issued-bearer"

    def test_none(self, make_conn, keycloak, httpserver):
        request = one_ccp_call(make_conn(auth_flow="none", login=None, secret=""), httpserver)
        assert keycloak.calls == []
        assert "Authorization" not in request.headers

    def test_the_hook_surface(self, make_conn):
        hook = CCPHook(make_conn())
        assert (hook.conn_type, hook.conn_name_attr, hook.default_conn_name, hook.hook_name) == (
            "ccp",
            "ccp_conn_id",
            "ccp_default",
            "D4Science CCP",
        )
        assert hook.get_conn() is hook.session


# ====================================================================== 2. the token lives: one login


class TestTokenCache:
    def test_a_thousand_calls_cost_one_login_and_one_context_token(self, make_conn, keycloak, httpserver):
        conn = make_conn()
        serve_job(httpserver)
        hook = CCPHook(conn)
        for _ in range(1000):
            hook.get_job("j1")
        assert keycloak.grants == ["password", UMA]
        # A second hook instance of the same connection, as the next task in this worker would make.
        CCPHook(conn).get_job("j1")
        assert keycloak.grants == ["password", UMA]
        requests_seen = ccp_requests(httpserver)
        assert len(requests_seen) == 1001
        assert {bearer_of(r) for r in requests_seen} == {keycloak.calls[1].answer["access_token"]}

    def test_expired_token_is_refreshed_with_the_refresh_token(self, make_conn, keycloak, httpserver, clock):
        conn = make_conn()
        serve_job(httpserver)
        hook = CCPHook(conn, clock=clock)
        hook.get_job("j1")
        clock.offset = 290  # past the 300 s token's renewal point, before its refresh token's
        hook.get_job("j1")
        assert keycloak.grants == ["password", UMA, "refresh_token"]
        assert keycloak.calls[2].form == {
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "refresh_token": keycloak.calls[1].answer["refresh_token"],
        }
        assert bearer_of(ccp_requests(httpserver)[-1]) == keycloak.last_access_token()

    def test_threads_with_an_expired_token_cause_one_refresh(self, make_conn, keycloak, httpserver, clock):
        conn = make_conn()
        serve_job(httpserver)
        CCPHook(conn, clock=clock).get_job("j1")
        clock.offset = 290
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                CCPHook(conn, clock=clock).get_job("j1")
            except BaseException as err:  # surfaced below
                errors.append(err)

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert keycloak.grants == ["password", UMA, "refresh_token"]

    def test_different_credentials_do_not_share_a_token(self, make_conn, keycloak, httpserver):
        serve_job(httpserver)
        CCPHook(make_conn("ccp_a")).get_job("j1")
        CCPHook(make_conn("ccp_b", auth_flow="password_scope")).get_job("j1")
        assert keycloak.grants == ["password", UMA, "password"]


# ====================================================================== 4. 401


class TestUnauthorized:
    def test_a_401_costs_one_reauthentication_and_one_retry(self, make_conn, keycloak, httpserver, capsys):
        conn = make_conn()
        serve_job(httpserver)
        hook = CCPHook(conn)
        hook.get_job("j1")
        first_token = keycloak.last_access_token()
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=401)
        assert hook.get_job("j1").status == "running"
        assert keycloak.grants == ["password", UMA, "refresh_token"]
        seen = ccp_requests(httpserver)
        assert len(seen) == 3
        assert [bearer_of(r) for r in seen] == [first_token, first_token, keycloak.last_access_token()]
        assert "CCP answered 401 to GET" in capsys.readouterr().out

    def test_a_second_401_surfaces_as_an_auth_error(self, make_conn, keycloak, httpserver):
        conn = make_conn()
        for _ in range(2):
            httpserver.expect_oneshot_request("/jobs/j1").respond_with_json(
                {"title": "Unauthorized", "detail": "token not valid for this context"}, status=401
            )
        serve_job(httpserver)
        with pytest.raises(CCPAuthError) as raised:
            CCPHook(conn).get_job("j1")
        assert raised.value.http_status == 401
        assert raised.value.job_id == "j1"
        assert "token not valid for this context" in str(raised.value)
        assert keycloak.grants == ["password", UMA, "refresh_token"]
        assert len(ccp_requests(httpserver)) == 2

    def test_a_401_without_refresh_token_logs_in_again(self, make_conn, keycloak, httpserver):
        keycloak.issue_refresh_token = False
        conn = make_conn(auth_flow="context_header")
        serve_job(httpserver)
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=401)
        CCPHook(conn).get_job("j1")
        assert keycloak.grants == ["password", "password"]

    def test_a_rejected_execution_post_is_resent_once_with_the_new_token(self, make_conn, keycloak, httpserver):
        # A 401 means CCP refused the request: nothing ran, so sending it again cannot duplicate work.
        conn = make_conn()
        path = "/processes/m1/execution"
        httpserver.expect_oneshot_request(path, method="POST").respond_with_data("", status=401)
        httpserver.expect_request(path, method="POST").respond_with_json(status_body("j9", "accepted"), status=201)
        assert CCPHook(conn).submit_execution("m1", {"ccpimage": "bash"}).job_id == "j9"
        posts = ccp_requests(httpserver, "/processes")
        assert len(posts) == 2
        assert bearer_of(posts[1]) == keycloak.last_access_token() != bearer_of(posts[0])

    def test_token_flow_cannot_renew_and_says_so(self, make_conn, keycloak, httpserver):
        conn = make_conn(auth_flow="token", login=None, secret="pre-issued-bearer")
        httpserver.expect_request("/jobs/j1").respond_with_data("", status=401)
        with pytest.raises(CCPAuthError, match="store a new token"):
            CCPHook(conn).get_job("j1")
        assert keycloak.calls == []
        assert len(ccp_requests(httpserver)) == 1


# ====================================================================== 5. retries


class TestRetries:
    def test_the_hook_takes_its_policy_from_its_arguments(self):
        hook = CCPHook("ccp_default", retry_limit=2, retry_delay=0.25)
        assert hook.retry == retries.RetryPolicy(limit=2, delay=0.25)
        assert CCPHook().retry == retries.DEFAULT_RETRY

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
    def test_get_is_retried_until_it_succeeds(self, make_conn, httpserver, status):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("<html>busy</html>", status=status)
        serve_job(httpserver)
        assert CCPHook(conn, retry_delay=FAST).get_job("j1").status == "running"
        assert len(ccp_requests(httpserver)) == 2

    def test_retry_after_is_honoured(self, make_conn, httpserver, retry_sleeps):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=503, headers={"Retry-After": "7"})
        serve_job(httpserver)
        assert CCPHook(conn, retry_delay=FAST, clock=retry_sleeps).get_job("j1").status == "running"
        assert retry_sleeps.waits == [7.0]

    @pytest.mark.parametrize(("header", "expected"), [("0.5", 0.5), ("Thu, 01 Jan 2015 00:00:00 GMT", 0.0)])
    def test_a_retry_after_that_is_not_whole_seconds_is_honoured(
        self, make_conn, httpserver, retry_sleeps, header, expected
    ):
        # urllib3 refused these (InvalidHeader, reported as "Could not reach CCP"); the async hook took them.
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=503, headers={"Retry-After": header})
        serve_job(httpserver)
        assert CCPHook(conn, clock=retry_sleeps).get_job("j1").status == "running"
        assert retry_sleeps.waits == [expected]

    def test_a_retry_after_in_the_future_is_waited(self, make_conn, httpserver, retry_sleeps):
        from email.utils import formatdate

        conn = make_conn(auth_flow="none", login=None, secret="")
        when = formatdate(time.time() + 30, usegmt=True)
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=429, headers={"Retry-After": when})
        serve_job(httpserver)
        CCPHook(conn, clock=retry_sleeps).get_job("j1")
        (wait,) = retry_sleeps.waits
        assert 25 < wait <= 30

    def test_retry_after_is_capped(self, make_conn, httpserver, retry_sleeps):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=429, headers={"Retry-After": "3600"})
        serve_job(httpserver)
        CCPHook(conn, retry_delay=FAST, clock=retry_sleeps).get_job("j1")
        assert retry_sleeps.waits == [retries.DEFAULT_RETRY.retry_after_cap]

    def test_retries_are_bounded(self, make_conn, httpserver, retry_sleeps):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1").respond_with_data("<html>down</html>", status=503)
        with pytest.raises(CCPError) as raised:
            CCPHook(conn, retry_delay=FAST, clock=retry_sleeps).get_job("j1")
        assert raised.value.http_status == 503
        policy = retries.DEFAULT_RETRY
        assert len(ccp_requests(httpserver)) == policy.limit + 1
        # A wait before every retry: exponential backoff with jitter, never above its maximum (plus the jitter).
        assert len(retry_sleeps.waits) == policy.limit
        assert all(0 < wait <= policy.delay_max + policy.delay for wait in retry_sleeps.waits)

    def test_dismiss_is_retried(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1", method="DELETE").respond_with_data("", status=502)
        httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_json(status_body("j1", "dismissed"))
        assert CCPHook(conn, retry_delay=FAST).dismiss_job("j1").supported
        assert len(ccp_requests(httpserver)) == 2

    @pytest.mark.parametrize("status", [400, 429, 500, 502, 503, 504])
    def test_an_execution_post_is_never_resent(self, make_conn, httpserver, status):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_data(
            "<html>overloaded</html>", status=status, headers={"Retry-After": "0"}
        )
        with pytest.raises(CCPError) as raised:
            CCPHook(conn, retry_delay=FAST).submit_execution("m1", {"ccpimage": "bash"})
        # A 5xx may come from a proxy after CCP created the job; a 4xx is a refusal.
        assert isinstance(raised.value, CCPSubmissionLostError) is (status >= 500)
        assert raised.value.http_status == status
        assert raised.value.method_id == "m1"
        assert f"HTTP {status}" in str(raised.value)
        assert len(ccp_requests(httpserver, "/processes")) == 1

    def test_a_token_that_could_not_be_had_is_no_lost_submission(self, make_conn, keycloak, httpserver):
        conn = make_conn()
        keycloak.refuse["password"] = (503, {"error": "temporarily_unavailable"})
        with pytest.raises(CCPError) as raised:
            CCPHook(conn, retry_limit=0).submit_execution("m1", {"ccpimage": "bash"})
        assert not isinstance(raised.value, CCPSubmissionLostError)  # the POST was never sent
        assert ccp_requests(httpserver, "/processes") == []

    def test_a_token_url_that_prefixes_the_ccp_url_does_not_make_the_post_retried(
        self, make_conn, keycloak, httpserver
    ):
        # Token requests have their own session: no URL prefix can lend their POST retries to CCP calls.
        conn = make_conn(auth_flow="none", login=None, secret="", keycloak_url=httpserver.url_for("/c"))
        variable = f"AIRFLOW_CONN_{conn.upper()}"
        document = json.loads(os.environ[variable])
        document["host"] = httpserver.url_for("/ccp")  # "<server>/ccp/..." starts with the token URL "<server>/c"
        os.environ[variable] = json.dumps(document)
        httpserver.expect_request("/ccp/processes/m1/execution", method="POST").respond_with_data("busy", status=503)
        with pytest.raises(CCPError):
            CCPHook(conn, retry_delay=FAST).submit_execution("m1", {"ccpimage": "bash"})
        assert len(ccp_requests(httpserver, "/ccp/processes")) == 1

    def test_an_execution_post_that_timed_out_is_not_resent(self, make_conn, httpserver):
        # The request reached the server; the answer did not come back in time. CCP may be running it.
        conn = make_conn(auth_flow="none", login=None, secret="", timeout=0.3)

        def slow(request: Request) -> Response:
            time.sleep(0.6)
            return Response(json.dumps(status_body("j1", "accepted")), status=201, content_type="application/json")

        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_handler(slow)
        with pytest.raises(
            CCPSubmissionLostError, match=r"Could not reach CCP.*(ReadTimeout|within the connection's timeout of 0.3 s)"
        ) as raised:
            CCPHook(conn, retry_delay=FAST).submit_execution("m1", {"ccpimage": "bash"})
        assert raised.value.method_id == "m1"
        time.sleep(0.4)  # let the slow handler finish, so the log is complete
        assert len(ccp_requests(httpserver, "/processes")) == 1

    def test_a_get_that_timed_out_is_retried(self, make_conn, httpserver):
        # The single-threaded server is busy with the slow answer while the retry waits in its backlog:
        # the margins keep the retry's own read well inside its timeout.
        conn = make_conn(auth_flow="none", login=None, secret="", timeout=0.5)
        answers = chain([0.7], repeat(0.0))

        def sometimes_slow(request: Request) -> Response:
            time.sleep(next(answers))
            return Response(json.dumps(status_body("j1")), content_type="application/json")

        httpserver.expect_request("/jobs/j1").respond_with_handler(sometimes_slow)
        assert CCPHook(conn, retry_delay=FAST).get_job("j1").job_id == "j1"
        assert len(ccp_requests(httpserver)) == 2

    def test_unreachable_server_is_a_ccp_error_after_bounded_retries(self, make_conn, monkeypatch, retry_sleeps):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        conn = make_conn(auth_flow="none", login=None, secret="")
        document = json.loads(__import__("os").environ[f"AIRFLOW_CONN_{conn.upper()}"])
        document["host"] = f"http://127.0.0.1:{port}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn.upper()}", json.dumps(document))
        with pytest.raises(CCPError, match=f"Could not reach CCP at http://127.0.0.1:{port}/jobs/j1: ConnectionError"):
            CCPHook(conn, retry_delay=FAST, clock=retry_sleeps).get_job("j1")
        assert len(retry_sleeps.waits) == retries.DEFAULT_RETRY.limit

    def test_the_token_endpoint_is_retried(self, make_conn, keycloak, httpserver):
        from tests.integration.doubles import TOKEN_PATH

        httpserver.expect_oneshot_request(TOKEN_PATH, method="POST").respond_with_data("", status=503)
        one_ccp_call(make_conn(), httpserver)
        token_posts = [r for r, _ in httpserver.log if r.path == TOKEN_PATH]
        assert len(token_posts) == 3
        assert keycloak.grants == ["password", UMA]


# ====================================================================== 6. errors


class TestErrors:
    def test_ogc_exception_body(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m-9").respond_with_json(
            {
                "type": "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-process",
                "title": "No such process",
                "detail": "Method m-9 is not visible in this context",
            },
            status=404,
        )
        with pytest.raises(CCPNotFoundError) as raised:
            CCPHook(conn).get_method("m-9")
        error = raised.value
        assert error.http_status == 404
        assert error.method_id == "m-9"
        assert error.error_type.endswith("/no-such-process")
        assert error.title == "No such process"
        assert error.detail == "Method m-9 is not visible in this context"
        assert "No such process; Method m-9 is not visible in this context" in str(error)

    @pytest.mark.parametrize(
        ("status", "body", "content_type"),
        [
            (500, "<html><body><h1>Internal Server Error</h1></body></html>", "text/html"),
            (500, "", "application/json"),
            (400, "", "text/plain"),
            (403, "<html>Forbidden</html>", "text/html"),
        ],
    )
    def test_html_or_empty_error_body_is_reported_by_status_line(
        self, make_conn, httpserver, status, body, content_type
    ):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1").respond_with_data(body, status=status, content_type=content_type)
        with pytest.raises(CCPError) as raised:
            CCPHook(conn, retry_delay=FAST).get_job("j1")
        message = str(raised.value)
        url = httpserver.url_for("/jobs/j1")
        assert message.startswith(f"HTTP {status} ")
        assert message.endswith(f"from {url} (job 'j1')")
        assert "Expecting value" not in message
        assert "JSON" not in message
        assert raised.value.__context__ is None
        assert raised.value.http_status == status

    def test_404_is_not_found(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/missing").respond_with_data("Not Found", status=404)
        with pytest.raises(CCPNotFoundError) as raised:
            CCPHook(conn).get_job("missing")
        assert raised.value.job_id == "missing"

    def test_a_200_that_is_not_json(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1").respond_with_data("<html>login page</html>", content_type="text/html")
        with pytest.raises(CCPProtocolError, match="Expected JSON from"):
            CCPHook(conn).get_job("j1")

    def test_a_rejected_login(self, make_conn, keycloak, httpserver, password):
        keycloak.refuse["password"] = (401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
        with pytest.raises(CCPAuthError) as raised:
            CCPHook(make_conn()).get_job("j1")
        message = str(raised.value)
        assert keycloak.url in message
        assert f"client_id='{CLIENT_ID}'" in message
        assert f"user='{USER}'" in message
        assert "invalid_grant: Invalid user credentials" in message
        assert password not in message
        assert password not in repr(raised.value)
        assert ccp_requests(httpserver) == []


# ====================================================================== the client surface


class TestSubmit:
    def test_the_request_and_a_201_status_info(self, make_conn, keycloak, httpserver):
        conn = make_conn()
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json(
            status_body("j1", "accepted", message="queued"), status=201
        )
        status = CCPHook(conn).submit_execution(
            "m1", {"ccpimage": "bash", "count": 3, "verbose": True}, outputs={"stdout": {"transmissionMode": "value"}}
        )
        assert status == StatusInfo.from_json({"jobID": "j1", "status": "accepted", "message": "queued"})
        (request,) = ccp_requests(httpserver, "/processes")
        assert request.headers["Prefer"] == "respond-async"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Accept"] == "application/json"
        assert bearer_of(request) == keycloak.last_access_token()
        assert json.loads(request.get_data()) == {
            "inputs": {"ccpimage": "bash", "count": "3", "verbose": "true"},
            "outputs": {"stdout": {"transmissionMode": "value"}},
            "response": "raw",
        }

    def test_job_id_from_location(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_data(
            "", status=201, headers={"Location": httpserver.url_for("/jobs/from-location")}
        )
        status = CCPHook(conn).submit_execution("m1", {})
        assert status == StatusInfo(job_id="from-location", status="")  # no status in the answer: ask for it

    def test_a_200_with_status_info(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json(
            status_body("j2", "running")
        )
        assert CCPHook(conn).submit_execution("m1", {}).job_id == "j2"

    def test_no_job_id_anywhere(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json({}, status=201)
        with pytest.raises(CCPProtocolError, match="names no job"):
            CCPHook(conn).submit_execution("m1", {})

    def test_a_201_naming_the_process_takes_the_job_from_location(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json(
            {"id": "m1", "status": "accepted"}, status=201, headers={"Location": httpserver.url_for("/jobs/j-5")}
        )
        assert CCPHook(conn).submit_execution("m1", {}).job_id == "j-5"

    def test_a_sync_200_with_results_is_no_job(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        results = {"id": "m1", "total": {"value": 42}}
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json(results)
        answer = CCPHook(conn).submit_execution("m1", {})
        assert isinstance(answer, SyncResults)
        assert json.loads(answer.body) == results


class TestReads:
    def test_list_methods_follows_next_links(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes", query_string={"limit": "100"}).respond_with_json(
            {"processes": [{"id": "a"}, {"id": "b"}], "links": [{"rel": "next", "href": "/processes?page=2"}]}
        )
        httpserver.expect_request("/processes", query_string={"page": "2"}).respond_with_json(
            {
                "processes": [{"id": "c"}],
                "links": [{"rel": "next", "href": httpserver.url_for("/processes") + "?page=3"}],
            }
        )
        httpserver.expect_request("/processes", query_string={"page": "3"}).respond_with_json(
            {"processes": [{"id": "d"}], "links": [{"rel": "self", "href": "/processes?page=3"}]}
        )
        assert [m["id"] for m in CCPHook(conn).list_methods()] == ["a", "b", "c", "d"]
        assert len(ccp_requests(httpserver, "/processes")) == 3

    def test_list_methods_stops_on_a_link_cycle(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes", query_string={"limit": "100"}).respond_with_json(
            {"processes": [{"id": "a"}], "links": [{"rel": "next", "href": "/processes?page=2"}]}
        )
        httpserver.expect_request("/processes", query_string={"page": "2"}).respond_with_json(
            {"processes": [{"id": "b"}], "links": [{"rel": "next", "href": "/processes?page=2"}]}
        )
        assert [m["id"] for m in CCPHook(conn).list_methods()] == ["a", "b"]

    def test_get_method(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/processes/m1").respond_with_json({"id": "m1", "inputs": {}})
        assert CCPHook(conn).get_method("m1") == {"id": "m1", "inputs": {}}

    def test_list_jobs_with_filters(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(
            "/jobs", query_string={"limit": "100", "status": "running", "processID": "m1"}
        ).respond_with_json({"jobs": [status_body("j1"), status_body("j2")]})
        jobs = CCPHook(conn).list_jobs(status="running", method_id="m1")
        assert [j.job_id for j in jobs] == ["j1", "j2"]

    def test_executions(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/executions/j1", headers={"Accept": "application/json"}).respond_with_json(
            {"id": "j1", "status": "successful"}
        )
        httpserver.expect_request("/executions").respond_with_json([{"id": "j1"}, "junk"])
        hook = CCPHook(conn)
        assert hook.get_execution("j1") == {"id": "j1", "status": "successful"}
        assert hook.list_executions() == [{"id": "j1"}]

    @pytest.mark.parametrize("record", [{"id": "j2"}, {"status": {"jobID": "j2", "status": "successful"}}])
    def test_an_execution_record_of_another_job_is_refused(self, make_conn, httpserver, record):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/executions/j1").respond_with_json(record)
        with pytest.raises(
            CCPTrustError, match=r"for the execution of job 'j1' and the answer is the record of job 'j2'"
        ):
            CCPHook(conn).get_execution("j1")

    @pytest.mark.parametrize("status", [404, 405, 501])
    def test_dismiss_unsupported(self, make_conn, httpserver, status):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_data("<html>no</html>", status=status)
        result = CCPHook(conn).dismiss_job("j1")
        assert result.supported is False
        assert result.status is None
        assert f"HTTP {status}" in result.message

    def test_dismiss_supported(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_json(status_body("j1", "Dismissed"))
        result = CCPHook(conn).dismiss_job("j1")
        assert result.supported is True
        assert result.status is not None
        assert result.status.status == "dismissed"
        assert result.message == "CCP job j1 is dismissed"

    def test_dismiss_other_errors_raise(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_data("", status=409)
        with pytest.raises(CCPError) as raised:
            CCPHook(conn).dismiss_job("j1")
        assert raised.value.http_status == 409

    def test_wait_for_job(self, make_conn, httpserver, capsys):
        conn = make_conn(auth_flow="none", login=None, secret="")
        words = iter(["accepted", "running", "running", "Successful"])
        httpserver.expect_request("/jobs/j1").respond_with_handler(
            lambda request: Response(json.dumps(status_body("j1", next(words))), content_type="application/json")
        )
        status = CCPHook(conn).wait_for_job("j1", poll_interval=0.05)
        assert status.successful
        assert len(ccp_requests(httpserver)) == 4
        out = capsys.readouterr().out
        # Logged on each change of status only.
        assert [out.count(f"CCP job j1 is {word}") for word in ("accepted", "running", "successful")] == [1, 1, 1]

    def test_wait_for_job_times_out(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        serve_job(httpserver, status="running")
        with pytest.raises(CCPJobTimeoutError, match="still running") as raised:
            CCPHook(conn).wait_for_job("j1", poll_interval=0.05, timeout=0.1)
        assert raised.value.job_id == "j1"

    def test_wait_for_job_rides_out_a_transient_error_like_the_trigger(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("<html>oops</html>", status=500)
        serve_job(httpserver, status="successful")
        assert CCPHook(conn).wait_for_job("j1", poll_interval=0.05).successful
        assert len(ccp_requests(httpserver)) == 2

    def test_wait_for_job_stops_at_once_on_a_job_that_does_not_exist(self, make_conn, httpserver):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request("/jobs/j1").respond_with_data("", status=404)
        with pytest.raises(CCPNotFoundError):
            CCPHook(conn).wait_for_job("j1", poll_interval=0.05)
        assert len(ccp_requests(httpserver)) == 1


# ====================================================================== 8, 9. outputs


def zip_route(httpserver: HTTPServer, job_id: str = "j1") -> str:
    return f"/executions/{job_id}/outputs/output.zip"


def streamed(total: int, sent: int | None = None, chunk: int = MiB):
    """A response announcing ``total`` bytes and sending ``sent`` (fewer means a cut connection)."""
    block = b"z" * chunk
    sent = total if sent is None else sent

    def body():
        left = sent
        while left > 0:
            piece = block[: min(chunk, left)]
            left -= len(piece)
            yield piece

    def handler(request: Request) -> Response:
        return Response(
            body(),
            headers={"Content-Length": str(total), "Content-Type": "application/zip"},
            direct_passthrough=True,
        )

    return handler


class TestDownload:
    def test_a_500_on_the_output_zip_is_retried_like_other_gets(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_oneshot_request(zip_route(httpserver)).respond_with_data("<html>oops</html>", status=500)
        httpserver.expect_request(zip_route(httpserver)).respond_with_data(b"PK\x03\x04zipbytes")
        result = CCPHook(conn, retry_delay=FAST).download_outputs("j1", tmp_path)
        assert result.path.read_bytes() == b"PK\x03\x04zipbytes"
        assert len(ccp_requests(httpserver, "/executions")) == 2

    def test_into_a_folder(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data(
            b"PK\x03\x04zipbytes", content_type="application/zip"
        )
        progress: list[tuple[int, int | None]] = []
        result = CCPHook(conn).download_outputs(
            "j1", tmp_path, progress=lambda done, total: progress.append((done, total))
        )
        assert result.path == tmp_path / "output.zip"
        assert result.kind == "zip"
        assert result.size == 12
        assert result.url == httpserver.url_for(zip_route(httpserver))
        assert result.path.read_bytes() == b"PK\x03\x04zipbytes"
        assert progress[-1] == (12, 12)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["output.zip"]

    def test_to_a_file_in_a_new_folder(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data(b"zip")
        target = tmp_path / "runs" / "42" / "outputs.zip"
        assert CCPHook(conn).download_outputs("j1", target).path == target
        assert target.read_bytes() == b"zip"

    def test_a_gzip_encoded_answer_is_checked_against_the_bytes_on_the_wire(self, make_conn, httpserver, tmp_path):
        # A server (or proxy) may compress despite Accept-Encoding: identity; Content-Length is the compressed size.
        document = json.dumps({"output": {"value": "x" * 5000}}).encode()
        compressed = gzip.compress(document)
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data("", status=404)
        httpserver.expect_request("/jobs/j1/results").respond_with_data(
            compressed, headers={"Content-Encoding": "gzip"}, content_type="application/json"
        )
        result = CCPHook(conn).download_outputs("j1", tmp_path)
        assert result.kind == "json"
        assert result.path.read_bytes() == document
        results_request = ccp_requests(httpserver, "/jobs/j1/results")[0]
        assert results_request.headers["Accept-Encoding"] == "identity"
        assert results_request.headers["Accept"] == "application/json"

    def test_the_file_is_readable_by_others_once_complete(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data(b"zip")
        result = CCPHook(conn).download_outputs("j1", tmp_path)
        assert result.path.stat().st_mode & 0o777 == 0o644

    def test_a_truncated_body_leaves_nothing_behind(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_handler(streamed(3 * MiB, sent=MiB + 5))
        with pytest.raises(CCPDownloadError) as raised:
            CCPHook(conn).download_outputs("j1", tmp_path)
        assert raised.value.job_id == "j1"
        assert "output.zip" in str(raised.value)
        assert list(tmp_path.iterdir()) == []

    def test_a_failed_download_keeps_the_previous_file_whole(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        target = tmp_path / "output.zip"
        target.write_bytes(b"previous complete archive")
        httpserver.expect_request(zip_route(httpserver)).respond_with_handler(streamed(2 * MiB, sent=100))
        with pytest.raises(CCPDownloadError):
            CCPHook(conn).download_outputs("j1", target)
        assert target.read_bytes() == b"previous complete archive"
        assert [p.name for p in tmp_path.iterdir()] == ["output.zip"]

    def test_an_error_in_the_progress_callback_leaves_no_part_file(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_handler(streamed(2 * MiB))

        def interrupt(done: int, total: int | None) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            CCPHook(conn).download_outputs("j1", tmp_path, progress=interrupt)
        assert list(tmp_path.iterdir()) == []

    def test_falls_back_to_ogc_results(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data("", status=404)
        httpserver.expect_request("/jobs/j1/results", headers={"Accept": "application/json"}).respond_with_json(
            {"result": {"value": "42"}}
        )
        result = CCPHook(conn).download_outputs("j1", tmp_path)
        assert result.kind == "json"
        assert result.path == tmp_path / "results.json"
        assert json.loads(result.path.read_bytes()) == {"result": {"value": "42"}}
        assert [r.path for r in ccp_requests(httpserver, "/")] == [zip_route(httpserver), "/jobs/j1/results"]

    def test_no_outputs_anywhere(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        httpserver.expect_request(zip_route(httpserver)).respond_with_data("", status=404)
        httpserver.expect_request("/jobs/j1/results").respond_with_data("", status=404)
        with pytest.raises(CCPNotFoundError):
            CCPHook(conn).download_outputs("j1", tmp_path)
        assert list(tmp_path.iterdir()) == []

    def test_50_mib_streams_in_constant_memory(self, make_conn, httpserver, tmp_path):
        conn = make_conn(auth_flow="none", login=None, secret="")
        size = 50 * MiB
        httpserver.expect_request(zip_route(httpserver)).respond_with_handler(streamed(size))
        hook = CCPHook(conn)
        hook.session  # noqa: B018 -- built before measuring: only the download is measured
        tracemalloc.start()
        try:
            result = hook.download_outputs("j1", tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.size == size == result.path.stat().st_size
        # Both ends of the loopback run in this process, each with 1 MiB chunks and their transient copies,
        # so the peak is some MiB; holding the archive in memory would show 50 MiB or more.
        assert peak < 16 * MiB, f"peak Python allocation during a 50 MiB download: {peak / MiB:.1f} MiB"


# ====================================================================== UI test button


class TestTestConnection:
    def test_ok(self, make_conn, keycloak, httpserver):
        httpserver.expect_request("/processes", query_string={"limit": "1"}).respond_with_json({"processes": []})
        ok, message = CCPHook(make_conn()).test_connection()
        assert ok is True
        assert message == (
            f"Connected to CCP at {httpserver.url_for('/').rstrip('/')} in context {CONTEXT} (auth_flow=password_uma)"
        )

    def test_refused(self, make_conn, keycloak, password):
        keycloak.refuse["password"] = (401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
        ok, message = CCPHook(make_conn()).test_connection()
        assert ok is False
        assert "invalid_grant" in message
        assert password not in message

    def test_bad_settings_are_reported_not_raised(self, make_conn):
        ok, message = CCPHook(make_conn(auth_flow="password_uma", context="no-slash")).test_connection()
        assert ok is False
        assert "starting with '/'" in message


# ====================================================================== 10. secrets


class TestSecrets:
    def test_no_secret_in_logs_errors_or_reprs_and_all_are_masked(
        self, make_conn, keycloak: FakeKeycloak, httpserver, password, client_secret, caplog, capfd, tmp_path
    ):
        from airflow.sdk._shared.secrets_masker import redact

        for name in ("", "urllib3", "requests", "airflow", "airflow_provider_ccp", "airflow.task"):
            caplog.set_level(logging.DEBUG, logger=name)
        conn = make_conn(client_secret=client_secret)
        serve_job(httpserver)
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=401)
        httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_json(status_body(), status=201)
        httpserver.expect_request(zip_route(httpserver)).respond_with_data(b"zip")
        hook = CCPHook(conn)
        hook.get_job("j1")  # 401, refresh, retry
        hook.submit_execution("m1", {"ccpimage": "bash"})
        hook.download_outputs("j1", tmp_path)
        hook.log.info("settings are %r", hook.settings)

        keycloak.refuse["password"] = (401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
        auth.TOKEN_CACHE.clear()
        with pytest.raises(CCPAuthError) as raised:
            CCPHook(conn).get_job("j1")
        errors = [
            str(raised.value),
            repr(raised.value),
            repr(hook.settings),
            repr(auth.TOKEN_CACHE.state(hook.settings)),
        ]

        issued = [value for call in keycloak.calls for key, value in call.answer.items() if key.endswith("_token")]
        secrets = [password, client_secret, *issued]
        assert len(issued) == 6  # login, context and refreshed context: an access and a refresh token each
        # The test can only fail if logs were really captured at DEBUG, the HTTP library's included.
        # Stdlib records (urllib3, requests) land in caplog; the hook's own structlog lines on stdout/stderr.
        captured = capfd.readouterr()
        logs = "\n".join((caplog.text, captured.out, captured.err))
        # The test can only fail if logs were really captured at DEBUG, the HTTP library's included.
        assert any(r.name.startswith("urllib3") and r.levelno == logging.DEBUG for r in caplog.records)
        assert "CCP answered 401" in logs
        for secret in secrets:
            assert secret not in logs
            for text in errors:
                assert secret not in text
            assert redact(f"before {secret} after") == "before *** after", "not registered with the masker"


def test_wait_for_job_measures_its_deadline_with_the_hook_clock(make_conn, httpserver):
    conn = make_conn(auth_flow="none", login=None, secret="")
    serve_job(httpserver)  # running, however often it is asked
    clock = SteppingClock()
    with pytest.raises(CCPJobTimeoutError, match="still running"):
        CCPHook(conn, clock=clock).wait_for_job("j1", poll_interval=60, timeout=3600)
    assert sum(clock.waits) == pytest.approx(3600)
    assert len(ccp_requests(httpserver)) == 3600 // 60 + 1


def test_a_hook_given_ready_settings_reads_no_connection(httpserver, keycloak, password):
    """A tool with its own flags (the CLI) hands the hook its settings: no Airflow connection exists."""
    settings = CCPConnectionSettings.from_fields(
        host=httpserver.url_for("/"),
        login=USER,
        password=password,
        extra={"keycloak_url": keycloak.url, "client_id": CLIENT_ID, "context": CONTEXT},
    )
    serve_job(httpserver)
    hook = CCPHook("ccp_nowhere", settings=settings)
    assert hook.get_job("j1").status == "running"
    assert hook.settings is settings
    assert bearer_of(ccp_requests(httpserver)[0]) == keycloak.last_access_token()
