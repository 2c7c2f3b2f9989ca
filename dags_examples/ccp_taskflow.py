"""ccp_taskflow: ``@task.ccp``, a TaskFlow function that returns a Method's inputs, mapped over texts.

``texts`` is an ordinary task; ``count_words`` is mapped over its result with ``.expand``: each
mapped instance runs the function (which may read XComs and the context) and then the
``word-count`` Method with the inputs it returned, exactly as ``CCPExecuteMethodOperator`` would,
and returns the same manifest. ``word_counts`` takes the ``files`` of every manifest (each key of
the manifest is an XCom of its own) and reads each ``result.json``.

Needs the connection ``ccp_default``. The short poll interval suits the sandbox.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

with DAG(
    dag_id="ccp_taskflow",
    description="Count the words of texts an upstream task chose, one CCP execution each",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["ccp", "example"],
) as dag:

    @task
    def texts() -> list[str]:
        return ["The sea is everything", "In the middle of difficulty lies opportunity"]

    @task.ccp(method_id="word-count", poll_interval=2)
    def count_words(text: str, run_id: str | None = None) -> dict[str, Any]:
        print(f"Counting the words of {text!r} for run {run_id}")
        return {"text": text, "mode": "words"}

    @task
    def word_counts(results: list[list[dict[str, Any]]]) -> list[int]:
        """One list of output files per text: the manifests' ``files`` keys, each its own XCom."""
        counts = []
        for files in results:
            uri = next(item["uri"] for item in files if item["path"] == "result.json")
            counts.append(json.loads(ObjectStoragePath(uri).read_text())["words"])
        return counts

    word_counts(count_words.expand(text=texts())["files"])
