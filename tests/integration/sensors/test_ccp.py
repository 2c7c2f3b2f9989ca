"""CCPJobSensor against the CCP sandbox: poke mode, deferrable mode, same terminal semantics."""

from __future__ import annotations

import time

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_ccp.exceptions import CCPError, CCPJobFailedError, CCPProtocolError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.sensors.ccp import CCPJobSensor
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.waiting import MIN_DEFER_SECONDS, job_event
from tests.task_helpers import finished_job, make_context, run_deferrable, task_log

pytestmark = pytest.mark.usefixtures("sandbox_conn")
__all__ = ["task_log"]  # a fixture, used by name


def sensor(job_id: str, **kwargs) -> CCPJobSensor:
    return CCPJobSensor(**({"task_id": "wait", "job_id": job_id, "poke_interval": 0.05, "timeout": 30} | kwargs))


def held_job() -> str:
    return str(CCPHook().submit_execution("word-count", {"ccpimage": "bash", "text": "a", "mode": "words"}).job_id)


def test_poke_is_done_with_the_status_once_the_job_succeeded(sandbox):
    job = finished_job("word-count", {"text": "a", "mode": "words"})

    answer = sensor(job.job_id).poke(make_context())

    assert answer.is_done
    assert answer.xcom_value["status"] == "successful"
    assert answer.xcom_value["job_id"] == job.job_id


def test_poke_keeps_waiting_while_the_job_runs(sandbox):
    sandbox.admin.hold_jobs("word-count")

    assert not sensor(held_job()).poke(make_context()).is_done


def test_poke_mode_logs_a_status_once_while_it_lasts(sandbox, task_log):
    sandbox.admin.hold_jobs("word-count")
    job_id = held_job()
    waiting = sensor(job_id)

    for _ in range(3):
        waiting.poke(make_context())

    assert task_log().count(f"CCP job {job_id} is ") == 1


def test_poke_fails_at_once_on_a_failed_job(sandbox):
    job = finished_job("fail", {"message": "x", "exit_code": "1"})

    with pytest.raises(CCPJobFailedError):
        sensor(job.job_id).poke(make_context())


def test_poke_mode_execute_returns_the_status(sandbox):
    job_id = str(CCPHook().submit_execution("sleep", {"ccpimage": "bash", "seconds": "0.3"}).job_id)

    assert sensor(job_id).execute(make_context())["status"] == "successful"


def test_deferrable_defers_to_the_trigger_without_cancel_on_kill(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = held_job()

    with pytest.raises(TaskDeferred) as deferred:
        sensor(job_id, deferrable=True, poke_interval=3, timeout=60, ccp_retry_limit=2, ccp_retry_delay=0.1).execute(
            make_context()
        )

    trigger = deferred.value.trigger
    assert isinstance(trigger, CCPJobTrigger)
    assert trigger.job_id == job_id
    assert trigger.poll_interval == 3.0
    assert trigger.cancel_on_kill is False
    assert (trigger.retry_limit, trigger.retry_delay) == (2, 0.1)
    assert trigger.end_time == pytest.approx(time.time() + 60, abs=5)
    assert trigger.not_before == pytest.approx(time.time() + MIN_DEFER_SECONDS, abs=2)  # the defer race
    assert trigger.since == pytest.approx(time.time(), abs=2)  # the polls ramp up from the deferral


def test_deferrable_full_cycle(sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CCP__MIN_DEFER_SECONDS", "0")  # no scheduler to race with here
    job_id = str(CCPHook().submit_execution("sleep", {"ccpimage": "bash", "seconds": "0.3"}).job_id)

    assert run_deferrable(sensor(job_id, deferrable=True), make_context())["status"] == "successful"


def test_deferrable_finished_job_needs_no_trigger(sandbox):
    job = finished_job("word-count", {"text": "a", "mode": "words"})

    assert sensor(job.job_id, deferrable=True).execute(make_context())["status"] == "successful"


def test_execute_complete_semantics(sandbox):
    job = finished_job("word-count", {"text": "a", "mode": "words"})
    waiting = sensor(job.job_id, deferrable=True)

    assert waiting.execute_complete({}, job_event("success", job.job_id, "successful", ""))["job_id"] == job.job_id
    with pytest.raises(CCPJobFailedError):
        waiting.execute_complete({}, job_event("failed", job.job_id, "failed", "boom"))
    with pytest.raises(AirflowSensorTimeout):
        waiting.execute_complete({}, job_event("timeout", job.job_id, "running", "slow"))
    with pytest.raises(CCPError):
        waiting.execute_complete({}, job_event("error", job.job_id, None, "lost"))
    with pytest.raises(CCPProtocolError):
        waiting.execute_complete({}, None)


def test_an_error_the_trigger_marked_final_ends_the_sensor_without_retry_as_it_ends_the_operator(sandbox):
    waiting = sensor("j1", deferrable=True)

    with pytest.raises(AirflowFailException, match="refused"):
        waiting.execute_complete({}, job_event("error", "j1", None, "refused", final=True))
    with pytest.raises(CCPError, match="lost") as transient:
        waiting.execute_complete({}, job_event("error", "j1", None, "lost"))
    assert not isinstance(transient.value, AirflowFailException)  # Airflow's retries may still heal it
