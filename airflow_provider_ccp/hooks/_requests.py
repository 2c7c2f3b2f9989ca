"""``CCPHook``'s requests transport: sessions, one request within its deadline, a download streamed to disk.
What to send, retry, follow and accept stays with ``exchange.exchange``, as for the async hook's ``hooks/_pool.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from airflow_provider_ccp import exchange
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPDownloadError
from airflow_provider_ccp.hooks._base import verify_setting

DOWNLOAD_CHUNK = 1024 * 1024


class Deadline:
    """When the current thread's request must be done by: each socket operation of a watched connection gets
    only the time left as its timeout. requests' timeout bounds each socket read, not the request: an answer
    dribbled a byte at a time never trips it."""

    current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.end = self.started + seconds
        self.expired = False

    @classmethod
    def active(cls) -> Deadline | None:
        return getattr(cls.current, "deadline", None)

    @contextlib.contextmanager
    def applying(self) -> Iterator[Deadline]:
        previous = Deadline.active()
        Deadline.current.deadline = self
        try:
            yield self
        finally:
            Deadline.current.deadline = previous

    def left(self) -> float:
        """Seconds left; none left ends the operation as a socket timeout would."""
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the deadline passed")
        return left

    def run(self, sock: socket.socket, operation: Callable[..., Any], *args: Any) -> Any:
        sock.settimeout(self.left())
        try:
            return operation(*args)
        except TimeoutError:
            self.expired = True  # the socket's timeout was the time left: it is gone
            raise

    def received(self, count: int) -> None:
        """Bytes read: a request's deadline does not move."""


class DownloadPace(Deadline):
    """A download's deadline: each ``min_rate * window`` bytes within ``window`` seconds of the last
    such quota, so a download of any size goes on while it keeps the pace, and a drip ends."""

    def __init__(self, min_rate: float, window: float) -> None:
        super().__init__(window)
        self.min_rate = min_rate
        self.quota = min_rate * window
        #: Bytes since the current window began, and in all.
        self.count = self.total = 0

    def received(self, count: int) -> None:
        self.total += count
        self.count += count
        if self.count >= self.quota:
            self.started = time.monotonic()
            self.end = self.started + self.seconds
            self.count = 0

    def too_slow(self, url: str) -> str:
        """The one line naming what came in the last window, and the settings it fell short of."""
        elapsed = time.monotonic() - self.started
        seconds = f"{elapsed:.3g} s"
        window = f"(the connection's timeout, {self.seconds:g} s)"
        if not self.min_rate:
            return f"The download of {url} stalled: no byte in the last {seconds} {window}, {self.total} bytes in all"
        return (
            f"The download of {url} was slower than the connection's min_download_rate of {self.min_rate:g} "
            f"bytes/s: {self.count} bytes ({self.count / elapsed:.3g} bytes/s) in the last {seconds} "
            f"{window}, {self.total} bytes in all"
        )


class _DeadlineReader(io.RawIOBase):
    """A socket's bytes for http.client, each read within the current thread's deadline, if any."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # The socket's own reader keeps the socket open while the answer is read, as http.client expects.
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        deadline = Deadline.active()
        if deadline is None:
            return self._raw.readinto(buffer)
        count = deadline.run(self._sock, self._raw.readinto, buffer)
        deadline.received(count or 0)
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # http.client's reader of the socket: replaced by one that keeps the deadline
        self.fp = io.BufferedReader(_DeadlineReader(sock))


class _WatchedConnection(HTTPConnection):
    """A connection whose connect, sends and reads keep the current thread's ``Deadline``."""

    response_class = _DeadlineResponse

    def connect(self) -> None:
        deadline = Deadline.active()
        if deadline is not None:
            self.timeout = deadline.left()
        super().connect()

    def send(self, data: Any) -> None:
        deadline = Deadline.active()
        if deadline is None or self.sock is None:
            super().send(data)
        else:
            deadline.run(self.sock, super().send, data)


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


_WATCHED_POOLS = {
    "http": type("_WatchedPool", (HTTPConnectionPool,), {"ConnectionCls": _WatchedConnection}),
    "https": type("_WatchedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": _WatchedHTTPSConnection}),
}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through a proxy) keep the current ``Deadline``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def read_capped(chunks: Iterator[bytes], url: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > exchange.MAX_ANSWER_BYTES:
            raise exchange.too_large(url)
    return bytes(body)


def send(
    session: requests.Session,
    method: str,
    url: str,
    settings: CCPConnectionSettings,
    *,
    streamed: bool = False,
    **kwargs: Any,
) -> exchange.Answer:
    """One request, never redirected by requests, done within the connection's timeout as a whole; the
    answer is read here, except a streamed download's 200, whose body the caller streams to disk."""
    with Deadline(settings.timeout).applying() as deadline:
        try:
            response = session.request(
                method,
                url,
                allow_redirects=False,
                stream=True,
                timeout=settings.timeout,
                verify=verify_setting(settings.verify),
                **kwargs,
            )
            keep_open = streamed and response.status_code == 200
            try:
                body = b"" if keep_open else read_capped(response.iter_content(DOWNLOAD_CHUNK), url)
            finally:
                if not keep_open:
                    response.close()
        except requests.RequestException as err:
            if deadline.expired:
                return exchange.Answer(None, response=exchange.DeadlineExceeded(settings.timeout))
            return exchange.unanswered(err, url, settings.verify, sent=not before_sending(err))
    headers = response.headers
    return exchange.Answer(
        response.status_code, headers.get("Retry-After"), response=response, body=body, location=headers.get("Location")
    )


def before_sending(error: requests.RequestException) -> bool:
    """The connection failed before the request could leave (refused, unresolvable, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(error, requests.ConnectionError) and isinstance(reason, ConnectTimeoutError)


def new_session(verify: bool | str) -> requests.Session:
    """A session whose connections keep the current ``Deadline``; no urllib3 retries (``RetryPolicy`` decides)."""
    session = requests.Session()
    session.verify = verify
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update(exchange.USER_AGENT)
    return session


def stream_to_file(
    response: requests.Response,
    target: Path,
    url: str,
    job_id: str,
    progress: Callable[[int, int | None], None] | None,
    settings: CCPConnectionSettings,
) -> int:
    """Save the answer's body to ``target`` (whole, or not at all), read at the connection's
    ``min_download_rate`` at least (``DownloadPace``)."""
    pace = DownloadPace(settings.min_download_rate, settings.timeout)
    expected = response.headers.get("Content-Length")
    total = int(expected) if expected and expected.isdigit() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, pace.applying():
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
            out.flush()
            os.fsync(out.fileno())  # the rename below must never publish a file whose bytes are not on disk
        # Content-Length counts the bytes on the wire: compare it with those, not with decoded bytes.
        received = response.raw.tell() if response.raw is not None else written
        if total is not None and received != total:
            raise CCPDownloadError(
                f"The download of {url} ended after {received} of {total} bytes", url=url, job_id=job_id
            )
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; the outputs are meant to be read by others
        os.replace(temp_name, target)
    except BaseException as err:
        Path(temp_name).unlink(missing_ok=True)
        if not isinstance(err, requests.RequestException):
            raise
        broke = f"The download of {url} broke after {written} bytes: {type(err).__name__}"
        raise CCPDownloadError(pace.too_slow(url) if pace.expired else broke, url=url, job_id=job_id) from None
    return written
