"""A submission whose answer is lost (the job was created, then a 502 or a hang-up): never a second execution.

Each case runs the task the way Airflow retries it (``retries=2``): a new operator and new XComs per
try; with a task state store (Airflow >= 3.3) or without one (3.1, 3.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_ccp import submission
from airflow_provider_ccp.exceptions import CCPAmbiguousSubmissionError, CCPError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import prepare_inputs
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.submission import STATE_KEY, request_fingerprint
from tests.task_helpers import DictStore, make_context, pushed, run_deferrable, task_log

pytestmark = pytest.mark.usefixtures("sandbox_conn")
__all__ = ["task_log"]

EXECUTIONS = r"^/executions$"
FOREVER = 1000


@pytest.fixture(autouse=True)
def short_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup's patience, shortened where a test waits for it to conclude "nothing was created"."""
    monkeypatch.setattr(submission, "LOOKUP_SECONDS", 1.0)
    monkeypatch.setattr(submission, "LOOKUP_INTERVAL", 0.2)


def count_words(tmp_path, **kwargs: Any) -> Callable[[], CCPExecuteMethodOperator]:
    arguments = {
        "task_id": "count",
        "method_id": "word-count",
        "inputs": {"text": "one two", "ccpnote": "nightly run"},
        "poll_interval": 0.05,
        "output_path": str(tmp_path),
        "min_defer_seconds": 0,
        "ccp_retry_delay": 0.01,
    }
    return lambda: CCPExecuteMethodOperator(**(arguments | kwargs))


def run_tries(make_operator: Callable[[], CCPExecuteMethodOperator], store: DictStore | None, retries: int = 2):
    """Try like Airflow does: a fresh operator and fresh XComs each try; AirflowFailException ends it."""
    errors: list[Exception] = []
    for _ in range(retries + 1):
        context = make_context(store)
        try:
            return run_deferrable(make_operator(), context), context, errors
        except AirflowFailException:
            raise
        except Exception as err:
            errors.append(err)
    raise errors[-1]


STORES = pytest.mark.parametrize("store", [DictStore, None], ids=["airflow-3.3", "airflow-3.1"])
MODES = pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
FAULTS = pytest.mark.parametrize("fault", ["status", "drop"], ids=["created-then-502", "created-then-hang-up"])


@FAULTS
@MODES
@STORES
def test_a_lost_answer_is_found_and_the_run_succeeds_with_one_execution(sandbox, tmp_path, fault, deferrable, store):
    sandbox.admin.lose_submission_answer(fault, method_id="word-count")

    manifest, context, errors = run_tries(count_words(tmp_path, deferrable=deferrable), store and store())

    assert manifest["status"] == "successful"
    assert errors == []  # found within the first try
    assert pushed(context)["job_id"] == manifest["job_id"]
    assert sandbox.admin.executions_submitted("word-count") == 1
    note = CCPHook().get_execution(manifest["job_id"])["request"]["inputs"]["ccpnote"]
    assert note.startswith("nightly run [airflow-submission:")  # the user's note is kept


@FAULTS
@STORES
def test_when_the_lookup_is_impossible_the_task_fails_with_the_dedicated_error(sandbox, tmp_path, fault, store):
    sandbox.admin.lose_submission_answer(fault, method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 404, count=FOREVER, method="GET")  # a CCP without the list

    with pytest.raises(CCPAmbiguousSubmissionError) as raised:
        run_tries(count_words(tmp_path, deferrable=True), store and store())  # no retry after it

    error = raised.value
    assert error.marker
    assert error.marker.startswith(submission.MARKER_PREFIX)
    assert error.marker in str(error)
    assert error.submitted_at in str(error)
    assert "GET /executions" in str(error)
    assert sandbox.admin.executions_submitted("word-count") == 1
    assert sandbox.admin.requests_to("POST", "/processes/{process_id}/execution") == 1


def test_the_dedicated_error_leaves_nothing_for_a_clear_to_trip_on(sandbox, tmp_path):
    sandbox.admin.lose_submission_answer("status", method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 501, count=FOREVER, method="GET")
    store = DictStore()
    with pytest.raises(CCPAmbiguousSubmissionError):
        run_tries(count_words(tmp_path), store)

    assert STATE_KEY not in store.values  # a user who checked CCP and clears the task gets a new execution


def test_resubmit_lets_the_retry_submit_again_when_the_lookup_is_impossible(sandbox, tmp_path):
    sandbox.admin.lose_submission_answer("status", method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 404, count=FOREVER, method="GET")

    manifest, _, errors = run_tries(count_words(tmp_path, on_ambiguous_submit="resubmit"), DictStore())

    assert manifest["status"] == "successful"
    assert len(errors) == 1
    assert "on_ambiguous_submit='resubmit'" in str(errors[0])
    assert sandbox.admin.executions_submitted("word-count") == 2  # what the DAG author opted into


