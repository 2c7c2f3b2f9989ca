"""ccp_wait_for_execution: submit without waiting, then wait for the execution with CCPJobSensor.

``submit`` starts the Method ``sleep`` with ``wait_for_completion=False``: it pushes the XComs
``job_id`` and ``execution_url`` and ends at once, leaving the execution running on CCP.
``wait`` is a ``CCPJobSensor`` on that job id (``submit.output["job_id"]``, the XCom, which also
makes ``wait`` run after ``submit``; the id could as well come from another DAG or a person). It
succeeds when the execution is successful, fails as soon as it fails, and returns the job's status.
Deferrable or not follows ``[operators] default_deferrable``.

Use this shape when the waiting should be its own task, with its own timeout and retries, or
when something other than this DAG submits the execution. The sensor never dismisses the job.

Needs the connection ``ccp_default``. The short poke interval suits the sandbox.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.sensors.ccp import CCPJobSensor

with DAG(
    dag_id="ccp_wait_for_execution",
    description="Submit a CCP execution, then wait for it with a sensor",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["ccp", "example"],
) as dag:
    submit = CCPExecuteMethodOperator(
        task_id="submit",
        method_id="sleep",
        inputs={"seconds": "3"},
        wait_for_completion=False,
    )
    wait = CCPJobSensor(
        task_id="wait",
        job_id=submit.output["job_id"],
        poke_interval=2,
        timeout=600,
    )

    @task
    def report(status: dict) -> None:
        print(f"CCP job {status['job_id']} ended {status['status']} after {status['duration_seconds']} s")

    report(wait.output)
