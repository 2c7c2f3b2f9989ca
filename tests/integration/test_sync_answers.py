"""An OGC server that runs the execution synchronously: HTTP 200 with the results document, no job.

The server is a real HTTP server on loopback (pytest-httpserver) playing a plain OGC API - Processes
server whose process is sync-execute only, as pygeoapi's are by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from pytest_httpserver import HTTPServer

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.submission import STATE_KEY
from tests.task_helpers import DictStore, make_context, pushed

DESCRIPTION = {
    "id": "add",
    "version": "1.0",
    "jobControlOptions": ["sync-execute"],
    "inputs": {"a": {"schema": {"type": "string"}}, "b": {"schema": {"type": "string"}}},
    "outputs": {"sum": {"schema": {"type": "string"}}},
}
#: The process's own ``id`` in the answer: what the job id used to be read from.
RESULTS = {"id": "add", "sum": {"value": "5"}}


@pytest.fixture
def sync_server(httpserver: HTTPServer, make_conn) -> str:
    httpserver.expect_request("/processes/add", method="GET").respond_with_json(DESCRIPTION)
    httpserver.expect_request("/processes/add/execution", method="POST").respond_with_json(RESULTS, status=200)
    return make_conn(auth_flow="none", login=None, secret="")


def posts(httpserver: HTTPServer) -> int:
    return sum(1 for request, _ in httpserver.log if request.method == "POST")


@pytest.mark.parametrize("wait_for_completion", [True, False])
def test_the_results_of_a_sync_execution_are_the_task_outputs(
    sync_server, httpserver, tmp_path: Path, wait_for_completion: bool
):
    store = DictStore()
    context = make_context(store)
    op = CCPExecuteMethodOperator(
        task_id="count",
        method_id="add",
        inputs={"a": "2", "b": "3"},
        ccp_conn_id=sync_server,
        output_path=str(tmp_path),
        wait_for_completion=wait_for_completion,
        deferrable=True,  # nothing to defer: the execution has ended
    )

    manifest = op.execute(context)

    assert posts(httpserver) == 1
    assert manifest["job_id"] is None
    assert manifest["status"] == "successful"
    assert "synchronously" in manifest["message"]
    assert manifest["execution_url"] is None
    saved = ObjectStoragePath(manifest["archive"])
    assert saved.name == "results.json"
    assert json.loads(saved.read_text()) == RESULTS
    assert json.loads(ObjectStoragePath(manifest["manifest"]).read_text())["archive"] == manifest["archive"]
    # No job to name or to reattach to: no job XComs (certainly not the process id), nothing kept for a retry.
    assert "job_id" not in pushed(context)
    assert STATE_KEY not in store.values
    # Nothing is polled: there is no job.
    assert not any(request.path.startswith("/jobs") for request, _ in httpserver.log)
