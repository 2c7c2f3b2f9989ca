"""CCP / OGC API - Processes 1.0 wire format, with no I/O: both hooks build their requests and read their
answers only through this module, so the worker and the triggerer never disagree about a URL, a request body
or what a status word means."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import quote

import pendulum

from airflow_provider_ccp.descriptions import input_value_to_string
from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPError,
    CCPInputError,
    CCPNotFoundError,
    CCPProtocolError,
    CCPTrustError,
    cut,
)
from airflow_provider_ccp.exchange import followed_link, load_json

__all__ = ["StatusInfo", "SyncResults", "Submitted", "error_from_response", "read_status", "next_link"]

#: Outputs CCP's execution form ("Output options") and the code it generates request besides the declared ones.
CCP_LOG_OUTPUTS = ("stdout", "stderr")

SUCCESS_STATUSES = frozenset({"successful"})
#: OGC's ``failed``/``dismissed`` plus CCP's own ``cancelled``/``expired`` (ccp-api.md §3.4).
FAILURE_STATUSES = frozenset({"failed", "dismissed", "cancelled", "expired"})
KNOWN_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES | {"accepted", "running"}
#: Members of the execute request the provider writes itself: extra members may not replace them.
PROVIDER_MEMBERS = frozenset({"inputs", "outputs", "response"})

JSON_HEADERS = {"Accept": "application/json"}
#: Downloads ask for the bytes as stored, so Content-Length counts what is written to disk.
OUTPUT_ZIP_HEADERS = {"Accept": "application/zip, */*", "Accept-Encoding": "identity"}
RESULTS_HEADERS = JSON_HEADERS | {"Accept-Encoding": "identity"}


def method_segment(method_id: str) -> str:
    return _checked_id("Method id", method_id)


def job_segment(job_id: str) -> str:
    return _checked_id("Job id", job_id)


def _checked_id(kind: str, value: str) -> str:
    text = str(value)
    # Quoted or not, the client resolves these to another path (``/jobs/..`` is ``/``).
    if text in ("", ".", ".."):
        raise CCPInputError(f"{kind} {text!r} is not usable: expected a name other than '', '.' and '..'")
    return text


def api_url(base_url: str, *segments: str) -> str:
    # Each segment quoted whole: an id can never add path levels or a query to a URL.
    return base_url.rstrip("/") + "/" + "/".join(quote(str(s), safe="") for s in segments)


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


def next_link(document: Mapping[str, Any], current_url: str) -> str | None:
    """The ``rel=next`` link of a paged OGC list, made absolute against the page it came from. A link to another
    origin is refused (``CCPTrustError``): the next request would carry the bearer token there."""
    for link in document.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "next" and link.get("href"):
            return followed_link(link["href"], current_url, "the next page of a list")
    return None


def listed_items(document: Any, key: str) -> list[Mapping[str, Any]]:
    """The objects of a list answer: ``{key: [...]}`` (OGC) or a bare JSON array (CCP's ``/executions``)."""
    items = document.get(key) if isinstance(document, Mapping) else document
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def encode_context(context: str) -> str:
    """D4Science's form of a context in ``audience`` and ``X-D4Science-Context``: ``/`` as ``%2F``."""
    return quote(context, safe="")


def string_inputs(inputs: Mapping[str, Any]) -> dict[str, str]:
    return {name: input_value_to_string(name, value) for name, value in inputs.items()}


def request_members(members: Mapping[str, Any] | None) -> dict[str, Any]:
    """Top-level members added to the execute request, refused when they would replace the provider's own."""
    if members is None:
        return {}
    if not isinstance(members, Mapping):
        raise CCPInputError(
            "request_members must be a mapping of member names to values "
            f"(e.g. {{'subscribers': [...]}}), got a {type(members).__name__}"
        )
    if taken := sorted(str(name) for name in members if name in PROVIDER_MEMBERS):
        raise CCPInputError(
            f"request_members may not set {', '.join(map(repr, taken))}: the provider writes "
            f"{', '.join(sorted(PROVIDER_MEMBERS))} (pass inputs= or outputs= instead)"
        )
    try:
        json.dumps(members)
    except (TypeError, ValueError) as err:
        raise CCPInputError(f"request_members must be JSON values: {err}") from None
    return dict(members)


def value_outputs(output_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """Ask for every named output by value, as CCP's own execution form does."""
    return {output_id: {"transmissionMode": "value"} for output_id in output_ids}


@dataclass(frozen=True)
class SyncResults:
    """The server ran the execution before answering (OGC sync execute): HTTP 200 with a JSON results
    document, no job. Nothing else is taken for a run: a proxy's HTML page is no result."""

    body: bytes = field(repr=False)
    media_type: str = "application/json"
    file_name: ClassVar[str] = "results.json"


def normalize_status(word: Any) -> str:
    return str(word or "").strip().lower()


def is_success(status: str) -> bool:
    return normalize_status(status) in SUCCESS_STATUSES


def is_failure(status: str) -> bool:
    return normalize_status(status) in FAILURE_STATUSES


def is_terminal(status: str) -> bool:
    """Terminal means success or failure; an unknown word keeps the poll going (``JobWatch`` warns once)."""
    return is_success(status) or is_failure(status)


def is_known(status: str) -> bool:
    return normalize_status(status) in KNOWN_STATUSES


def _parse_time(value: Any) -> pendulum.DateTime | None:
    if not value:
        return None
    try:
        parsed = pendulum.parse(str(value))
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        return None
    return parsed if isinstance(parsed, pendulum.DateTime) else None


def epoch_seconds(value: Any) -> float | None:
    """A statusInfo timestamp as epoch seconds (None when missing or no time; a naive time is UTC), for whole
    listings: the standard library's ISO parser takes a microsecond where pendulum's takes about thirty."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_time(value)
        return None if parsed is None else parsed.timestamp()
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _timestamp(name: str) -> cached_property[pendulum.DateTime | None]:
    return cached_property(lambda info: _parse_time(info.raw.get(name)))


@dataclass(frozen=True)
class StatusInfo:
    """OGC API - Processes ``statusInfo`` (CCP calls it jobStatus), tolerant of missing optional fields. The
    timestamps are parsed from ``raw`` when first read: a poll that only reads the status never pays for them."""

    job_id: str
    status: str
    message: str = ""
    process_id: str | None = None
    progress: int | None = None
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
        if not (isinstance(progress, int) or (isinstance(progress, float) and math.isfinite(progress))):
            progress = None  # NaN, Infinity and 1e400 (read as Infinity) say nothing about progress
        return cls(
            job_id=str(job_id),
            status=normalize_status(body["status"]),
            message=cut(str(body.get("message") or "")),
            process_id=str(body["processID"]) if body.get("processID") else None,
            progress=None if progress is None else int(progress),
            links=tuple(link for link in body.get("links") or [] if isinstance(link, Mapping)),
            raw=dict(body),
        )

    _TIMESTAMPS: ClassVar[tuple[str, ...]] = ("created", "started", "finished", "updated")
    created = _timestamp("created")
    started = _timestamp("started")
    finished = _timestamp("finished")
    updated = _timestamp("updated")

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
        fields = {name: getattr(self, name) for name in ("job_id", "status", "message", "process_id", "progress")}
        times = {name: moment.isoformat() if (moment := getattr(self, name)) else None for name in self._TIMESTAMPS}
        return fields | times | {"duration_seconds": self.duration_seconds}


Submitted = StatusInfo | SyncResults


def error_from_response(
    status_code: int,
    reason: str,
    body: bytes,
    *,
    url: str,
    method_id: str | None = None,
    job_id: str | None = None,
) -> CCPError:
    """Map an HTTP error answer to the exception hierarchy, reading an OGC exception body if any. The message
    is one line (task logs and Airflow's failure summary show only the first): the server's reason and the
    status first, then where (URL, Method, job); an HTML or empty body is reported by its status line."""
    try:
        document = load_json(body)
    except ValueError:  # an HTML or empty body
        document = None
    document = document if isinstance(document, Mapping) else {}
    error_type = str(document.get("type") or "") or None
    title = str(document.get("title") or "") or None
    detail = str(document.get("detail") or document.get("description") or "") or None
    subject = ", ".join(f"{kind} {value!r}" for kind, value in (("Method", method_id), ("job", job_id)) if value)
    summary = f"HTTP {status_code} {reason}".strip()
    # A title that only repeats the status line ("Bad Request") would push the reason right.
    heading = title if title and title.strip().lower() != reason.strip().lower() else None
    words = "; ".join(" ".join(part.split()) for part in (heading, detail) if part)
    first = f"{words} ({summary})" if words else summary
    message = f"{first} from {url}" + (f" ({subject})" if subject else "")
    error_class = {401: CCPAuthError, 403: CCPAuthError, 404: CCPNotFoundError}.get(status_code, CCPError)
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


def decode_json(body: bytes, *, url: str) -> Any:
    try:
        return load_json(body)
    except ValueError as err:
        raise CCPProtocolError(f"Expected JSON from {url}, got something else: {err}", url=url) from None


def read_status(body: bytes, *, url: str, job_id: str) -> StatusInfo:
    """The statusInfo of ``job_id``; an answer naming another job is refused, never followed."""
    info = StatusInfo.from_json(decode_json(body, url=url))
    if info.job_id != job_id:
        raise CCPTrustError(
            f"Asked {url} for job {job_id!r} and the answer is the status of job {info.job_id!r}",
            url=url,
            job_id=job_id,
        )
    return info
