"""Starting from the triggerer (``start_from_trigger``) with real Airflow processes: the scheduler defers the
task without a worker, the triggerer renders its templates and submits, a worker only hands the outputs over.

Reuses the stack of test_real_airflow.py (its module-scoped fixtures); run one test at a time on a small machine.
"""

from __future__ import annotations

import json
import re
import secrets

import pendulum
import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.submission import XComRecord
from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import LocalAirflow
from tests.e2e.test_real_airflow import admin, ccp, stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
__all__ = ["admin", "ccp", "stack"]  # fixtures, used by name
RECORD = XComRecord.RECORD_KEY


def _queued_to_executor(stack: LocalAirflow, dag_id: str, run_id: str) -> dict[str, list[str]]:
    """When the scheduler handed each task of the run to the executor, by its log ("Trying to enqueue
    tasks: [<TaskInstance: ...>, ...]"): a worker runs a task only once it is enqueued."""
    task = re.compile(rf"<TaskInstance: {re.escape(dag_id)}\.(\S+) {re.escape(run_id)} ")
    found: dict[str, list[str]] = {}
    for line in stack.log_of("scheduler").read_text(errors="replace").splitlines():
        if "Trying to enqueue tasks:" in line:
            for task_id in task.findall(line):
                found.setdefault(task_id, []).append(line.split(" ", 1)[0])
    return found


def test_twenty_instant_executions_three_times_run_no_worker_before_they_end(stack: LocalAirflow, admin) -> None:  # type: ignore[no-untyped-def]
    dag_id = "ccp_e2e_start"
    watches = stack.run_and_watch(dag_id, runs=3, timeout=600, interval=0.5)
    run_ids = list(watches)

    tis = [ti for run_id in run_ids for ti in stack.task_instances(dag_id, run_id)]
    if [ti["state"] for ti in tis].count("success") != 60:
        pytest.fail("\n".join(stack.failure_report(dag_id, run_id) for run_id in run_ids))
    assert len(tis) == 60
    assert admin.executions_submitted("sleep") == 60
    for run_id in run_ids:
        queued = _queued_to_executor(stack, dag_id, run_id)
        for ti in stack.task_instances(dag_id, run_id):
            task_id = ti["task_id"]
            manifest = stack.xcom(dag_id, run_id, task_id)
            # The trigger submitted (only it keeps this record; a worker-started try clears every XCom) ...
            assert stack.xcom(dag_id, run_id, task_id, key=RECORD) is None
            # ... and the executor got the task once, for the resume, after the execution had ended.
            [enqueued] = queued[task_id]
            assert pendulum.parse(enqueued) >= pendulum.parse(manifest["finished"]), (enqueued, manifest)


