"""The trust boundary of both hooks against hostile servers on loopback: origins, redirects, bounds.

Each case runs through the worker hook (requests) and the triggerer hook (aiohttp), where both make
the call: both must behave the same, by the rules of
``airflow_provider_ccp.exchange``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError, CCPSubmissionLostError, CCPTrustError
from airflow_provider_ccp.exchange import MAX_ANSWER_BYTES
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.version_compat import AirflowFailException
from airflow_provider_ccp.waiting import WITHHELD
from tests.integration.doubles import (
    TOKEN_PATH,
    RawServer,
    json_answer,
    self_signed,
    status_body,
)
from tests.task_helpers import task_log

__all__ = ["task_log"]  # a fixture, used by name

#: The worker hook and the triggerer hook.
HOOKS = ("sync", "async")
FAST = 0.01
DEEP = b"[" * 100_000 + b"]" * 100_000


def call(kind: str, conn_id: str, name: str, *args: Any, **hook_kwargs: Any) -> Any:
    """``hook.name(*args)`` on the worker hook or, in a fresh event loop, on the triggerer hook."""
    hook_kwargs.setdefault("retry_delay", FAST)
    if kind == "sync":
        return getattr(CCPHook(conn_id, **hook_kwargs), name)(*args)

    async def run() -> Any:
        async with CCPAsyncHook(conn_id, **hook_kwargs) as hook:
            return await getattr(hook, name)(*args)

    return asyncio.run(run())


def other_origin(httpserver: HTTPServer) -> str:
    """The same server under another host name: whatever reaches it there was carried away."""
    return httpserver.url_for("/").rstrip("/").replace("127.0.0.1", "localhost")


def carried_away(httpserver: HTTPServer) -> list[str]:
    return [request.url for request, _ in httpserver.log if request.host.startswith("localhost")]


@pytest.fixture
def open_conn(make_conn) -> str:
    return make_conn(auth_flow="none", login=None, secret="")


def conn_to(monkeypatch: pytest.MonkeyPatch, host: str, conn_id: str = "ccp_raw", **extra: Any) -> str:
    document = {"conn_type": "ccp", "host": host, "extra": {"auth_flow": "none", **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))
    return conn_id


# --------------------------------------------------------------------------- paging: one origin


LISTS = [
    ("list_methods", "/processes", "processes", ()),
    ("list_jobs", "/jobs", "jobs", ()),
    ("list_executions", "/executions", "executions", ()),
    ("find_execution", "/executions", "executions", ("airflow-submission:abc",)),
]


@pytest.mark.parametrize(("name", "path", "key", "args"), LISTS)
def test_a_next_page_on_another_origin_gets_no_token(make_conn, httpserver, keycloak, name, path, key, args):
    page = {key: [], "links": [{"rel": "next", "href": f"{other_origin(httpserver)}{path}?page=2"}]}
    httpserver.expect_request(path, method="GET").respond_with_json(page)

    with pytest.raises(CCPTrustError) as raised:
        call("sync", make_conn(), name, *args)

    assert str(raised.value) == (
        f"Refused to follow the next page of a list to {other_origin(httpserver)}: the provider only follows "
        f"URLs on {httpserver.url_for('/').rstrip('/')}, the origin it was configured with"
    )
    assert isinstance(raised.value, AirflowFailException)
    assert carried_away(httpserver) == []


def test_a_next_page_on_the_same_origin_is_followed(open_conn, httpserver):
    first = {"processes": [{"id": "a"}], "links": [{"rel": "next", "href": "/processes?page=2"}]}
    httpserver.expect_request("/processes", method="GET", query_string={"limit": "100"}).respond_with_json(first)
    httpserver.expect_request("/processes", method="GET", query_string="page=2").respond_with_json(
        {"processes": [{"id": "b"}]}
    )
    assert [m["id"] for m in call("sync", open_conn, "list_methods")] == ["a", "b"]


# --------------------------------------------------------------------------- redirects: the same rule in both hooks


@pytest.mark.parametrize("kind", HOOKS)
@pytest.mark.parametrize("status", [307, 308])
def test_a_token_request_redirected_elsewhere_sends_no_password(make_conn, httpserver, password, kind, status):
    httpserver.clear_all_handlers()  # no Keycloak double: the token endpoint answers with the redirect
    where = f"{other_origin(httpserver)}/steal"
    httpserver.expect_request(TOKEN_PATH, method="POST").respond_with_response(
        Response("", status=status, headers={"Location": where})
    )
    httpserver.expect_request("/steal").respond_with_json({"access_token": "stolen"})

    with pytest.raises(CCPTrustError, match=rf"Refused the redirect \(HTTP {status}\) of POST .*{TOKEN_PATH} to "):
        call(kind, make_conn(), "get_token")

    assert carried_away(httpserver) == []
    assert all(password not in request.get_data(as_text=True) for request, _ in httpserver.log[1:])


def test_an_execution_post_redirected_elsewhere_sends_no_inputs(open_conn, httpserver):
    httpserver.expect_request("/processes/m/execution", method="POST").respond_with_response(
        Response("", status=307, headers={"Location": f"{other_origin(httpserver)}/processes/m/execution"})
    )
    with pytest.raises(CCPTrustError, match=r"Refused the redirect \(HTTP 307\) of POST .* only GET requests"):
        CCPHook(open_conn).submit_execution("m", {"ccpimage": "bash", "api_key": "s3cret"})
    assert carried_away(httpserver) == []


@pytest.mark.parametrize("kind", HOOKS)
def test_a_status_redirected_on_its_origin_is_followed(open_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_response(
        Response("", status=302, headers={"Location": "/jobs/j1/status"})
    )
    httpserver.expect_request("/jobs/j1/status", method="GET").respond_with_json(status_body("j1", "running"))
    assert call(kind, open_conn, "get_job", "j1").status == "running"


@pytest.mark.parametrize("kind", HOOKS)
def test_a_status_redirected_elsewhere_is_refused(make_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_response(
        Response("", status=301, headers={"Location": f"{other_origin(httpserver)}/jobs/j1"})
    )
    with pytest.raises(CCPTrustError, match=r"only GET requests are redirected, and only on http://127\.0\.0\.1"):
        call(kind, make_conn(), "get_job", "j1")
    assert carried_away(httpserver) == []


@pytest.mark.parametrize("kind", HOOKS)
def test_a_redirect_loop_ends(open_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_response(
        Response("", status=302, headers={"Location": "/jobs/j1"})
    )
    with pytest.raises(CCPTrustError, match=r"more than 5 redirects"):
        call(kind, open_conn, "get_job", "j1")
    assert len(httpserver.log) == 6


# --------------------------------------------------------------------------- answers that are not what they claim


@pytest.mark.parametrize("kind", HOOKS)
def test_a_status_of_another_job_is_refused(open_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_json(status_body("j2", "successful"))
    with pytest.raises(CCPTrustError) as raised:
        call(kind, open_conn, "get_job", "j1")
    assert str(raised.value) == (
        f"Asked {httpserver.url_for('/jobs/j1')} for job 'j1' and the answer is the status of job 'j2'"
    )


@pytest.mark.parametrize("kind", HOOKS)
@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_progress_that_is_no_number_is_none(open_conn, httpserver, kind, raw):
    body = json.dumps(status_body("j1", "successful", progress="P")).replace('"P"', raw)
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_data(body, content_type="application/json")
    info = call(kind, open_conn, "get_job", "j1")
    assert (info.status, info.progress) == ("successful", None)


@pytest.mark.parametrize("kind", HOOKS)
def test_a_status_nested_too_deep_is_a_protocol_error(open_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_data(DEEP, content_type="application/json")
    with pytest.raises(CCPProtocolError, match=r"got something else: the JSON is nested too deeply to read$"):
        call(kind, open_conn, "get_job", "j1", retry_limit=0)


def test_a_list_nested_too_deep_is_a_protocol_error(open_conn, httpserver):
    httpserver.expect_request("/processes", method="GET").respond_with_data(DEEP, content_type="application/json")
    with pytest.raises(CCPProtocolError, match=r"nested too deeply"):
        call("sync", open_conn, "list_methods")


@pytest.mark.parametrize("kind", HOOKS)
def test_an_error_answer_nested_too_deep_is_reported_by_its_status_line(open_conn, httpserver, kind):
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_data(
        DEEP, status=400, content_type="application/json"
    )
    with pytest.raises(CCPError, match=r"^HTTP 400 BAD REQUEST from .*/jobs/j1 \(job 'j1'\)$"):
        call(kind, open_conn, "get_job", "j1")


@pytest.mark.parametrize("kind", HOOKS)
def test_a_token_answer_nested_too_deep_is_a_clear_refusal(make_conn, httpserver, kind):
    httpserver.clear_all_handlers()
    httpserver.expect_request(TOKEN_PATH, method="POST").respond_with_data(DEEP, content_type="application/json")
    with pytest.raises(CCPError, match=r"token request to .* was refused \(HTTP 200, no access_token in the answer\)"):
        call(kind, make_conn(), "get_token")


# --------------------------------------------------------------------------- size bounds


def _too_big() -> Iterator[bytes]:
    yield b'{"jobID": "j1", "status": "running", "message": "'
    for _ in range(MAX_ANSWER_BYTES // (1 << 20) + 2):
        yield b"x" * (1 << 20)
    yield b'"}'


def _serve_too_big(httpserver: HTTPServer, path: str, method: str = "GET", status: int = 200) -> None:
    httpserver.expect_request(path, method=method).respond_with_handler(
        lambda request: Response(_too_big(), status=status, content_type="application/json")
    )


@pytest.mark.parametrize("kind", HOOKS)
@pytest.mark.parametrize(
    ("path", "name", "args"), [("/jobs/j1", "get_job", ("j1",)), ("/jobs/j1", "dismiss_job", ("j1",))]
)
def test_status_and_dismiss_answers_are_capped(open_conn, httpserver, kind, path, name, args):
    _serve_too_big(httpserver, path, "GET" if name == "get_job" else "DELETE")
    with pytest.raises(CCPTrustError, match=rf"larger than {MAX_ANSWER_BYTES} bytes, the most the provider reads$"):
        call(kind, open_conn, name, *args)


@pytest.mark.parametrize(
    ("path", "name", "args"),
    [
        ("/processes", "list_methods", ()),
        ("/executions/j1", "get_execution", ("j1",)),
        ("/processes/m", "get_method", ("m",)),
    ],
)
def test_list_and_record_answers_are_capped(open_conn, httpserver, path, name, args):
    _serve_too_big(httpserver, path)
    with pytest.raises(CCPTrustError, match=rf"larger than {MAX_ANSWER_BYTES} bytes"):
        call("sync", open_conn, name, *args)


def test_an_error_answer_is_capped(open_conn, httpserver):
    _serve_too_big(httpserver, "/jobs/j1", status=500)
    with pytest.raises(CCPTrustError, match=r"larger than"):
        call("sync", open_conn, "get_job", "j1", retry_limit=0)


def test_sync_results_are_capped(open_conn, httpserver):
    _serve_too_big(httpserver, "/processes/m/execution", method="POST")
    # Refused unread, the POST may still have created an execution: the submission is reported lost.
    with pytest.raises(CCPSubmissionLostError, match=r"larger than"):
        CCPHook(open_conn).submit_execution("m", {"ccpimage": "bash"})


@pytest.mark.parametrize("kind", HOOKS)
def test_a_token_answer_is_capped(make_conn, httpserver, kind):
    httpserver.clear_all_handlers()
    _serve_too_big(httpserver, TOKEN_PATH, method="POST")
    with pytest.raises(CCPTrustError, match=r"larger than"):
        call(kind, make_conn(), "get_token")


@pytest.mark.parametrize("kind", HOOKS)
def test_a_huge_failure_message_is_cut(open_conn, httpserver, kind):
    document = status_body("j1", "failed", message="m" * 1_000_000)
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_json(document)
    info = call(kind, open_conn, "get_job", "j1")
    assert len(info.message) < 2100
    assert info.message.endswith("... [998000 more characters]")


# --------------------------------------------------------------------------- time: the whole request


def _slow_loris(conn: socket.socket, at_once: int = 0) -> None:
    """The answer after its first ``at_once`` bytes half a second per byte: each read gets a byte in time."""
    answer = json_answer(status_body("j1", "running"))
    conn.sendall(answer[:at_once])
    for byte in answer[at_once:]:
        time.sleep(0.5)
        conn.sendall(bytes([byte]))


@pytest.fixture(params=["headers", "body"])
def slow_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    """Dribbling the status line and headers, or sending them at once and dribbling the body."""
    answer = json_answer(status_body("j1", "running"))
    at_once = 0 if request.param == "headers" else answer.index(b"\r\n\r\n") + 4
    server = RawServer(lambda conn: _slow_loris(conn, at_once))
    yield server
    server.stop()


@pytest.mark.parametrize("kind", HOOKS)
def test_a_slow_loris_answer_ends_at_the_timeout(monkeypatch, slow_server, kind):
    conn_id = conn_to(monkeypatch, slow_server.url, timeout=1)
    started = time.monotonic()
    with pytest.raises(
        CCPError, match=r"Could not reach CCP at .*: no complete answer within the connection's timeout"
    ):
        call(kind, conn_id, "get_job", "j1", retry_limit=0)
    assert time.monotonic() - started < 3  # the answer alone would take over a minute
    assert slow_server.connections == 1


# --------------------------------------------------------------------------- certificates


def _answer_status(conn: socket.socket) -> None:
    conn.sendall(json_answer(status_body("j1", "running")))


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RawServer, str]]:
    context, ca_path = self_signed(tmp_path)
    server = RawServer(_answer_status, tls=context)
    yield server, ca_path
    server.stop()


@pytest.mark.parametrize("kind", HOOKS)
def test_an_unknown_certificate_is_named_and_final(monkeypatch, tls_server, kind):
    server, _ = tls_server
    conn_id = conn_to(monkeypatch, server.url)
    with pytest.raises(CCPTrustError) as raised:
        call(kind, conn_id, "get_job", "j1")
    assert str(raised.value).startswith(
        f"certificate verify failed for {server.url}: its certificate is not signed by a CA in the system's CA bundle"
    )
    assert "connection extra 'verify'" in str(raised.value)
    assert isinstance(raised.value, AirflowFailException)
    assert server.connections == 1  # not retried


@pytest.mark.parametrize("kind", HOOKS)
@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_verify_extra_wins_over_the_environment(monkeypatch, tls_server, kind, variable):
    server, ca_path = tls_server
    monkeypatch.setenv(variable, certifi.where())  # a bundle that does not hold the server's CA
    conn_id = conn_to(monkeypatch, server.url, verify=ca_path)
    assert call(kind, conn_id, "get_job", "j1").status == "running"


# --------------------------------------------------------------------------- secrets the server echoes


async def test_the_trigger_hides_secret_inputs_in_its_event(open_conn, httpserver, caplog):
    secret = "s3cret-value-of-an-input"
    failed = status_body("j1", "failed", message=f"exit code 3: bad key {secret}")
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_json(failed)
    trigger = CCPJobTrigger(open_conn, "j1", poll_interval=0.05, secrets=[secret])
    assert trigger.serialize()[1]["secrets"] == [secret]  # Airflow stores trigger arguments encrypted

    events = [event async for event in trigger.run()]

    (event,) = events
    assert event.payload["message"] == "exit code 3: bad key ***"
    assert secret not in caplog.text


async def test_a_withholding_trigger_keeps_ccps_words_out_of_its_event_and_log(open_conn, httpserver, task_log):
    """Where Airflow's API shows trigger arguments (before 3.3.2) the trigger gets no secret values: it says
    nothing of CCP's messages at all, and the worker reads the message of a failed job itself."""
    failed = status_body("j1", "failed", message="exit code 3: bad key s3cret-value-of-an-input")
    httpserver.expect_request("/jobs/j1", method="GET").respond_with_json(failed)
    trigger = CCPJobTrigger(open_conn, "j1", poll_interval=0.05, withhold_messages=True)
    assert "secrets" not in trigger.serialize()[1]

    (event,) = [event async for event in trigger.run()]

    assert (event.payload["status"], event.payload["message"]) == ("failed", WITHHELD)
    assert "bad key" not in task_log()


def test_a_trigger_without_secrets_serializes_as_before():
    assert not {"secrets", "withhold_messages"} & CCPJobTrigger("c", "j1").serialize()[1].keys()
