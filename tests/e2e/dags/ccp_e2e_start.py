"""Executions started from the triggerer (``start_from_trigger``, Airflow >= 3.3): twenty unmapped tasks whose
executions end at once, and one long execution for the triggerer-kill cases.

Unmapped: Airflow 3.3 does not hand a mapped task's expanded arguments to a trigger it starts (docs/operators.md).
The inputs are templates, rendered in the triggerer. No retries: a failure must show.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

TASKS = 20

with DAG(
    dag_id="ccp_e2e_start",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=TASKS,
    params={"seconds": Param("0", type="string")},
):
    for index in range(TASKS):
        CCPExecuteMethodOperator(
            task_id=f"start_{index}",
            method_id="sleep",
            inputs={"seconds": "{{ params.seconds }}"},
            start_from_trigger=True,
            poll_interval=1,
            retries=0,
            extract=False,
            log_lines=0,
        )

with DAG(
    dag_id="ccp_e2e_start_sleep",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"seconds": Param("20", type="string")},
):
    CCPExecuteMethodOperator(
        task_id="sleep",
        method_id="sleep",
        inputs={"seconds": "{{ params.seconds }}"},
        start_from_trigger=True,
        poll_interval=1,
    )

with DAG(
    dag_id="ccp_e2e_start_secret",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    # api_key is a secret input (format: secret): it stays a template until the triggerer renders it.
    CCPExecuteMethodOperator(
        task_id="hello",
        method_id="hello",
        inputs={"name": "e2e", "api_key": "{{ var.value.ccp_e2e_key }}"},
        start_from_trigger=True,
        poll_interval=1,
        retries=0,
    )

with DAG(
    dag_id="ccp_e2e_start_timeout",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    # Airflow's own timeout, not the operator's: it cuts the trigger without on_kill.
    CCPExecuteMethodOperator(
        task_id="sleep",
        method_id="sleep",
        inputs={"seconds": "300"},
        start_from_trigger=True,
        poll_interval=1,
        retries=0,
        execution_timeout=timedelta(seconds=15),
    )
