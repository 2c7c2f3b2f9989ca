"""CCPExecuteMethodOperator against the CCP sandbox, with a mocked task instance and no metadata DB."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY, MagicMock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import DAG
from airflow.sdk._shared.secrets_masker import redact

from airflow_provider_ccp import protocol
from airflow_provider_ccp.exceptions import (
    CCPError,
    CCPInputError,
    CCPJobFailedError,
    CCPJobTimeoutError,
    CCPProtocolError,
)
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import prepare_inputs, public_inputs
from airflow_provider_ccp.operators import ccp as operator_module
from airflow_provider_ccp.operators.ccp import DEFER_TIMEOUT_GRACE, CCPExecuteMethodOperator
from airflow_provider_ccp.submission import STATE_KEY, request_fingerprint
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.version_compat import trigger_kwargs_hidden
from airflow_provider_ccp.waiting import FIRST_POLL_SECONDS, POLL_JITTER, job_event
from tests.integration.doubles import RealWaits
from tests.task_helpers import DictStore, finished_job, first_event, make_context, pushed, run_deferrable, task_log

pytestmark = pytest.mark.usefixtures("sandbox_conn")
__all__ = ["task_log"]  # a fixture, used by name


def operator(tmp_path: Path, **kwargs: Any) -> CCPExecuteMethodOperator:
    arguments: dict[str, Any] = {
        "task_id": "count",
        "method_id": "word-count",
        "inputs": {"text": "one two three"},
        "poll_interval": 0.05,
        "output_path": str(tmp_path / "out"),
        # No scheduler here to race with (docs/operators.md); the hold has tests of its own.
        "min_defer_seconds": 0,
    }
    return CCPExecuteMethodOperator(**(arguments | kwargs))


def request_of(job_id: str) -> dict[str, Any]:
    """What the sandbox received for an execution (its execution record keeps the request)."""
    return CCPHook().get_execution(job_id)["request"]


def remembered(job_id: str, op: CCPExecuteMethodOperator) -> DictStore:
    """The task state store as an earlier try of ``op`` left it after submitting ``job_id``."""
    inputs = prepare_inputs(op.method_id, CCPHook().get_method(op.method_id), op.inputs or {})
    return DictStore(**{STATE_KEY: {"job_id": job_id, "fingerprint": request_fingerprint(op.method_id, inputs)}})


def stored_id(store: DictStore) -> str:
    return str(store.values[STATE_KEY]["job_id"])


# ---------------------------------------------------------------------------------------------- deferral


def test_execute_defers_to_the_trigger_with_primitive_kwargs(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()
    context = make_context(store)
    op = operator(tmp_path, deferrable=True, poll_interval=7, min_defer_seconds=4)

    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    job_id = pushed(context)["job_id"]
    assert isinstance(deferred.value.trigger, CCPJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "airflow_provider_ccp.triggers.ccp.CCPJobTrigger"
    assert before + 4 <= kwargs.pop("not_before") <= time.time() + 4
    assert before <= kwargs.pop("since") <= time.time()  # the polls ramp up from the deferral
    assert kwargs == {
        "conn_id": "ccp_default",
        "job_id": job_id,
        "poll_interval": 7.0,
        "end_time": None,
        "cancel_on_kill": True,
    }
    assert sandbox.admin.executions_submitted("word-count") == 1
    assert store.values == {STATE_KEY: {"job_id": job_id, "fingerprint": ANY, "marker": ANY, "submitted_at": ANY}}


def test_secret_values_reach_the_trigger_only_where_airflows_api_hides_trigger_arguments(sandbox, tmp_path):
    """Before Airflow 3.3.2 the REST API shows a deferred task's trigger arguments in clear: there the trigger
    gets no secret value and withholds CCP's words, and the failure still reads CCP's reason, secret hidden."""
    secret = "s3cret-value-of-an-input"
    op = operator(
        tmp_path, method_id="fail", inputs={"message": secret, "exit_code": "3"}, secret_inputs=["message"],
        deferrable=True, log_lines=0,
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    kwargs = deferred.value.trigger.serialize()[1]
    if trigger_kwargs_hidden():
        assert (kwargs["secrets"], "withhold_messages" in kwargs) == ([secret], False)
    else:
        assert secret not in json.dumps(kwargs)
        assert kwargs["withhold_messages"] is True

    event = asyncio.run(first_event(deferred.value.trigger))
    with pytest.raises(CCPJobFailedError) as failed:
        op.execute_complete(make_context(), event=event)

    assert secret not in json.dumps(event)
    assert str(failed.value).startswith("The CCP execution failed: ")
    assert "***" in str(failed.value).splitlines()[0]
    assert secret not in str(failed.value)


def test_the_ccp_retry_policy_reaches_the_worker_and_the_trigger(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    op = operator(tmp_path, deferrable=True, ccp_retry_limit=1, ccp_retry_delay=0.01)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context())
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["retry_limit"], kwargs["retry_delay"]) == (1, 0.01)

    sandbox.admin.fail_next(r"^/processes/word-count$", 503, count=2, method="GET")
    with pytest.raises(CCPError, match="503"):  # its one retry met the second 503
        operator(tmp_path, ccp_retry_limit=1, ccp_retry_delay=0.01).execute(make_context())
    assert sandbox.admin.executions_submitted("word-count") == 1  # only the deferred one above


def test_xcoms_are_pushed_before_deferring(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    context = make_context()

    with pytest.raises(TaskDeferred):
        operator(tmp_path, deferrable=True).execute(context)

    xcoms = pushed(context)
    assert xcoms["execution_url"] == f"{sandbox.url}/ui/executions/{xcoms['job_id']}"
    assert [call.kwargs["key"] for call in context["ti"].xcom_push.call_args_list] == ["job_id", "execution_url"]


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


def test_a_job_the_submission_answer_reports_finished_skips_the_triggerer(sandbox, tmp_path, mocker):
    # A server may run a short execution before it answers the POST: its statusInfo says so.
    submit = CCPHook.submit_execution

    def finished_at_once(hook: CCPHook, *args: Any, **kwargs: Any) -> protocol.StatusInfo:
        job_id = submit(hook, *args, **kwargs).job_id
        return hook.wait_for_job(job_id, poll_interval=0.05, timeout=30)

    mocker.patch.object(CCPHook, "submit_execution", autospec=True, side_effect=finished_at_once)
    op = operator(tmp_path, deferrable=True)
    defer = mocker.patch.object(op, "defer")

    manifest = op.execute(make_context())

    defer.assert_not_called()
    assert manifest["status"] == "successful"


def test_wait_for_completion_false_returns_the_job_id_at_once(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    context = make_context()

    job_id = operator(tmp_path, wait_for_completion=False, deferrable=True).execute(context)

    assert job_id == pushed(context)["job_id"]
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 0  # the submission's answer has the status


def test_wait_for_completion_false_forgets_the_job_id(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()

    first = operator(tmp_path, wait_for_completion=False).execute(make_context(store))
    again = operator(tmp_path, wait_for_completion=False).execute(make_context(store))  # the task cleared

    assert STATE_KEY not in store.values
    assert again != first
    assert sandbox.admin.executions_submitted("word-count") == 2


def test_a_status_check_failing_right_after_submission_does_not_fail_the_try(sandbox, tmp_path):
    sandbox.admin.hold_jobs("word-count")
    sandbox.admin.fail_next(r"^/jobs/", 403, method="GET")
    context = make_context()

    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, deferrable=True).execute(context)

    assert deferred.value.trigger.job_id == pushed(context)["job_id"]


def test_a_submission_answer_without_a_status_falls_back_to_asking(sandbox, tmp_path, mocker):
    submit = CCPHook.submit_execution

    def no_status(hook: CCPHook, *args: Any, **kwargs: Any) -> protocol.StatusInfo:
        return replace(submit(hook, *args, **kwargs), status="")

    mocker.patch.object(CCPHook, "submit_execution", autospec=True, side_effect=no_status)
    sandbox.admin.hold_jobs("word-count")

    with pytest.raises(TaskDeferred):
        operator(tmp_path, deferrable=True).execute(make_context())

    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 1


def test_a_failing_xcom_push_cannot_lose_the_job_id(sandbox, tmp_path, task_log):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()
    context = make_context(store)
    context["ti"].xcom_push.side_effect = RuntimeError("XCom backend down")

    with pytest.raises(RuntimeError, match="XCom backend down"):
        operator(tmp_path, deferrable=True).execute(context)

    job_id = stored_id(store)
    assert f"CCP job {job_id} runs Method word-count" in task_log()
    with pytest.raises(TaskDeferred) as deferred:  # the retry
        operator(tmp_path, deferrable=True).execute(make_context(store))
    assert deferred.value.trigger.job_id == job_id
    assert sandbox.admin.executions_submitted("word-count") == 1


# ---------------------------------------------------------------------------------------------- inputs


def test_declared_defaults_are_filled_and_values_sent_as_strings(sandbox, tmp_path):
    job_id = operator(tmp_path, inputs={"text": 42}, wait_for_completion=False).execute(make_context())

    request = request_of(job_id)
    note = request["inputs"].pop("ccpnote")  # the submission's identity (see the ambiguous-submission tests)
    assert re.fullmatch(r"\[airflow-submission:[0-9a-f]{32}\]", note)
    assert request["inputs"] == {"ccpimage": "bash", "ccpreplicas": "1", "mode": "words", "text": "42"}
    # What CCP's execution form asks for: the declared outputs, and stdout/stderr captured.
    assert request["outputs"] == {name: {"transmissionMode": "value"} for name in ("result", "stdout", "stderr")}


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


def test_secret_inputs_are_masked_as_soon_as_templates_are_rendered(sandbox, tmp_path):
    secret, name = f"key-{secrets.token_hex(8)}", f"name-{secrets.token_hex(8)}"
    op = operator(tmp_path, method_id="hello", inputs={"name": "{{ params.name }}", "api_key": "{{ params.key }}"})

    op.render_template_fields({"params": {"name": name, "key": secret}})

    assert op.inputs == {"name": name, "api_key": secret}
    assert redact(f"shown {json.dumps(op.inputs)}") == f"shown {json.dumps({'name': name, 'api_key': '***'})}"


def secret_forms(salt: int) -> dict[str, tuple[Any, list[str]]]:
    """Secret values of each type and the strings that must not show; ``salt`` keeps them new per test."""
    word = f"secret-{salt}"
    return {
        "int": (9876543210000 + salt, [str(9876543210000 + salt)]),
        "float": (12345.5 + salt, [str(12345.5 + salt)]),
        "list": ([f"alpha-{word}", 7654321000 + salt], [f"alpha-{word}", str(7654321000 + salt)]),
        "dict": ({"region": f"nested-{word}"}, [f"nested-{word}"]),
        "bool-list": ([True, f"gamma-{word}"], [f"gamma-{word}"]),
    }


@pytest.mark.parametrize("form", ["int", "float", "list", "dict", "bool-list"])
def test_a_secret_input_of_any_form_is_masked_in_rendered_templates(sandbox, tmp_path, form):
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    value, pieces = secret_forms(secrets.randbelow(10**6))[form]
    op = operator(tmp_path, method_id="hello", inputs={"name": "visible-name", "api_key": "{{ params.key }}"})
    op.render_template_fields({"params": {"key": value}})
    op.inputs = {"name": "visible-name", "api_key": value}
    op._mask_secret_inputs()  # what rendering does; a native-typed template renders such values

    shown = json.dumps(_serialize_rendered_fields(op))

    assert "visible-name" in shown
    for piece in pieces:
        assert piece not in shown, shown
    description = CCPHook().get_method("hello")
    if isinstance(value, list):  # api_key takes one value: a list is refused, its items never shown
        with pytest.raises(CCPInputError, match=r"api_key: a list of 2 values") as refused:
            prepare_inputs("hello", description, op.inputs)
        assert not [piece for piece in pieces if piece in str(refused.value)]
        return
    sent = protocol.string_inputs(prepare_inputs("hello", description, op.inputs))
    assert sent["api_key"] == protocol.input_value_to_string("api_key", value)


@pytest.mark.parametrize("given", ["text=hello", ["text", "hello"], "", []])
def test_inputs_that_are_not_a_mapping_are_one_clear_error_and_nothing_is_sent(sandbox, tmp_path, given):
    op = operator(tmp_path, inputs=given)

    with pytest.raises(CCPInputError, match=r"^inputs of Method 'word-count' must be a mapping of input ids to values"):
        op.execute(make_context(DictStore()))

    assert sum(sandbox.admin.counters()["requests"].values()) == 0


def test_rendering_and_execute_read_the_method_description_once(sandbox, tmp_path):
    op = operator(tmp_path, method_id="hello", inputs={"name": "{{ params.name }}"}, wait_for_completion=False)
    op.render_template_fields({"params": {"name": "ada"}})

    op.execute(make_context(DictStore()))

    assert sandbox.admin.requests_to("GET", "/processes/{process_id}") == 1


def test_secret_inputs_of_a_mapped_task_are_masked_when_rendered(sandbox, tmp_path):
    secret = f"key-{secrets.token_hex(8)}"
    with DAG("ccp_tests", schedule=None, params={"key": secret}) as dag:
        mapped = CCPExecuteMethodOperator.partial(task_id="hello", method_id="hello").expand(
            inputs=[{"api_key": "{{ params.key }}"}]
        )
    context: dict[str, Any] = make_context(map_index=0) | {"dag": dag, "dag_run": MagicMock(conf={})}

    mapped.render_template_fields(context)

    assert context["task"].inputs == {"api_key": secret}
    assert redact(secret) == "***"


def test_rendering_survives_an_unreachable_ccp(sandbox, tmp_path, task_log):
    secret = f"key-{secrets.token_hex(8)}"
    sandbox.admin.fail_next(r"^/processes/hello$", 403, method="GET")
    op = operator(tmp_path, method_id="hello", inputs={"api_key": "{{ params.key }}"})

    op.render_template_fields({"params": {"key": secret}})

    assert op.inputs == {"api_key": secret}
    assert "Could not read Method hello to mask its secret inputs" in task_log()


def test_inputs_the_task_lists_as_secret_are_masked_even_when_ccp_cannot_be_reached(sandbox, tmp_path, task_log):
    name = f"name-{secrets.token_hex(8)}"
    sandbox.admin.fail_next(r"^/processes/hello$", 403, method="GET")
    op = operator(tmp_path, method_id="hello", inputs={"name": "{{ params.name }}"}, secret_inputs=["name"])

    op.render_template_fields({"params": {"name": name}})

    assert op.inputs == {"name": name}
    assert redact(f"shown {name}") == "shown ***"
    assert "Could not read Method hello" in task_log()


def test_an_input_listed_as_secret_stays_out_of_rendered_templates_and_the_fingerprint(sandbox, tmp_path):
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    name, text = f"name-{secrets.token_hex(8)}", f"plain-{secrets.token_hex(8)}"
    op = operator(
        tmp_path, method_id="hello", inputs={"name": "{{ params.name }}", "ccpnote": text}, secret_inputs=["name"]
    )
    op.render_template_fields({"params": {"name": name}})

    shown = json.dumps(_serialize_rendered_fields(op))
    assert name not in shown
    assert text in shown  # only what is listed (or declared) secret is hidden
    # What the retry fingerprint is made of (execute): the listed input is not part of it.
    assert public_inputs(op._method_description(), {"name": name, "ccpnote": text}) == {"ccpnote": text}


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
    assert "of stderr.1.txt -----" not in task_log()  # empty: no tail (the file list still names it)


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


def test_an_unexpected_error_fetching_the_logs_still_raises_the_job_failure(sandbox, tmp_path, mocker, task_log):
    unexpected = ValueError("not what anyone expected")
    mocker.patch("airflow_provider_ccp.operators._completion.fetch_tails", side_effect=unexpected)

    with pytest.raises(CCPJobFailedError):
        operator(tmp_path).execute_complete(make_context(), event=job_event("failed", "job-1", "failed", "boom"))

    assert "Could not fetch the logs of CCP job job-1: not what anyone expected" in task_log()


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


def test_the_workers_wait_notices_a_short_job_within_a_second_at_the_default_interval(sandbox, tmp_path):
    op = operator(tmp_path, deferrable=False, method_id="sleep", inputs={"seconds": "1.5"}, poll_interval=30)
    op.hook.clock = clock = RealWaits()

    assert op.execute(make_context())["status"] == "successful"

    # Polled at once, then each wait half the time waited, a second at least: not a 30 s wait.
    assert clock.waits
    assert max(clock.waits) <= FIRST_POLL_SECONDS * (1 + POLL_JITTER)
    assert sum(clock.waits) <= 1.5 + FIRST_POLL_SECONDS


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


@pytest.mark.parametrize("process", ["resumed after deferral", "worker loop"])
def test_on_kill_during_the_download_leaves_the_finished_job_alone(sandbox, tmp_path, mocker, process):
    op = operator(tmp_path, deferrable=False)
    store_outputs = operator_module.store_outputs

    def killed_while_downloading(*args: Any, **kwargs: Any) -> Any:
        op.on_kill()
        return store_outputs(*args, **kwargs)

    mocker.patch.object(operator_module, "store_outputs", side_effect=killed_while_downloading)
    if process == "worker loop":
        manifest = op.execute(make_context())
    else:
        job = finished_job("word-count", {"text": "a", "mode": "words"})
        manifest = op.execute_complete(make_context(), event=job_event("success", job.job_id, "successful", ""))

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 0
    assert manifest["files"]


def test_on_kill_without_a_job_or_with_cancel_off_does_nothing(sandbox, tmp_path):
    operator(tmp_path).on_kill()
    op = operator(tmp_path, cancel_on_kill=False)
    op.job_id = "some-job"
    op.on_kill()

    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 0


def test_on_kill_never_raises(sandbox, tmp_path, task_log):
    op = operator(tmp_path)
    op.job_id, op._job_may_run = "some-job", True
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

    assert deferred.value.trigger.job_id == stored_id(store)
    assert pushed(retry_context)["job_id"] == stored_id(store)
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_retry_with_other_inputs_submits_a_new_execution(sandbox, tmp_path, task_log):
    sandbox.admin.hold_jobs("word-count")
    store = DictStore()
    with pytest.raises(TaskDeferred):
        operator(tmp_path, deferrable=True).execute(make_context(store))
    first_job = stored_id(store)

    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, deferrable=True, inputs={"text": "edited"}).execute(make_context(store))

    assert deferred.value.trigger.job_id == stored_id(store) != first_job
    assert sandbox.admin.executions_submitted("word-count") == 2
    assert f"CCP job {first_job} of an earlier try ran another Method or other inputs" in task_log()


def test_a_plain_job_id_stored_by_an_earlier_version_is_still_reattached(sandbox, tmp_path):
    job = finished_job("word-count", {"text": "a", "mode": "words"})

    manifest = operator(tmp_path).execute(make_context(DictStore(**{STATE_KEY: job.job_id})))

    assert manifest["job_id"] == job.job_id


def test_retry_after_a_failed_download_reuses_the_finished_execution(sandbox, tmp_path):
    sandbox.admin.corrupt_output(mode="corrupt")
    store = DictStore()
    op = operator(tmp_path, deferrable=True)
    with pytest.raises(CCPError):
        run_deferrable(op, make_context(store))

    first_job = stored_id(store)

    manifest = run_deferrable(operator(tmp_path, deferrable=True), make_context(store))

    assert manifest["job_id"] == first_job
    assert sandbox.admin.executions_submitted("word-count") == 1
    assert STATE_KEY not in store.values  # done: clearing the task later runs it again


def test_retry_after_success_reuses_the_execution_and_a_clear_after_success_does_not(sandbox, tmp_path):
    job = finished_job("word-count", {"text": "a", "mode": "words"})
    store = remembered(job.job_id, operator(tmp_path))

    assert operator(tmp_path).execute(make_context(store))["job_id"] == job.job_id
    assert operator(tmp_path).execute(make_context(store))["job_id"] != job.job_id
    assert sandbox.admin.executions_submitted("word-count") == 2  # finished_job's and the cleared run's


@pytest.mark.parametrize("earlier", ["failed", "vanished"])
def test_retry_resubmits_when_the_earlier_execution_failed_or_vanished(sandbox, tmp_path, earlier):
    previous = finished_job("fail", {"message": "x", "exit_code": "1"}).job_id if earlier == "failed" else "no-such-job"
    store = remembered(previous, operator(tmp_path))

    manifest = operator(tmp_path).execute(make_context(store))

    assert manifest["job_id"] != previous
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_secret_inputs_stay_out_of_the_stored_fingerprint(sandbox, tmp_path):
    sandbox.admin.hold_jobs("hello")
    store = DictStore()
    hello = {"method_id": "hello", "deferrable": True}
    with pytest.raises(TaskDeferred):
        operator(tmp_path, inputs={"name": "ada", "api_key": "s3cr3t-1"}, **hello).execute(make_context(store))
    first_job = stored_id(store)

    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, inputs={"name": "ada", "api_key": "rotated-2"}, **hello).execute(make_context(store))

    assert deferred.value.trigger.job_id == first_job
    assert sandbox.admin.executions_submitted("hello") == 1
    public = {"name": "ada", "ccpimage": "bash", "ccpreplicas": "1"}
    assert store.values[STATE_KEY]["fingerprint"] == request_fingerprint("hello", public)


def test_input_files_are_withheld_when_a_secret_input_was_sent_or_cannot_be_ruled_out(sandbox, tmp_path):
    plain = finished_job("hello", {"name": "ada"})
    secret = finished_job("hello", {"name": "ada", "api_key": f"key-{secrets.token_hex(8)}"})

    shown = operator(tmp_path / "plain", method_id="hello", inputs={"name": "ada"}).execute_complete(
        make_context(), event=job_event("success", plain.job_id, "successful", "")
    )
    hidden = operator(tmp_path / "secret", method_id="hello", inputs={"name": "ada", "api_key": "x"}).execute_complete(
        make_context(), event=job_event("success", secret.job_id, "successful", "")
    )
    sandbox.admin.fail_next(r"^/processes/hello$", 404, count=2, method="GET")
    unknown = operator(tmp_path / "unknown", method_id="hello", inputs={"name": "ada"}).execute_complete(
        make_context(), event=job_event("success", plain.job_id, "successful", "")
    )

    assert shown["withheld"] == []
    assert {"ccp-entrypoint.sh", "ccpenv"} <= {item["path"] for item in shown["files"]}
    assert sorted(hidden["withheld"]) == sorted(unknown["withheld"]) == ["ccp-entrypoint.sh", "ccpenv"]
    assert not {"ccp-entrypoint.sh", "ccpenv"} & {item["path"] for item in hidden["files"] + unknown["files"]}
