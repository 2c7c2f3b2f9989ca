"""The async hook's aiohttp transport (extra ``aiohttp``): one ``ClientSession`` per pool.

Imported only when ``[ccp] async_http_client`` selects aiohttp (``hooks/_pool.py``). It only sends and
reads, keeping the trust rules a transport keeps itself (``_pool.Clients``); what to send, retry, follow
and accept stays with ``exchange.exchange``, as for the httpx transport.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

from airflow_provider_ccp import exchange
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.hooks._pool import KEEPALIVE_SECONDS, USER_AGENT, answered, deadline_passed, read_capped

#: Failures of the connection itself: the request cannot have left (as httpx's ConnectError/ConnectTimeout).
UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
#: Parsed URLs kept: one per job a triggerer follows, with room for many thousands.
PARSED_URLS = 65536


@functools.lru_cache(maxsize=PARSED_URLS)
def _parsed(url: str) -> yarl.URL:
    """A trigger polls the same URL all its life: parse it once, not on every poll."""
    return yarl.URL(url)


class Reply:
    """An aiohttp answer's status and headers, in the shape the hook reads an httpx response."""

    __slots__ = ("headers", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers


class Session:
    """One ``aiohttp.ClientSession`` whose connector holds up to ``size`` connections.

    aiohttp's connector hands a free connection to the next waiter without scanning the queue, so one
    session scales where one httpx client does not (``_pool._Clients``). No cookies are kept, no
    redirect is followed (as httpx), and proxies come from the environment as with httpx, looked up
    once per origin: aiohttp's own ``trust_env`` would look them (and ~/.netrc) up in a thread per request.
    """

    def __init__(self, session: aiohttp.ClientSession, settings: CCPConnectionSettings, size: int) -> None:
        self._session = session
        self._settings = settings
        # As many as the connector's connections: the deadline counts once one is free, as with httpx.
        self._free = asyncio.Semaphore(size)
        self._proxies: dict[str, str | None] = {}

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> exchange.Answer:
        async with self._free:
            try:
                async with asyncio.timeout(self._settings.timeout):
                    async with self._session.request(
                        method,
                        _parsed(url),
                        headers=headers,
                        data=data,
                        params=params,
                        allow_redirects=False,
                        proxy=self._proxy(url),
                    ) as response:
                        body = await read_capped(response.content.iter_any(), url)
            except aiohttp.ClientError as err:  # before TimeoutError: aiohttp's socket timeouts are both
                if exchange.certificate_failure(err):
                    raise exchange.certificate_error(url, self._settings.verify) from None
                return exchange.Answer(None, sent=not isinstance(err, UNSENT), response=err)
            except TimeoutError:
                return deadline_passed(self._settings)
        return answered(Reply(response.status, response.reason or "", response.headers), body)

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


async def open_session(settings: CCPConnectionSettings, size: int, verify: ssl.SSLContext) -> Session:
    connector = aiohttp.TCPConnector(limit=size, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS, ssl=verify)
    # As httpx's timeout: to connect and between two reads; Session.send bounds the whole request too.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.timeout, sock_read=settings.timeout)
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=dict(USER_AGENT), cookie_jar=aiohttp.DummyCookieJar()
    )
    return Session(session, settings, size)
