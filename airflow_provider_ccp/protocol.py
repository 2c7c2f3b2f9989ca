"""CCP / OGC API - Processes 1.0 wire format, with no I/O.

Both transports (the requests-based ``CCPHook`` and the httpx-based ``CCPAsyncHook``) build
their requests and read their answers only through this module, so the worker and the
triggerer can never disagree about a URL, a request body or what a status word means.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import pendulum

from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPError,
    CCPInputError,
    CCPNotFoundError,
    CCPProtocolError,
)

log = logging.getLogger(__name__)

OGC_EXCEPTION_PREFIX = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"

#: Inputs every CCP Method accepts, whether or not its description declares them (ccp-api.md §3.1).
CCP_SYSTEM_INPUTS = frozenset({"ccpimage", "ccpreplicas", "ccpnote", "ccpmaxtime", "ccpsize"})

SUCCESS_STATUSES = frozenset({"successful"})
#: OGC's ``failed``/``dismissed`` plus CCP's own ``cancelled``/``expired`` (ccp-api.md §3.4).
FAILURE_STATUSES = frozenset({"failed", "dismissed", "cancelled", "expired"})
KNOWN_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES | {"accepted", "running"}

#: The execution POST asks for an asynchronous job (OGC 1.0 §7.11.2); CCP answers 201 anyway.
SUBMIT_HEADERS = {"Prefer": "respond-async", "Accept": "application/json", "Content-Type": "application/json"}
JSON_HEADERS = {"Accept": "application/json"}
#: Downloads ask for the bytes as stored, so Content-Length counts what is written to disk.
OUTPUT_ZIP_HEADERS = {"Accept": "application/zip, */*", "Accept-Encoding": "identity"}
RESULTS_HEADERS = JSON_HEADERS | {"Accept-Encoding": "identity"}
SUBMIT_OK_STATUSES = frozenset({200, 201, 202})
#: A server that cannot dismiss jobs answers one of these to ``DELETE /jobs/{id}``.
DISMISS_UNSUPPORTED_STATUSES = frozenset({404, 405, 501})
#: Every answer to ``DELETE /jobs/{id}`` that ``dismiss_outcome`` reads rather than raises.
DISMISS_ANSWERS = frozenset({200, 202, 204}) | DISMISS_UNSUPPORTED_STATUSES
#: Answers worth retrying for idempotent calls (GET, DELETE, token requests).
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})

_warned_statuses: set[str] = set()


# --------------------------------------------------------------------------- URLs


def _segment(value: str) -> str:
    """Quote one path segment, so an id can never add path levels or a query to a URL."""
    return quote(str(value), safe="")


#: Ids a URL cannot carry: quoted or not, the client resolves them to another path (``/jobs/..`` is ``/``).
UNUSABLE_IDS = frozenset({"", ".", ".."})


def method_segment(method_id: str) -> str:
    return _checked_id("Method id", method_id)


def job_segment(job_id: str) -> str:
    return _checked_id("Job id", job_id)


def _checked_id(kind: str, value: str) -> str:
    """Refuse, before any request, an id that would make the URL name another resource."""
    text = str(value)
    if text in UNUSABLE_IDS:
        raise CCPInputError(f"{kind} {text!r} is not usable: expected a name other than '', '.' and '..'")
    return text


def api_url(base_url: str, *segments: str) -> str:
    return base_url.rstrip("/") + "/" + "/".join(_segment(s) for s in segments)


def processes_url(base_url: str) -> str:
    return api_url(base_url, "processes")


def process_url(base_url: str, method_id: str) -> str:
    return api_url(base_url, "processes", method_segment(method_id))


def execution_request_url(base_url: str, method_id: str) -> str:
    return api_url(base_url, "processes", method_segment(method_id), "execution")


def jobs_url(base_url: str) -> str:
    return api_url(base_url, "jobs")


def job_url(base_url: str, job_id: str) -> str:
    return api_url(base_url, "jobs", job_segment(job_id))


def job_results_url(base_url: str, job_id: str) -> str:
    return api_url(base_url, "jobs", job_segment(job_id), "results")


def executions_url(base_url: str) -> str:
    return api_url(base_url, "executions")


def execution_url(base_url: str, job_id: str) -> str:
    return api_url(base_url, "executions", job_segment(job_id))


def output_zip_url(base_url: str, job_id: str) -> str:
    return api_url(base_url, "executions", job_segment(job_id), "outputs", "output.zip")


def ui_execution_url(ui_url: str | None, job_id: str) -> str | None:
    """Where a person looks at the execution: CCP's web UI when the connection names one."""
    if not ui_url:
        return None
    return api_url(ui_url, "executions", job_segment(job_id))


