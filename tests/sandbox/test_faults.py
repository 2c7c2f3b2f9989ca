"""Fault injection through the admin API, and the counters tests assert with."""

from __future__ import annotations

import io
import time
import zipfile

import httpx
import pytest
import requests
from ccp_client import CCP, group_is_gone, running_pids, wait_until

from ccp_sandbox.testing import SandboxAdminError, SandboxProcess, SandboxServer


def test_status_fault_with_retry_after_then_recovery(ccp: CCP, sandbox: SandboxServer) -> None:
    job_id = ccp.start("hello", name="faults")
    sandbox.admin.fail_next(r"^/jobs/[^/]+$", 503, count=2, retry_after=7)
    for _ in range(2):
        answer = ccp.get(f"/jobs/{job_id}")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "7"
        assert answer.json()["type"].endswith("/service-unavailable")
    assert ccp.get(f"/jobs/{job_id}").status_code == 200
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 3


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        ("html", "text/html", "<h1>502 Bad Gateway</h1>"),
        ("empty", None, ""),
        ("upstream hiccup", "text/plain", "upstream hiccup"),
    ],
)
def test_status_fault_bodies(ccp: CCP, sandbox: SandboxServer, body: str, content_type: str | None, text: str) -> None:
    sandbox.admin.fail_next("/processes", 502, body=body)
    answer = ccp.get("/processes")
    assert answer.status_code == 502
    assert text in answer.text
    if content_type:
        assert answer.headers["content-type"].startswith(content_type)


def test_fault_method_filter(ccp: CCP, sandbox: SandboxServer) -> None:
    sandbox.admin.fail_next("/jobs", 429, method="POST", count=5)
    assert ccp.get("/jobs").status_code == 200
    assert ccp.submit("hello", name="x").status_code == 201  # /processes/... does not match /jobs
    assert len(sandbox.admin.faults()) == 1


def test_latency(ccp: CCP, sandbox: SandboxServer) -> None:
    ccp.headers()
    sandbox.admin.add_latency("/conformance", 0.6)
    started = time.monotonic()
    assert ccp.get("/conformance").status_code == 200
    assert time.monotonic() - started >= 0.6
    started = time.monotonic()
    ccp.get("/conformance")
    assert time.monotonic() - started < 0.5


def test_drop_connection_is_a_connection_error(ccp: CCP, sandbox: SandboxServer) -> None:
    ccp.headers()
    sandbox.admin.drop_connection(r"/execution$", count=2)
    with pytest.raises(requests.ConnectionError):
        ccp.submit("hello", name="dropped")
    # Whether the client then reads an EOF or a reset depends on whether the request body was still
    # unread in the sandbox's kernel buffer when it hung up: both mean "no answer".
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)), httpx.Client() as client:
        client.post(f"{ccp.url}/processes/hello/execution", json={"inputs": {}}, headers=ccp.headers())
    assert sandbox.admin.executions_submitted("hello") == 0
    assert sandbox.admin.requests_to("POST", "/processes/{process_id}/execution") == 2
    assert ccp.submit("hello", name="fine").status_code == 201


@pytest.mark.parametrize("mode", ["status", "drop"])
def test_lose_answer_creates_the_job_then_loses_the_answer(ccp: CCP, sandbox: SandboxServer, mode: str) -> None:
    ccp.headers()
    sandbox.admin.lose_submission_answer(mode, method_id="hello")
    if mode == "drop":
        with pytest.raises(requests.ConnectionError):
            ccp.submit("hello", name=f"lost-{mode}")
    else:
        answer = ccp.submit("hello", name=f"lost-{mode}")
        assert answer.status_code == 502
        assert "Location" not in answer.headers
        assert "jobID" not in answer.json()
    assert sandbox.admin.executions_submitted("hello") == 1
    records = ccp.get("/executions").json()["executions"]
    [record] = [r for r in records if r["request"]["inputs"].get("name") == f"lost-{mode}"]
    assert ccp.wait(record["id"])["status"] == "successful"  # the job exists and runs
    assert ccp.submit("hello", name="answered").status_code == 201  # one use by default


def test_lose_answer_only_hits_its_method(ccp: CCP, sandbox: SandboxServer) -> None:
    sandbox.admin.lose_submission_answer(method_id="sleep")
    assert ccp.submit("hello", name="other").status_code == 201
    assert ccp.submit("sleep", seconds="0").status_code == 502
    with pytest.raises(SandboxAdminError, match="mode"):
        sandbox.admin.lose_submission_answer("truncate")


