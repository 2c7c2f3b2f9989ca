"""How both hooks exchange requests with a server, with no I/O: the steps of one request (``exchange``), the
drivers of sans-IO flows (``drive``/``adrive``, for token flows too) and the trust boundary. Both hooks only
perform what this module decides, so they cannot disagree (docs/connection.md, "Retries" and "Trust boundary"):

- **Origins.** A URL the provider follows (a page's ``rel=next`` link, a redirect) must have the scheme, host
  and port of the URL it came from, and so of the connection's base URL (or the token endpoint's).
- **Redirects.** Neither transport follows them by itself: a GET is redirected on the same origin, at most
  ``MAX_REDIRECTS`` times; any other is a final error, so no body or credential goes where it should not.
- **Bounds.** An answer read into memory holds at most ``MAX_ANSWER_BYTES``; JSON nested too deep to read is
  a protocol error; a whole request ends by its deadline; every message built from an answer is cut to
  ``MAX_MESSAGE_CHARS`` (``exceptions.cut``) before it reaches an event, an exception or a log line.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from airflow_provider_ccp.exceptions import CCPProtocolError, CCPTrustError
from airflow_provider_ccp.retries import RetryPolicy

__all__ = ["Answer", "exchange", "drive", "adrive", "followed_link", "load_json", "MAX_ANSWER_BYTES"]

#: Redirects a GET may take, all on the same origin.
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: The largest answer read into memory (statusInfo, lists, token, error, execution record, sync results).
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = {"User-Agent": "airflow-provider-ccp"}


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


def followed_link(href: Any, current_url: str, what: str) -> str:
    """A link of an answer, made absolute against the URL it came from; another origin is a final error."""
    url = urljoin(current_url, str(href))
    if origin(url) == origin(current_url):
        return url
    raise CCPTrustError(
        f"Refused to follow {what} to {origin_text(url)}: the provider only follows URLs on "
        f"{origin_text(current_url)}, the origin it was configured with",
        url=origin_text(url),
    )


def redirect_target(method: str, url: str, status: int, location: str | None, followed: int) -> str:
    """Where a redirect answer sends the request, when the rules allow following it; else a final error."""
    if not location:
        raise CCPProtocolError(f"HTTP {status} from {url} without a Location header", url=url, http_status=status)
    target = urljoin(url, location)
    allowed = method.upper() == "GET" and origin(target) == origin(url)
    if allowed and followed < MAX_REDIRECTS:
        return target
    why = f"more than {MAX_REDIRECTS} redirects"
    if not allowed:
        why = f"only GET requests are redirected, and only on {origin_text(url)}"
    raise CCPTrustError(
        f"Refused the redirect (HTTP {status}) of {method.upper()} {url} to {origin_text(target)}: {why} "
        "(no body or credential is sent anywhere else)",
        url=url,
        http_status=status,
    )


def too_large(url: str) -> CCPTrustError:
    return CCPTrustError(
        f"The answer from {url} is larger than {MAX_ANSWER_BYTES} bytes, the most the provider reads", url=url
    )


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


def unanswered(error: BaseException, url: str, verify: bool | str, *, sent: bool) -> Answer:
    """The ``Answer`` of a request whose transport failed; a certificate that could not be verified is final."""
    if _certificate_failure(error):
        setting = "the system's CA bundle" if verify is True else f"the CA bundle {verify!r}"
        raise CCPTrustError(
            f"certificate verify failed for {origin_text(url)}: its certificate is not signed by a CA in {setting}; "
            "set the connection extra 'verify' to the path of the CA bundle that signs it",
            url=url,
        ) from None
    return Answer(None, sent=sent, response=error)


def _certificate_failure(error: BaseException) -> bool:
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


@dataclass(frozen=True)
class Answer:
    """What one send produced: an HTTP status and the body as read (empty for a streamed download), or a
    transport failure (no status; ``sent`` False only when the request cannot have left). ``response`` is
    the transport's own response or exception, handed back to the hook untouched."""

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
    """Step: CCP answered 401 to ``token``; drop it from the cache."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = NeedToken | Send | Renew | Sleep
Exchange = Generator[Step, Any, Answer]


def exchange(
    policy: RetryPolicy,
    method: str,
    url: str,
    clock: Callable[[], float],
    *,
    authenticated: bool = True,
    idempotent: bool = False,
) -> Exchange:
    """One request as both hooks send it: retried by ``policy``, a 401 renews the token once, a redirect is
    followed or refused here (``redirect_target``), never by the transports themselves.

    A generator of ``Step`` s that the hook performs (sans-IO, like the token flows): it answers ``NeedToken``
    with a token, ``Send`` with an ``Answer`` and ``Renew``/``Sleep`` with None; it returns the final ``Answer``.
    """
    idempotent = idempotent or method.upper() in policy.methods
    token = (yield NeedToken()) if authenticated else None
    renewed, retry, redirects, start = False, 0, 0, clock()
    while True:
        answer: Answer = yield Send(token, url)
        if answer.status in REDIRECT_STATUSES:
            url = redirect_target(method, url, answer.status, answer.location, redirects)
            redirects += 1
            continue
        if answer.status == 401 and token and not renewed:
            renewed = True
            yield Renew(token)
            token = yield NeedToken()
            continue
        retry += 1
        seconds = policy.wait(retry, clock() - start, answer, idempotent=idempotent)
        if seconds is None:
            return answer
        yield Sleep(seconds)


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
