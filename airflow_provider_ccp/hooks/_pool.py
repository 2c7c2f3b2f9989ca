"""The triggerer's HTTP client: one aiohttp session per (CCP connection, event loop), shared by every async hook
(``POOLS``). The session only sends and reads; what to send, retry, follow and accept is decided by
``exchange.exchange``, as for the sync hook.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import threading
import urllib.request
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import certifi
import yarl

from airflow_provider_ccp import auth, exchange
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.version_compat import conf

#: Failures of the connection itself: the request cannot have left.
UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
#: A trigger polls the same URL all its life: parsed once, not on every poll. One URL per job a triggerer
#: follows, with room for many thousands.
_parsed = functools.lru_cache(maxsize=65536)(yarl.URL)


@functools.cache
def warn_retired_setting() -> None:
    """``[ccp] async_http_client`` chose between httpx and aiohttp up to 0.1: said once per process, then ignored."""
    if conf.get("ccp", "async_http_client", fallback=None) is not None:
        logging.getLogger(__name__).warning(
            "[ccp] async_http_client is set, but it is gone: CCPAsyncHook always uses aiohttp; remove the setting"
        )


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """One SSL context per ``verify`` setting and process, shared by every session: building one reads the
    whole CA bundle, about 30 ms of blocking work a triggerer running many CCP triggers would otherwise pay on
    its event loop. ``True`` trusts the bundle requests uses."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, str) and os.path.isdir(verify):  # a c_rehash'ed folder
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else certifi.where())


class Session:
    """One ``aiohttp.ClientSession`` whose connector holds up to ``size`` connections: it hands a free one to the
    next waiter without scanning the queue, so one session scales to thousands of triggers. No cookies are kept
    and no redirect is followed; proxies come from the environment, looked up once per origin (aiohttp's own
    ``trust_env`` would look them and ~/.netrc up in a thread per request)."""

    def __init__(self, session: aiohttp.ClientSession, settings: CCPConnectionSettings, size: int) -> None:
        self._session = session
        self._settings = settings
        # As many as the connector's connections: the deadline counts once one is free.
        self._free = asyncio.Semaphore(size)
        self._proxies: dict[str, str | None] = {}

    async def send(self, method: str, url: str, headers: Mapping[str, str], **sent: Any) -> exchange.Answer:
        """The answer, its body read (``sent``: the request's ``data`` and ``params``)."""
        async with self._free:
            try:
                async with asyncio.timeout(self._settings.timeout):
                    async with self._session.request(
                        method, _parsed(url), headers=headers, allow_redirects=False, proxy=self._proxy(url), **sent
                    ) as response:
                        body = await _read_capped(response.content, url)
            except aiohttp.ClientError as err:  # before TimeoutError: aiohttp's socket timeouts are both
                return exchange.unanswered(err, url, self._settings.verify, sent=not isinstance(err, UNSENT))
            except TimeoutError:  # the whole request outlived the connection's timeout: it may have landed
                return exchange.Answer(None, response=exchange.DeadlineExceeded(self._settings.timeout))
        retry_after, location = response.headers.get("Retry-After"), response.headers.get("Location")
        return exchange.Answer(response.status, retry_after, response=response, body=body, location=location)

    def _proxy(self, url: str) -> str | None:
        end = url.find("/", url.find("://") + 3)
        origin = url if end < 0 else url[:end]  # a slice: parsing every polled URL cost more than the lookup
        if origin not in self._proxies:
            parts = urlsplit(origin)
            bypass = urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[origin] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[origin]

    @property
    def is_closed(self) -> bool:
        return self._session.closed

    async def aclose(self) -> None:
        await self._session.close()


async def _read_capped(content: aiohttp.StreamReader, url: str) -> bytes:
    body = bytearray()
    async for chunk in content.iter_any():
        body += chunk
        if len(body) > exchange.MAX_ANSWER_BYTES:
            raise exchange.too_large(url)
    return bytes(body)


async def open_session(settings: CCPConnectionSettings, verify: bool | str) -> Session:
    """A session with the connection's ``max_connections``, trusting ``verify`` (``verify_setting``)."""
    warn_retired_setting()
    size = settings.max_connections
    context = await asyncio.to_thread(_ssl_context, verify)
    # Idle connections stay open longer than the usual poll interval, so polls reuse them.
    connector = aiohttp.TCPConnector(limit=size, limit_per_host=0, keepalive_timeout=120.0, ssl=context)
    # To connect and between two reads; Session.send bounds the whole request too.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.timeout, sock_read=settings.timeout)
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=exchange.USER_AGENT, cookie_jar=aiohttp.DummyCookieJar()
    )
    return Session(session, settings, size)


@dataclass
class _Pool:
    """One connection's settings, token state and HTTP session on one event loop."""

    settings: CCPConnectionSettings
    clients: Session
    token_state: auth.TokenState


@dataclass
class _Lease:
    opening: asyncio.Future[_Pool]
    users: int = 0


class _Pools:
    """The async sessions of a process, one per (connection id, event loop): a triggerer's triggers share one
    bounded connection pool and connection lookup per CCP connection, closed when its last user leaves. Each
    loop's table is only touched from that loop, so nothing is held across an await."""

    def __init__(self) -> None:
        self._loops = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Lease]]()
        self._guard = threading.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def _table(self) -> dict[str, _Lease]:
        loop = asyncio.get_running_loop()
        with self._guard:
            return self._loops.setdefault(loop, {})

    async def acquire(self, conn_id: str, open_pool: Callable[[], Awaitable[_Pool]]) -> _Pool:
        table = self._table()
        lease = table.get(conn_id)
        if lease is None:
            lease = table[conn_id] = _Lease(asyncio.ensure_future(open_pool()))
        lease.users += 1
        try:
            # Shielded: one caller cancelled while the pool opens must not cancel it for the others.
            return await asyncio.shield(lease.opening)
        except BaseException:
            if self._leave(table, conn_id, lease):
                task = asyncio.ensure_future(self._close(lease))  # we may be cancelled: close on the side
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            raise

    async def release(self, conn_id: str) -> None:
        table = self._table()
        lease = table.get(conn_id)
        if lease is not None and self._leave(table, conn_id, lease):
            await self._close(lease)

    @staticmethod
    def _leave(table: dict[str, _Lease], conn_id: str, lease: _Lease) -> bool:
        """One user less; True when it was the last, and the pool is to be closed."""
        lease.users -= 1
        failed = lease.opening.done() and (lease.opening.cancelled() or lease.opening.exception() is not None)
        if lease.users > 0 and not failed:
            return False
        if table.get(conn_id) is lease:
            del table[conn_id]  # the next user opens a fresh pool (and reads the connection afresh)
        return lease.users <= 0

    @staticmethod
    async def _close(lease: _Lease) -> None:
        try:
            pool = await lease.opening
        except BaseException:  # nothing was opened
            return
        await pool.clients.aclose()


POOLS = _Pools()