def test_token_endpoint_failure(ccp: CCP, sandbox: SandboxServer) -> None:
    sandbox.admin.fail_token_endpoint(503)
    with pytest.raises(requests.HTTPError):
        ccp.login()
    assert ccp.login()
    assert sandbox.admin.token_grants("password") == 1
    assert sandbox.admin.requests_to("POST", "/auth/realms/d4science/protocol/openid-connect/token") == 2


def test_hold_keeps_jobs_accepted(ccp: CCP, sandbox: SandboxServer) -> None:
    sandbox.admin.hold_jobs("sleep")
    held = [ccp.start("sleep", seconds="0") for _ in range(2)]
    assert ccp.run("hello", name="not held")["status"] == "successful"
    time.sleep(0.3)
    for job_id in held:
        status = ccp.get(f"/jobs/{job_id}").json()
        assert (status["status"], status["started"]) == ("accepted", None)
    sandbox.admin.clear_faults()
    assert ccp.run("sleep", seconds="0")["status"] == "successful"


def test_truncated_output_zip(ccp: CCP, sandbox: SandboxServer) -> None:
    victim = ccp.start("make-files", count="2", size="300000")
    bystander = ccp.start("hello", name="bystander")
    ccp.wait(victim)
    ccp.wait(bystander)
    sandbox.admin.corrupt_output("truncate", job_id=victim)
    assert ccp.get(f"/executions/{bystander}/outputs/output.zip").status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        ccp.get(f"/executions/{victim}/outputs/output.zip")
    answer = ccp.get(f"/executions/{victim}/outputs/output.zip")
    assert len(answer.content) == int(answer.headers["content-length"])
    assert len(zipfile.ZipFile(io.BytesIO(answer.content)).namelist()) == 6


def test_corrupted_output_zip(ccp: CCP, sandbox: SandboxServer) -> None:
    job_id = ccp.start("hello", name="corrupt")
    ccp.wait(job_id)
    good = ccp.get(f"/executions/{job_id}/outputs/output.zip").content
    sandbox.admin.corrupt_output("corrupt")
    bad = ccp.get(f"/executions/{job_id}/outputs/output.zip")
    assert bad.status_code == 200
    assert len(bad.content) == int(bad.headers["content-length"]) == len(good)
    assert bad.content != good
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bad.content))


def test_counters_count_unauthorized_and_unknown_requests(sandbox: SandboxServer) -> None:
    requests.get(f"{sandbox.url}/jobs/abc", timeout=10)
    requests.get(f"{sandbox.url}/no/such/path", timeout=10)
    counters = sandbox.admin.counters()
    assert counters["requests"] == {"GET /jobs/{job_id}": 1, "GET /no/such/path": 1}
    assert counters["executions"] == {}


def test_invalid_fault_is_refused(sandbox: SandboxServer) -> None:
    with pytest.raises(SandboxAdminError, match="kind"):
        sandbox.admin.add_fault(kind="meteor")
    with pytest.raises(SandboxAdminError, match="status"):
        sandbox.admin.fail_next("/", 42)


def test_admin_api_is_off_unless_asked_for(tmp_path) -> None:
    with SandboxServer(tmp_path / "default") as server:
        assert requests.post(f"{server.url}/_sandbox/faults", json={"kind": "drop"}, timeout=10).status_code == 404
        assert requests.get(f"{server.url}/_sandbox/counters", timeout=10).status_code == 404
    with SandboxServer(tmp_path / "admin", admin=True) as server:
        assert requests.post(f"{server.url}/_sandbox/reset", timeout=10).status_code == 200


def test_a_sandbox_process_has_no_admin_api_unless_asked_for(tmp_path) -> None:
    with SandboxProcess(tmp_path) as sandbox:
        assert requests.get(f"{sandbox.url}/_sandbox/counters", timeout=10).status_code == 404


def test_replace_output_serves_any_bytes_as_output_zip(sandbox) -> None:
    ccp = CCP(sandbox)
    job_id = ccp.start("hello", name="x")
    ccp.wait(job_id)
    sandbox.admin.replace_output(b"<html>not a zip</html>", job_id=job_id)

    assert ccp.get(f"/executions/{job_id}/outputs/output.zip").content == b"<html>not a zip</html>"
    assert ccp.get(f"/executions/{job_id}/outputs/output.zip").content[:2] == b"PK"  # count=1: spent


def test_stop_kills_running_methods(tmp_path) -> None:
    with SandboxServer(tmp_path) as server:
        ccp = CCP(server)
        job_id = ccp.start("sleep", seconds="60")
        [pid] = running_pids(ccp, job_id, 1)
    # SIGKILL is delivered asynchronously: on a loaded machine the group takes a moment to die.
    wait_until(lambda: group_is_gone(pid), timeout=5, what=f"process group {pid} to die")
