"""CCPExecuteMethodOperator against the CCP sandbox, with a mocked task instance and no metadata DB."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ccp.exceptions import (
    CCPError,
    CCPInputError,
    CCPJobFailedError,
    CCPJobTimeoutError,
    CCPProtocolError,
)
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import DEFER_TIMEOUT_GRACE, STATE_KEY, CCPExecuteMethodOperator
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger, job_event
from tests.task_helpers import DictStore, finished_job, make_context, pushed, run_deferrable, task_log

pytestmark = pytest.mark.usefixtures("sandbox_conn")
__all__ = ["task_log"]  # a fixture, used by name


def operator(tmp_path: Path, **kwargs: Any) -> CCPExecuteMethodOperator:
    arguments: dict[str, Any] = {
        "task_id": "count",
        "method_id": "word-count",
        "inputs": {"text": "one two three"},
        "poll_interval": 0.05,
        "output_path": str(tmp_path / "out"),
    }
    return CCPExecuteMethodOperator(**(arguments | kwargs))


def request_of(job_id: str) -> dict[str, Any]:
    """What the sandbox received for an execution (its execution record keeps the request)."""
    return CCPHook().get_execution(job_id)["request"]


# ---------------------------------------------------------------------------------------------- deferral


def test_execute_defers_to_the_trigger_with_primitive_kwargs(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()
    context = make_context(store)
    op = operator(tmp_path, deferrable=True, poll_interval=7)

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    job_id = pushed(context)["ccp_job_id"]
    assert isinstance(deferred.value.trigger, CCPJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None
    assert deferred.value.trigger.serialize() == (
        "airflow_provider_ccp.triggers.ccp.CCPJobTrigger",
        {"conn_id": "ccp_default", "job_id": job_id, "poll_interval": 7.0, "end_time": None, "cancel_on_kill": True},
    )
    assert sandbox.admin.executions_submitted("word-count") == 1
    assert store.values == {STATE_KEY: job_id}


def test_xcoms_are_pushed_before_deferring(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    context = make_context()

    with pytest.raises(TaskDeferred):
        operator(tmp_path, deferrable=True).execute(context)

    xcoms = pushed(context)
    assert xcoms["ccp_job_url"] == f"{sandbox.url}/ui/executions/{xcoms['ccp_job_id']}"
    assert [call.kwargs["key"] for call in context["ti"].xcom_push.call_args_list] == ["ccp_job_id", "ccp_job_url"]


def test_timeout_becomes_the_triggers_deadline_and_airflows_comes_later(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    before = time.time()

    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, deferrable=True, timeout=120).execute(make_context())

    end_time = deferred.value.trigger.end_time
    assert before + 120 <= end_time <= time.time() + 120
    assert deferred.value.timeout > timedelta(seconds=120) + DEFER_TIMEOUT_GRACE - timedelta(seconds=5)


def test_execution_timeout_also_bounds_a_deferred_wait(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    op = operator(tmp_path, deferrable=True, timeout=600, execution_timeout=timedelta(seconds=30))

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())

    assert deferred.value.trigger.end_time <= time.time() + 30


def test_a_job_already_finished_at_the_first_check_skips_the_triggerer(sandbox, tmp_path, mocker):
    # The status answer is delayed long enough for the (fast) job to end before it is read.
    sandbox.admin.add_latency(r"^/jobs/", 1.0, method="GET")
    op = operator(tmp_path, deferrable=True)
    defer = mocker.patch.object(op, "defer")

    manifest = op.execute(make_context())

    defer.assert_not_called()
    assert manifest["status"] == "successful"


def test_wait_for_completion_false_returns_the_job_id_at_once(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    context = make_context()

    job_id = operator(tmp_path, wait_for_completion=False, deferrable=True).execute(context)

    assert job_id == pushed(context)["ccp_job_id"]
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 1


# ---------------------------------------------------------------------------------------------- inputs


def test_declared_defaults_are_filled_and_values_sent_as_strings(sandbox, tmp_path):
    job_id = operator(tmp_path, inputs={"text": 42}, wait_for_completion=False).execute(make_context())

    request = request_of(job_id)
    assert request["inputs"] == {"ccpimage": "bash", "ccpreplicas": "1", "mode": "words", "text": "42"}
    assert request["outputs"] == {"result": {"transmissionMode": "value"}}


def test_explicit_outputs_are_sent_as_given(sandbox, tmp_path):
    outputs = {"stdout": {"transmissionMode": "value"}}

    job_id = operator(tmp_path, outputs=outputs, wait_for_completion=False).execute(make_context())

    assert request_of(job_id)["outputs"] == outputs


def test_bad_inputs_fail_in_one_error_before_anything_is_submitted(sandbox, tmp_path):
    op = operator(tmp_path, inputs={"txt": "typo", "mode": "sentences", "ccpnote": "a CCP input is always fine"})

    with pytest.raises(CCPInputError) as raised:
        op.execute(make_context())

    message = str(raised.value)
    assert "unknown input 'txt'" in message
    assert "missing required input 'text'" in message
    assert "mode: 'sentences' is not one of words, lines, chars" in message
    assert "The Method accepts: " in message
    assert "text (required)" in message
    assert "ccpnote" not in message.split("The Method accepts")[0]
    assert sandbox.admin.executions_submitted("word-count") == 0


def test_a_secret_input_value_never_reaches_the_error(sandbox, tmp_path):
    description = CCPHook().get_method("hello")
    description["inputs"]["api_key"]["schema"]["enum"] = ["only-this"]
    from airflow_provider_ccp.inputs import prepare_inputs

    with pytest.raises(CCPInputError) as raised:
        prepare_inputs("hello", description, {"api_key": "s3cr3t-value"})

    assert "s3cr3t-value" not in str(raised.value)


# ---------------------------------------------------------------------------------------------- completion


def test_success_downloads_extracts_and_returns_a_small_manifest(sandbox, tmp_path, task_log):
    job = finished_job("word-count", {"text": "one two three", "mode": "words"})
    context = make_context()

    manifest = operator(tmp_path).execute_complete(context, event=job_event("success", job.job_id, "successful", ""))

    folder = tmp_path / "out" / "ccp_tests" / "manual__2025-01-01T00:00:00+00:00" / "count"
    assert manifest["job_id"] == job.job_id
    assert manifest["method_id"] == "word-count"
    assert manifest["status"] == "successful"
    assert manifest["archive"] == f"file://{folder}/output.zip"
    assert manifest["execution_url"] == f"{sandbox.url}/ui/executions/{job.job_id}"
    assert None not in (manifest["created"], manifest["started"], manifest["finished"])
    assert manifest["duration_seconds"] >= 0
    result = next(item for item in manifest["files"] if item["path"] == "result.json")
    assert result["uri"] == f"file://{folder}/output/result.json"
    assert json.loads((folder / "output" / "result.json").read_text()) == {"words": 3, "mode": "words"}
    assert result["size"] == (folder / "output" / "result.json").stat().st_size
    assert len(json.dumps(manifest)) < 4096  # paths and sizes, never file content
    assert 'last 1 line(s) of stdout.1.txt -----\n{"words": 3, "mode": "words"}' in task_log()
    assert "stderr.1.txt" not in task_log()  # empty


def test_mapped_task_instances_get_their_own_folder(sandbox, tmp_path):
    job = finished_job("word-count", {"text": "a b", "mode": "words"})

    manifest = operator(tmp_path).execute_complete(
        make_context(map_index=2), event=job_event("success", job.job_id, "successful", "")
    )

    assert manifest["archive"].endswith("/count/2/output.zip")


def test_extract_false_lists_the_archive_without_extracting(sandbox, tmp_path):
    job = finished_job("word-count", {"text": "a b", "mode": "words"})

    manifest = operator(tmp_path, extract=False).execute_complete(
        make_context(), event=job_event("success", job.job_id, "successful", "")
    )

    assert {"path": "result.json", "uri": None, "size": 30} in manifest["files"]
    assert not list((tmp_path / "out").rglob("result.json"))


def test_failure_logs_the_stderr_tail_and_raises_with_the_job_id(sandbox, tmp_path, task_log):
    job = finished_job("fail", {"message": "disk quota exceeded", "exit_code": "3"})
    event = job_event("failed", job.job_id, job.status, job.message)

    with pytest.raises(CCPJobFailedError) as raised:
        operator(tmp_path, method_id="fail").execute_complete(make_context(), event=event)

    assert raised.value.job_id == job.job_id
    assert job.job_id in str(raised.value)
    assert "disk quota exceeded" in task_log()
    assert job.message in task_log()


def test_failure_without_downloadable_logs_still_raises_the_job_failure(sandbox, tmp_path, task_log):
    job = finished_job("fail", {"message": "x", "exit_code": "1"})
    sandbox.admin.fail_next(r"/outputs/output\.zip$", 403)

    with pytest.raises(CCPJobFailedError):
        operator(tmp_path).execute_complete(make_context(), event=job_event("failed", job.job_id, "failed", "boom"))

    assert "Could not fetch the logs" in task_log()


def test_timeout_dismisses_the_execution_and_raises(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    context = make_context()
    job_id = operator(tmp_path, wait_for_completion=False).execute(context)

    with pytest.raises(CCPJobTimeoutError):
        operator(tmp_path).execute_complete(context, event=job_event("timeout", job_id, "accepted", "too slow"))

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 1
    assert CCPHook().get_job(job_id).status == "dismissed"


def test_error_event_raises(sandbox, tmp_path):
    with pytest.raises(CCPError, match="lost it"):
        operator(tmp_path).execute_complete(make_context(), event=job_event("error", "j-1", None, "lost it"))


@pytest.mark.parametrize("event", [None, {}, {"status": "done", "job_id": "j-1"}, {"status": "success"}])
def test_missing_or_unknown_events_raise_instead_of_succeeding(tmp_path, event):
    with pytest.raises(CCPProtocolError):
        operator(tmp_path).execute_complete(make_context(), event=event)


# ---------------------------------------------------------------------------------------------- the worker loop


def test_non_deferrable_run_polls_on_the_worker_and_returns_the_manifest(sandbox, tmp_path):
    manifest = operator(tmp_path, deferrable=False, method_id="sleep", inputs={"seconds": "0.3"}).execute(
        make_context()
    )

    assert manifest["status"] == "successful"
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") >= 2


def test_non_deferrable_timeout_dismisses_and_raises(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")

    with pytest.raises(CCPJobTimeoutError):
        operator(tmp_path, deferrable=False, timeout=0.3).execute(make_context())

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 1


def test_non_deferrable_failure_raises_the_job_failure(sandbox, tmp_path):
    op = operator(tmp_path, deferrable=False, method_id="fail", inputs={"message": "nope", "exit_code": "2"})

    with pytest.raises(CCPJobFailedError):
        op.execute(make_context())


def test_deferrable_full_cycle_without_a_triggerer(sandbox, tmp_path):
    op = operator(tmp_path, deferrable=True, method_id="sleep", inputs={"seconds": "0.3"})

    manifest = run_deferrable(op, make_context())

    assert manifest["status"] == "successful"
    assert sandbox.admin.executions_submitted("sleep") == 1


# ---------------------------------------------------------------------------------------------- kill


def test_on_kill_dismisses_the_known_job(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    op = operator(tmp_path, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(make_context())

    op.on_kill()

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 1
    assert CCPHook().get_job(op.job_id).status == "dismissed"


def test_on_kill_without_a_job_or_with_cancel_off_does_nothing(sandbox, tmp_path):
    operator(tmp_path).on_kill()
    op = operator(tmp_path, cancel_on_kill=False)
    op.job_id = "some-job"
    op.on_kill()

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 0


def test_on_kill_never_raises(sandbox, tmp_path, task_log):
    op = operator(tmp_path)
    op.job_id = "some-job"
    sandbox.admin.fail_next(r"^/jobs/", 403, method="DELETE")

    op.on_kill()

    assert "Could not dismiss CCP job some-job" in task_log()


# ---------------------------------------------------------------------------------------------- retries reattach


def test_retry_reattaches_to_a_running_job(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()
    with pytest.raises(TaskDeferred):
        operator(tmp_path, deferrable=True).execute(make_context(store))
    retry_context = make_context(store)

    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, deferrable=True).execute(retry_context)

    assert deferred.value.trigger.job_id == store.values[STATE_KEY]
    assert pushed(retry_context)["ccp_job_id"] == store.values[STATE_KEY]
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_retry_after_a_failed_download_reuses_the_finished_execution(sandbox, tmp_path):
    sandbox.admin.corrupt_output(mode="corrupt")
    store = DictStore()
    op = operator(tmp_path, deferrable=True)
    with pytest.raises(CCPError):
        run_deferrable(op, make_context(store))

    first_job = store.values[STATE_KEY]

    manifest = run_deferrable(operator(tmp_path, deferrable=True), make_context(store))

    assert manifest["job_id"] == first_job
    assert sandbox.admin.executions_submitted("word-count") == 1
    assert STATE_KEY not in store.values  # done: clearing the task later runs it again


def test_retry_after_success_reuses_the_execution_and_a_clear_after_success_does_not(sandbox, tmp_path):
    job = finished_job("word-count", {"text": "a", "mode": "words"})
    store = DictStore(**{STATE_KEY: job.job_id})

    assert operator(tmp_path).execute(make_context(store))["job_id"] == job.job_id
    assert operator(tmp_path).execute(make_context(store))["job_id"] != job.job_id
    assert sandbox.admin.executions_submitted("word-count") == 2  # finished_job's and the cleared run's


@pytest.mark.parametrize("earlier", ["failed", "vanished"])
def test_retry_resubmits_when_the_earlier_execution_failed_or_vanished(sandbox, tmp_path, earlier):
    previous = finished_job("fail", {"message": "x", "exit_code": "1"}).job_id if earlier == "failed" else "no-such-job"
    store = DictStore(**{STATE_KEY: previous})

    manifest = operator(tmp_path).execute(make_context(store))

    assert manifest["job_id"] != previous
    assert sandbox.admin.executions_submitted("word-count") == 1
