"""The async hook's aiohttp transport (extra ``aiohttp``): one ``ClientSession`` per pool.

Imported only when ``[ccp] async_http_client`` selects aiohttp (``hooks/_pool.py``). It only sends and
reads; what to send, retry and accept stays with ``protocol.exchange``, as for the httpx transport.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yarl

from airflow_provider_ccp import protocol
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.hooks._pool import KEEPALIVE_SECONDS, USER_AGENT

#: Failures of the connection itself: the request cannot have left (as httpx's ConnectError/ConnectTimeout).
UNSENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
#: Parsed URLs kept: one per job a triggerer follows, with room for many thousands.
PARSED_URLS = 65536


@functools.lru_cache(maxsize=PARSED_URLS)
def _parsed(url: str) -> yarl.URL:
    """A trigger polls the same URL all its life: parse it once, not on every poll."""
    return yarl.URL(url)


class Reply:
    """A whole aiohttp answer, read, in the shape the hook reads an httpx response."""

    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content


class Session:
    """One ``aiohttp.ClientSession`` whose connector holds up to ``size`` connections.

    aiohttp's connector hands a free connection to the next waiter without scanning the queue, so one
    session scales where one httpx client does not (``_pool._Clients``). No cookies are kept, no
    redirect is followed (as httpx), and proxies come from the environment as with httpx, looked up
    once per origin: aiohttp's own ``trust_env`` would look them (and ~/.netrc) up in a thread per request.
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._proxies: dict[str, str | None] = {}

    async def send(self, method: str, url: str, headers: Mapping[str, str], data: Any = None) -> protocol.Answer:
        try:
            async with self._session.request(
                method, _parsed(url), headers=headers, data=data, allow_redirects=False, proxy=self._proxy(url)
            ) as response:
                content = await response.read()
        except UNSENT as err:
            return protocol.Answer(None, sent=False, response=err)
        except (TimeoutError, aiohttp.ClientError) as err:
            return protocol.Answer(None, sent=True, response=err)
        reply = Reply(response.status, response.reason or "", response.headers, content)
        return protocol.Answer(response.status, response.headers.get("Retry-After"), response=reply)

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
    # The same bound as httpx's single timeout: to connect, and between two reads of the answer.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.timeout, sock_read=settings.timeout)
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=dict(USER_AGENT), cookie_jar=aiohttp.DummyCookieJar()
    )
    return Session(session)
