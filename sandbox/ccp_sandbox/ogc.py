"""OGC API - Processes 1.0 vocabulary shared by the endpoints: exceptions, conformance, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from fastapi.responses import JSONResponse

EXCEPTION_BASE = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
CONFORMANCE_BASE = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMANCE_CLASSES = ("core", "ogc-process-description", "json", "job-list", "dismiss")
REL_RESULTS = "http://www.opengis.net/def/rel/ogc/1.0/results"
PROBLEM_JSON = "application/problem+json"


class OGCError(Exception):
    """An error answered with an RFC 7807 / OGC exception document."""

    def __init__(self, status: int, word: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.word = word
        self.detail = detail
        self.headers = headers or {}


def problem(status: int, word: str, detail: str) -> dict[str, object]:
    return {
        "type": EXCEPTION_BASE + word,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }


def problem_response(error: OGCError) -> JSONResponse:
    return JSONResponse(
        problem(error.status, error.word, error.detail),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_JSON,
    )


def status_word(status: int) -> str:
    """'Service Unavailable' -> 'service-unavailable': an exception word for an arbitrary HTTP status."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return f"http-{status}"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a 'Z', the form CCP's jobStatus example uses."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
