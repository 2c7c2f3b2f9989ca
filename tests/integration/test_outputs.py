"""The operator delivering outputs read from the sandbox: to object storage, and the warning when they
stay on one worker's disk (the extraction itself is unit-tested in tests/unit/test_outputs.py)."""

from __future__ import annotations

import zipfile

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.waiting import job_event
from tests.task_helpers import finished_job, make_context, task_log

__all__ = ["task_log"]  # a fixture, used by name


@pytest.mark.usefixtures("sandbox_conn")
def test_outputs_go_to_object_storage(memory_storage, sandbox, tmp_path):
    job = finished_job("word-count", {"text": "to the bucket", "mode": "words"})
    op = CCPExecuteMethodOperator(task_id="count", method_id="word-count", output_path="memory://bucket/runs")

    manifest = op.execute_complete(make_context(), event=job_event("success", job.job_id, "successful", ""))

    archive = ObjectStoragePath(manifest["archive"])
    assert archive.protocol == "memory"
    assert archive.path.lstrip("/").startswith("bucket/runs/ccp_tests/")
    assert zipfile.is_zipfile(memory_storage.open(archive.path))
    result = next(item for item in manifest["files"] if item["path"] == "result.json")
    assert memory_storage.cat(ObjectStoragePath(result["uri"]).path) == b'{"words": 3, "mode": "words"}\n'
    assert not list((tmp_path).rglob("*.zip"))  # nothing left behind locally


@pytest.mark.usefixtures("sandbox_conn")
@pytest.mark.parametrize(("executor", "warned"), [("CeleryExecutor", True), ("LocalExecutor", False)])
def test_the_task_log_says_when_outputs_stay_on_the_worker(
    monkeypatch: pytest.MonkeyPatch, task_log, tmp_path, executor: str, warned: bool
) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__CCP__OUTPUT_PATH", raising=False)
    monkeypatch.delenv("AIRFLOW_IS_K8S_EXECUTOR_POD", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    job = finished_job("word-count", {"text": "stays here", "mode": "words"})
    op = CCPExecuteMethodOperator(task_id="count", method_id="word-count")

    manifest = op.execute_complete(make_context(), event=job_event("success", job.job_id, "successful", ""))

    assert manifest["archive"].startswith(f"file://{tmp_path}/ccp-outputs/")
    assert task_log().count("a downstream task on another machine cannot read them") == (1 if warned else 0)
