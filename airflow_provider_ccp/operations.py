"""Every operation both hooks offer, defined once with no I/O: a ``Call`` is one request and how its answer
reads, a ``Listing`` a paged list and what each entry contributes. ``CCPHook`` and ``CCPAsyncHook`` only perform
them, so they cannot filter, page or parse differently (tests/integration/hooks/test_parity.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from airflow_provider_ccp import execution_records, protocol
from airflow_provider_ccp.connection import ServerKind
from airflow_provider_ccp.descriptions import CCP_SYSTEM_INPUTS, is_ccp_description, json_value, method_inputs
from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError
from airflow_provider_ccp.exchange import Answer, load_json
from airflow_provider_ccp.protocol import StatusInfo, Submitted, SyncResults

__all__ = ["Call", "Listing", "DismissResult", "execute_body", "read_submission"]

T = TypeVar("T")
MAX_PAGES = 1000


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request (``method`` ``url`` with ``params``; an answer outside ``ok`` is an error) and its reading."""

    method: str
    url: str
    read: Callable[[Answer], T]
    ok: frozenset[int] = frozenset({200})
    params: Mapping[str, Any] | None = None
    method_id: str | None = None
    job_id: str | None = None
    #: A JSON body, and the headers to send instead of ``protocol.JSON_HEADERS``.
    body: Any = None
    headers: Mapping[str, str] | None = None

    @property
    def ids(self) -> dict[str, str | None]:  # what an error of this call names
        return {"method_id": self.method_id, "job_id": self.job_id}


@dataclass
class Listing(Generic[T]):
    """A paged list, walked once by both hooks' rule: follow ``rel=next``, each page once, at most ``MAX_PAGES``,
    keeping only the page URLs; ``params`` go with the first page only (a next link carries its own). ``pick``
    reads each entry (None leaves it out; ``CCPProtocolError`` skips it with a warning)."""

    url: str
    key: str
    pick: Callable[[Mapping[str, Any]], T | None]
    params: Mapping[str, Any] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._next: str | None = self.url

    def params_of(self, page_url: str) -> Mapping[str, Any] | None:
        return self.params if page_url == self.url else None

    def next_page(self) -> str | None:
        url = self._next
        if url is None or url in self._seen or len(self._seen) >= MAX_PAGES:
            return None
        self._seen.add(url)
        return url

    def read(self, document: Any) -> list[Mapping[str, Any]]:
        """The items of the page just fetched; remembers where the next one is."""
        page_url = self._next or ""
        self._next = protocol.next_link(document, page_url) if isinstance(document, Mapping) else None
        return protocol.listed_items(document, self.key)


def submit(base_url: str, method_id: str, body: Mapping[str, Any]) -> Call[Submitted]:
    def read(answer: Answer) -> Submitted:
        headers = answer.response.headers
        return read_submission(answer.status or 0, answer.body, headers.get("Location"), headers.get("Content-Type"))

    url = protocol.execution_request_url(base_url, method_id)
    return Call("POST", url, read, SUBMIT_OK_STATUSES, method_id=method_id, body=body, headers=SUBMIT_HEADERS)


def get_method(base_url: str, method_id: str) -> Call[dict[str, Any]]:
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
        job = StatusInfo.from_json(item)
        return job if not method_id or job.process_id in (None, method_id) else None

    return Listing(protocol.jobs_url(base_url), "jobs", pick, params)


def dismiss_job(base_url: str, job_id: str) -> Call[DismissResult]:
    def read(answer: Answer) -> DismissResult:
        if answer.status in DISMISS_UNSUPPORTED_STATUSES:
            message = f"The server cannot dismiss job {job_id} (HTTP {answer.status} to DELETE /jobs/{job_id})"
            return DismissResult(supported=False, status=None, message=message)
        try:
            status: StatusInfo | None = StatusInfo.from_json(load_json(answer.body))
        except (ValueError, CCPError):
            status = None
        if status is not None and status.job_id != job_id:
            status = None  # an answer about another job says nothing about this one
        word = status.status if status else "dismissed"
        return DismissResult(supported=True, status=status, message=f"CCP job {job_id} is {word}")

    return Call("DELETE", protocol.job_url(base_url, job_id), read, DISMISS_ANSWERS, job_id=job_id)


def executions(base_url: str, method_id: str | None = None, limit: int = 100) -> Listing[dict[str, Any]]:
    """CCP's execution records (``GET /executions``), of ``method_id`` only if given."""

    def pick(record: Mapping[str, Any]) -> dict[str, Any] | None:
        wanted = method_id is None or execution_records.record_method_id(record) == method_id
        return dict(record) if wanted else None

    return Listing(protocol.executions_url(base_url), "executions", pick, {"limit": limit})


def execution_marked(base_url: str, marker: str) -> Listing[str]:
    """The job ids of the execution records whose request carries ``marker`` in its ``ccpnote``."""

    def pick(record: Mapping[str, Any]) -> str | None:
        carries = execution_records.record_carries_marker(record, marker)
        return execution_records.record_job_id(record) if carries else None

    return Listing(protocol.executions_url(base_url), "executions", pick, {"limit": 100})


def get_execution(base_url: str, job_id: str) -> Call[dict[str, Any]]:
    url = protocol.execution_url(base_url, job_id)

    def read(answer: Answer) -> dict[str, Any]:
        document = protocol.decode_json(answer.body, url=url)
        return execution_records.checked_record(document, url=url, job_id=job_id)

    return Call("GET", url, read, job_id=job_id)


