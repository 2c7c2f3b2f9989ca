"""Twenty mapped executions that end at once (the sandbox's `sleep` Method with 0 seconds), deferred.

No retries: a task that Airflow's scheduler fails when its trigger fires too soon after the
deferral (apache/airflow #66374, #67287, #71580, #72716) must show up as a failure.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

MAPPED = 20

with DAG(
    dag_id="ccp_e2e_fast",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=MAPPED,
):
    CCPExecuteMethodOperator.partial(
        task_id="fast",
        method_id="sleep",
        deferrable=True,
        poll_interval=1,
        retries=0,
        extract=False,
        log_lines=0,
    ).expand(inputs=[{"seconds": "0"} for _ in range(MAPPED)])
