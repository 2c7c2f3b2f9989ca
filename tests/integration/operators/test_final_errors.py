"""Errors a retry cannot heal end the task at once (``AirflowFailException``), whatever ``retries`` says."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPError,
    CCPInputError,
    CCPJobFailedError,
    CCPNotFoundError,
    CCPTrustError,
)
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.retries import as_final, is_final, is_transient
from airflow_provider_ccp.waiting import JobWatch, job_event
from tests.integration.operators.test_ccp import operator as operator_under_test
from tests.task_helpers import finished_job, make_context, task_log

pytestmark = pytest.mark.usefixtures("sandbox_conn")
__all__ = ["task_log"]  # a fixture, used by name


def operator(tmp_path: Path, **kwargs: Any) -> CCPExecuteMethodOperator:
    """The operator tests' task, with retries left: a final error must end the task anyway."""
    return operator_under_test(tmp_path, retries=2, **kwargs)


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (CCPInputError("unknown input 'txt'"), True),
        (CCPNotFoundError("no such Method", http_status=404, method_id="nope"), True),
        (CCPError("bad request", http_status=400), True),
        (CCPAuthError("forbidden", http_status=403), True),
        (CCPAuthError("token expired", http_status=401), False),
        (CCPError("timeout", http_status=408), False),
        (CCPError("slow down", http_status=429), False),
        (CCPError("server error", http_status=500), False),
        (CCPError("Could not reach CCP at http://127.0.0.1:1"), False),
    ],
)
def test_which_errors_are_final(error, final):
    assert is_final(error) is final


def test_only_retryable_errors_are_transient():
    assert is_transient(CCPError("down"))
    assert is_transient(CCPError("5xx", http_status=502))
    assert is_transient(CCPError("slow down", http_status=429))
    assert not is_transient(CCPError("forbidden", http_status=403))
    assert not is_transient(CCPNotFoundError("gone", http_status=404))
    assert not is_transient(CCPError("no such feature", http_status=501))
    # No HTTP status: the token flow itself refused (a rejected static token cannot be renewed).
    assert not is_transient(CCPAuthError("the token expired or was revoked"))
    assert is_transient(CCPAuthError("401 after a renewal", http_status=401))


def test_a_wait_rides_out_exactly_the_4xx_answers_that_do_not_end_a_task():
    # One reading of a status for both: a 4xx that ends the task at once is never ridden out by a
    # wait, and one a wait rides out never ends the task at once.
    for status in range(400, 500):
        error = CCPError(f"HTTP {status}", http_status=status)
        assert is_final(error) is not is_transient(error), status


def test_a_final_error_keeps_its_type_message_and_details():
    error = CCPNotFoundError("No Method 'nope'", http_status=404, method_id="nope", url="http://x/processes/nope")
    final = as_final(error)
    assert isinstance(final, CCPNotFoundError)
    assert isinstance(final, AirflowFailException)
    assert str(final) == "No Method 'nope'"
    assert (final.http_status, final.method_id, final.url) == (404, "nope", "http://x/processes/nope")
    assert type(final).__name__ == "CCPNotFoundError"


def test_bad_inputs_fail_the_task_without_retries(sandbox, tmp_path):
    op = operator(tmp_path, inputs={"txt": "typo"})
    with pytest.raises(CCPInputError) as raised:
        op.execute(make_context())
    assert isinstance(raised.value, AirflowFailException)
    assert "unknown input 'txt'" in str(raised.value)


def test_an_unknown_method_fails_the_task_without_retries(sandbox, tmp_path):
    with pytest.raises(CCPNotFoundError) as raised:
        operator(tmp_path, method_id="no-such-method").execute(make_context())
    assert isinstance(raised.value, AirflowFailException)


def test_a_server_error_is_left_to_the_retries(sandbox, tmp_path):
    task = operator(tmp_path, ccp_retry_limit=1, ccp_retry_delay=0.01)
    sandbox.admin.fail_next(r"/processes/word-count$", 500, count=20, method="GET")
    with pytest.raises(CCPError) as raised:
        task.execute(make_context())
    assert not isinstance(raised.value, AirflowFailException)


def test_the_task_log_names_the_files_delivered(sandbox, tmp_path, task_log):
    from tests.task_helpers import run_deferrable

    op = operator_under_test(tmp_path, method_id="make-files", inputs={"count": "3", "size": "10"})
    manifest = run_deferrable(op, make_context())
    log = task_log()
    assert manifest["files"]
    for item in manifest["files"]:
        assert f"  {item['path']} ({item['size']} bytes)" in log


# --------------------------------------------------------------------------- input values (issue 19)


