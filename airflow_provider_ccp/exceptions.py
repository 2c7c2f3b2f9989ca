"""The provider's exceptions: one small hierarchy, each carrying what a DAG author needs to act on it.

Messages never contain secrets: they are built from URLs, ids, HTTP status lines and the
server's own error words, never from request bodies or headers.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
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


class CCPJobFailedError(CCPError):
    """The CCP execution ended in a failure status (failed, dismissed, cancelled, expired)."""


class CCPJobTimeoutError(CCPError):
    """The CCP execution did not reach a terminal status before the deadline."""


class CCPAmbiguousSubmissionError(CCPError, AirflowFailException):
    """The execution POST may have started an execution, and looking it up could not tell which one.

    The task fails without retrying, as a retry could pay for a second execution (unless it says
    ``on_ambiguous_submit="resubmit"``, and then this is not raised): ``marker``
    and ``submitted_at`` name what to look for in CCP's execution list before retrying by hand.
    """

    def __init__(self, message: str, *, marker: str | None, submitted_at: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.marker = marker
        self.submitted_at = submitted_at
