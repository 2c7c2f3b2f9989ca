"""The sync hook's requests transport: sessions, one request within its deadline, a download streamed to disk.

Private to ``airflow_provider_ccp.hooks``: ``CCPHook`` sends through ``send`` and saves outputs with
``stream_to_file``; what to send, retry, follow and accept stays with ``exchange.exchange``, as for the
async transports (``hooks/_pool.py``, ``hooks/_aiohttp.py``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
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

__all__ = ["DOWNLOAD_CHUNK", "Deadline", "DeadlineAdapter", "new_session", "send", "stream_to_file"]

DOWNLOAD_CHUNK = 1024 * 1024


class Deadline:
    """The connections one request uses, shut down when its deadline passes.

    requests' timeout bounds each socket read, not the request: an answer dribbled a byte at a time
    never trips it. Shutting the socket down ends whatever read is waiting, headers or body.
    """

    current = threading.local()

    def __init__(self) -> None:
        self.connections: list[HTTPConnection] = []
        #: The sockets answers are read from: a connection forgets its socket when the answer ends with it.
        self.sockets: list[socket.socket] = []
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        sockets = [connection.sock for connection in list(self.connections)] + list(self.sockets)
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    @contextlib.contextmanager
    def watching(cls, seconds: float) -> Iterator[Deadline]:
        deadline = cls()
        cls.current.deadline = deadline
        timer = threading.Timer(seconds, deadline.expire)
        timer.daemon = True
        timer.start()
        try:
            yield deadline
        finally:
            timer.cancel()
            cls.current.deadline = None


class _WatchedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(Deadline.current, "deadline", None)
        if deadline is not None:
            deadline.connections.append(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        deadline = getattr(Deadline.current, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.sockets.append(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections a ``Deadline`` can shut down (direct or through a proxy)."""

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
    """One request, never redirected by requests, done within the connection's timeout as a whole.

    The answer is read here (at most ``MAX_ANSWER_BYTES``), except a streamed download's 200, whose
    body the caller streams to disk.
    """
    with Deadline.watching(settings.timeout) as deadline:
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
                return exchange.Answer(None, sent=True, response=exchange.DeadlineExceeded(settings.timeout))
            if exchange.certificate_failure(err):
                raise exchange.certificate_error(url, settings.verify) from None
            return exchange.Answer(None, sent=not before_sending(err), response=err)
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
    """A session whose connections a ``Deadline`` can shut down.

    No urllib3 retries: the hook's RetryPolicy decides, the same way for both hooks.
    """
    session = requests.Session()
    session.verify = verify
    adapter = DeadlineAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "airflow-provider-ccp"
    return session


def stream_to_file(
    response: requests.Response,
    target: Path,
    url: str,
    job_id: str,
    progress: Callable[[int, int | None], None] | None,
) -> int:
    expected = response.headers.get("Content-Length")
    total = int(expected) if expected and expected.isdigit() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
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
    except requests.RequestException as err:
        Path(temp_name).unlink(missing_ok=True)
        raise CCPDownloadError(
            f"The download of {url} broke after {written} bytes: {type(err).__name__}", url=url, job_id=job_id
        ) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return written
