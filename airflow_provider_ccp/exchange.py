"""How both hooks exchange requests with a server, with no I/O: the retry policy, the steps of one
request (``exchange``), the drivers of sans-IO flows (``drive``/``adrive``, for token flows too) and
the trust boundary. The worker hook (requests) and the triggerer hook (httpx) only perform what this
module decides, so they cannot disagree (docs/connection.md, "Retries" and "Trust boundary"):

- **Origins.** A URL the provider follows (a page's ``rel=next`` link, a redirect) must have the
  scheme, host and port of the URL it came from, and so of the connection's base URL (the CCP host,
  or the token endpoint for token requests); any other is refused before a request carries a token.
- **Redirects.** Neither transport follows them by itself. A redirect of a GET to the same origin
  is followed, at most ``MAX_REDIRECTS`` times; any other (a POST, another origin) is a final error,
  so no body or credential is ever sent where the connection does not point.
- **Bounds.** An answer read into memory holds at most ``MAX_ANSWER_BYTES``; JSON nested too deep
  to read is a protocol error; a whole request (connect, send, every read) ends by its deadline;
  every message built from an answer is cut to ``MAX_MESSAGE_CHARS`` (``exceptions.cut``) before
  it reaches an event, an exception or a log line.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import pendulum

from airflow_provider_ccp.exceptions import CCPProtocolError, CCPTrustError

__all__ = [
    "exchange",
    "RetryPolicy",
    "DEFAULT_RETRY",
    "Answer",
    "Step",
    "NeedToken",
    "Send",
    "Renew",
    "Sleep",
    "Exchange",
    "drive",
    "adrive",
    "origin",
    "origin_text",
    "same_origin",
    "checked_link",
    "followed_link",
    "redirect_target",
    "too_large",
    "load_json",
    "redact",
    "DeadlineExceeded",
    "certificate_failure",
    "certificate_error",
    "retry_after_seconds",
    "RETRYABLE_STATUSES",
    "IDEMPOTENT_METHODS",
    "MAX_REDIRECTS",
    "REDIRECT_STATUSES",
    "MAX_ANSWER_BYTES",
]

#: Answers worth retrying for idempotent calls (GET, DELETE, token requests).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Methods that are safe to send twice; the execution POST is not (a duplicate costs real compute).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE"})
#: Redirects a GET may take, all on the same origin.
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: The largest answer read into memory (statusInfo, lists, token, error, execution record, sync results).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (a server may echo what it was sent)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# --------------------------------------------------------------------------- origins


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url``, the port made explicit when the scheme implies it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no origin matches it
        port = -1
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def origin_text(url: str) -> str:
    """The origin as people write it (``https://host:port``), never the user info or path of ``url``."""
    scheme, host, port = origin(url)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else "")


def same_origin(url: str, expected: str) -> bool:
    return origin(url) == origin(expected)


def checked_link(url: str, expected: str, what: str) -> str:
    """``url`` when it has ``expected``'s origin, else a final error naming both origins."""
    if same_origin(url, expected):
        return url
    raise CCPTrustError(
        f"Refused to follow {what} to {origin_text(url)}: the provider only follows URLs on "
        f"{origin_text(expected)}, the origin it was configured with",
        url=origin_text(url),
    )


def followed_link(href: Any, current_url: str, what: str) -> str:
    """A link of an answer, made absolute against the URL it came from and checked against its origin."""
    return checked_link(urljoin(current_url, str(href)), current_url, what)


# --------------------------------------------------------------------------- redirects


def redirect_target(method: str, url: str, status: int, location: str | None, followed: int) -> str:
    """Where a redirect answer sends the request, when the rules allow following it; else a final error."""
    if not location:
        raise CCPProtocolError(f"HTTP {status} from {url} without a Location header", url=url, http_status=status)
    target = urljoin(url, location)
    allowed = method.upper() == "GET" and same_origin(target, url)
    if allowed and followed < MAX_REDIRECTS:
        return target
    why = (
        f"more than {MAX_REDIRECTS} redirects"
        if allowed
        else f"only GET requests are redirected, and only on {origin_text(url)}"
    )
    raise CCPTrustError(
        f"Refused the redirect (HTTP {status}) of {method.upper()} {url} to {origin_text(target)}: {why} "
        "(no body or credential is sent anywhere else)",
        url=url,
        http_status=status,
    )


# --------------------------------------------------------------------------- bounds


def too_large(url: str, limit: int = MAX_ANSWER_BYTES) -> CCPTrustError:
    return CCPTrustError(f"The answer from {url} is larger than {limit} bytes, the most the provider reads", url=url)


def load_json(body: bytes | str) -> Any:
    """Parse JSON; nesting too deep to read is a ``ValueError`` like any other unreadable JSON."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to read") from None


class DeadlineExceeded(Exception):
    """The whole request (connect, send, reading the answer) took longer than the connection's timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no complete answer within the connection's timeout of {timeout:g} s")


