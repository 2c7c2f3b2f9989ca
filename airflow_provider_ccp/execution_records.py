"""CCP's execution records (``GET /executions``), with no I/O: the job, Method, status and submission marker a
record carries, whatever its shape (CCP's is undocumented). The marker is written by ``submission``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_ccp.exceptions import CCPTrustError
from airflow_provider_ccp.protocol import StatusInfo

__all__ = ["record_status", "newest_first", "checked_record", "record_carries_marker", "MARKER_INPUT"]

#: The CCP input that carries a submission's marker: CCP keeps it in the execution record's request.
MARKER_INPUT = "ccpnote"


def record_job_id(record: Mapping[str, Any]) -> str | None:
    """The job id of an execution record (``GET /executions``); CCP's shape is undocumented."""
    for candidate in (record, record.get("status")):
        if isinstance(candidate, Mapping):
            for key in ("id", "jobID", "jobId"):
                if candidate.get(key):
                    return str(candidate[key])
    return None


def checked_record(record: Any, *, url: str, job_id: str) -> dict[str, Any]:
    """The execution record of ``job_id`` as a dict; a record naming another job is refused, like a status."""
    if not isinstance(record, Mapping):
        return {"record": record}
    named = record_job_id(record)
    if named is not None and named != job_id:
        raise CCPTrustError(
            f"Asked {url} for the execution of job {job_id!r} and the answer is the record of job {named!r}",
            url=url,
            job_id=job_id,
        )
    return dict(record)


def record_method_id(record: Mapping[str, Any]) -> str | None:
    """The Method of an execution record: ``method`` (an object with ``id``, or the id), else the statusInfo's."""
    method, status = record.get("method"), record.get("status")
    if isinstance(method, Mapping):
        method = method.get("id")
    found = method or record.get("processID") or (status.get("processID") if isinstance(status, Mapping) else None)
    return str(found) if found else None


def record_status(record: Mapping[str, Any]) -> StatusInfo:
    """An execution record read as a statusInfo: its own one when it nests it, else from its top-level fields."""
    status = record.get("status")
    document = dict(status) if isinstance(status, Mapping) else {"status": status}
    for key in ("created", "started", "finished", "updated", "message"):
        if record.get(key) and not document.get(key):
            document[key] = record[key]
    document["jobID"] = record_job_id(record) or "?"
    document["processID"] = record_method_id(record)
    document["status"] = document.get("status") or "unknown"
    return StatusInfo.from_json(document)


def newest_first(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Execution records by creation time, newest first; those without a readable time keep their order, last."""
    listed = [(record_status(record).created, dict(record)) for record in records]
    # Stable even reversed: records created at once, and the undated ones (sorted last), keep their order.
    listed.sort(key=lambda item: (item[0] is not None, item[0]), reverse=True)
    return [record for _, record in listed]


def record_carries_marker(record: Mapping[str, Any], marker: str) -> bool:
    """Whether an execution record's request (top-level ``request`` or CCP's ``metadata/request.json``)
    has ``marker`` in its ``ccpnote`` input, sent as a plain string or as an OGC ``{"value": ...}``."""
    metadata = record.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    for request in (record.get("request"), metadata.get("request"), metadata.get("request.json")):
        inputs = request.get("inputs") if isinstance(request, Mapping) else None
        note = inputs.get(MARKER_INPUT) if isinstance(inputs, Mapping) else None
        if isinstance(note, Mapping):
            note = note.get("value")
        if isinstance(note, str) and marker in note:
            return True
    return False
