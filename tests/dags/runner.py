"""Runs a DAG with ``dag.test()`` in a subprocess and reads back what the run left in the metadata DB.

Each run is a subprocess of this venv's python with its own environment (a migrated SQLite
``AIRFLOW_HOME``, the DAGs folder at ``dags_examples/``, ``ccp_default`` at the sandbox), because
Airflow reads its configuration once, at import, and the rest of the suite must not see it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags_examples"

#: Runs one DAG with dag.test(), then prints the DagRun's state, every return_value XCom and the
#: asset events the run emitted, as JSON.
RUNNER = """
import importlib.util, json, sys
from airflow.models.asset import AssetEvent
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

name = sys.argv[1]
spec = importlib.util.spec_from_file_location(name, sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
run = dag.test()
with create_session() as session:
    rows = session.query(XComModel).filter_by(dag_id=name, run_id=run.run_id, key="return_value").all()
    values = {f"{row.task_id}[{row.map_index}]": row.value for row in rows}
    events = session.query(AssetEvent).filter_by(source_dag_id=name, source_run_id=run.run_id).all()
    assets = [{"asset": event.asset.name, "task_id": event.source_task_id, "extra": event.extra} for event in events]
print("RESULT " + json.dumps({"state": str(run.state), "xcoms": values, "asset_events": assets}, default=str))
"""


def run_dag(env: dict[str, str], sandbox, dag_id: str, *, deferrable: bool, dags: Path = DAGS) -> tuple[dict, str]:
    env = env | {
        "AIRFLOW_CONN_CCP_DEFAULT": sandbox.connection_json(),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(deferrable),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, dag_id, str(dags / f"{dag_id}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-6000:]
    return json.loads(lines[-1].removeprefix("RESULT ")), output


def decoded(value):
    """XCom values as stored: JSON text, except a plain string on some Airflow versions."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value
