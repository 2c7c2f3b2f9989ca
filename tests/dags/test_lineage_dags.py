"""Asset events and OpenLineage events of real DAG runs (``dag.test()`` against the CCP sandbox)."""

from __future__ import annotations

import json

import pytest

from tests.dags.test_example_dags import decoded, run_dag

pytestmark = pytest.mark.dagtest


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_a_ccp_task_with_an_outlet_emits_an_asset_event_naming_its_execution(airflow_env, sandbox, deferrable):
    result, output = run_dag(airflow_env, sandbox, "ccp_assets", deferrable=deferrable)

    assert result["state"] == "success", output[-6000:]
    (event,) = result["asset_events"]
    manifest = decoded(result["xcoms"]["count_words[-1]"])
    assert (event["asset"], event["task_id"]) == ("ccp_word_counts", "count_words")
    assert event["extra"]["ccp_job_id"] == manifest["job_id"]
    assert event["extra"]["ccp_method_id"] == "word-count"
    assert event["extra"]["files"] == [item["uri"] for item in manifest["files"]]
    assert any(uri.endswith("/output/result.json") for uri in event["extra"]["files"])


def test_the_openlineage_listener_sends_the_ccp_facets(airflow_env, sandbox, tmp_path):
    """Airflow's own OpenLineage listener, writing its events to a file: what a lineage backend receives."""
    events_file = tmp_path / "openlineage.jsonl"
    env = airflow_env | {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "ccp-tests",
    }

    result, output = run_dag(env, sandbox, "ccp_quickstart", deferrable=True)

    assert result["state"] == "success", output[-6000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    ccp = [e for e in events if e["job"]["name"].endswith(".count_words")]
    states = [e["eventType"] for e in ccp]
    assert {"START", "COMPLETE"} <= set(states), states
    (complete,) = [e for e in ccp if e["eventType"] == "COMPLETE"]
    manifest = decoded(result["xcoms"]["count_words[-1]"])
    assert complete["job"]["facets"]["ccp_method"]["methodId"] == "word-count"
    assert complete["job"]["facets"]["ccp_method"]["title"] == "Word count"
    assert complete["run"]["facets"]["ccp_execution"]["jobId"] == manifest["job_id"]
    external = complete["run"]["facets"]["externalQuery"]
    assert (external["externalQueryId"], external["source"]) == (manifest["job_id"], "ccp")
    outputs = {(d["namespace"], d["name"]) for d in complete["outputs"]}
    assert ("file", manifest["files"][0]["uri"].removeprefix("file://")) in outputs
    assert len(outputs) == len(manifest["files"])
