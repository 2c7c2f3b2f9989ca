"""The provider's exceptions: one small hierarchy, each carrying what a DAG author needs to act on it.

Messages never contain secrets: they are built from URLs, ids, HTTP status lines and the
server's own error words, never from request bodies or headers.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class CCPError(AirflowException):
    """A CCP (or OGC API - Processes) call failed."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        method_id: str | None = None,
        job_id: str | None = None,
        url: str | None = None,
        error_type: str | None = None,
        title: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.method_id = method_id
        self.job_id = job_id
        self.url = url
        self.error_type = error_type
        self.title = title
        self.detail = detail


class CCPAuthError(CCPError):
    """A token could not be obtained, or CCP rejected the token (401/403)."""


class CCPNotFoundError(CCPError):
    """The Method, job or execution does not exist (404)."""


class CCPProtocolError(CCPError):
    """The server answered something this client cannot read (not a statusInfo, no job id, ...)."""


class CCPInputError(CCPError, ValueError):
    """The inputs given for a Method do not match its description."""


class CCPDownloadError(CCPError):
    """An output download ended early or does not match its announced size."""


class CCPOutputLimitError(CCPDownloadError):
    """The outputs archive would expand past an extraction limit (bytes, entries, compression ratio)."""


class CCPJobFailedError(CCPError):
    """The CCP execution ended in a failure status (failed, dismissed, cancelled, expired)."""


class CCPJobTimeoutError(CCPError):
    """The CCP execution did not reach a terminal status before the deadline."""