def next_link(document: Mapping[str, Any], current_url: str) -> str | None:
    """The ``rel=next`` link of a paged OGC list, made absolute against the page it came from."""
    for link in document.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "next" and link.get("href"):
            return urljoin(current_url, str(link["href"]))
    return None


def encode_context(context: str) -> str:
    """D4Science's form of a context in ``audience`` and ``X-D4Science-Context``: ``/`` as ``%2F``."""
    return quote(context, safe="")


# --------------------------------------------------------------------------- execute request


def input_value_to_string(name: str, value: Any) -> str:
    """CCP expects every input value as a string (ccp-api.md §3.1, §7.6)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        # Multi-valued inputs travel comma-joined, as CCP's own clients send them.
        return ",".join(input_value_to_string(name, item) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    raise CCPProtocolError(
        f"Input {name!r} has a value of type {type(value).__name__}; "
        "expected a string, number, boolean, list or mapping"
    )


def execute_body(
    inputs: Mapping[str, Any], outputs: Mapping[str, Any] | None = None, response: str = "raw"
) -> dict[str, Any]:
    """The JSON body of ``POST /processes/{id}/execution`` in the OGC 1.0 shape CCP reads."""
    body: dict[str, Any] = {
        "inputs": {name: input_value_to_string(name, value) for name, value in inputs.items()},
        "response": response,
    }
    if outputs is not None:
        body["outputs"] = dict(outputs)
    return body


def value_outputs(output_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Ask for every named output by value, as CCP's own execution form does."""
    return {output_id: {"transmissionMode": "value"} for output_id in output_ids}


def job_id_from_submission(body: Any, location: str | None) -> str:
    """The job id of a new execution: the statusInfo's ``jobID`` (or 2.0's ``id``), else ``Location``."""
    if isinstance(body, Mapping):
        for key in ("jobID", "jobId", "id"):
            if body.get(key):
                return str(body[key])
    if location:
        last = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
        if last:
            return last
    raise CCPProtocolError("The execution was accepted but the answer has no jobID and no Location header")


# --------------------------------------------------------------------------- job status


def normalize_status(word: Any) -> str:
    return str(word or "").strip().lower()


def is_success(status: str) -> bool:
    return normalize_status(status) in SUCCESS_STATUSES


def is_failure(status: str) -> bool:
    return normalize_status(status) in FAILURE_STATUSES


def is_terminal(status: str) -> bool:
    """Terminal means success or failure; unknown words keep the poll going (warned once)."""
    word = normalize_status(status)
    if word not in KNOWN_STATUSES and word not in _warned_statuses:
        _warned_statuses.add(word)
        log.warning("Unknown job status %r: treated as not finished; polling continues", word)
    return word in SUCCESS_STATUSES or word in FAILURE_STATUSES


def _parse_time(value: Any) -> pendulum.DateTime | None:
    if not value:
        return None
    try:
        parsed = pendulum.parse(str(value))
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    return parsed if isinstance(parsed, pendulum.DateTime) else None


