"""Starting a try in the triggerer (``start_from_trigger``, ``CCPStartTrigger``) against the CCP sandbox: one
execution per try across triggerer kills and retries, secrets, cancel on kill, bad input.

A "triggerer" here is one ``run()`` of a trigger with its own task instance; killing it cancels the run and
cuts that task instance off from the XComs (a killed process writes nothing more), while the sandbox still
answers what it was sent, as CCP would.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ccp import submission
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators import ccp as ccp_operator
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.submission import XComRecord
from airflow_provider_ccp.triggers.ccp import CCPStartTrigger
from airflow_provider_ccp.version_compat import AIRFLOW_V_3_3_PLUS
from tests.task_helpers import first_event, make_context, task_log

__all__ = ["task_log"]  # a fixture, used by name

pytestmark = [pytest.mark.usefixtures("sandbox_conn"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]
#: Starting in the triggerer is an Airflow >= 3.3 feature: 3.1 and 3.2 refuse it (the last test, on every line).
on_3_3 = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="start_from_trigger needs Airflow >= 3.3, refused before")

RECORD = XComRecord.RECORD_KEY


class KilledError(Exception):
    """What a task instance of a killed triggerer raises: the process is gone."""


IDENTITY = {"dag_id": "ccp_tests", "task_id": "count", "run_id": "manual__1", "map_index": -1}


class XComTable:
    """The XComs of the one task instance of these tests, by key, as the API server keeps them (JSON).
    Stands in for the SDK's ``XCom``, which needs a supervisor process to talk to."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def set(self, key: str, value: Any, **where: Any) -> None:
        assert where == IDENTITY
        self.values[key] = json.loads(json.dumps(value))

    def get_one(self, *, key: str, **where: Any) -> Any:
        assert where == IDENTITY
        return self.values.get(key)


