"""D4Science's ways of getting a context-bound token (ccp-api.md §2.3) and the per-process token cache.

A flow is a generator that yields ``TokenRequest`` and receives ``TokenAnswer`` (sans-IO, as h11): the sync
hook drives it with requests, the async hook with aiohttp, and both share one ``TokenCache``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
import weakref
from collections.abc import AsyncIterator, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.connection_fields import AuthFlow
from airflow_provider_ccp.exceptions import CCPAuthError, CCPCredentialsError, CCPError
from airflow_provider_ccp.exchange import load_json
from airflow_provider_ccp.protocol import encode_context

__all__ = ["TOKEN_CACHE", "TokenState", "TokenRequest", "TokenAnswer", "Grant", "acquire", "holding"]

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"
CONTEXT_HEADER = "X-D4Science-Context"
#: Refresh this long before ``expires_in`` runs out (at most), so a call never carries a dying token.
REFRESH_LEAD_SECONDS = 60.0


@dataclass(frozen=True)
class TokenRequest:
    """One form POST to the token endpoint; ``grant`` names it in logs (never its fields)."""

    url: str
    data: Mapping[str, str]
    headers: Mapping[str, str]
    grant: str

    def __repr__(self) -> str:  # the form holds passwords and tokens
        return f"TokenRequest(grant={self.grant!r}, url={self.url!r})"


@dataclass(frozen=True)
class TokenAnswer:
    status_code: int
    body: bytes = field(repr=False)  # holds the issued tokens


@dataclass
class Grant:
    """A token and when to stop using it, on the monotonic clock."""

    access_token: str = field(repr=False)
    expires_at: float | None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: float | None = None

    def usable(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def refreshable(self, now: float) -> bool:
        return bool(self.refresh_token) and (self.refresh_expires_at is None or now < self.refresh_expires_at)


def _deadline(now: float, lifetime: Any) -> float | None:
    try:
        seconds = float(lifetime)
    except (TypeError, ValueError):
        return None
    if seconds <= 0:  # Keycloak says 0 for "no expiry" of offline tokens
        return None
    return now + seconds - min(REFRESH_LEAD_SECONDS, seconds * 0.1)


@dataclass
class TokenState:
    """What one process holds for one set of credentials: the login grant and the context grant."""

    login: Grant | None = None
    context: Grant | None = None
    #: Held while a token is requested, by sync and async callers alike: one refresh per lifetime per process.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Never held across I/O, unlike ``lock``: taking it cannot stall an event loop behind a sync token request.
    _async_guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    #: The tokens registered with the masker for this state (``masking.HELD``): renewed ones replace them.
    masked: tuple[str, ...] = field(default=(), repr=False)

    def usable_token(self, now: float) -> str | None:
        return self.context.access_token if self.context is not None and self.context.usable(now) else None

    def async_lock(self) -> asyncio.Lock:
        """One asyncio lock per event loop: concurrent coroutines wait for a single token request."""
        loop = asyncio.get_running_loop()
        with self._async_guard:
            return self._async_locks.setdefault(loop, asyncio.Lock())

    def secrets(self) -> tuple[str, ...]:
        """Every token this state holds, for Airflow's secrets masker."""
        grants = [grant for grant in (self.login, self.context) if grant is not None]
        return tuple(token for grant in grants for token in (grant.access_token, grant.refresh_token) if token)

    def reject(self, token: str) -> None:
        """CCP answered 401 to ``token``: stop using it, but keep its refresh token for a cheap renewal."""
        if self.context is not None and self.context.access_token == token:
            self.context.expires_at = float("-inf")


@contextlib.asynccontextmanager
async def holding(lock: threading.Lock) -> AsyncIterator[None]:
    """Hold a thread lock from a coroutine without blocking the event loop: a sync caller (a worker thread) may
    be mid-request with it, so wait for it in a thread, then find the token it got instead of asking again."""
    if not lock.acquire(blocking=False):
        taking = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            # The thread still takes the lock: give it back as soon as it does.
            taking.add_done_callback(lambda done: None if done.cancelled() or done.exception() else lock.release())
            raise
    try:
        yield
    finally:
        lock.release()


