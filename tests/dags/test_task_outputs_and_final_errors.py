"""With a real metadata DB (``dag.test()``): the XComs a CCP task leaves, and no retry after a final error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.runner import decoded

pytestmark = pytest.mark.dagtest

#: Runs the DAG, then prints every XCom key per task and each task instance's state and try number.
RUNNER = """
import importlib.util, json, sys
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

spec = importlib.util.spec_from_file_location("dag_module", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.dag.test()
with create_session() as session:
    rows = session.query(XComModel).filter_by(dag_id=module.dag.dag_id, run_id=run.run_id).all()
    xcoms = {}
    for row in rows:
        xcoms.setdefault(row.task_id, {})[row.key] = row.value
    tis = session.query(TaskInstance).filter_by(dag_id=module.dag.dag_id, run_id=run.run_id).all()
    states = {ti.task_id: [str(ti.state), ti.try_number] for ti in tis}
print("RESULT " + json.dumps({"state": str(run.state), "xcoms": xcoms, "tis": states}, default=str))
"""

OUTPUTS_DAG = """
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(dag_id="ccp_xcoms", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    count = CCPExecuteMethodOperator(
        task_id="count", method_id="word-count", inputs={"text": "a b c"}, poll_interval=0.2
    )

    @task
    def names(files):
        return sorted(item["path"].rsplit("/", 1)[-1] for item in files)

    names(count.output["files"])
"""

BAD_INPUT_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(dag_id="ccp_bad_input", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    CCPExecuteMethodOperator(
        task_id="count",
        method_id="word-count",
        inputs={"txt": "a typo"},
        retries=2,
        retry_delay=timedelta(hours=1),
    )
"""


def run_dag(env: dict[str, str], sandbox, source: str, folder: Path) -> dict:
    folder.mkdir()
    path = folder / "dag.py"
    path.write_text(source)
    env = env | {"AIRFLOW_CONN_CCP_DEFAULT": sandbox.connection_json(), "AIRFLOW__CORE__DAGS_FOLDER": str(folder)}
    # A retried task would wait its hour: the timeout turns that into a failure of this test.
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)], env=env, capture_output=True, text=True, timeout=180
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, (done.stdout + done.stderr)[-6000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_a_ccp_task_leaves_each_value_once_and_downstream_reads_files(airflow_env, sandbox, tmp_path):
    result = run_dag(airflow_env, sandbox, OUTPUTS_DAG, tmp_path / "dags")

    assert result["state"] == "success", result
    # Airflow stores each evaluated extra link as an XCom of its own (``_link_<class>``).
    keys = {key for key in result["xcoms"]["count"] if not key.startswith("_link_")}
    manifest_keys = {
        "job_id", "method_id", "status", "message", "created", "started", "finished", "duration_seconds",
        "archive", "manifest", "files", "file_count", "refused", "refused_count", "withheld", "execution_url",
    }  # fmt: skip
    assert keys == {"return_value", *manifest_keys}
    assert "ccp_job_id" not in keys
    assert "ccp_job_url" not in keys
    assert "result.json" in decoded(result["xcoms"]["names"]["return_value"])


def test_bad_inputs_fail_the_task_without_waiting_for_retries(airflow_env, sandbox, tmp_path):
    result = run_dag(airflow_env, sandbox, BAD_INPUT_DAG, tmp_path / "dags")

    assert result["state"] == "failed", result
    assert result["tis"]["count"] == ["failed", 1]
    assert sandbox.admin.executions_submitted("word-count") == 0


#: Connection mistakes no retry can mend, one task each (issue 19): the connection's fields changed so.
CONFIG_MISTAKES: dict[str, dict | None] = {
    "wrong_password": {"password": "not-the-password"},
    "unknown_auth_flow": {"extra": {"auth_flow": "kerberos"}},
    "verify_missing": {"extra": {"verify": "/nonexistent/ca.pem"}},
    "timeout_nan": {"extra": {"timeout": "nan"}},
    "host_not_http": {"host": "ftp://127.0.0.1:9"},
    "no_host": {"host": ""},
    "host_without_scheme": {"host": "127.0.0.1:9"},
    "unknown_conn_id": None,  # no connection of that id at all
}

CONFIG_MISTAKES_DAG = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(dag_id="ccp_config_mistakes", schedule=None, start_date=datetime(2025, 1, 1), catchup=False) as dag:
    for name in {names!r}:
        CCPExecuteMethodOperator(
            task_id=name,
            ccp_conn_id="ccp_" + name,
            method_id="word-count",
            inputs={{"text": "a b c"}},
            retries=2,
            retry_delay=timedelta(hours=1),
        )
"""


def mistaken_connection(sandbox, changes: dict) -> str:
    connection = sandbox.connection()
    extra = connection["extra"] | changes.get("extra", {})
    return json.dumps(connection | {key: value for key, value in changes.items() if key != "extra"} | {"extra": extra})


def test_config_mistakes_fail_the_task_at_once_with_nothing_submitted(airflow_env, sandbox, tmp_path):
    connections = {
        f"AIRFLOW_CONN_CCP_{name.upper()}": mistaken_connection(sandbox, changes)
        for name, changes in CONFIG_MISTAKES.items()
        if changes is not None
    }
    source = CONFIG_MISTAKES_DAG.format(names=list(CONFIG_MISTAKES))

    result = run_dag(airflow_env | connections, sandbox, source, tmp_path / "dags")

    assert result["state"] == "failed", result
    assert result["tis"] == {name: ["failed", 1] for name in CONFIG_MISTAKES}
    assert sandbox.admin.executions_submitted("word-count") == 0