def certificate_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) is a TLS certificate that could not be verified."""
    seen: set[int] = set()
    pending: list[Any] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        if isinstance(current, BaseException):
            pending += [current.__cause__, current.__context__, *current.args, getattr(current, "reason", None)]
    return False


def certificate_error(url: str, verify: bool | str) -> CCPTrustError:
    setting = "the system's CA bundle" if verify is True else f"the CA bundle {verify!r}"
    return CCPTrustError(
        f"certificate verify failed for {origin_text(url)}: its certificate is not signed by a CA in {setting}; "
        "set the connection extra 'verify' to the path of the CA bundle that signs it",
        url=url,
    )


# --------------------------------------------------------------------------- retries and the request exchange


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


@dataclass(frozen=True)
class RetryPolicy:
    """The one retry policy of both hooks (docs/connection.md, "Retries").

    ``limit`` retries after the first attempt, for idempotent requests (``IDEMPOTENT_METHODS`` and
    token grants) that failed in transport or were answered with one of ``statuses``. Before retry
    *n* the wait is the server's ``Retry-After`` (seconds or an HTTP date, at most
    ``retry_after_cap``) or ``delay * 2**(n-1)`` (at most ``delay_max``) plus up to ``delay`` of
    random jitter; no retry starts after ``total_seconds``. A request that is not idempotent is
    resent only when its connection failed before it could leave.
    """

    limit: int = 5
    delay: float = 0.5
    delay_max: float = 20.0
    retry_after_cap: float = 60.0
    total_seconds: float = 180.0
    statuses: frozenset[int] = RETRYABLE_STATUSES
    methods: frozenset[str] = IDEMPOTENT_METHODS

    def __post_init__(self) -> None:
        if self.limit < 0 or not self.delay >= 0:
            raise ValueError(f"retry_limit must be >= 0 and retry_delay >= 0, got {self.limit!r} and {self.delay!r}")

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        return min(self.delay * 2 ** (retry - 1), self.delay_max) + rng() * self.delay

    def wait(self, retry: int, elapsed: float, answer: Answer, *, idempotent: bool) -> float | None:
        """Seconds to wait before retry number ``retry`` (from 1), or None when ``answer`` is final."""
        if retry > self.limit:
            return None
        if answer.status is not None:
            if not idempotent or answer.status not in self.statuses:
                return None
            seconds = retry_after_seconds(answer.retry_after, self.retry_after_cap)
        else:
            if answer.sent and not idempotent:
                return None
            seconds = None
        if seconds is None:
            seconds = self.backoff(retry)
        return seconds if elapsed + seconds <= self.total_seconds else None


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class Answer:
    """What one send produced, as the exchange needs it: an HTTP status, or a transport failure.

    ``sent`` is False only when the connection failed before the request could leave. ``response``
    is the transport's own response (or exception), handed back to the hook untouched; ``body`` is
    the answer as read (at most ``exchange.MAX_ANSWER_BYTES``), empty for a streamed download.
    """

    status: int | None
    retry_after: str | None = None
    sent: bool = True
    response: Any = field(default=None, repr=False)
    body: bytes = field(default=b"", repr=False)
    location: str | None = None


@dataclass(frozen=True)
class NeedToken:
    """Step: the hook supplies the current access token (or None without auth)."""


@dataclass(frozen=True)
class Send:
    """Step: send the request to ``url`` (the first one's, or where a followed redirect points) with ``token``."""

    token: str | None = field(repr=False)
    url: str


@dataclass(frozen=True)
class Renew:
    """Step: CCP answered 401 to ``token``; drop it from the cache (``discarded`` is released)."""

    token: str = field(repr=False)
    discarded: Answer


@dataclass(frozen=True)
class Sleep:
    seconds: float
    discarded: Answer


Step = NeedToken | Send | Renew | Sleep
Exchange = Generator[Step, Any, Answer]
_NEED_TOKEN = NeedToken()


def exchange(
    policy: RetryPolicy,
    method: str,
    url: str,
    clock: Callable[[], float],
    *,
    authenticated: bool = True,
    idempotent: bool = False,
) -> Exchange:
    """One request as both hooks send it: retried by ``policy``, a 401 renews the token once.

    A generator of ``Step`` s that the hook performs (the token flows' sans-IO style): it answers
    ``NeedToken`` with a token, ``Send`` with an ``Answer``, and ``Renew``/``Sleep`` with None.
    Returns the final ``Answer``, which the hook maps with ``error_from_response`` when not ok.
    A redirect is followed or refused here, by ``exchange.redirect_target``: the transports never
    follow one themselves.
    """
    idempotent = idempotent or method.upper() in policy.methods
    token = (yield _NEED_TOKEN) if authenticated else None
    renewed, retry, redirects, start = False, 0, 0, clock()
    while True:
        answer: Answer = yield Send(token, url)
        if answer.status in REDIRECT_STATUSES:
            url = redirect_target(method, url, answer.status, answer.location, redirects)
            redirects += 1
            continue
        if answer.status == 401 and token and not renewed:
            renewed = True
            yield Renew(token, answer)
            token = yield _NEED_TOKEN
            continue
        retry += 1
        seconds = policy.wait(retry, clock() - start, answer, idempotent=idempotent)
        if seconds is None:
            return answer
        yield Sleep(seconds, answer)


# --------------------------------------------------------------------------- driving a sans-IO flow


_Ask = TypeVar("_Ask")
_Reply = TypeVar("_Reply")
_Result = TypeVar("_Result")


def drive(flow: Generator[_Ask, _Reply, _Result], send: Callable[[_Ask], _Reply]) -> _Result:
    """Run a sans-IO flow (a token flow, a request exchange) with a blocking ``send``."""
    try:
        request = next(flow)
        while True:
            request = flow.send(send(request))
    except StopIteration as done:
        return done.value


async def adrive(flow: Generator[_Ask, _Reply, _Result], send: Callable[[_Ask], Awaitable[_Reply]]) -> _Result:
    """Run a sans-IO flow with an awaitable ``send``."""
    try:
        request = next(flow)
        while True:
            request = flow.send(await send(request))
    except StopIteration as done:
        return done.value