#: The execution POST asks for an asynchronous job (OGC 1.0 §7.11.2); CCP answers 201 anyway.
SUBMIT_HEADERS = {"Prefer": "respond-async", "Accept": "application/json", "Content-Type": "application/json"}
SUBMIT_OK_STATUSES = frozenset({200, 201, 202})
#: A server that cannot dismiss jobs answers one of these to ``DELETE /jobs/{id}``.
DISMISS_UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
#: Every answer to ``DELETE /jobs/{id}`` that ``dismiss_job`` reads rather than raises.
DISMISS_ANSWERS = frozenset({200, 202, 204}) | DISMISS_UNSUPPORTED_STATUSES


def execute_body(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any] | None = None,
    response: str = "raw",
    *,
    typed_by: Mapping[str, Any] | None = None,
    members: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /processes/{id}/execution`` in the OGC 1.0 shape CCP reads: input values as
    strings (CCP), or as the JSON types the schemas of ``typed_by`` declare (a process on another OGC server);
    ``members`` are added at the top level (e.g. ``subscribers``), never replacing the ones written here."""
    added = protocol.request_members(members)
    encoded = typed_inputs(inputs, typed_by) if typed_by is not None else protocol.string_inputs(inputs)
    body: dict[str, Any] = {"inputs": encoded, "response": response}
    if outputs is not None:
        body["outputs"] = dict(outputs)
    return body | added


def typing_description(
    kind: ServerKind,
    inputs: Mapping[str, Any],
    description: Mapping[str, Any] | None,
    describe: Callable[[], Mapping[str, Any]],
) -> Mapping[str, Any] | None:
    """The description whose schemas type the inputs, or None when they go as strings (CCP). Extra ``server``:
    ``ccp`` and ``ogc`` decide; ``auto`` takes CCP when the inputs name a CCP input (``ccpimage``, ...) or the
    Method declares ``ccpimage``. The description is read (``describe``) only when it decides and was not given."""
    if kind == ServerKind.CCP or not inputs or (kind == ServerKind.AUTO and not CCP_SYSTEM_INPUTS.isdisjoint(inputs)):
        return None
    if description is None:
        description = describe()
    if kind == ServerKind.AUTO and is_ccp_description(description):
        return None
    return description


def typed_inputs(inputs: Mapping[str, Any], description: Mapping[str, Any]) -> dict[str, Any]:
    """Each value as the JSON type its input's schema declares (``MethodInput.typed``); an undeclared
    input goes as the JSON value it stands for. Raises ``CCPInputError`` naming the input."""
    declared = method_inputs(description)
    return {
        name: declared[name].typed(value) if name in declared else json_value(name, value)
        for name, value in inputs.items()
    }


def job_id_from_submission(body: Any, location: str | None) -> str | None:
    """The job id of a new execution: the statusInfo's ``jobID``, else the ``Location`` segment after ``jobs``
    (``.../jobs/{id}[/results]``), else its last one (where CCP puts it). Never another field: a sync results
    document may hold an ``id`` (the process's, an output's), which names no job."""
    if isinstance(body, Mapping):
        for key in ("jobID", "jobId"):
            if body.get(key):
                return str(body[key])
    segments = [unquote(part) for part in urlsplit(location or "").path.split("/") if part]
    for index in range(len(segments) - 2, -1, -1):
        if segments[index] == "jobs":
            return segments[index + 1]
    return segments[-1] if segments else None


def read_submission(status_code: int, body: bytes, location: str | None, media_type: str | None) -> Submitted:
    """The answer to the execution POST: the new job's statusInfo (``status`` empty when the answer held none,
    e.g. a bare 201 with a ``Location``), or the results of a sync execution."""
    media = (media_type or "").split(";", 1)[0].strip().lower()
    json_media = media == "application/json" or media.endswith("+json")
    try:
        document = load_json(body) if body and (media == "" or json_media) else None
    except ValueError:
        document = None
    job_id = job_id_from_submission(document, location)
    if job_id is None:
        if status_code == 200 and json_media and isinstance(document, Mapping):
            return SyncResults(body, media)
        if status_code == 200:
            # A proxy's login page or an empty 200 is no run of the Method: only a results document is.
            shown = f"{len(body)} bytes of {media or 'an unnamed media type'}" if body else "an empty body"
            raise CCPProtocolError(
                f"The execution POST was answered HTTP 200 with {shown}: neither a job (statusInfo or "
                "Location) nor a JSON results document, so nothing says the Method ran"
            )
        raise CCPProtocolError(
            f"The execution was accepted (HTTP {status_code}) but the answer names no job: "
            "no Location header and no jobID in a statusInfo"
        )
    status = dict(document) if isinstance(document, Mapping) else {}
    return StatusInfo.from_json(status | {"jobID": job_id, "status": status.get("status") or ""})


def submission_may_have_landed(error: CCPError, url: str) -> bool:
    """Whether a failed execution POST may still have created an execution: no answer (connection lost, read
    timeout, refused unread as too large) or a 5xx from the execution URL itself. A 4xx is a refusal, and an
    error with another URL (the token endpoint) happened before the POST was sent."""
    return error.url == url and (error.http_status is None or error.http_status >= 500)


@dataclass(frozen=True)
class DismissResult:
    """What ``DELETE /jobs/{id}`` achieved; a server without dismiss support is an answer, not a crash."""

    supported: bool
    status: StatusInfo | None
    message: str
