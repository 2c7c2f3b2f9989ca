"""Fifty CCP executions mapped over Celery workers, outputs on S3, and one task that adds them up.

No ``output_path``: the operators take ``[ccp] output_path`` (an ``s3://`` URI) from the
configuration, as a deployment would. Text ``i`` has ``i + 1`` words, so the total is known.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

MAPPED = 50
TEXTS = [" ".join(["word"] * (i + 1)) for i in range(MAPPED)]

with DAG(
    dag_id="ccp_distributed",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=MAPPED + 1,
    # A task on a lost worker is failed by the scheduler's heartbeat check; its retry reattaches.
    default_args={"retries": 3, "retry_delay": timedelta(seconds=2)},
):
    counts = CCPExecuteMethodOperator.partial(
        task_id="count", method_id="word-count", deferrable=True, poll_interval=2
    ).expand(inputs=[{"text": text, "mode": "words"} for text in TEXTS])

    @task
    def total(manifests: list[dict[str, Any]]) -> dict[str, Any]:
        words, uris = 0, []
        for manifest in manifests:
            result = next(item for item in manifest["files"] if item["path"] == "result.json")
            with ObjectStoragePath(result["uri"]).open("r") as handle:
                words += json.load(handle)["words"]
            uris.append(result["uri"])
        return {"words": words, "results": len(uris), "uris": uris}

    total(counts.output)
