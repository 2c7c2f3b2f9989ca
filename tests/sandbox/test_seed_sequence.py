"""The request sequence of CCP's generated R stub (ccp-rest-api-seed.txt), replayed with plain requests."""

from __future__ import annotations

import io
import time
import zipfile
from typing import Any

import requests

from ccp_sandbox.testing import SandboxServer

SEED_REQUEST: dict[str, Any] = {
    "inputs": {"ccpimage": "bash", "ccpreplicas": "1"},
    "outputs": {"output": {"transmissionMode": "value"}},
    "response": "raw",
}


def get_token(sandbox: SandboxServer) -> str:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    login = requests.post(
        sandbox.token_url,
        data={
            "grant_type": "password",
            "client_id": sandbox.public_client_id,
            "username": sandbox.user,
            "password": sandbox.password,
        },
        headers=form,
        timeout=10,
    )
    assert login.status_code == 200, login.text
    authorize = requests.post(
        sandbox.token_url,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:uma-ticket",
            "audience": sandbox.context.replace("/", "%2F"),
        },
        headers={**form, "Authorization": f"Bearer {login.json()['access_token']}"},
        timeout=10,
    )
    assert authorize.status_code == 200, authorize.text
    jwt: str = authorize.json()["access_token"]
    return jwt


def test_seed_sequence(sandbox: SandboxServer) -> None:
    jwt = get_token(sandbox)
    auth = {"Authorization": f"Bearer {jwt}"}
    # The seed's body plus the one input `hello` requires (the seed's Method had none).
    request = {**SEED_REQUEST, "inputs": {**SEED_REQUEST["inputs"], "name": "seed"}}

    res = requests.post(f"{sandbox.url}/processes/hello/execution", json=request, headers=auth, timeout=10)
    assert res.status_code == 201, res.text
    job_status = res.json()
    assert job_status["status"] == "accepted"
    assert res.headers["Location"] == f"{sandbox.url}/jobs/{job_status['jobID']}"

    seen = []
    while job_status["status"] not in ("successful", "failed"):
        time.sleep(0.2)
        res = requests.get(f"{sandbox.url}/jobs/{job_status['jobID']}", headers=auth, timeout=10)
        assert res.status_code == 200
        job_status = res.json()
        seen.append(job_status["status"])
    assert job_status["status"] == "successful", job_status
    assert job_status["progress"] == 100
    assert job_status["created"] <= job_status["started"] <= job_status["finished"]

    res = requests.get(
        f"{sandbox.url}/executions/{job_status['jobID']}", headers={"Accept": "application/json", **auth}, timeout=10
    )
    assert res.status_code == 200
    record = res.json()
    assert record["request"] == request
    assert record["method"]["id"] == "hello"
    assert (record["context"], record["user"], record["image"]) == (sandbox.context, sandbox.user, "bash")

    res = requests.get(
        f"{sandbox.url}/executions/{job_status['jobID']}/outputs/output.zip",
        headers={"Accept": "application/json", **auth},
        timeout=10,
    )
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/zip"
    assert int(res.headers["content-length"]) == len(res.content)
    archive = zipfile.ZipFile(io.BytesIO(res.content))
    assert {"ccp-entrypoint.sh", "ccpenv", "greeting.txt"} <= set(archive.namelist())
    assert archive.read("greeting.txt").decode() == "Hello, seed!\n"
    # The stub asks for "output" only, not for the stdout/stderr outputs: the logs stay out, as on CCP.
    assert not {"stdout.1.txt", "stderr.1.txt"} & set(archive.namelist())
    ccpenv = archive.read("ccpenv").decode()
    assert f"ccpcontext={sandbox.context}\n" in ccpenv
    assert "ccpimage=bash\n" in ccpenv