def jobs_of(method_id: str) -> set[str]:
    return {job.job_id for job in CCPHook().list_jobs(method_id=method_id)}


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"text": None}, r"missing required input 'text' \(it is None\)"),
        ({"text": b"one two"}, r"'text' has a value of type bytes; expected text: decode the bytes"),
        ({"text": {"one", "two"}}, r"'text' has a value of type set; expected a list: a set has no order"),
        ({"text": "a", "ccpnote": frozenset()}, r"'ccpnote' has a value of type frozenset"),
        ({"text": "a", "ccpreplicas": "two"}, r"'ccpreplicas': 'two' is not an integer"),
        ({"text": "a", "mode": Decimal("NaN")}, r"'mode' has a value of type Decimal; expected a finite number"),
    ],
)
def test_a_value_with_no_reading_fails_the_task_in_one_line_and_nothing_is_sent(sandbox, tmp_path, inputs, expected):
    before = jobs_of("word-count")
    with pytest.raises(CCPInputError, match=expected) as raised:
        operator(tmp_path, inputs=inputs).execute(make_context())
    assert isinstance(raised.value, AirflowFailException)
    assert "\n" not in str(raised.value)
    assert jobs_of("word-count") == before


def test_none_for_an_optional_input_is_not_given_and_dates_and_decimals_read_the_obvious_way(sandbox, tmp_path):
    inputs = {
        "text": pendulum.datetime(2025, 1, 2, 3, 4, tz="UTC"),  # what native rendering gives for {{ logical_date }}
        "mode": None,
        "ccpreplicas": Decimal("2"),
        "ccpnote": dt.date(2025, 1, 2),
    }
    job_id = operator(tmp_path, inputs=inputs, wait_for_completion=False).execute(make_context())
    sent = CCPHook().get_execution(job_id)["request"]["inputs"]
    assert sent.pop("ccpnote").startswith("2025-01-02 [airflow-submission:")
    assert sent == {"ccpimage": "bash", "text": "2025-01-02T03:04:00+00:00", "mode": "words", "ccpreplicas": "2"}


# --------------------------------------------------------------------------- the first line of a failure (issue 20)


def provider_frames(error: BaseException) -> list[str]:
    """The provider's own frames in the traceback the task log shows."""
    return [
        frame.name for frame in traceback.extract_tb(error.__traceback__) if "airflow_provider_ccp" in frame.filename
    ]


def test_an_input_ccp_refuses_fails_with_its_reason_first_under_a_short_traceback(sandbox, tmp_path):
    # "0" is a whole number (the local check passes); the sandbox, like CCP, wants 1 or more.
    with pytest.raises(CCPError) as raised:
        operator(tmp_path, inputs={"text": "a", "ccpreplicas": "0"}).execute(make_context())
    # One line, which task logs and the UI's failure summary show whole: the reason first, then where.
    first, where = str(raised.value).rsplit(" from ", 1)
    assert first.startswith("Input 'ccpreplicas' must be an integer from 1")
    assert first.endswith("(HTTP 400 Bad Request)")
    assert len(first) < 120
    assert where == f"{sandbox.url}/processes/word-count/execution (Method 'word-count')"
    assert isinstance(raised.value, AirflowFailException)
    assert provider_frames(raised.value) == ["wrapper"]
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_a_failed_execution_says_why_first(sandbox, tmp_path):
    job = finished_job("fail", {"message": "disk quota exceeded", "exit_code": "3"})
    task = operator(tmp_path, method_id="fail", log_lines=0)
    with pytest.raises(CCPJobFailedError) as raised:
        task.execute_complete(make_context(), event=job_event("failed", job.job_id, job.status, job.message))
    assert str(raised.value) == (
        f"The CCP execution failed: {' '.join(job.message.split())} "
        f"(Method 'fail', job {job.job_id}: {sandbox.url}/ui/executions/{job.job_id})"  # CCP's UI
    )
    assert provider_frames(raised.value) == ["wrapper"]


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (CCPTrustError("Refused the redirect of GET http://x/jobs/j1 to http://elsewhere"), True),
        (CCPNotFoundError("No job 'j1'", http_status=404, job_id="j1"), True),
        (CCPAuthError("the token expired or was revoked"), False),
    ],
)
def test_a_wait_says_in_its_event_whether_the_error_that_ended_it_is_final(error, final):
    event = JobWatch("j1", 1.0, None, logging.getLogger("test")).on_error(error)
    assert event is not None
    assert event["status"] == "error"
    assert event.get("final", False) is final


def test_a_final_error_the_trigger_met_ends_the_task_without_retries(sandbox, tmp_path):
    op = operator(tmp_path, deferrable=True)
    final = job_event("error", "j1", "running", "Cannot follow CCP job j1: refused the redirect", final=True)
    with pytest.raises(CCPError, match="refused the redirect") as raised:
        op.execute_complete(make_context(), final)
    assert isinstance(raised.value, AirflowFailException)
    transient = job_event("error", "j1", "running", "Gave up on CCP job j1 after 6 failed polls in a row")
    with pytest.raises(CCPError, match="Gave up") as raised:
        op.execute_complete(make_context(), transient)
    assert not isinstance(raised.value, AirflowFailException)
