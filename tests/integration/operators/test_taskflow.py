"""``@task.ccp`` in process, against the CCP sandbox: what a deferral carries of the inputs, bad returns."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG

from airflow_provider_ccp.decorators.ccp import RESUME_KEY, ccp_task
from airflow_provider_ccp.exceptions import CCPInputError
from tests.task_helpers import DictStore, make_context

pytestmark = pytest.mark.usefixtures("sandbox_conn")


def decorated(function, **kwargs):  # type: ignore[no-untyped-def]
    with DAG("ccp_taskflow_unit", schedule=None):
        factory = ccp_task(task_id="greet", method_id="hello", poll_interval=0.05, ccp_retry_delay=0.01, **kwargs)
        return factory(function)().operator


def test_a_deferral_carries_the_public_inputs_and_only_the_names_of_the_secret_ones(sandbox):
    task = decorated(lambda: {"name": "x"})
    task.inputs = {"name": "Ada", "api_key": "k3y-not-to-store"}

    assert task._inputs_to_resume() == {"name": "Ada", "api_key": "***"}

    resumed = decorated(lambda: {"name": "never run"})
    context = make_context(DictStore())
    event = {"status": "failed", "job_id": "j", "job_status": "failed", "message": "boom"}
    with pytest.raises(Exception, match="boom"):
        resumed.execute_complete(context, event, **{RESUME_KEY: {"name": "Ada", "api_key": "***"}})
    assert resumed.inputs == {"name": "Ada", "api_key": "***"}
    assert resumed._secret_inputs_sent()


@pytest.mark.parametrize("returned", [None, "name=Ada", ["Ada"]])
def test_a_function_that_returns_no_dict_fails_with_one_line_and_sends_nothing(sandbox, returned):
    task = decorated(lambda: returned)

    with pytest.raises(CCPInputError, match="inputs of Method 'hello' must be a mapping"):
        task.execute(make_context(DictStore()))
    assert sandbox.admin.executions_submitted("hello") == 0


def test_inputs_given_to_the_decorator_are_refused():
    with pytest.raises(TypeError, match="from the function's return value"):
        decorated(lambda: {}, inputs={"name": "x"})
