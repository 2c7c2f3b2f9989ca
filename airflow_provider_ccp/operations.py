"""Every operation both hooks offer, defined once with no I/O: the request it sends and how its answer reads.

``CCPHook`` (requests) and ``CCPAsyncHook`` (aiohttp) only perform these: a ``Call`` is one request and
its reading, a ``Listing`` a paged list (``GET /jobs``, ``/processes``, ``/executions``) and what each
entry contributes. So the twins cannot filter, page or parse differently: a job naming another Method
is left out of ``jobs`` whether or not the server honours ``processID``
(tests/integration/hooks/test_parity.py runs both hooks on the same answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from airflow_provider_ccp import execution_records, protocol
from airflow_provider_ccp.exceptions import CCPProtocolError
from airflow_provider_ccp.exchange import Answer
from airflow_provider_ccp.protocol import DismissResult, StatusInfo

__all__ = [
    "Call",
    "Listing",
    "get_method",
    "methods",
    "get_job",
    "jobs",
    "job_item",
    "dismiss_job",
    "executions",
    "execution_marked",
    "get_execution",
]

T = TypeVar("T")
OK = frozenset({200})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request (``method`` ``url`` with ``params``; an answer outside ``ok`` is an error) and its reading."""

    method: str
    url: str
    read: Callable[[Answer], T]
    ok: frozenset[int] = OK
    params: Mapping[str, Any] | None = None
    method_id: str | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class Listing(Generic[T]):
    """A paged list (``protocol.next_link``, ``hooks._base.PageWalk``): ``params`` go with the first page,
    ``pick`` reads each entry (None leaves it out; ``CCPProtocolError`` skips it with a warning)."""

    url: str
    key: str
    pick: Callable[[Mapping[str, Any]], T | None]
    params: Mapping[str, Any] = field(default_factory=dict)


def get_method(base_url: str, method_id: str) -> Call[dict[str, Any]]:
    """The Method's description (CCP's method.json: inputs, outputs, scripts, ...)."""
    url = protocol.process_url(base_url, method_id)

    def read(answer: Answer) -> dict[str, Any]:
        description = protocol.decode_json(answer.body, url=url)
        if not isinstance(description, dict):
            raise CCPProtocolError(f"The description of Method {method_id!r} at {url} is not a JSON object", url=url)
        return description

    return Call("GET", url, read, method_id=method_id)


def methods(base_url: str, limit: int) -> Listing[dict[str, Any]]:
    return Listing(protocol.processes_url(base_url), "processes", dict, {"limit": limit})


def get_job(base_url: str, job_id: str) -> Call[StatusInfo]:
    url = protocol.job_url(base_url, job_id)
    return Call("GET", url, lambda answer: protocol.read_status(answer.body, url=url, job_id=job_id), job_id=job_id)


def job_item(item: Mapping[str, Any]) -> StatusInfo:
    """A job of a ``GET /jobs`` listing; an entry with no jobID or status raises ``CCPProtocolError``."""
    return StatusInfo.from_json(item)


def jobs(
    base_url: str, method_id: str | None = None, status: str | None = None, limit: int = 100
) -> Listing[StatusInfo]:
    """Every job the context can see, of ``method_id`` only if given. The server is asked to filter by
    Method (``processID``); a job naming another Method is left out here too, in case it does not."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if method_id:
        params["processID"] = method_id

    def pick(item: Mapping[str, Any]) -> StatusInfo | None:
        job = job_item(item)
        return job if not method_id or job.process_id in (None, method_id) else None

    return Listing(protocol.jobs_url(base_url), "jobs", pick, params)


def dismiss_job(base_url: str, job_id: str) -> Call[DismissResult]:
    """OGC dismiss; 404/405/501 mean the server cannot, and are reported so."""

    def read(answer: Answer) -> DismissResult:
        return protocol.dismiss_outcome(job_id, answer.status or 0, answer.body)

    return Call("DELETE", protocol.job_url(base_url, job_id), read, protocol.DISMISS_ANSWERS, job_id=job_id)


def executions(base_url: str, method_id: str | None = None, limit: int = 100) -> Listing[dict[str, Any]]:
    """CCP's execution records (``GET /executions``), of ``method_id`` only if given."""

    def pick(record: Mapping[str, Any]) -> dict[str, Any] | None:
        wanted = method_id is None or execution_records.record_method_id(record) == method_id
        return dict(record) if wanted else None

    return Listing(protocol.executions_url(base_url), "executions", pick, {"limit": limit})


def execution_marked(base_url: str, marker: str) -> Listing[str]:
    """The job ids of the execution records whose request carries ``marker`` in its ``ccpnote``."""

    def pick(record: Mapping[str, Any]) -> str | None:
        return (
            execution_records.record_job_id(record) if execution_records.record_carries_marker(record, marker) else None
        )

    return Listing(protocol.executions_url(base_url), "executions", pick, {"limit": 100})


def get_execution(base_url: str, job_id: str) -> Call[dict[str, Any]]:
    """CCP's execution record (``/executions/{id}``): request, Method, status, timestamps."""
    url = protocol.execution_url(base_url, job_id)

    def read(answer: Answer) -> dict[str, Any]:
        document = protocol.decode_json(answer.body, url=url)
        return execution_records.checked_record(document, url=url, job_id=job_id)

    return Call("GET", url, read, job_id=job_id)