@pytest.fixture
def xcoms(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    table = XComTable()
    monkeypatch.setattr(submission, "XCom", table)
    return table.values


class TriggererTI:
    """The task instance a triggerer gives a trigger. Once its triggerer is killed, nothing it does
    reaches the XComs any more: reading its identity raises."""

    def __init__(self, xcoms: dict[str, Any], try_number: int = 1) -> None:
        self.xcoms = xcoms
        self.try_number = try_number
        self.killed = False

    def __getattr__(self, name: str) -> Any:
        if name not in IDENTITY:
            raise AttributeError(name)
        if self.killed:
            raise KilledError(name)
        return IDENTITY[name]


def start_trigger(ti: TriggererTI, **kwargs: Any) -> CCPStartTrigger:
    """The trigger as the triggerer builds it from ``start_trigger_args``, its templates rendered."""
    arguments: dict[str, Any] = {"ccp_conn_id": "ccp_default", "method_id": "sleep", "inputs": {"seconds": "1"}}
    trigger = CCPStartTrigger(**(arguments | {"poll_interval": 0.2} | kwargs))
    trigger.task_instance = ti  # type: ignore[assignment]
    return trigger


async def kill_when(task: asyncio.Task, ti: TriggererTI, ready: Any, within: float = 20.0) -> None:
    """Kill the triggerer once ``ready(record)`` holds."""
    deadline = time.monotonic() + within
    while not ready(ti.xcoms.get(RECORD) or {}):
        assert time.monotonic() < deadline, ti.xcoms
        await asyncio.sleep(0.02)
    ti.killed = True
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def run_until_killed(ti: TriggererTI, ready: Any, **kwargs: Any) -> None:
    async def scenario() -> None:
        task = asyncio.ensure_future(first_event(start_trigger(ti, **kwargs)))
        await kill_when(task, ti, ready)
        await asyncio.sleep(3)  # the killed process's POST still reaches CCP

    asyncio.run(scenario())


@on_3_3
def test_a_triggerer_killed_between_the_post_and_its_answer_finds_the_execution(sandbox, xcoms):
    sandbox.admin.add_latency(r"/execution$", 1.5, method="POST")

    run_until_killed(TriggererTI(xcoms), lambda record: record.get("marker") and not record.get("job_id"))
    event = asyncio.run(first_event(start_trigger(TriggererTI(xcoms))))

    assert event["status"] == "success", event
    assert sandbox.admin.executions_submitted("sleep") == 1
    assert xcoms[RECORD]["job_id"] == event["job_id"]
    assert xcoms[RECORD]["try_number"] == 1


@on_3_3
def test_a_triggerer_killed_after_the_answer_reattaches_to_the_job(sandbox, xcoms, task_log):

    run_until_killed(TriggererTI(xcoms), lambda record: record.get("job_id"), inputs={"seconds": "2"})
    event = asyncio.run(first_event(start_trigger(TriggererTI(xcoms), inputs={"seconds": "2"})))

    assert event["status"] == "success", event
    assert event["job_id"] == xcoms[RECORD]["job_id"]
    assert sandbox.admin.executions_submitted("sleep") == 1
    log = task_log()
    assert f"Reattaching to CCP job {event['job_id']} (successful), submitted by this try before its triggerer" in log
    assert "earlier try" not in log


@on_3_3
def test_the_same_try_restarted_reports_its_failed_execution_instead_of_paying_again(sandbox, xcoms):
    inputs = {"message": "boom", "exit_code": "3"}
    first = asyncio.run(first_event(start_trigger(TriggererTI(xcoms), method_id="fail", inputs=inputs)))

    again = asyncio.run(first_event(start_trigger(TriggererTI(xcoms), method_id="fail", inputs=inputs)))
    retry = asyncio.run(first_event(start_trigger(TriggererTI(xcoms, 2), method_id="fail", inputs=inputs)))

    assert (first["status"], again["status"], again["job_id"]) == ("failed", "failed", first["job_id"])
    assert retry["status"] == "failed"
    assert retry["job_id"] != first["job_id"]  # a retry runs it again
    assert sandbox.admin.executions_submitted("fail") == 2


@on_3_3
def test_a_retry_started_from_the_trigger_reattaches_to_the_running_job(sandbox, xcoms, task_log):
    run_until_killed(TriggererTI(xcoms), lambda record: record.get("job_id"), inputs={"seconds": "2"})

    event = asyncio.run(first_event(start_trigger(TriggererTI(xcoms, try_number=2), inputs={"seconds": "2"})))

    assert event["status"] == "success", event
    assert sandbox.admin.executions_submitted("sleep") == 1
    assert "submitted by an earlier try" in task_log()


@on_3_3
def test_success_hands_over_on_a_worker_and_a_cleared_task_then_submits_anew(sandbox, tmp_path, xcoms):
    op = CCPExecuteMethodOperator(
        task_id="count",
        method_id="word-count",
        inputs={"text": "a b"},
        output_path=str(tmp_path),
        start_from_trigger=True,
    )
    event = asyncio.run(first_event(start_trigger(TriggererTI(xcoms), method_id="word-count", inputs={"text": "a b"})))
    context = make_context()
    context["ti"].run_id = IDENTITY["run_id"]

    manifest = op.execute_complete(context, event=event)

    assert manifest["status"] == "successful"
    assert xcoms[RECORD] is None  # done: a clear must not reattach to this execution
    cleared = asyncio.run(
        first_event(start_trigger(TriggererTI(xcoms, 2), method_id="word-count", inputs={"text": "a b"}))
    )
    assert cleared["job_id"] != event["job_id"]
    assert sandbox.admin.executions_submitted("word-count") == 2


@on_3_3
def test_bad_input_ends_the_try_with_one_final_line_and_nothing_sent(sandbox, tmp_path, xcoms):
    event = asyncio.run(first_event(start_trigger(TriggererTI(xcoms), inputs={"second": "1"})))
    op = CCPExecuteMethodOperator(task_id="t", method_id="sleep", output_path=str(tmp_path), start_from_trigger=True)

    assert (event["status"], event["job_id"], event.get("final")) == ("error", "", True)
    with pytest.raises(AirflowFailException) as raised:
        op.execute_complete(make_context(), event=event)
    assert "second" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert sandbox.admin.executions_submitted("sleep") == 0
    assert RECORD not in xcoms


@on_3_3
def test_cancel_on_kill_dismisses_the_job(sandbox, xcoms):
    ti = TriggererTI(xcoms)
    trigger = start_trigger(ti, inputs={"seconds": "30"})

    async def scenario() -> None:
        task = asyncio.ensure_future(first_event(trigger))
        await kill_when(task, ti, lambda record: record.get("job_id"))
        await trigger.on_kill()  # what the triggerer does when a user kills the task

    asyncio.run(scenario())

    status = CCPHook("ccp_default").get_job(ti.xcoms[RECORD]["job_id"]).status
    assert status == "dismissed"


@on_3_3
@pytest.mark.parametrize(
    ("cancel_on_kill", "status", "action"),
    [(True, "dismissed", "dismissing it"), (False, "running", "leaving it running (cancel_on_kill=False)")],
)
def test_a_kill_during_the_post_dismisses_the_job_created_after_it(
    sandbox, xcoms, task_log, cancel_on_kill, status, action
):
    sandbox.admin.add_latency(r"/execution$", 1.5, method="POST")
    ti = TriggererTI(xcoms)
    trigger = start_trigger(ti, inputs={"seconds": "30"}, cancel_on_kill=cancel_on_kill)

    async def scenario() -> None:
        task = asyncio.ensure_future(first_event(trigger))
        await kill_when(task, ti, lambda record: record.get("marker") and not record.get("job_id"))
        await trigger.on_kill()  # no job id yet: the POST is still on its way, on the submit thread

    asyncio.run(scenario())  # returns once the submit thread has ended

    assert sandbox.admin.executions_submitted("sleep") == 1
    assert CCPHook("ccp_default").get_job(trigger.job_id).status == status
    assert f"CCP job {trigger.job_id} was created after the task was killed: {action}" in task_log()


@on_3_3
def test_start_from_trigger_refuses_an_upstream_output_at_parse_time():
    from airflow.sdk import DAG, task

    with DAG("ccp_tests", schedule=None):

        @task
        def upstream() -> dict[str, str]:
            return {"seconds": "1"}

        output = upstream()
        with pytest.raises(ValueError, match=r"^start_from_trigger cannot take inputs from an upstream task's output"):
            CCPExecuteMethodOperator(task_id="a", method_id="sleep", inputs=output, start_from_trigger=True)
        nested = {"seconds": output["seconds"]}
        with pytest.raises(ValueError, match="cannot take inputs from"):
            CCPExecuteMethodOperator(task_id="b", method_id="sleep", inputs=nested, start_from_trigger=True)
        assert CCPExecuteMethodOperator(task_id="c", method_id="sleep", inputs=output).inputs is output


@on_3_3
def test_airflows_own_timeout_of_the_trigger_dismisses_the_job_on_the_worker_that_fails_the_task(sandbox, xcoms):
    ti = TriggererTI(xcoms)
    run_until_killed(ti, lambda record: record.get("job_id"), inputs={"seconds": "30"})  # what a timeout does
    op = CCPExecuteMethodOperator(task_id="count", method_id="sleep", inputs={"seconds": "30"}, start_from_trigger=True)
    context = make_context()
    context["ti"].run_id = IDENTITY["run_id"]
    from airflow.sdk.exceptions import TaskDeferralTimeout  # Airflow >= 3.3

    with pytest.raises(TaskDeferralTimeout):  # execution_timeout passed: Airflow resumes the task to fail it
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, context)

    assert CCPHook("ccp_default").get_job(xcoms[RECORD]["job_id"]).status == "dismissed"


