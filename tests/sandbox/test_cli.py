"""The ccp-sandbox command: refusals, and a real child process stopped by its PID."""

from __future__ import annotations

import json
import os

import pytest
import requests
from ccp_client import CCP, live_group_members, running_pids

from ccp_sandbox.__main__ import main
from ccp_sandbox.testing import SandboxProcess


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org"])
def test_non_loopback_host_is_refused(host: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--host", host, "--port", "0"])
    assert stopped.value.code == 2
    assert "runs the shell scripts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--users", "nopassword"], "name:secret"),
        (["--methods", "/nonexistent/methods"], "not a directory"),
    ],
)
def test_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--port", "0", *argv])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_sandbox_process_serves_and_stops_by_pid(tmp_path) -> None:
    with SandboxProcess(tmp_path, users={"alice": "wonderland"}, admin=True) as sandbox:
        assert sandbox.pid is not None
        assert sandbox.pid != os.getpid()
        ready = json.loads((tmp_path / "ready.json").read_text())
        assert (ready["url"], ready["pid"]) == (sandbox.url, sandbox.pid)
        assert ready["connection"]["login"] == "alice"
        log = sandbox.log_file.read_text()
        assert f"AIRFLOW_CONN_CCP_DEFAULT='{json.dumps(ready['connection'])}'" in log

        ccp = CCP(sandbox)
        job_id = ccp.start("sleep", seconds="60")
        [method_pid] = running_pids(ccp, job_id, 1)
        sandbox.admin.fail_next("/processes", 500)
        assert requests.get(f"{sandbox.url}/processes", headers=ccp.headers(), timeout=10).status_code == 500
    assert sandbox.process is not None
    assert sandbox.process.returncode == 0  # SIGTERM is a clean stop, not a crash
    assert not live_group_members(method_pid)
    assert not (tmp_path / "ready.json").exists()
