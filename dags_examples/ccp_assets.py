"""ccp_assets: a CCP execution updates an Asset, and another DAG runs because it did.

``count_words`` declares the Asset ``ccp_word_counts`` in its ``outlets``. When its execution
succeeds, the operator emits an asset event whose ``extra`` names the CCP job (``ccp_job_id``),
the Method (``ccp_method_id``), the execution's page (``execution_url``) and the URIs of the
output ``files``. ``ccp_assets_report`` is scheduled on that Asset: each event starts a run,
which reads the files the event names, wherever they were written (a local folder here, ``s3://``
when ``output_path`` points at object storage).

Needs the connection ``ccp_default`` (``make airflow`` points it at the sandbox).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, ObjectStoragePath, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

WORD_COUNTS = Asset("ccp_word_counts")

with DAG(
    dag_id="ccp_assets",
    description="Count words with CCP and announce the result as an Asset event",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"poll_interval": 2},
    tags=["ccp", "example"],
) as dag:
    CCPExecuteMethodOperator(
        task_id="count_words",
        method_id="word-count",
        inputs={"text": "assets tell other DAGs that the CCP outputs changed", "mode": "words"},
        outlets=[WORD_COUNTS],
    )

with DAG(
    dag_id="ccp_assets_report",
    description="Runs whenever a CCP execution updated ccp_word_counts",
    schedule=[WORD_COUNTS],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["ccp", "example"],
) as report_dag:

    @task
    def report(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        counts = []
        for event in triggering_asset_events[WORD_COUNTS]:
            result = next(uri for uri in event.extra["files"] if uri.endswith("/result.json"))
            with ObjectStoragePath(result).open("r") as handle:
                counts.append(json.load(handle))
            print(f"CCP job {event.extra['ccp_job_id']} counted {counts[-1]}")
        return counts

    report()
