"""A long CCP execution (the sandbox's `sleep` Method) for the restart and kill cases of the e2e tests."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(
    dag_id="ccp_e2e_sleep",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"seconds": Param("20", type="string")},
):
    CCPExecuteMethodOperator(
        task_id="sleep",
        method_id="sleep",
        inputs={"seconds": "{{ params.seconds }}"},
        deferrable=True,
        poll_interval=1,
    )
