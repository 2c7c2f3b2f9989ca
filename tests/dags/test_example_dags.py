"""Every example DAG, end to end with ``dag.test()`` against the CCP sandbox, deferrable and not.

Each run is a subprocess of this venv's python with its own environment (a migrated SQLite
``AIRFLOW_HOME``, the DAGs folder at ``dags_examples/``, ``ccp_default`` at the sandbox), because
Airflow reads its configuration once, at import, and the rest of the suite must not see it.
"""

from __future__ import annotations

import pytest

from tests.dags.runner import decoded, run_dag

pytestmark = pytest.mark.dagtest


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_quickstart(airflow_env, sandbox, deferrable):
    result, output = run_dag(airflow_env, sandbox, "ccp_quickstart", deferrable=deferrable)

    assert result["state"] == "success", output[-6000:]
    assert decoded(result["xcoms"]["show_result[-1]"]) == {"words": 9, "mode": "words"}
    assert sandbox.admin.executions_submitted("word-count") == 1


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_fan_out(airflow_env, sandbox, deferrable):
    result, output = run_dag(airflow_env, sandbox, "ccp_fan_out", deferrable=deferrable)

    assert result["state"] == "success", output[-6000:]
    assert decoded(result["xcoms"]["total[-1]"]) == 13 + 4 + 7
    assert {key for key in result["xcoms"] if key.startswith("count_words")} == {
        "count_words[0]",
        "count_words[1]",
        "count_words[2]",
    }
    assert sandbox.admin.executions_submitted("word-count") == 3


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_wait_for_execution(airflow_env, sandbox, deferrable):
    result, output = run_dag(airflow_env, sandbox, "ccp_wait_for_execution", deferrable=deferrable)

    assert result["state"] == "success", output[-6000:]
    status = decoded(result["xcoms"]["wait[-1]"])
    assert status["status"] == "successful"
    assert decoded(result["xcoms"]["submit[-1]"]) == status["job_id"]
    assert sandbox.admin.executions_submitted("sleep") == 1


RETRY_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(
    dag_id="ccp_retry_reattach",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"poll_interval": 0.5, "retries": 1, "retry_delay": timedelta(0)},
) as dag:
    CCPExecuteMethodOperator(task_id="nap", method_id="sleep", inputs={"seconds": "1"})
"""


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_a_retry_after_a_failed_download_reuses_the_execution(airflow_env, sandbox, tmp_path, deferrable):
    """Airflow >= 3.3's task_state_store carries the job id from the failed try to the retry.

    The Method takes a second, so the deferrable run really goes through the (inline) trigger."""
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ccp_retry_reattach.py").write_text(RETRY_DAG)
    sandbox.admin.corrupt_output(mode="truncate")

    result, output = run_dag(
        airflow_env | {"AIRFLOW__CORE__DAGS_FOLDER": str(dags)},
        sandbox,
        "ccp_retry_reattach",
        deferrable=deferrable,
        dags=dags,
    )

    assert result["state"] == "success", output[-6000:]
    assert "Reattaching to CCP job" in output
    assert ("running trigger in line" in output) is deferrable
    assert sandbox.admin.executions_submitted("sleep") == 1
    assert sandbox.admin.requests_to("GET", "/executions/{job_id}/outputs/output.zip") == 2


def test_taskflow(airflow_env, sandbox):
    """Deferrable only: once the function has returned, the worker's wait is the operator's (tested above)."""
    result, output = run_dag(airflow_env, sandbox, "ccp_taskflow", deferrable=True)

    assert result["state"] == "success", output[-6000:]
    assert decoded(result["xcoms"]["word_counts[-1]"]) == [4, 7]
    manifests = [decoded(result["xcoms"][f"count_words[{index}]"]) for index in (0, 1)]
    assert {manifest["method_id"] for manifest in manifests} == {"word-count"}
    assert all(manifest["status"] == "successful" for manifest in manifests)
    assert "running trigger in line" in output
    assert sandbox.admin.executions_submitted("word-count") == 2
