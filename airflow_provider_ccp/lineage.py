"""OpenLineage facets of a CCP execution, for the operator's ``get_openlineage_facets_on_*`` methods, which
Airflow's OpenLineage listener calls only when ``apache-airflow-providers-openlineage`` is installed (the
``openlineage`` extra): without it, nothing here is imported. docs/operators.md ("OpenLineage") lists what is emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define
from openlineage.client.facet_v2 import JobFacet, RunFacet, external_query_run
from openlineage.client.generated.base import InputDataset, OutputDataset

from airflow_provider_ccp.inputs import public_inputs

__all__ = ["method_lineage", "execution_lineage", "CCPMethodJobFacet", "CCPExecutionRunFacet", "dataset_name"]

#: Where the two custom facets below are described (OpenLineage asks every facet for a schema URL).
FACET_DOCS = "https://github.com/airflow-provider-ccp/airflow-provider-ccp/blob/main/docs/operators.md#openlineage"
#: Schemes whose URIs name a dataset; any other input value (a number, a word) is not one.
DATASET_SCHEMES = frozenset({"http", "https", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "wasbs", "hdfs", "file"})
#: Object stores name their objects without the leading slash (OpenLineage's dataset naming).
OBJECT_STORE_SCHEMES = DATASET_SCHEMES - {"http", "https", "file"}


@define
class CCPMethodJobFacet(JobFacet):
    """The CCP Method a task runs: what a lineage graph shows as the job's code."""

    methodId: str  # OpenLineage facets name their fields in camelCase
    version: str | None = None
    title: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_DOCS


@define
class CCPExecutionRunFacet(RunFacet):
    """The CCP execution behind a task try: its job id and where to look at it."""

    jobId: str
    methodId: str
    executionUrl: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return FACET_DOCS


def dataset_name(uri: str) -> tuple[str, str] | None:
    """(namespace, name) of a URI by OpenLineage's naming rules, or None when the value names no dataset."""
    parts = urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if scheme not in DATASET_SCHEMES or (scheme != "file" and not parts.netloc) or not parts.path.strip("/"):
        return None
    if scheme == "file":
        return (f"file://{parts.netloc}" if parts.netloc else "file"), parts.path
    name = parts.path.lstrip("/") if scheme in OBJECT_STORE_SCHEMES else parts.path
    return f"{scheme}://{parts.netloc}", name


def _datasets(uris: Iterable[Any], kind: type[InputDataset] | type[OutputDataset]) -> list[Any]:
    names = dict.fromkeys(name for uri in uris if isinstance(uri, str) and (name := dataset_name(uri)))
    return [kind(namespace=namespace, name=name) for namespace, name in names]


def _input_uris(description: Mapping[str, Any] | None, inputs: Mapping[str, Any] | None) -> list[Any]:
    """Values of the inputs the description does not mark secret, lists flattened; without a description
    nothing says which inputs are secret, so none is reported."""
    if description is None or not inputs:
        return []
    values = public_inputs(description, inputs).values()
    return [item for value in values for item in (value if isinstance(value, list | tuple) else [value])]


def method_lineage(
    method_id: str, description: Mapping[str, Any] | None, inputs: Mapping[str, Any] | None
) -> OperatorLineage:
    """What is known when the task starts: the Method and the datasets its inputs point at."""
    described = description or {}
    version, title = (str(described[key]) if described.get(key) else None for key in ("version", "title"))
    facet = CCPMethodJobFacet(methodId=method_id, version=version, title=title)
    return OperatorLineage(
        inputs=_datasets(_input_uris(description, inputs), InputDataset),
        job_facets={"ccp_method": facet},
    )


def execution_lineage(
    method_id: str,
    description: Mapping[str, Any] | None,
    inputs: Mapping[str, Any] | None,
    job_id: str | None,
    execution_url: str | None,
    manifest: Mapping[str, Any] | None,
) -> OperatorLineage:
    """The start's lineage plus the execution (when one was submitted) and the output files (when delivered)."""
    lineage = method_lineage(method_id, description, inputs)
    if job_id is None:
        return lineage
    # ``source`` names the system that ran the job, as BigQuery's facet says "bigquery".
    lineage.run_facets["externalQuery"] = external_query_run.ExternalQueryRunFacet(externalQueryId=job_id, source="ccp")
    lineage.run_facets["ccp_execution"] = CCPExecutionRunFacet(
        jobId=job_id, methodId=method_id, executionUrl=execution_url
    )
    files = (manifest or {}).get("files") or []
    lineage.outputs = _datasets((item.get("uri") for item in files if isinstance(item, Mapping)), OutputDataset)
    return lineage
