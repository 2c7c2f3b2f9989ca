"""DELETE /jobs/{id}: the job's processes are really gone afterwards."""

from __future__ import annotations

from functools import partial

from ccp_client import CCP, group_is_gone, running_pids, wait_until


def test_dismissing_a_running_job_kills_its_process_groups(ccp: CCP) -> None:
    job_id = ccp.start("sleep", seconds="60", ccpreplicas="2")
    pids = running_pids(ccp, job_id, 2)

    answer = ccp.http.delete(f"{ccp.url}/jobs/{job_id}", headers=ccp.headers(), timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "dismissed"
    for pid in pids:
        wait_until(partial(group_is_gone, pid), timeout=2, what=f"process group {pid} to die")
    status = ccp.get(f"/jobs/{job_id}").json()
    assert (status["status"], status["message"]) == ("dismissed", "Dismissed by the user")
    assert status["finished"] is not None
    assert ccp.get(f"/executions/{job_id}/outputs/output.zip").status_code == 200
    assert ccp.get(f"/jobs/{job_id}/results").status_code == 410


def test_dismissing_finished_and_held_jobs(ccp: CCP) -> None:
    done = ccp.start("hello", name="done")
    ccp.wait(done)
    answer = ccp.http.delete(f"{ccp.url}/jobs/{done}", headers=ccp.headers(), timeout=10)
    assert answer.json()["status"] == "dismissed"

    ccp.sandbox.admin.hold_jobs("sleep", count=1)
    held = ccp.start("sleep", seconds="0")
    answer = ccp.http.delete(f"{ccp.url}/jobs/{held}", headers=ccp.headers(), timeout=10)
    assert answer.json()["status"] == "dismissed"
    assert ccp.get(f"/executions/{held}").json()["processes"] == []