class TokenCache:
    """One per process (``TOKEN_CACHE``), keyed by credentials, shared by every hook instance."""

    def __init__(self) -> None:
        self._states: dict[str, TokenState] = {}

    def state(self, settings: CCPConnectionSettings) -> TokenState:
        key = settings.cache_key
        # setdefault is atomic: threads asking at once all get the one state that was stored.
        return self._states.get(key) or self._states.setdefault(key, TokenState())

    def clear(self) -> None:
        self._states.clear()


TOKEN_CACHE = TokenCache()

TokenFlow = Generator[TokenRequest, TokenAnswer, Grant]


def _client_fields(settings: CCPConnectionSettings) -> dict[str, str]:
    data = {"client_id": settings.client_id or ""}
    if settings.client_secret:
        data["client_secret"] = settings.client_secret
    return data


def _form_headers(settings: CCPConnectionSettings, *, context_header: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if context_header:
        headers[CONTEXT_HEADER] = encode_context(settings.context or "")
    return headers


def password_request(settings: CCPConnectionSettings) -> TokenRequest:
    data = {"grant_type": "password", **_client_fields(settings)}
    data |= {"username": settings.user or "", "password": settings.secret or ""}
    if settings.auth_flow == AuthFlow.PASSWORD_SCOPE:
        data["scope"] = f"d4s-context:{settings.context}"
    headers = _form_headers(settings, context_header=settings.auth_flow == AuthFlow.CONTEXT_HEADER)
    return TokenRequest(settings.token_url, data, headers, "password")


def uma_request(settings: CCPConnectionSettings, login_token: str | None) -> TokenRequest:
    """The UMA ticket grant: with the login token as Bearer, or as the service account (Basic)."""
    data = {"grant_type": UMA_GRANT, "audience": encode_context(settings.context or "")}
    headers = _form_headers(settings, context_header=False)
    if login_token is None:
        pair = f"{settings.client_id}:{settings.client_secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    else:
        headers["Authorization"] = f"Bearer {login_token}"
    return TokenRequest(settings.token_url, data, headers, "uma-ticket")


def refresh_request(settings: CCPConnectionSettings, refresh_token: str, *, context_header: bool) -> TokenRequest:
    data = {"grant_type": "refresh_token", **_client_fields(settings), "refresh_token": refresh_token}
    return TokenRequest(
        settings.token_url, data, _form_headers(settings, context_header=context_header), "refresh_token"
    )


def _describe(settings: CCPConnectionSettings) -> str:
    who = f"client_id={settings.client_id!r}"
    if settings.user:
        who += f", user={settings.user!r}"
    return f"{settings.token_url} ({who}, auth_flow={settings.auth_flow})"


def _refusal(request: TokenRequest, status: int) -> type[CCPError]:
    """A refused login is final (the same password gets the same answer); a refused refresh is not,
    as the flows then log in afresh; any other status may be the endpoint's passing trouble."""
    if status not in (400, 401, 403):
        return CCPError
    return CCPAuthError if request.grant == "refresh_token" else CCPCredentialsError


def read_grant(settings: CCPConnectionSettings, request: TokenRequest, answer: TokenAnswer, now: float) -> Grant:
    """Turn a token endpoint answer into a ``Grant``, or raise an error naming who asked (never secrets)."""
    try:
        document = load_json(answer.body)
    except ValueError:  # empty, or not JSON
        document = {}
    if not isinstance(document, Mapping):
        document = {}
    if answer.status_code != 200 or not document.get("access_token"):
        error = document.get("error") or "no access_token in the answer"
        description = document.get("error_description") or ""
        reason = f"{error}: {description}" if description else str(error)
        raise _refusal(request, answer.status_code)(
            f"The {request.grant} token request to {_describe(settings)} was refused "
            f"(HTTP {answer.status_code}, {reason})",
            http_status=answer.status_code,
            url=settings.token_url,
            title=str(error),
            detail=str(description) or None,
        )
    return Grant(
        access_token=str(document["access_token"]),
        expires_at=_deadline(now, document.get("expires_in")),
        refresh_token=document.get("refresh_token") or None,
        refresh_expires_at=_deadline(now, document.get("refresh_expires_in")),
    )


def static_grant(token: str, now: float) -> Grant:
    """A pre-issued token: used until its own ``exp`` claim (when it is a JWT) or until CCP rejects it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires_at = now + float(claims["exp"]) - time.time()
    except (IndexError, ValueError, KeyError, TypeError):
        expires_at = None
    return Grant(access_token=token, expires_at=expires_at)


def _ask(settings: CCPConnectionSettings, request: TokenRequest, now: float) -> TokenFlow:
    answer = yield request
    return read_grant(settings, request, answer, now)


def _refreshed(
    settings: CCPConnectionSettings, grant: Grant | None, now: float, *, context_header: bool
) -> Generator[TokenRequest, TokenAnswer, Grant | None]:
    """``grant`` renewed with its refresh token; None without one, or when the refresh is refused (revoked,
    expired)."""
    if grant is None or grant.refresh_token is None or not grant.refreshable(now):
        return None
    request = refresh_request(settings, grant.refresh_token, context_header=context_header)
    try:
        return (yield from _ask(settings, request, now))
    except CCPAuthError:
        return None


def _login(settings: CCPConnectionSettings, state: TokenState, now: float) -> TokenFlow:
    """The user's (or service account's) login token that the UMA grant exchanges."""
    if state.login is not None and state.login.usable(now):
        return state.login
    grant = yield from _refreshed(settings, state.login, now, context_header=False)
    state.login = grant or (yield from _ask(settings, password_request(settings), now))
    return state.login


def _new_context_grant(settings: CCPConnectionSettings, state: TokenState, now: float) -> TokenFlow:
    flow = settings.auth_flow
    if flow == AuthFlow.PASSWORD_UMA:
        reused = state.login is not None and state.login.usable(now)
        login = yield from _login(settings, state, now)
        try:
            return (yield from _ask(settings, uma_request(settings, login.access_token), now))
        except CCPAuthError:
            if not reused:
                raise
            # The cached login token was revoked (logout, admin action) before it expired: log in afresh, once.
            state.login = None
            login = yield from _login(settings, state, now)
            return (yield from _ask(settings, uma_request(settings, login.access_token), now))
    if flow in (AuthFlow.PASSWORD_SCOPE, AuthFlow.CONTEXT_HEADER):
        return (yield from _ask(settings, password_request(settings), now))
    if flow == AuthFlow.CLIENT_CREDENTIALS:
        return (yield from _ask(settings, uma_request(settings, None), now))
    if flow == AuthFlow.REFRESH_TOKEN:
        offline = Grant(access_token="", expires_at=None, refresh_token=settings.secret)
        grant = yield from _refreshed(settings, offline, now, context_header=True)
        if grant is None:
            raise CCPCredentialsError(
                f"The refresh token in the connection's password field was refused by {_describe(settings)}; "
                "it may have expired or been revoked: store a new offline token",
                url=settings.token_url,
            )
        return grant
    if flow == AuthFlow.TOKEN:
        return static_grant(settings.secret or "", now)
    raise CCPError(f"auth_flow {flow!r} gets no token")


def acquire(settings: CCPConnectionSettings, state: TokenState, now: float) -> TokenFlow:
    """Make ``state.context`` usable: reuse it, else refresh it, else run the connection's flow."""
    if state.context is not None and state.context.usable(now):
        return state.context
    if settings.auth_flow == AuthFlow.TOKEN and state.context is not None:
        raise CCPAuthError(
            "CCP rejected the pre-issued bearer token stored in the connection's password field: "
            "the token expired or was revoked (auth_flow=token cannot renew it); store a new token",
            url=settings.base_url,
        )
    context_header = settings.auth_flow in (AuthFlow.REFRESH_TOKEN, AuthFlow.CONTEXT_HEADER)
    grant = yield from _refreshed(settings, state.context, now, context_header=context_header)
    state.context = grant or (yield from _new_context_grant(settings, state, now))
    return state.context
