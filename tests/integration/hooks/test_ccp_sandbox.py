"""CCPHook and CCPAsyncHook end to end against the CCP sandbox (a real FastAPI server on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from airflow_provider_ccp import auth
from airflow_provider_ccp.exceptions import CCPDownloadError, CCPError, CCPNotFoundError
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from ccp_sandbox.testing import SandboxServer

POLL = 0.1


def use_connection(monkeypatch: pytest.MonkeyPatch, conn: dict, conn_id: str = "ccp_it") -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def direct_grant(sandbox, **form: str) -> dict:
    """A token straight from the sandbox's Keycloak, as a user would fetch an offline or bearer token."""
    answer = requests.post(sandbox.token_url, data=form, timeout=10)
    answer.raise_for_status()
    return answer.json()


def password_form(sandbox, scope: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": sandbox.public_client_id,
        "username": sandbox.user,
        "password": sandbox.password,
        "scope": scope,
    }


def connection_for(sandbox, flow: str) -> dict:
    if flow == "refresh_token":
        offline = direct_grant(sandbox, **password_form(sandbox, f"offline_access d4s-context:{sandbox.context}"))
        return sandbox.connection("refresh_token") | {"password": offline["refresh_token"]}
    if flow == "token":
        bearer = direct_grant(sandbox, **password_form(sandbox, f"d4s-context:{sandbox.context}"))
        return sandbox.connection("token") | {"password": bearer["access_token"]}
    return sandbox.connection(flow)


def issued(server) -> dict[str, int]:
    return {grant: n for grant, n in server.admin.counters()["token_grants"].items() if n}


#: Token grants the sandbox must have counted for one run of each flow (and nothing else).
EXPECTED_GRANTS = {
    "password_uma": {"password": 1, "uma-ticket": 1},
    "password_scope": {"password": 1},
    "context_header": {"password": 1},
    "client_credentials": {"uma-ticket": 1},
    "refresh_token": {"refresh_token": 1},
    "token": {},
}


@pytest.mark.parametrize("flow", list(EXPECTED_GRANTS))
def test_every_auth_flow_end_to_end(sandbox, monkeypatch, tmp_path, flow):
    conn = connection_for(sandbox, flow)
    sandbox.admin.reset()  # only what the hook does is counted
    hook = CCPHook(use_connection(monkeypatch, conn))

    submitted = hook.submit_execution("hello", {"ccpimage": "bash", "name": f"flow {flow}"})
    status = hook.wait_for_job(submitted.job_id, poll_interval=POLL, timeout=60)
    assert status.successful, status
    assert status.finished is not None
    execution = hook.get_execution(status.job_id)
    assert execution
    outputs = hook.download_outputs(status.job_id, tmp_path)
    assert outputs.kind == "zip"
    assert zipfile.is_zipfile(outputs.path)
    with zipfile.ZipFile(outputs.path) as archive:
        text = "".join(archive.read(name).decode(errors="replace") for name in archive.namelist() if "stdout" in name)
    assert f"flow {flow}" in text
    assert [p.name for p in tmp_path.iterdir()] == ["output.zip"]
    assert issued(sandbox) == EXPECTED_GRANTS[flow]


async def test_async_hook_end_to_end(sandbox, monkeypatch):
    conn_id = use_connection(monkeypatch, sandbox.connection("password_uma"))
    job_id = CCPHook(conn_id).submit_execution("sleep", {"ccpimage": "bash", "seconds": "30"}).job_id
    async with CCPAsyncHook(conn_id) as hook:
        assert (await hook.get_job(job_id)).status in {"accepted", "running"}
        result = await hook.dismiss_job(job_id)
    assert result.supported
    assert CCPHook(conn_id).get_job(job_id).terminal
    # Sync and async hooks of one process shared one token.
    assert sandbox.admin.token_grants("password") == 1


def test_a_short_lived_token_expires_mid_run(tmp_path, monkeypatch):
    with SandboxServer(tmp_path / "short-ttl", token_ttl=2, admin=True) as server:
        hook = CCPHook(use_connection(monkeypatch, server.connection("password_uma")))
        job_id = hook.submit_execution("sleep", {"ccpimage": "bash", "seconds": "4"}).job_id
        status = hook.wait_for_job(job_id, poll_interval=0.25, timeout=60)
        assert status.successful
        grants = server.admin.counters()["token_grants"]
        # The 2 s token died at least once during the 4 s job and was renewed with its refresh token.
        assert grants.get("refresh_token", 0) >= 1
        assert grants.get("password") == 1


@pytest.mark.parametrize("flow", ["password_uma", "password_scope", "context_header", "client_credentials"])
def test_revoked_tokens_mid_run_recover(sandbox, monkeypatch, flow):
    hook = CCPHook(use_connection(monkeypatch, sandbox.connection(flow)))
    job_id = hook.submit_execution("sleep", {"ccpimage": "bash", "seconds": "1"}).job_id
    hook.get_job(job_id)
    before = dict(sandbox.admin.counters()["token_grants"])
    sandbox.admin.revoke_tokens()
    status = hook.wait_for_job(job_id, poll_interval=POLL, timeout=60)
    assert status.successful
    after = sandbox.admin.counters()["token_grants"]
    # Revocation kills the refresh token too: the flow runs again, exactly once.
    renewed = {grant: after.get(grant, 0) - before.get(grant, 0) for grant in set(after) | set(before)}
    assert {grant: n for grant, n in renewed.items() if n} == {
        grant: n for grant, n in EXPECTED_GRANTS[flow].items() if n
    }