def test_a_lookup_that_keeps_failing_is_ridden_out_then_fails_clearly(sandbox, tmp_path):
    sandbox.admin.lose_submission_answer("status", method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 500, count=2, method="GET")

    manifest, _, errors = run_tries(count_words(tmp_path), DictStore())

    assert manifest["status"] == "successful"
    assert errors == []
    assert sandbox.admin.requests_to("GET", "/executions") == 3
    assert sandbox.admin.executions_submitted("word-count") == 1


@MODES
def test_a_lookup_that_only_met_transient_errors_is_left_to_the_next_try(sandbox, tmp_path, deferrable):
    sandbox.admin.lose_submission_answer("drop", method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 500, count=FOREVER, method="GET")
    store = DictStore()
    make = count_words(tmp_path, deferrable=deferrable)

    with pytest.raises(CCPError, match="the next try looks for it again before submitting") as raised:
        make().execute(make_context(store))
    assert not isinstance(raised.value, CCPAmbiguousSubmissionError)
    assert store.values[STATE_KEY]["marker"] in str(raised.value)

    sandbox.admin.clear_faults()  # CCP's list is back
    manifest = run_deferrable(make(), make_context(store))

    assert manifest["status"] == "successful"
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_without_a_store_transient_lookup_errors_end_in_the_dedicated_error(sandbox, tmp_path):
    sandbox.admin.lose_submission_answer("status", method_id="word-count")
    sandbox.admin.fail_next(EXECUTIONS, 500, count=FOREVER, method="GET")

    with pytest.raises(CCPAmbiguousSubmissionError):
        run_tries(count_words(tmp_path), None)

    assert sandbox.admin.executions_submitted("word-count") == 1


def test_a_submission_that_never_reached_ccp_is_retried(sandbox, tmp_path, task_log):
    # A hang-up before the sandbox handles the request: no execution exists, the lookup says so.
    sandbox.admin.drop_connection(r"/execution$", method="POST")

    manifest, _, errors = run_tries(count_words(tmp_path), DictStore())

    assert manifest["status"] == "successful"
    assert len(errors) == 1
    assert "none was created, a retry submits again" in str(errors[0])
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_a_refused_submission_is_not_looked_up(sandbox, tmp_path):
    sandbox.admin.fail_next(r"/execution$", 400, method="POST")
    store = DictStore()

    with pytest.raises(CCPError, match="HTTP 400"):
        count_words(tmp_path)().execute(make_context(store))

    assert sandbox.admin.requests_to("GET", "/executions") == 0
    assert STATE_KEY not in store.values


def test_the_submission_is_in_the_store_before_the_post(sandbox, tmp_path):
    sandbox.admin.fail_next(r"/execution$", 400, method="POST")
    seen: list[Any] = []

    class Spy(DictStore):
        def set(self, key: str, value: Any, **kwargs: Any) -> None:
            seen.append((value, sandbox.admin.requests_to("POST", "/processes/{process_id}/execution")))
            super().set(key, value, **kwargs)

    with pytest.raises(CCPError):
        count_words(tmp_path)().execute(make_context(Spy()))

    [(value, posts_before)] = seen
    assert posts_before == 0
    assert value["marker"].startswith(submission.MARKER_PREFIX)
    assert value["fingerprint"]
    assert "job_id" not in value


def remembered_submission(op: CCPExecuteMethodOperator, marker: str) -> DictStore:
    """What an earlier try left when its worker died between the POST and reading the answer."""
    inputs = prepare_inputs(op.method_id, CCPHook().get_method(op.method_id), op.inputs or {})
    fingerprint = request_fingerprint(op.method_id, inputs)
    sent = pendulum.now("UTC").isoformat()
    return DictStore(**{STATE_KEY: {"fingerprint": fingerprint, "marker": marker, "submitted_at": sent}})


def test_a_later_try_finds_the_unconfirmed_submission_of_an_earlier_one(sandbox, tmp_path):
    make = count_words(tmp_path)
    marker = submission.new_marker()
    store = remembered_submission(make(), marker)
    hook = CCPHook()
    inputs = {
        "ccpimage": "bash",
        "text": "one two",
        "mode": "words",
        "ccpnote": submission.note_with_marker("", marker),
    }
    job_id = hook.submit_execution("word-count", inputs).job_id

    manifest = make().execute(make_context(store))

    assert manifest["job_id"] == job_id
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_a_later_try_submits_when_the_earlier_submission_created_nothing(sandbox, tmp_path):
    make = count_words(tmp_path)
    store = remembered_submission(make(), submission.new_marker())

    manifest = make().execute(make_context(store))

    assert manifest["status"] == "successful"
    assert sandbox.admin.executions_submitted("word-count") == 1


def test_a_later_try_that_cannot_look_up_fails_with_the_dedicated_error(sandbox, tmp_path):
    make = count_words(tmp_path)
    marker = submission.new_marker()
    store = remembered_submission(make(), marker)
    sandbox.admin.fail_next(EXECUTIONS, 404, count=FOREVER, method="GET")

    with pytest.raises(CCPAmbiguousSubmissionError, match=marker):
        make().execute(make_context(store))

    assert sandbox.admin.executions_submitted("word-count") == 0
