"""``@task.ccp`` with a real metadata DB (``dag.test()``): a secret the function returns, a retry, a deferral."""

from __future__ import annotations

import pytest

from airflow_provider_ccp.version_compat import REATTACH_SINCE, get_base_airflow_version_tuple
from tests.dags.runner import decoded, run_dag

pytestmark = pytest.mark.dagtest

API_KEY = "k3y-from-the-function-8d1f"

DAG_SOURCE = """
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

with DAG(dag_id="ccp_taskflow_secret", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:

    @task.ccp(method_id="hello", poll_interval=0.5, retries=1, retry_delay=timedelta(0), ccp_retry_delay=0.01)
    def greet(ti=None):
        return {"name": ti.task_id, "api_key": os.environ["GREET_API_KEY"]}

    greet()
"""


def test_a_retry_runs_the_function_again_and_the_secret_it_returns_stays_hidden(airflow_env, sandbox, tmp_path):
    """The first try's download breaks; the retry runs the function again, which returns the same inputs:
    on Airflow >= 3.3 the task reattaches to the first execution, before it submits a second one.

    Deferrable only: the worker's wait is the operator's own (tests/dags/test_example_dags.py)."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ccp_taskflow_secret.py").write_text(DAG_SOURCE)
    sandbox.admin.corrupt_output(mode="truncate")
    env = airflow_env | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "GREET_API_KEY": API_KEY}

    result, output = run_dag(env, sandbox, "ccp_taskflow_secret", deferrable=True, dags=dags)

    assert result["state"] == "success", output[-6000:]
    manifest = decoded(result["xcoms"]["greet[-1]"])
    assert manifest["method_id"] == "hello"
    assert manifest["status"] == "successful"
    assert "running trigger in line" in output
    reattaches = get_base_airflow_version_tuple() >= REATTACH_SINCE
    assert ("Reattaching to CCP job" in output) is reattaches
    assert sandbox.admin.executions_submitted("hello") == (1 if reattaches else 2)
    assert API_KEY not in output
    assert API_KEY not in str(result["xcoms"])
