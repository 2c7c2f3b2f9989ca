"""The provider's exceptions: one small hierarchy, each carrying what a DAG author needs to act on it.

Messages never contain secrets: they are built from URLs, ids, HTTP status lines and the
server's own error words, never from request bodies or headers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

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
    "RETRYABLE_CLIENT_ERRORS",
    "MAX_MESSAGE_CHARS",
    "cut",
    "retry_may_help",
    "is_final",
    "is_transient",
    "recast",
    "as_final",
    "fail_without_retry",
]

#: The longest message built from a server's words: an exception, an event or a log line never grows past it.
MAX_MESSAGE_CHARS = 2000

#: 4xx answers a retry can change: an expired token (the hook already renewed it once), a timeout, a rate limit.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 408, 429})
#: A server error that asking again never fixes: the server has no such feature.
NOT_IMPLEMENTED = 501


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
    """The answer to an execution POST was lost (no answer, or a 5xx from the execution URL itself).

    The server, or a proxy in front of it, may have created the execution before the answer was
    lost: look for it before submitting again (the operator does, docs/operators.md).
    """


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


def retry_may_help(status: int | None) -> bool:
    """The one reading of an HTTP status for retries: no answer at all, a 5xx, or a 4xx a retry can change."""
    return status is None or status >= 500 or status in RETRYABLE_CLIENT_ERRORS


def is_final(error: BaseException) -> bool:
    """An error that the same request cannot escape on retry: bad inputs, a connection that cannot
    work, credentials the token endpoint refused, an unknown Method, a 4xx."""
    if isinstance(error, CCPInputError | CCPConfigError | CCPCredentialsError):
        return True
    status = getattr(error, "http_status", None) if isinstance(error, CCPError) else None
    return status is not None and 400 <= status < 500 and not retry_may_help(status)


def is_transient(error: CCPError) -> bool:
    """Whether asking again may help a wait: connection trouble, 5xx, 429, an unreadable body.

    An auth error raised before any answer (no HTTP status) is final: the token flow itself said no,
    e.g. a static token (``auth_flow=token``) that CCP rejected cannot be renewed.
    """
    if isinstance(error, CCPNotFoundError | CCPTrustError | CCPConfigError | CCPCredentialsError):
        return False
    if isinstance(error, CCPAuthError) and error.http_status is None:
        return False
    return error.http_status != NOT_IMPLEMENTED and retry_may_help(error.http_status)


_FINAL_TYPES: dict[type[CCPError], type[CCPError]] = {}


def _final_type(cls: type[CCPError]) -> type[CCPError]:
    # The same class name and bases (``except CCPInputError`` still matches), plus the one Airflow
    # reads as "fail now, no retry" (``airflow.exceptions`` on 3.1, ``airflow.sdk.exceptions`` on 3.3).
    if cls not in _FINAL_TYPES:
        namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__}
        _FINAL_TYPES[cls] = type(cls.__name__, (cls, AirflowFailException), namespace)
    return _FINAL_TYPES[cls]


def recast(error: CCPError, cls: type[CCPError]) -> CCPError:
    """The same error (message, attributes, traceback) as an instance of ``cls``."""
    copy = cls(*error.args)
    copy.__dict__.update(error.__dict__)
    return copy.with_traceback(error.__traceback__)


def as_final(error: CCPError) -> CCPError:
    """The same error as an ``AirflowFailException`` too."""
    return recast(error, _final_type(type(error)))


Method = TypeVar("Method", bound=Callable[..., Any])


def is_expected(error: CCPError) -> bool:
    """A failure the message explains in full (an execution that failed, an input CCP refused):
    the provider's frames and causes behind it would only push the reason out of sight."""
    return is_final(error) or isinstance(error, CCPJobFailedError | CCPJobTimeoutError)


def fail_without_retry(method: Method) -> Method:
    """Wrap an operator's ``execute``/``execute_complete``: a final error ends the task, retries left or not.

    An expected failure is raised from here with no traceback below this frame and no cause, so the
    task log shows its message under a short traceback.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except CCPError as error:
            if not is_expected(error):
                raise
            shown = error if not is_final(error) or isinstance(error, AirflowFailException) else as_final(error)
            raise shown.with_traceback(None) from None

    return wrapper  # type: ignore[return-value]
