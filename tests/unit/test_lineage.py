"""OpenLineage facets and Asset events of a CCP execution, with the OpenLineage provider installed.

The operator runs against the CCP sandbox; the facets go through OpenLineage's own serializer,
as the listener sends them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.execution_time.context import OutletEventAccessors
from openlineage.client.serde import Serde

from airflow_provider_ccp.lineage import dataset_name
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.waiting import job_event
from tests.task_helpers import finished_job, make_context, run_deferrable

pytestmark = pytest.mark.usefixtures("sandbox_conn")


def operator(tmp_path: Path, **kwargs: Any) -> CCPExecuteMethodOperator:
    arguments: dict[str, Any] = {
        "task_id": "count",
        "method_id": "word-count",
        "inputs": {"text": "one two", "mode": "words"},
        "poll_interval": 0.05,
        "output_path": str(tmp_path / "out"),
        "min_defer_seconds": 0,  # no scheduler to race with here
    }
    return CCPExecuteMethodOperator(**(arguments | kwargs))


def as_dict(facet: Any) -> dict[str, Any]:
    return Serde.to_dict(facet)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/data/in.csv", ("s3://bucket", "data/in.csv")),
        ("https://data.d4science.org/shub/E_abc?x=1", ("https://data.d4science.org", "/shub/E_abc")),
        ("file:///tmp/out/result.json", ("file", "/tmp/out/result.json")),
        ("gs://b/k", ("gs://b", "k")),
        ("words", None),
        ("42", None),
        ("https://host.org/", None),  # a server, not a dataset
        ("s3:///no-bucket", None),
        ("mailto:someone@example.org", None),
    ],
)
def test_dataset_names_follow_openlineage_naming(uri: str, expected: tuple[str, str] | None) -> None:
    assert dataset_name(uri) == expected


def test_start_facets_name_the_method_from_the_description_already_read(sandbox, tmp_path):
    op = operator(tmp_path)
    op._method_description()  # what rendering reads in a real task

    lineage = op.get_openlineage_facets_on_start()

    facet = as_dict(lineage.job_facets["ccp_method"])
    assert (facet["methodId"], facet["version"], facet["title"]) == ("word-count", "1.0.0", "Word count")
    assert facet["_schemaURL"].endswith("docs/operators.md#openlineage")
    assert lineage.inputs == []  # "one two" and "words" name no dataset


def test_lineage_never_calls_ccp(sandbox, tmp_path):
    before = sandbox.admin.requests_to("GET", "/processes/{method_id}")

    lineage = operator(tmp_path).get_openlineage_facets_on_start()

    assert sandbox.admin.requests_to("GET", "/processes/{method_id}") == before
    facet = as_dict(lineage.job_facets["ccp_method"])
    assert facet["methodId"] == "word-count"
    assert "title" not in facet  # unknown: left out, not guessed


def test_inputs_that_are_urls_become_input_datasets_but_never_secret_ones(tmp_path):
    op = operator(
        tmp_path,
        method_id="fetch",
        inputs={"data": ["s3://bucket/a.csv", "s3://bucket/b.csv"], "key": "https://vault.org/k", "n": 3},
    )
    op._description = (
        "fetch",
        {"inputs": {"data": {"schema": {"type": "string"}}, "key": {"schema": {"format": "secret"}}}},
    )

    lineage = op.get_openlineage_facets_on_start()

    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://bucket", "a.csv"), ("s3://bucket", "b.csv")]


def test_complete_facets_carry_the_job_and_the_output_files(sandbox, tmp_path):
    op = operator(tmp_path, deferrable=True)
    op._method_description()

    manifest = run_deferrable(op, make_context())
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)

    execution = as_dict(lineage.run_facets["ccp_execution"])
    assert execution["jobId"] == manifest["job_id"]
    assert execution["executionUrl"] == f"{sandbox.url}/ui/executions/{manifest['job_id']}"
    assert as_dict(lineage.run_facets["externalQuery"])["externalQueryId"] == manifest["job_id"]
    outputs = {(d.namespace, d.name) for d in lineage.outputs}
    assert outputs == {("file", item["uri"].removeprefix("file://")) for item in manifest["files"]}
    assert any(name.endswith("/output/result.json") for _, name in outputs)


def test_complete_facets_without_a_job_are_the_start_facets(tmp_path):
    lineage = operator(tmp_path).get_openlineage_facets_on_complete(task_instance=None)

    assert lineage.run_facets == {}
    assert lineage.outputs == []
    assert "ccp_method" in lineage.job_facets


def test_each_outlet_asset_gets_an_event_naming_the_execution(sandbox, tmp_path):
    results, other = Asset("ccp://word-count/results"), Asset("s3://bucket/elsewhere")
    job = finished_job("word-count", {"text": "a b", "mode": "words"})
    context = make_context()
    context["outlet_events"] = OutletEventAccessors()
    op = operator(tmp_path, outlets=[results, other])

    manifest = op.execute_complete(context, event=job_event("success", job.job_id, "successful", ""))

    for asset in (results, other):
        extra = context["outlet_events"][asset].extra
        assert extra["ccp_job_id"] == job.job_id
        assert extra["ccp_method_id"] == "word-count"
        assert extra["execution_url"] == manifest["execution_url"]
        assert extra["files"] == [item["uri"] for item in manifest["files"]]
