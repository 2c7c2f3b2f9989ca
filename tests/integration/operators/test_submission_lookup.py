"""Finding the execution a lost submission created, against real HTTP on loopback (pytest-httpserver):
CCP's execution records in their possible shapes, a plain OGC server's job list, a static token."""

from __future__ import annotations

import asyncio
import json
import time

import pendulum
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from airflow_provider_ccp.exceptions import CCPAmbiguousSubmissionError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.submission import STATE_KEY
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from tests.integration.doubles import status_body
from tests.task_helpers import DictStore, first_event, make_context

MARKER = "airflow-submission:0123456789abcdef0123456789abcdef"
#: A plain OGC process: no CCP runtime image, so no ``ccpnote`` to carry a marker.
OGC_PROCESS = {"id": "m1", "inputs": {"x": {"schema": {"type": "string"}}}, "outputs": {}}


@pytest.fixture
def open_conn(make_conn) -> str:
    return make_conn(auth_flow="none", login=None, secret="")


def request_with(note: object) -> dict:
    return {"inputs": {"ccpimage": "bash", "ccpnote": note}}


@pytest.mark.parametrize(
    "record",
    [
        {"id": "j2", "request": request_with(f"daily [{MARKER}]")},
        {"id": "j2", "metadata": {"request": request_with({"value": f"[{MARKER}]"})}},
        {"status": {"jobID": "j2"}, "metadata": {"request.json": request_with(f"[{MARKER}]")}},
    ],
    ids=["request", "metadata-request", "metadata-request.json"],
)
def test_find_execution_reads_the_marker_wherever_the_record_keeps_the_request(open_conn, httpserver, record):
    other = {"id": "j1", "request": request_with("[airflow-submission:ffff]")}
    page_2 = httpserver.url_for("/executions") + "?page=2"
    httpserver.expect_request("/executions", query_string="page=2").respond_with_json({"executions": [record]})
    httpserver.expect_request("/executions").respond_with_json(
        {"executions": [other, "junk"], "links": [{"rel": "next", "href": page_2}]}
    )

    assert CCPHook(open_conn).find_execution(MARKER) == "j2"


def test_find_execution_reads_a_bare_list_and_says_none_when_absent(open_conn, httpserver):
    httpserver.expect_request("/executions").respond_with_json([{"id": "j1", "request": request_with("x")}])

    assert CCPHook(open_conn).find_execution(MARKER) is None


def serve_ogc_submission(httpserver: HTTPServer, jobs: list[dict]) -> None:
    httpserver.expect_request("/processes/m1").respond_with_json(OGC_PROCESS)
    httpserver.expect_request("/processes/m1/execution", method="POST").respond_with_data("Bad Gateway", 502)
    httpserver.expect_request("/jobs", query_string={"limit": "100", "processID": "m1"}).respond_with_json(
        {"jobs": jobs}
    )


def ogc_operator(**kwargs) -> CCPExecuteMethodOperator:
    return CCPExecuteMethodOperator(
        task_id="t", method_id="m1", inputs={"x": "1"}, ccp_conn_id="ccp_unit", wait_for_completion=False, **kwargs
    )


def test_on_a_plain_ogc_server_the_one_job_created_around_the_post_is_taken(open_conn, httpserver):
    now = pendulum.now("UTC")
    old = status_body("j0", "successful", processID="m1", created=now.subtract(hours=1).isoformat())
    new = status_body("j1", "running", processID="m1", created=now.isoformat())
    serve_ogc_submission(httpserver, [new, old])
    httpserver.expect_request("/jobs/j1").respond_with_json(new)
    store = DictStore()

    assert ogc_operator().execute(make_context(store)) == "j1"

    [post] = [request for request, _ in httpserver.log if request.method == "POST"]
    assert json.loads(post.data)["inputs"] == {"x": "1"}  # no ccpnote sent to a server that may refuse it


def test_on_a_plain_ogc_server_two_candidates_are_ambiguous(open_conn, httpserver, monkeypatch):
    now = pendulum.now("UTC").isoformat()
    serve_ogc_submission(httpserver, [status_body(job, "running", processID="m1", created=now) for job in ("a", "b")])
    store = DictStore()

    with pytest.raises(
        CCPAmbiguousSubmissionError, match=r"2 jobs of Method 'm1' were created then \(a, b\)"
    ) as raised:
        ogc_operator().execute(make_context(store))

    assert raised.value.marker is None
    assert "GET /jobs?processID=m1" in str(raised.value)
    assert STATE_KEY not in store.values


def test_a_rejected_static_token_ends_the_wait_at_once(make_conn, httpserver):
    conn = make_conn(auth_flow="token", login=None, secret="static-token")
    httpserver.expect_request("/jobs/j1").respond_with_json({"type": "unauthorized"}, 401)
    started = time.monotonic()

    event = asyncio.run(first_event(CCPJobTrigger(conn, "j1", poll_interval=0.2)))

    assert time.monotonic() - started < 10
    assert event["status"] == "error"
    assert "the token expired or was revoked" in event["message"]
    assert len(httpserver.log) == 1


def test_a_reattach_rides_out_a_500(open_conn, httpserver):
    httpserver.expect_request("/processes/m1").respond_with_json(OGC_PROCESS)
    answers = [Response("oops", 500), Response(json.dumps(status_body("j1", "running")), 200)]
    httpserver.expect_request("/jobs/j1").respond_with_handler(lambda _: answers.pop(0))
    store = DictStore()
    op = ogc_operator(poll_interval=0.05)
    store.set(STATE_KEY, {"job_id": "j1"})

    assert op.execute(make_context(store)) == "j1"
    assert not answers  # the 500, then the status
    assert not [request for request, _ in httpserver.log if request.method == "POST"]