@dataclass(frozen=True)
class StatusInfo:
    """OGC API - Processes ``statusInfo`` (CCP calls it jobStatus), tolerant of missing optional fields."""

    job_id: str
    status: str
    message: str = ""
    process_id: str | None = None
    progress: int | None = None
    created: pendulum.DateTime | None = None
    started: pendulum.DateTime | None = None
    finished: pendulum.DateTime | None = None
    updated: pendulum.DateTime | None = None
    links: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Any) -> StatusInfo:
        if not isinstance(body, Mapping):
            raise CCPProtocolError(f"Expected a statusInfo JSON object, got {type(body).__name__}")
        job_id = body.get("jobID") or body.get("jobId") or body.get("id")
        if not job_id or "status" not in body:
            raise CCPProtocolError("The statusInfo has no jobID or no status")
        progress = body.get("progress")
        return cls(
            job_id=str(job_id),
            status=normalize_status(body["status"]),
            message=str(body.get("message") or ""),
            process_id=str(body["processID"]) if body.get("processID") else None,
            progress=int(progress) if isinstance(progress, int | float) else None,
            created=_parse_time(body.get("created")),
            started=_parse_time(body.get("started")),
            finished=_parse_time(body.get("finished")),
            updated=_parse_time(body.get("updated")),
            links=tuple(link for link in body.get("links") or [] if isinstance(link, Mapping)),
            raw=dict(body),
        )

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)

    @property
    def successful(self) -> bool:
        return is_success(self.status)

    @property
    def failed(self) -> bool:
        return is_failure(self.status)

    @property
    def duration_seconds(self) -> float | None:
        start = self.started or self.created
        end = self.finished or (self.updated if self.terminal else None)
        if start is None or end is None:
            return None
        return (end - start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives only: safe for XCom and trigger events."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "message": self.message,
            "process_id": self.process_id,
            "progress": self.progress,
            "created": self.created.isoformat() if self.created else None,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "updated": self.updated.isoformat() if self.updated else None,
            "duration_seconds": self.duration_seconds,
        }


@dataclass(frozen=True)
class DismissResult:
    """What ``DELETE /jobs/{id}`` achieved; a server without dismiss support is an answer, not a crash."""

    supported: bool
    status: StatusInfo | None
    message: str


def dismiss_outcome(job_id: str, status_code: int, body: bytes) -> DismissResult:
    if status_code in DISMISS_UNSUPPORTED_STATUSES:
        return DismissResult(
            supported=False,
            status=None,
            message=f"The server cannot dismiss job {job_id} (HTTP {status_code} to DELETE /jobs/{job_id})",
        )
    try:
        status: StatusInfo | None = StatusInfo.from_json(json.loads(body))
    except (ValueError, CCPError):
        status = None
    word = status.status if status else "dismissed"
    return DismissResult(supported=True, status=status, message=f"CCP job {job_id} is {word}")


# --------------------------------------------------------------------------- errors


def _error_document(body: bytes) -> Mapping[str, Any] | None:
    try:
        document = json.loads(body) if body else None
    except ValueError:
        return None
    return document if isinstance(document, Mapping) else None


def error_from_response(
    status_code: int,
    reason: str,
    body: bytes,
    *,
    url: str,
    method_id: str | None = None,
    job_id: str | None = None,
) -> CCPError:
    """Map an HTTP error answer to the exception hierarchy, reading an OGC exception body if any.

    An HTML or empty body is reported by its status line rather than as a JSON decoding error.
    """
    document = _error_document(body) or {}
    error_type = str(document.get("type") or "") or None
    title = str(document.get("title") or "") or None
    detail = str(document.get("detail") or document.get("description") or "") or None
    subject = " ".join(
        part for part in (f"Method {method_id!r}" if method_id else "", f"job {job_id!r}" if job_id else "") if part
    )
    summary = f"HTTP {status_code} {reason}".strip()
    words = "; ".join(part for part in (title, detail) if part)
    message = f"{summary} from {url}" + (f" ({subject})" if subject else "") + (f": {words}" if words else "")
    error_class: type[CCPError] = CCPError
    if status_code in (401, 403):
        error_class = CCPAuthError
    elif status_code == 404:
        error_class = CCPNotFoundError
    return error_class(
        message,
        http_status=status_code,
        method_id=method_id,
        job_id=job_id,
        url=url,
        error_type=error_type,
        title=title,
        detail=detail,
    )


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            seconds = (parsedate_to_datetime(value) - pendulum.now("UTC")).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


def decode_json(body: bytes, *, url: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as err:
        raise CCPProtocolError(f"Expected JSON from {url}, got something else: {err}", url=url) from None
