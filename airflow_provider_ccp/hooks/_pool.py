"""The triggerer's HTTP clients: one bounded pool per (CCP connection, event loop), shared by every async hook.

Private to ``airflow_provider_ccp.hooks``: ``CCPAsyncHook`` leases a pool with ``POOLS.acquire`` and
gives it back with ``POOLS.release``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import ssl
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from airflow_provider_ccp import auth, exchange
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPConfigError

#: Idle connections stay open this long: longer than the usual poll interval, so polls reuse them.
KEEPALIVE_SECONDS = 120.0
USER_AGENT = (("User-Agent", "airflow-provider-ccp"),)
HTTPX, AIOHTTP, AUTO = "httpx", "aiohttp", "auto"


def async_http_client() -> str:
    """``[ccp] async_http_client``: ``auto`` takes aiohttp when it is installed (docs/deployment.md)."""
    from airflow_provider_ccp.version_compat import conf

    value = str(conf.get("ccp", "async_http_client", fallback=AUTO) or AUTO).strip().lower()
    if value not in (HTTPX, AIOHTTP, AUTO):
        raise CCPConfigError(f"[ccp] async_http_client is {value!r}; expected one of auto, httpx, aiohttp")
    if value == AUTO:
        return AIOHTTP if importlib.util.find_spec("aiohttp") is not None else HTTPX
    return value


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """One SSL context per ``verify`` setting and process, shared by every async client.

    httpx otherwise builds a context per client, reading the whole CA bundle: about 30 ms of
    blocking work each time, which a triggerer running many CCP triggers would pay on its event loop.
    """
    if isinstance(verify, str):
        # A CA bundle file or a c_rehash'ed folder; httpx deprecates taking the path itself.
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


class Response(Protocol):
    """The part of an answer the async hook reads besides its body (``Answer.body``), whatever the transport."""

    @property
    def status_code(self) -> int: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class Clients(Protocol):
    """What a transport of the async hook does: send one request and read its whole answer.

    Everything else (retries, token renewal, error mapping, which redirect to follow) is decided by
    ``exchange.exchange`` and done the same way whatever the transport. Each transport keeps the
    trust rules a transport has to keep itself: it follows no redirect, reads at most
    ``exchange.MAX_ANSWER_BYTES`` (``exchange.too_large`` else), ends the whole request by the
    connection's timeout (``deadline_passed``) and raises ``exchange.certificate_error`` for a
    certificate it cannot verify.
    """

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> exchange.Answer:
        """The answer (``response`` has ``status_code``, ``reason_phrase`` and ``headers``; ``body`` and
        ``location`` are filled), or ``Answer(None, sent=..., response=error)`` when the transport failed;
        ``sent`` is False only when the request cannot have left (connection refused, connect timeout)."""
        ...

    @property
    def is_closed(self) -> bool: ...

    async def aclose(self) -> None: ...


async def read_capped(chunks: AsyncIterator[bytes], url: str) -> bytes:
    """An answer's body, at most ``exchange.MAX_ANSWER_BYTES``: a larger one is refused, not read on."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > exchange.MAX_ANSWER_BYTES:
            raise exchange.too_large(url)
    return bytes(body)


def deadline_passed(settings: CCPConnectionSettings) -> exchange.Answer:
    """The whole request outlived the connection's timeout: it may have landed."""
    return exchange.Answer(None, sent=True, response=exchange.DeadlineExceeded(settings.timeout))


def answered(response: Response, body: bytes) -> exchange.Answer:
    headers = response.headers
    return exchange.Answer(
        response.status_code,
        headers.get("Retry-After"),
        response=response,
        body=body,
        location=headers.get("Location"),
    )


class _Clients:
    """Up to ``size`` httpx clients of one connection each, lent last-in first-out.

    Measured against one httpx client with ``size`` connections (tests/benchmarks/triggerer_load.py):
    httpcore's pool re-scans every queued request against every connection whenever a request starts
    or ends, which costs more per poll as triggers wait; a client of one connection never has more than
    one request to place. Lending the most recently used client first keeps the few connections a
    light load needs warm, and lets the others expire.
    """

    def __init__(self, settings: CCPConnectionSettings, size: int, make: Callable[[], httpx.AsyncClient]) -> None:
        self._settings = settings
        self._all = [make() for _ in range(size)]
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        for client in reversed(self._all):
            self._idle.put_nowait(client)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> exchange.Answer:
        client = await self._idle.get()
        try:
            # The deadline counts once a client is free: waiting for one is not the server's time.
            async with asyncio.timeout(self._settings.timeout):
                request = client.build_request(method, url, headers=headers, data=data, params=params)
                response = await client.send(request, stream=True)
                try:
                    body = await read_capped(response.aiter_bytes(), url)
                finally:
                    await response.aclose()
        except TimeoutError:
            return deadline_passed(self._settings)
        except httpx.TransportError as err:
            if exchange.certificate_failure(err):
                raise exchange.certificate_error(url, self._settings.verify) from None
            unsent = isinstance(err, httpx.ConnectError | httpx.ConnectTimeout)
            return exchange.Answer(None, sent=not unsent, response=err)
        finally:
            self._idle.put_nowait(client)
        return answered(response, body)

    @property
    def is_closed(self) -> bool:
        return all(client.is_closed for client in self._all)

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()


def _httpx_clients(settings: CCPConnectionSettings, size: int, verify: ssl.SSLContext) -> _Clients:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_SECONDS)

    def make() -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=verify, timeout=settings.timeout, headers=dict(USER_AGENT), limits=limits)

    return _Clients(settings, size, make)


async def open_clients(settings: CCPConnectionSettings, extra: Mapping[str, Any], verify: bool | str) -> Clients:
    """The transport ``[ccp] async_http_client`` names, with the connection's ``max_connections``, trusting
    ``verify`` (the CA setting as both hooks read it)."""
    size = settings.max_connections
    context = await asyncio.to_thread(_ssl_context, verify)
    if async_http_client() == AIOHTTP:
        try:
            from airflow_provider_ccp.hooks._aiohttp import open_session
        except ImportError:
            raise CCPConfigError(
                "[ccp] async_http_client is aiohttp, which is not installed: install airflow-provider-ccp[aiohttp]"
            ) from None
        return await open_session(settings, size, context)
    return _httpx_clients(settings, size, context)


@dataclass
class _Pool:
    """One connection's settings, token state and HTTP clients on one event loop."""

    settings: CCPConnectionSettings
    clients: Clients
    token_state: auth.TokenState


@dataclass
class _Lease:
    opening: asyncio.Future[_Pool]
    users: int = 0


class _Pools:
    """The async clients of a process, one per (connection id, event loop), shared by every hook using it.

    A triggerer runs all its triggers on one loop: they share one bounded connection pool and one
    connection lookup per CCP connection instead of one each. The client closes when its last user
    leaves. Each loop's table is only touched from that loop, so nothing is held across an await.
    """

    def __init__(self) -> None:
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Lease]] = (
            weakref.WeakKeyDictionary()
        )
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
