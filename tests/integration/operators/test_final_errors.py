"""Errors a retry cannot heal end the task at once (``AirflowFailException``), whatever ``retries`` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPError,
    CCPInputError,
    CCPNotFoundError,
    as_final,
    is_final,
    is_transient,
)
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from tests.integration.operators.test_ccp import operator as operator_under_test
from tests.task_helpers import make_context, task_log

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
