"""The provider's exceptions, each carrying what a DAG author needs to act on it. Messages never contain
secrets: they are built from URLs, ids, HTTP status lines and the server's own error words, never from request
bodies or headers."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_ccp.version_compat import AirflowFailException

__all__ = [
    "CCPError",
    "CCPAuthError",
    "CCPNotFoundError",
    "CCPProtocolError",
    "CCPInputError",
    "CCPDownloadError",
    "CCPOutputLimitError",
    "CCPJobFailedError",
    "CCPJobTimeoutError",
    "CCPSubmissionLostError",
    "CCPAmbiguousSubmissionError",
    "CCPConfigError",
    "CCPCredentialsError",
    "CCPTrustError",
    "MAX_MESSAGE_CHARS",
    "cut",
    "recast",
]

#: The longest message built from a server's words: an exception, an event or a log line never grows past it.
MAX_MESSAGE_CHARS = 2000


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` at most ``limit`` characters long (plus a note of how much was left out)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


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
        # A server's words reach the message (and the log, and the event): a huge answer must not.
        super().__init__(cut(message))
        self.http_status = http_status
        self.method_id = method_id
        self.job_id = job_id
        self.url = url
        self.error_type = error_type
        self.title = None if title is None else cut(title)
        self.detail = None if detail is None else cut(detail)


class CCPAuthError(CCPError):
    """A token could not be obtained, or CCP rejected the token (401/403)."""


class CCPCredentialsError(CCPAuthError):
    """The token endpoint refused the connection's credentials or context (wrong password, unknown
    client, no access to the VRE): the same request gets the same refusal, so the task fails at once."""


class CCPConfigError(CCPError, ValueError):
    """The ``ccp`` connection cannot work as defined (an unknown auth_flow, a missing CA bundle, a
    timeout that is not a number ...): nothing was sent, and no retry can succeed until it is fixed."""


class CCPNotFoundError(CCPError):
    """The Method, job or execution does not exist (404)."""


class CCPProtocolError(CCPError):
    """The server answered something this client cannot read (not a statusInfo, no job id, ...)."""


class CCPTrustError(CCPProtocolError, AirflowFailException):
    """An answer broke the trust boundary (another origin, a refused redirect, an unverified certificate,
    a bound): the same request cannot do better, so the task fails without retrying (docs/connection.md)."""


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


class CCPSubmissionLostError(CCPError):
    """The answer to an execution POST was lost (no answer, or a 5xx from the execution URL itself): the
    server may have created the execution, so look for it before submitting again (the operator does)."""


class CCPAmbiguousSubmissionError(CCPError, AirflowFailException):
    """The execution POST may have started an execution, and looking it up could not tell which one. The task
    fails without retrying, as a retry could pay for a second execution (``on_ambiguous_submit="resubmit"``
    retries instead): ``marker`` and ``submitted_at`` name what to look for in CCP's execution list."""

    def __init__(self, message: str, *, marker: str | None, submitted_at: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.marker = marker
        self.submitted_at = submitted_at


def recast(error: CCPError, cls: type[CCPError]) -> CCPError:
    """The same error (message, attributes, traceback) as an instance of ``cls``."""
    copy = cls(*error.args)
    copy.__dict__.update(error.__dict__)
    return copy.with_traceback(error.__traceback__)