async def test_revoked_tokens_recover_in_the_async_hook(sandbox, monkeypatch):
    conn_id = use_connection(monkeypatch, sandbox.connection("password_uma"))
    job_id = CCPHook(conn_id).submit_execution("hello", {"ccpimage": "bash", "name": "async"}).job_id
    sandbox.admin.revoke_tokens()
    async with CCPAsyncHook(conn_id) as hook:
        assert (await hook.get_job(job_id)).job_id == job_id
    assert sandbox.admin.token_grants("password") == 2


def test_a_503_get_is_retried_with_retry_after(sandbox_conn, sandbox):
    hook = CCPHook(sandbox_conn)
    job_id = hook.submit_execution("hello", {"ccpimage": "bash", "name": "retry"}).job_id
    sandbox.admin.fail_next(r"^/jobs/", 503, count=1, method="GET", retry_after=1)
    assert hook.get_job(job_id).job_id == job_id
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 2


def test_a_503_on_the_execution_post_is_not_resent(sandbox_conn, sandbox):
    hook = CCPHook(sandbox_conn)
    sandbox.admin.fail_next(r"^/processes/hello/execution$", 503, count=1, method="POST", retry_after=0)
    with pytest.raises(CCPError) as raised:
        hook.submit_execution("hello", {"ccpimage": "bash", "name": "once"})
    assert raised.value.http_status == 503
    assert sandbox.admin.requests_to("POST", "/processes/{process_id}/execution") == 1


def test_a_dropped_execution_post_is_not_resent(sandbox_conn, sandbox):
    hook = CCPHook(sandbox_conn)
    hook.get_token()
    sandbox.admin.drop_connection(r"^/processes/hello/execution$", method="POST")
    with pytest.raises(CCPError, match="Could not reach CCP"):
        hook.submit_execution("hello", {"ccpimage": "bash", "name": "once"})
    assert sandbox.admin.requests_to("POST", "/processes/{process_id}/execution") <= 1
    assert sandbox.admin.executions_submitted("hello") == 0


def test_a_truncated_output_leaves_nothing(sandbox_conn, sandbox, tmp_path):
    hook = CCPHook(sandbox_conn)
    job_id = hook.submit_execution(
        "make-files", {"ccpimage": "bash", "count": "1", "size": str(3 * 1024 * 1024)}
    ).job_id
    assert hook.wait_for_job(job_id, poll_interval=POLL, timeout=60).successful
    sandbox.admin.corrupt_output("truncate", job_id=job_id)
    with pytest.raises(CCPDownloadError):
        hook.download_outputs(job_id, tmp_path)
    assert list(tmp_path.iterdir()) == []
    # The next try gets the whole archive.
    assert zipfile.is_zipfile(hook.download_outputs(job_id, tmp_path).path)


def test_unknown_method_and_job(sandbox_conn):
    hook = CCPHook(sandbox_conn)
    with pytest.raises(CCPNotFoundError):
        hook.get_method("no-such-method")
    with pytest.raises(CCPNotFoundError):
        hook.get_job("no-such-job")


def test_list_methods_sees_the_built_in_ones(sandbox_conn):
    ids = {method["id"] for method in CCPHook(sandbox_conn).list_methods(limit=2)}
    assert {"hello", "word-count", "sleep", "fail", "make-files"} <= ids


def test_a_rejected_login_names_everything_but_the_password(sandbox, monkeypatch):
    conn = sandbox.connection("password_uma") | {"password": "wrong-password-123"}
    ok, message = CCPHook(use_connection(monkeypatch, conn)).test_connection()
    assert ok is False
    assert sandbox.token_url in message
    assert f"client_id='{sandbox.public_client_id}'" in message
    assert f"user='{sandbox.user}'" in message
    assert "invalid_grant: Invalid user credentials" in message
    assert "wrong-password-123" not in message
    auth.TOKEN_CACHE.clear()


# ---------------------------------------------------------------------------- the Airflow CLI


def airflow_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def cli_env(sandbox, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CCP_DEFAULT": sandbox.connection_json("password_uma"),
    }
    return env


def test_airflow_cli_lists_gets_and_tests_the_connection(sandbox, cli_env):
    providers = airflow_cli("providers", "list", "--output", "json", env=cli_env)
    assert providers.returncode == 0, providers.stderr
    listed = {item["package_name"]: item for item in json.loads(providers.stdout[providers.stdout.index("[") :])}
    assert "airflow-provider-ccp" in listed

    got = airflow_cli("connections", "get", "ccp_default", "--output", "json", env=cli_env)
    assert got.returncode == 0, got.stderr
    document = json.loads(got.stdout[got.stdout.index("[") :])[0]
    assert document["conn_type"] == "ccp"
    assert document["host"] == sandbox.url

    before = sandbox.admin.token_grants("password")
    tested = airflow_cli("connections", "test", "ccp_default", env=cli_env)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Connection success!" in tested.stdout
    # The CLI ran the provider's test_connection against the sandbox: it logged in once.
    assert sandbox.admin.token_grants("password") == before + 1
    assert sandbox.admin.requests_to("GET", "/processes") >= 1
    assert sandbox.password not in tested.stdout + tested.stderr
