"""Many jobs at once: none blocks the API, all finish."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ccp_client import CCP

from ccp_sandbox.testing import SandboxServer

JOBS = 50


def test_fifty_concurrent_jobs(ccp: CCP, sandbox: SandboxServer) -> None:
    ccp.headers()
    with ThreadPoolExecutor(10) as pool:
        job_ids = list(pool.map(lambda n: ccp.start("hello", name=f"job {n}"), range(JOBS)))
    # The API must stay responsive while 50 jobs (and their zips) are under way.
    started = time.monotonic()
    assert ccp.get("/processes").status_code == 200
    assert time.monotonic() - started < 1
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda job_id: ccp.wait(job_id, timeout=60)["status"], job_ids))
    assert statuses == ["successful"] * JOBS
    assert len(set(job_ids)) == JOBS
    assert sandbox.admin.executions_submitted("hello") == JOBS
