"""A minimal CCP client written from the docs for these tests (deliberately not the provider's hook)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from ccp_sandbox.testing import SandboxProcess, SandboxServer

UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"
TERMINAL = {"successful", "failed", "dismissed"}


class CCP:
    def __init__(self, sandbox: SandboxServer | SandboxProcess) -> None:
        self.sandbox = sandbox
        self.url = sandbox.url
        self.http = requests.Session()
        self._token: str | None = None

    def grant(self, **form: str) -> requests.Response:
        return self.http.post(self.sandbox.token_url, data=form, timeout=10)

    def login(self) -> str:
        answer = self.grant(
            grant_type="password",
            client_id=self.sandbox.public_client_id,
            username=self.sandbox.user,
            password=self.sandbox.password,
            scope=f"d4s-context:{self.sandbox.context}",
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = self.login()
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, headers=self.headers(), timeout=30, **kwargs)

    def submit(self, method: str, **inputs: str) -> requests.Response:
        body = {"inputs": {"ccpimage": "bash", **inputs}, "outputs": {}, "response": "raw"}
        return self.http.post(f"{self.url}/processes/{method}/execution", json=body, headers=self.headers(), timeout=30)

    def start(self, method: str, **inputs: str) -> str:
        answer = self.submit(method, **inputs)
        assert answer.status_code == 201, answer.text
        job_id: str = answer.json()["jobID"]
        return job_id

    def wait(
        self, job_id: str, timeout: float = 30, until: set[str] | frozenset[str] = frozenset(TERMINAL)
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status: dict[str, Any] = self.get(f"/jobs/{job_id}").json()
            if status["status"] in until:
                return status
            assert time.monotonic() < deadline, f"job stuck in {status}"
            time.sleep(0.05)

    def run(self, method: str, **inputs: str) -> dict[str, Any]:
        return self.wait(self.start(method, **inputs))


def encoded(context: str) -> str:
    return quote(context, safe="")


def live_group_members(pgid: int) -> list[int]:
    """PIDs of processes in process group ``pgid`` that are not zombies (zombies are dead, merely unreaped)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _has_members(pgid: int, count: int) -> bool:
    return len(live_group_members(pgid)) >= count


def group_is_gone(pgid: int) -> bool:
    return not live_group_members(pgid)


def wait_until(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def running_pids(ccp: CCP, job_id: str, replicas: int) -> list[int]:
    def pids() -> list[int] | None:
        processes = ccp.get(f"/executions/{job_id}").json()["processes"]
        return [p["pid"] for p in processes] if len(processes) == replicas else None

    found: list[int] = wait_until(pids, what="replicas to start")
    # bash plus its `sleep` child: the whole group, not just the leader, must die.
    for pid in found:
        wait_until(partial(_has_members, pid, 2), what="sleep to start")
    return found
