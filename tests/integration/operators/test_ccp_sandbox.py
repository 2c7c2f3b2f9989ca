"""Whole task lifecycles against the CCP sandbox, without a triggerer: submit, wait, outputs, next task."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.sensors.ccp import CCPJobSensor
from airflow_provider_ccp.submission import STATE_KEY
from tests.task_helpers import DictStore, make_context, pushed, run_deferrable

pytestmark = pytest.mark.usefixtures("sandbox_conn")


def count_words(tmp_path, **kwargs) -> CCPExecuteMethodOperator:
    arguments = {
        "task_id": "count",
        "method_id": "word-count",
        "poll_interval": 0.05,
        "output_path": str(tmp_path),
        "min_defer_seconds": 0,  # no scheduler to race with here (docs/operators.md)
    }
    return CCPExecuteMethodOperator(**(arguments | kwargs))


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_mapped_instances_each_run_and_hand_their_result_on(sandbox, tmp_path, deferrable):
    texts = ["one", "one two", "one two three"]

    manifests = [
        run_deferrable(
            count_words(tmp_path, inputs={"text": text}, deferrable=deferrable), make_context(map_index=index)
        )
        for index, text in enumerate(texts)
    ]

    results = []
    for manifest in manifests:  # what a downstream TaskFlow task does with op.output
        result = next(item for item in manifest["files"] if item["path"] == "result.json")
        results.append(json.loads(ObjectStoragePath(result["uri"]).read_text())["words"])
    assert results == [1, 2, 3]
    assert len({manifest["archive"] for manifest in manifests}) == 3
    assert sandbox.admin.executions_submitted("word-count") == 3


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_a_revoked_token_is_renewed_in_both_modes(sandbox, tmp_path, deferrable):
    sandbox.admin.add_latency(r"^/jobs/", 0.3, count=2, method="GET")
    op = count_words(tmp_path, method_id="sleep", inputs={"seconds": "1"}, deferrable=deferrable)
    sandbox.admin.revoke_tokens()

    manifest = run_deferrable(op, make_context())

    assert manifest["status"] == "successful"


def test_submit_without_waiting_then_sense(sandbox, tmp_path):
    store = DictStore()
    context = make_context(store)
    job_id = count_words(tmp_path, inputs={"text": "a b"}, wait_for_completion=False).execute(context)
    # Nothing left to reattach to: clearing a submit-only task must submit anew.
    assert STATE_KEY not in store.values

    status = run_deferrable(CCPJobSensor(task_id="wait", job_id=job_id, poke_interval=0.05, deferrable=True), context)

    assert status["status"] == "successful"
    assert pushed(context)["job_id"] == job_id
    assert sandbox.admin.executions_submitted("word-count") == 1
