"""ccp_fan_out: one CCP execution per input (dynamic task mapping), then one task that aggregates.

``count_words`` is mapped over ``TEXTS`` with ``.partial(...).expand(inputs=[...])``: Airflow
creates one task instance per text, each submitting its own ``word-count`` execution; they run
side by side on CCP and their outputs land in ``.../count_words/<map_index>/``. ``total`` receives
the list of manifests, reads every ``result.json`` and adds the counts up.

A retry of one mapped instance only re-runs that instance's execution (and on Airflow >= 3.3
reattaches to it instead of submitting again while it still runs or after it succeeded).

Needs the connection ``ccp_default``. The short poll interval suits the sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

TEXTS = [
    "Data is a precious thing and will last longer than the systems themselves",
    "The sea is everything",
    "In the middle of difficulty lies opportunity",
]

with DAG(
    dag_id="ccp_fan_out",
    description="Count the words of several texts in parallel CCP executions, then add them up",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"poll_interval": 2},
    tags=["ccp", "example"],
) as dag:
    counts = CCPExecuteMethodOperator.partial(task_id="count_words", method_id="word-count").expand(
        inputs=[{"text": text, "mode": "words"} for text in TEXTS]
    )

    @task
    def total(manifests: list[dict[str, Any]]) -> int:
        words = 0
        for manifest in manifests:
            result = next(item for item in manifest["files"] if item["path"] == "result.json")
            with ObjectStoragePath(result["uri"]).open("r") as handle:
                words += json.load(handle)["words"]
        print(f"{len(manifests)} texts, {words} words in total")
        return words

    total(counts.output)
