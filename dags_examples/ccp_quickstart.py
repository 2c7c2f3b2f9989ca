"""ccp_quickstart: run one CCP Method and read its output in the next task.

The task ``count_words`` runs the Method ``word-count`` on CCP (the CCP sandbox's built-in Method)
with the text of the ``text`` param. While the execution runs, the task waits in the triggerer
when deferrable (``[operators] default_deferrable = True``), else on a worker. Once it succeeds,
the operator downloads ``output.zip`` under ``$AIRFLOW_HOME/ccp-outputs/<dag>/<run>/<task>/``,
extracts it and returns a manifest (paths and sizes, no file content).

``show_result`` takes the manifest's ``files`` (``count_words.output["files"]``), opens
``result.json`` through its URI (a local path here; an ``s3://`` URI works the same when
``output_path`` points at object storage) and prints the count.

Needs the connection ``ccp_default`` (``make airflow`` points it at the sandbox). The short poll
interval suits the sandbox's second-long executions; use 30 s or more against CCP.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, Param, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG(
    dag_id="ccp_quickstart",
    description="Count the words of a text with the CCP Method word-count",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"poll_interval": 2},
    params={
        "text": Param(
            "The quick brown fox jumps over the lazy dog",
            type="string",
            title="Text",
            description="The text whose words the Method word-count counts.",
        )
    },
    tags=["ccp", "example"],
) as dag:
    count_words = CCPExecuteMethodOperator(
        task_id="count_words",
        method_id="word-count",
        inputs={"text": "{{ params.text }}", "mode": "words"},
    )

    @task
    def show_result(files: list[dict[str, Any]]) -> dict[str, Any]:
        result = next(item for item in files if item["path"] == "result.json")
        with ObjectStoragePath(result["uri"]).open("r") as handle:
            counted = json.load(handle)
        print(f"word-count says: {counted}")
        return counted

    show_result(count_words.output["files"])