def _wait_until_deferred(stack: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> None:
    def deferred() -> bool:
        return {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}.get(task_id) == "deferred"

    stack.wait_until(f"{task_id} to be deferred", deferred, timeout=120, interval=0.3)


def _recorded_job(stack: LocalAirflow, run_id: str) -> bool:
    try:
        record = stack.xcom("ccp_e2e_start_sleep", run_id, "sleep", key=RECORD)
    except Exception:  # not written yet: the API answers 404
        return False
    return bool((record or {}).get("job_id"))


@pytest.mark.parametrize("when", ["before the answer", "after the answer"])
def test_a_triggerer_killed_around_the_submission_leaves_one_execution(stack: LocalAirflow, admin, ccp, when) -> None:  # type: ignore[no-untyped-def]
    dag_id = "ccp_e2e_start_sleep"
    stack.wait_for_dag(dag_id)
    if when == "before the answer":
        # CCP creates the execution and the answer is lost; the trigger's lookup by the marker then hangs
        # long enough to kill the triggerer while only the marker is recorded.
        admin.lose_submission_answer("drop", method_id="sleep")
        admin.add_latency(r"^/executions$", 8, method="GET")
    run_id = stack.trigger(dag_id, conf={"seconds": "8"})
    _wait_until_deferred(stack, dag_id, run_id, "sleep")
    if when == "before the answer":
        looking = lambda: admin.requests_to("GET", "/executions") >= 1  # noqa: E731
        stack.wait_until("the lookup of the lost answer", looking, timeout=120, interval=0.2)
        assert admin.executions_submitted("sleep") == 1
    else:
        stack.wait_until("the job id to be recorded", lambda: _recorded_job(stack, run_id), timeout=120, interval=0.3)

    stack.kill("triggerer")  # SIGKILL: the process and its submitting thread die at once
    stack.start("triggerer")
    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    assert admin.executions_submitted("sleep") == 1
    log = stack.task_log(dag_id, run_id, "sleep")
    if when == "before the answer":  # the restarted trigger found the execution by the submission's marker
        assert "did not get the answer: looking for that execution" in log, log  # the new triggerer's
        assert "This try before its triggerer restarted submitted Method sleep" in log, log
        assert "created by that submission" in log, log
    else:
        assert "submitted by this try before its triggerer restarted" in log, log


def test_marking_the_task_failed_while_its_trigger_waits_dismisses_the_execution(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccp.admin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    dag_id = "ccp_e2e_start_sleep"
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id, conf={"seconds": "120"})
    stack.wait_until("the job id to be recorded", lambda: _recorded_job(stack, run_id), timeout=120, interval=0.3)
    job_id = stack.xcom(dag_id, run_id, "sleep", key=RECORD)["job_id"]

    stack.set_task_state(dag_id, run_id, "sleep", "failed")

    hook = CCPHook(ccp_conn_id="ccp_e2e")
    dismissed = lambda: hook.get_job(job_id).status == "dismissed"  # noqa: E731
    stack.wait_until(f"CCP job {job_id} to be dismissed", dismissed, timeout=60)


def _new_job(hook: CCPHook, before: set[str]) -> StatusInfo | None:
    """The one job of Method sleep not among ``before`` (the sandbox keeps the jobs of earlier tests)."""
    jobs = [job for job in hook.list_jobs(method_id="sleep") if job.job_id not in before]
    assert len(jobs) <= 1, jobs
    return jobs[0] if jobs else None


def _job_ids(hook: CCPHook) -> set[str]:
    return {job.job_id for job in hook.list_jobs(method_id="sleep")}


def test_marking_the_task_failed_during_its_submission_dismisses_the_execution_created_after_it(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccp.admin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    hook = CCPHook(ccp_conn_id="ccp_e2e")
    dag_id = "ccp_e2e_start_sleep"
    stack.wait_for_dag(dag_id)
    before = _job_ids(hook)
    ccp.admin.add_latency(r"/execution$", 12, method="POST")
    run_id = stack.trigger(dag_id, conf={"seconds": "120"})
    posted = lambda: ccp.admin.requests_to("POST", "/processes/{process_id}/execution") == 1  # noqa: E731
    stack.wait_until("the submission to be on its way", posted, timeout=120, interval=0.2)

    stack.set_task_state(dag_id, run_id, "sleep", "failed")

    dismissed = lambda: getattr(_new_job(hook, before), "status", None) == "dismissed"  # noqa: E731
    stack.wait_until("the execution created after the kill to be dismissed", dismissed, timeout=90)
    assert ccp.admin.executions_submitted("sleep") == 1
    job_id = _new_job(hook, before).job_id  # type: ignore[union-attr]
    logs = stack.log_of("triggerer").read_text(errors="replace") + stack.task_log(dag_id, run_id, "sleep")
    assert f"CCP job {job_id} was created after the task was killed" in logs


def test_execution_timeout_of_a_try_started_in_the_triggerer_dismisses_the_execution(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccp.admin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    dag_id = "ccp_e2e_start_timeout"
    stack.wait_for_dag(dag_id)
    hook = CCPHook(ccp_conn_id="ccp_e2e")
    before = _job_ids(hook)
    run_id = stack.trigger(dag_id)

    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "failed"
    job = _new_job(hook, before)
    assert job is not None
    assert job.status == "dismissed"
    log = stack.task_log(dag_id, run_id, "sleep")
    assert f"Airflow's timeout ended the wait for CCP job {job.job_id}: dismissing it" in log, log


def test_a_secret_input_rendered_in_the_triggerer_reaches_no_log_xcom_or_rendered_field(  # type: ignore[no-untyped-def]
    stack: LocalAirflow, admin
) -> None:
    secret = f"k3y-{secrets.token_hex(8)}"
    dag_id = "ccp_e2e_start_secret"
    stack.api("POST", "variables", json={"key": "ccp_e2e_key", "value": secret})
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id)
    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    assert admin.executions_submitted("hello") == 1
    log = stack.task_log(dag_id, run_id, "hello")
    assert "trigger" in log  # the trigger's part of the log is there
    assert secret not in log
    xcoms = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/hello/xcomEntries")["xcom_entries"]
    values = [stack.xcom(dag_id, run_id, "hello", key=entry["key"]) for entry in xcoms]
    assert RECORD in {entry["key"] for entry in xcoms}
    assert secret not in json.dumps(values, default=str)
    ti = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/hello")
    assert secret not in json.dumps(ti, default=str)
