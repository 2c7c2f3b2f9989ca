"""The two job-status styles: OGC's statusInfo, and CCP's documented jobStatus (no ``finished``,
``progress``, ``processID`` or ``type``; ``updated`` moves on every view)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from ccp_client import CCP

from ccp_sandbox.config import SandboxConfig
from ccp_sandbox.testing import SandboxServer

CCP_FIELDS = {"jobID", "status", "message", "created", "started", "updated", "links"}


def test_ogc_style_is_the_default_and_carries_every_field(ccp: CCP) -> None:
    status = ccp.run("hello", name="ogc")
    assert {"finished", "progress", "processID", "type"} <= set(status)
    assert ccp.get(f"/jobs/{status['jobID']}").json()["updated"] == status["updated"]


def test_ccp_style_has_only_ccps_fields_and_updated_moves_on_every_view(ccp: CCP) -> None:
    ccp.sandbox.admin.set_job_status("ccp")
    job_id = ccp.run("hello", name="ccp")["jobID"]
    first = ccp.get(f"/jobs/{job_id}").json()
    time.sleep(0.01)
    second = ccp.get(f"/jobs/{job_id}").json()
    listed = [job for job in ccp.get("/jobs", params={"processID": "hello"}).json()["jobs"] if job["jobID"] == job_id]

    assert set(first) == set(second) == set(listed[0]) == CCP_FIELDS
    assert first["status"] == "successful"
    assert second["updated"] > first["updated"]
    assert ccp.get(f"/executions/{job_id}").json()["status"].keys() == CCP_FIELDS


def test_reset_restores_the_configured_style(ccp: CCP) -> None:
    ccp.sandbox.admin.set_job_status("ccp")
    ccp.sandbox.admin.reset()
    assert "finished" in ccp.run("hello", name="again")


def test_an_unknown_style_is_refused_by_every_door(ccp: CCP) -> None:
    with pytest.raises(Exception, match="style"):
        ccp.sandbox.admin.set_job_status("cpp")
    with pytest.raises(ValueError, match="job_status must be one of"):
        SandboxConfig(data_dir=ccp.sandbox.data_dir, job_status="cpp")
    answer = subprocess.run(
        [sys.executable, "-m", "ccp_sandbox", "--job-status", "cpp"], capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 2
    assert "--job-status" in answer.stderr


def test_a_sandbox_started_in_ccp_style_answers_so(tmp_path) -> None:
    with SandboxServer(tmp_path, admin=True, job_status="ccp") as server:
        status = CCP(server).run("hello", name="started so")
    assert set(status) == CCP_FIELDS