@on_3_3
def test_secrets_stay_out_of_the_trigger_arguments_the_record_and_the_log(sandbox, task_log, monkeypatch, xcoms):
    secret = "s3cr3t-value-77"
    monkeypatch.setenv("AIRFLOW_VAR_NAME", secret)
    op = CCPExecuteMethodOperator(
        task_id="t",
        method_id="hello",
        inputs={"name": "{{ var.value.name }}"},
        secret_inputs=["name"],
        start_from_trigger=True,
    )
    trigger = start_trigger(TriggererTI(xcoms), method_id="hello", inputs={"name": secret}, secret_inputs=["name"])

    event = asyncio.run(first_event(trigger))

    assert event["status"] == "success", event
    assert op.start_trigger_args.trigger_kwargs["inputs"] == {"name": "{{ var.value.name }}"}
    assert secret not in json.dumps(op.start_trigger_args.trigger_kwargs)
    assert secret not in json.dumps(xcoms)
    assert secret not in task_log()


def test_start_from_trigger_is_refused_where_it_cannot_keep_its_guarantees(monkeypatch):
    monkeypatch.setattr(ccp_operator, "AIRFLOW_V_3_3_PLUS", False)
    with pytest.raises(ValueError, match=r"start_from_trigger needs Airflow >= 3\.3"):
        CCPExecuteMethodOperator(task_id="t", method_id="sleep", start_from_trigger=True)
    monkeypatch.setattr(ccp_operator, "AIRFLOW_V_3_3_PLUS", True)
    with pytest.raises(ValueError, match="start_from_trigger needs wait_for_completion=True"):
        CCPExecuteMethodOperator(task_id="t", method_id="sleep", start_from_trigger=True, wait_for_completion=False)
    assert CCPExecuteMethodOperator(task_id="t", method_id="sleep").start_trigger_args is None
