"""The twin operations of CCPHook and CCPAsyncHook answer the same, on the same server's answers.

Both hooks perform the definitions of ``airflow_provider_ccp.operations``; these tests hold them to it
against the sandbox, including a server that ignores the ``processID`` filter of ``GET /jobs``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from ccp_sandbox.testing import SandboxServer

pytestmark = pytest.mark.usefixtures("sandbox_conn")


#: The async twin of each sync operation, where its name differs.
TWINS = {"list_jobs": "iter_jobs"}


def both(name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``name(*args, **kwargs)`` on the sync hook, and its twin on the async hook (collected when it iterates)."""
    synced = getattr(CCPHook(), name)(*args, **kwargs)

    async def run() -> Any:
        async with CCPAsyncHook() as hook:
            result = getattr(hook, TWINS.get(name, name))(*args, **kwargs)
            if hasattr(result, "__aiter__"):
                return [item async for item in result]
            return await result

    return synced, asyncio.run(run())


@pytest.fixture
def submitted() -> dict[str, list[str]]:
    """Jobs of two Methods, so that a listing of one can show the other's."""
    hook = CCPHook()
    return {
        method: [hook.submit_execution(method, {"ccpimage": "bash", **inputs}).job_id for _ in range(2)]
        for method, inputs in (("hello", {"name": "parity"}), ("fail", {"message": "parity", "exit_code": "1"}))
    }


@pytest.mark.parametrize("ignored", [False, True], ids=["filtering-server", "server-ignoring-processID"])
def test_both_hooks_list_the_same_jobs_of_only_that_method(sandbox: SandboxServer, submitted, ignored):
    sandbox.admin.ignore_process_id(ignored)
    every = {job.job_id for job in CCPHook().list_jobs()}
    assert set(submitted["fail"]) <= every  # the server's whole listing has the other Method's jobs
    synced, awaited = both("list_jobs", method_id="hello")
    assert [job.job_id for job in synced] == [job.job_id for job in awaited]
    assert set(submitted["hello"]) <= {job.job_id for job in synced}
    assert {job.process_id for job in synced} == {"hello"}


def test_a_status_filter_lists_the_same_on_both(sandbox: SandboxServer, submitted):
    sandbox.admin.ignore_process_id(True)
    for job_id in submitted["fail"]:
        CCPHook().wait_for_job(job_id, poll_interval=0.1, timeout=60)
    synced, awaited = both("list_jobs", method_id="fail", status="failed")
    assert [job.job_id for job in synced] == [job.job_id for job in awaited]
    assert set(submitted["fail"]) <= {job.job_id for job in synced}
    assert {(job.process_id, job.status) for job in synced} == {("fail", "failed")}


def test_both_hooks_read_a_job_a_link_and_a_dismissal_alike(submitted):
    job_id = submitted["hello"][0]
    synced, awaited = both("get_job", job_id)
    assert (synced.job_id, synced.process_id) == (awaited.job_id, awaited.process_id) == (job_id, "hello")
    synced_link, awaited_link = both("execution_link", job_id)
    assert synced_link == awaited_link
    assert synced_link.endswith(f"/executions/{job_id}")
    synced, awaited = both("dismiss_job", "no-such-job")
    assert synced == awaited
    assert not synced.supported


def test_every_operation_of_the_async_hook_has_a_sync_twin_tested_here():
    # The hooks' own plumbing (settings, token, closing) is not an operation on CCP.
    plumbing = {"get_settings", "get_token", "aclose", "get_conn", "get_connection", "get_hook"}
    operations = {
        name
        for name, value in vars(CCPAsyncHook).items()
        if callable(value) and not name.startswith("_") and name not in plumbing
    }
    assert operations == {"iter_jobs", "get_job", "dismiss_job", "execution_link"}
    assert all(hasattr(CCPHook, {v: k for k, v in TWINS.items()}.get(name, name)) for name in operations)
