"""Which failures are transient, and how long to wait before trying again: the one rule of the provider.

``RetryPolicy`` is passed as an object to whatever retries: both hooks' request exchange, the waits
(``waiting.JobWatch``) and the lookup of a lost submission. ``fail_without_retry`` tells Airflow which
errors no task retry can heal (docs/connection.md, "Retries").
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pendulum

from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPConfigError,
    CCPCredentialsError,
    CCPError,
    CCPInputError,
    CCPJobFailedError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    CCPTrustError,
    recast,
)
from airflow_provider_ccp.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow_provider_ccp.exchange import Answer

__all__ = ["RetryPolicy", "DEFAULT_RETRY", "is_final", "is_transient", "as_final", "fail_without_retry"]

#: 4xx answers a later try can change: an expired token (the hook already renewed it once), a timeout, a rate limit.
RETRYABLE_CLIENT_ERRORS = frozenset({401, 408, 429})


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - pendulum.now("UTC")).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


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
    """Whether asking again may help a wait: connection trouble, 5xx, 429, an unreadable body. An auth error
    raised before any answer is final: the token flow itself said no (e.g. a rejected ``auth_flow=token``)."""
    if isinstance(error, CCPNotFoundError | CCPTrustError | CCPConfigError | CCPCredentialsError):
        return False
    if isinstance(error, CCPAuthError) and error.http_status is None:
        return False
    # 501: the server has no such feature, which asking again never fixes.
    return error.http_status != 501 and retry_may_help(error.http_status)


@dataclass(frozen=True)
class RetryPolicy:
    """The retry policy of both hooks, the waits and the submission lookup (docs/connection.md, "Retries").

    Requests: ``limit`` retries after the first attempt, for idempotent requests (``methods`` and token
    grants) that failed in transport or were answered with one of ``statuses``. Before retry *n* the wait
    is the server's ``Retry-After`` (seconds or an HTTP date, at most ``retry_after_cap``) or
    ``delay * 2**(n-1)`` (at most ``delay_max``) plus up to ``delay`` of random jitter; no retry starts
    after ``total_seconds``. A request that is not idempotent is resent only when its connection failed
    before it could leave.

    Waits: a poll whose error is ``transient`` is ridden out, at most ``poll_failures`` in a row; the next
    poll then comes after the interval doubled per failure, at most ``poll_backoff_max`` seconds.
    """

    limit: int = 5
    delay: float = 0.5
    delay_max: float = 20.0
    retry_after_cap: float = 60.0
    total_seconds: float = 180.0
    #: Answers an idempotent request (GET, DELETE, a token grant) is resent on, by the hook itself.
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    #: Methods that are safe to send twice; the execution POST is not (a duplicate costs real compute).
    methods: frozenset[str] = frozenset({"GET", "HEAD", "DELETE"})
    poll_failures: int = 5
    poll_backoff_max: float = 300.0

    def __post_init__(self) -> None:
        if self.limit < 0 or not self.delay >= 0:
            raise ValueError(f"retry_limit must be >= 0 and retry_delay >= 0, got {self.limit!r} and {self.delay!r}")

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        return min(self.delay * 2 ** (retry - 1), self.delay_max) + rng() * self.delay

    def wait(self, retry: int, elapsed: float, answer: Answer, *, idempotent: bool) -> float | None:
        """Seconds to wait before retry number ``retry`` (from 1), or None when ``answer`` is final."""
        answered = answer.status is not None
        if retry > self.limit or (answered and answer.status not in self.statuses):
            return None
        if not idempotent and (answered or answer.sent):
            return None  # it may have arrived: only a request that cannot have left is sent again
        seconds = retry_after_seconds(answer.retry_after, self.retry_after_cap)
        seconds = self.backoff(retry) if seconds is None else seconds
        return seconds if elapsed + seconds <= self.total_seconds else None

    #: Whether a wait or a lookup rides an error out.
    transient = staticmethod(is_transient)

    def poll_delay(self, interval: float, failures: int) -> float:
        """The wait before the next poll after ``failures`` failed polls in a row."""
        return interval if not failures else min(interval * 2 ** (failures - 1), max(interval, self.poll_backoff_max))


DEFAULT_RETRY = RetryPolicy()


_FINAL_TYPES: dict[type[CCPError], type[CCPError]] = {}


def _final_type(cls: type[CCPError]) -> type[CCPError]:
    # The same class name and bases (``except CCPInputError`` still matches), plus the one Airflow
    # reads as "fail now, no retry" (``airflow.exceptions`` on 3.1, ``airflow.sdk.exceptions`` on 3.3).
    if cls not in _FINAL_TYPES:
        namespace = {"__module__": cls.__module__, "__doc__": cls.__doc__}
        _FINAL_TYPES[cls] = type(cls.__name__, (cls, AirflowFailException), namespace)
    return _FINAL_TYPES[cls]


def as_final(error: CCPError) -> CCPError:
    """The same error as an ``AirflowFailException`` too."""
    return recast(error, _final_type(type(error)))


Method = TypeVar("Method", bound=Callable[..., Any])


def fail_without_retry(method: Method) -> Method:
    """Wrap an operator's ``execute``/``execute_complete``: a final error ends the task, retries left or not. A
    failure its message explains in full (a final error, an execution that failed or timed out) is raised with no
    traceback below this frame and no cause: the provider's frames would push the reason out of sight."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except CCPError as error:
            final = is_final(error)
            if not final and not isinstance(error, CCPJobFailedError | CCPJobTimeoutError):
                raise
            shown = as_final(error) if final and not isinstance(error, AirflowFailException) else error
            raise shown.with_traceback(None) from None

    return wrapper  # type: ignore[return-value]
