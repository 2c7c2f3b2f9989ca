"""Running Methods: validation, outcomes, replicas, ccpmaxtime, job list and results."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest
import requests
from ccp_client import CCP

from ccp_sandbox.testing import SandboxServer

VALID = {"ccpimage": "bash", "text": "a", "mode": "words"}
INVALID = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/invalid-parameter-value"


def output(ccp: CCP, job_id: str) -> zipfile.ZipFile:
    answer = ccp.get(f"/executions/{job_id}/outputs/output.zip")
    assert answer.status_code == 200
    return zipfile.ZipFile(io.BytesIO(answer.content))


@pytest.mark.parametrize(
    ("inputs", "named"),
    [
        ({"ccpimage": "bash", "mode": "words"}, "'text'"),
        ({"text": "a", "mode": "words"}, "'ccpimage'"),
        ({"ccpimage": "bash", "text": "a"}, "'mode'"),  # it has a default, but CCP fills none
        ({**VALID, "mode": "bytes"}, "'mode'"),
        ({**VALID, "colour": "red"}, "'colour'"),
        ({**VALID, "text": 42}, "'text'"),
        ({**VALID, "ccpreplicas": "0"}, "'ccpreplicas'"),
        ({**VALID, "ccpmaxtime": "soon"}, "'ccpmaxtime'"),
    ],
    ids=["missing", "missing-ccpimage", "no-default-filling", "enum", "unknown", "not-a-string", "replicas", "maxtime"],
)
def test_invalid_inputs_are_400_naming_the_input(ccp: CCP, inputs: dict, named: str) -> None:
    answer = ccp.http.post(
        f"{ccp.url}/processes/word-count/execution", json={"inputs": inputs}, headers=ccp.headers(), timeout=10
    )
    assert answer.status_code == 400
    problem = answer.json()
    assert (problem["type"], problem["status"]) == (INVALID, 400)
    assert named in problem["detail"]
    assert ccp.sandbox.admin.executions_submitted("word-count") == 0


def test_system_inputs_are_always_accepted(ccp: CCP) -> None:
    status = ccp.run("sleep", seconds="0", ccpnote="a note", ccpsize="large", ccpmaxtime="60", ccpreplicas="1")
    assert status["status"] == "successful"


def test_word_count_with_hostile_text(ccp: CCP) -> None:
    # Literal substitution: only the quoted heredoc stands between this text and the shell.
    text = "it's $(touch pwned) `touch pwned` \"q\" $HOME\nEOF\n'three'"
    job_id = ccp.start("word-count", text=text, mode="lines")
    assert ccp.wait(job_id)["status"] == "successful"
    archive = output(ccp, job_id)
    assert json.loads(archive.read("result.json")) == {"lines": 3, "mode": "lines"}
    assert archive.read("input.txt").decode() == text + "\n"
    assert "pwned" not in archive.namelist()
    job_id = ccp.start("word-count", text="one two three", mode="words")
    ccp.wait(job_id)
    assert json.loads(output(ccp, job_id).read("result.json")) == {"words": 3, "mode": "words"}


def test_failure_message_carries_exit_code_and_stderr(ccp: CCP) -> None:
    job_id = ccp.start("fail", message="disk on fire", exit_code="7")
    status = ccp.wait(job_id)
    assert status["status"] == "failed"
    assert status["message"] == "exit code 7: disk on fire"
    results = ccp.get(f"/jobs/{job_id}/results")
    assert results.status_code == 500
    assert results.json()["detail"] == "exit code 7: disk on fire"
    assert output(ccp, job_id).read("stderr.1.txt") == b"disk on fire\n"


def test_results_and_output_zip_wait_for_the_end(ccp: CCP, sandbox: SandboxServer) -> None:
    job_id = ccp.start("sleep", seconds="30")
    for path in (f"/jobs/{job_id}/results", f"/executions/{job_id}/outputs/output.zip"):
        answer = ccp.get(path)
        assert answer.status_code == 404
        assert answer.json()["type"].endswith("/result-not-ready")
    ccp.http.delete(f"{ccp.url}/jobs/{job_id}", headers=ccp.headers(), timeout=10)

    job_id = ccp.start("hello", name="results")
    ccp.wait(job_id)
    href = ccp.get(f"/jobs/{job_id}/results").json()["output"]["href"]
    assert href == f"{sandbox.url}/executions/{job_id}/outputs/output.zip"


def test_replicas_run_in_parallel_with_their_own_task_id(ccp: CCP) -> None:
    job_id = ccp.start("sleep", seconds="1", ccpreplicas="2")
    status = ccp.wait(job_id)
    assert status["status"] == "successful"
    elapsed = ccp.get(f"/executions/{job_id}").json()
    assert len(elapsed["processes"]) == 2
    archive = output(ccp, job_id)
    assert archive.read("stdout.1.txt").startswith(b"replica 1 sleeping")
    assert archive.read("stdout.2.txt").startswith(b"replica 2 sleeping")


def test_one_failing_replica_fails_the_job(tmp_path) -> None:
    methods = tmp_path / "methods"
    methods.mkdir()
    script = ['if [ "$ccptaskid" = 2 ]; then echo "replica 2 is {{mood}}" >&2; exit 4; fi']
    method = {
        "id": "flaky",
        "inputs": {"mood": {"schema": {"type": "string"}}},
        "additionalParameters": {"parameters": [{"name": "execute-script", "value": script}]},
    }
    (methods / "flaky.json").write_text(json.dumps(method))
    with SandboxServer(tmp_path / "data", methods_dirs=[methods]) as server:
        ccp = CCP(server)
        assert ccp.get("/processes/flaky").json()["links"][0]["rel"] == "compatibleWith"
        status = ccp.run("flaky", mood="grumpy", ccpreplicas="3")
    assert status["status"] == "failed"
    assert status["message"] == "replica 2: exit code 4: replica 2 is grumpy"


def test_ccpmaxtime_kills_the_job(ccp: CCP) -> None:
    job_id = ccp.start("sleep", seconds="30", ccpmaxtime="0.5")
    status = ccp.wait(job_id, timeout=10)
    assert status["status"] == "failed"
    assert "ccpmaxtime" in status["message"]
    assert all(p["returncode"] == -9 for p in ccp.get(f"/executions/{job_id}").json()["processes"])


def test_job_list_filters_and_visibility(ccp: CCP, sandbox: SandboxServer, tmp_path) -> None:
    ok = ccp.start("hello", name="list")
    bad = ccp.start("fail", message="list", exit_code="3")
    ccp.wait(ok)
    ccp.wait(bad)
    failed = ccp.get("/jobs", params={"status": "failed,dismissed", "limit": 1000}).json()["jobs"]
    assert bad in {job["jobID"] for job in failed}
    assert ok not in {job["jobID"] for job in failed}
    hellos = ccp.get("/jobs", params={"processID": "hello", "limit": 1000}).json()["jobs"]
    assert {job["processID"] for job in hellos} == {"hello"}
    assert ccp.get("/jobs", params={"limit": 1}).json()["jobs"][0]["jobID"] == bad  # newest first
    executions = ccp.get("/executions").json()["executions"]
    assert executions[0]["id"] == bad

    service = requests.post(
        sandbox.token_url,
        data={"grant_type": "client_credentials", "scope": f"d4s-context:{sandbox.context}"},
        auth=(sandbox.client_id, sandbox.client_secret),
        timeout=10,
    ).json()["access_token"]
    other = requests.get(f"{sandbox.url}/jobs/{ok}", headers={"Authorization": f"Bearer {service}"}, timeout=10)
    assert other.status_code == 404
    assert other.json()["type"].endswith("/no-such-job")


def test_unknown_job_is_404_everywhere(ccp: CCP) -> None:
    for path in ("/jobs/nope", "/jobs/nope/results", "/executions/nope", "/executions/nope/outputs/output.zip"):
        answer = ccp.get(path)
        assert (answer.status_code, answer.json()["type"].rsplit("/", 1)[1]) == (404, "no-such-job")
    assert ccp.http.delete(f"{ccp.url}/jobs/nope", headers=ccp.headers(), timeout=10).status_code == 404


def test_ui_page_shows_the_execution_without_secrets(ccp: CCP, sandbox: SandboxServer) -> None:
    job_id = ccp.start("hello", name="<b>ui</b>", api_key="s3cr3t-value")
    page = requests.get(f"{sandbox.url}/ui/executions/{job_id}", timeout=10)
    assert page.status_code == 200
    assert job_id in page.text
    assert "&lt;b&gt;ui&lt;/b&gt;" in page.text
    assert "s3cr3t-value" not in page.text
    ccp.wait(job_id)
    stdout = output(ccp, job_id).read("stdout.1.txt").decode()
    assert "api_key of 12 characters" in stdout
    assert "s3cr3t-value" not in stdout


def test_prefer_respond_async_is_acknowledged(ccp: CCP) -> None:
    answer = ccp.http.post(
        f"{ccp.url}/processes/hello/execution",
        json={"inputs": {"ccpimage": "bash", "name": "async"}},
        headers={**ccp.headers(), "Prefer": "respond-async"},
        timeout=10,
    )
    assert answer.status_code == 201
    assert answer.headers["Preference-Applied"] == "respond-async"


def test_launch_seconds_keep_a_job_accepted_like_a_container_being_deployed(tmp_path: Path) -> None:
    with SandboxServer(tmp_path / "data", launch_seconds=1.5) as server:
        ccp = CCP(server)
        started = time.monotonic()
        job_id = ccp.start("hello", name="later")
        assert ccp.get(f"/jobs/{job_id}").json()["status"] == "accepted"
        running = ccp.wait(job_id, until={"running", "successful"})
        assert time.monotonic() - started >= 1.5
        assert ccp.wait(job_id)["status"] == "successful", running


@pytest.mark.parametrize(
    ("outputs", "logs"),
    [
        (None, {"stdout.1.txt", "stderr.1.txt"}),
        ({}, {"stdout.1.txt", "stderr.1.txt"}),
        ({"greeting": {"transmissionMode": "value"}}, set()),
        ({"greeting": {}, "stdout": {"transmissionMode": "value"}}, {"stdout.1.txt"}),
        ({"stderr": {}, "stdout": {}}, {"stdout.1.txt", "stderr.1.txt"}),
    ],
    ids=["outputs-left-out", "no-output-named", "declared-only", "stdout-only", "both"],
)
def test_the_logs_are_in_output_zip_only_when_requested(ccp: CCP, outputs: dict | None, logs: set[str]) -> None:
    body: dict = {"inputs": {"ccpimage": "bash", "name": "logs"}, "response": "raw"}
    if outputs is not None:
        body["outputs"] = outputs
    answer = ccp.http.post(f"{ccp.url}/processes/hello/execution", json=body, headers=ccp.headers(), timeout=30)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    assert ccp.wait(job_id)["status"] == "successful"

    names = set(output(ccp, job_id).namelist())
    assert "greeting.txt" in names
    assert {name for name in names if name.startswith(("stdout", "stderr"))} == logs
