"""The worker hook's bounds in time, against real servers on loopback: a whole request ends by the
connection's timeout with no thread of its own, and a download's body keeps ``min_download_rate``.

The slow-loris cases of a status answer (headers or body dribbled) are in ``test_trust_boundary.py``,
the same for all three transports; these are the sync transport's own (``hooks/_requests.py``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ccp.exceptions import CCPDownloadError, CCPError
from airflow_provider_ccp.hooks.ccp import CCPHook
from tests.integration.doubles import RawServer, status_body

ZIP_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\n\r\n"


def conn_to(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> str:
    document = {"conn_type": "ccp", "host": host, "extra": {"auth_flow": "none", **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_CCP_PACE", json.dumps(document))
    return "ccp_pace"


def pieces(size: int, count: int, pause: float) -> Callable[[socket.socket], None]:
    """An output.zip of ``count`` pieces of ``size`` bytes, ``pause`` seconds before each."""

    def handle(conn: socket.socket) -> None:
        conn.sendall(ZIP_HEAD.format(size * count).encode())
        for _ in range(count):
            time.sleep(pause)
            conn.sendall(b"z" * size)

    return handle


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handle: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_no_thread_is_started_per_request(make_conn, httpserver, tmp_path, monkeypatch):
    """The old deadline started a timer thread per request: 300 requests, 300 threads."""
    conn = make_conn(auth_flow="none", login=None, secret="")
    httpserver.expect_request("/jobs/j1").respond_with_json(status_body("j1", "running"))
    httpserver.expect_request("/executions/j1/outputs/output.zip").respond_with_data(b"z" * 100_000)
    hook = CCPHook(conn)
    hook.get_job("j1")  # whatever a first call sets up once (the masker, the pool) is not per request
    started: list[threading.Thread] = []
    original = threading.Thread.start

    def counting(thread: threading.Thread) -> None:
        started.append(thread)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", counting)
    for _ in range(100):
        hook.get_job("j1")
        hook.download_outputs("j1", tmp_path)
        hook.get_job("j1")
    assert started == []
    assert len(httpserver.log) == 1 + 300


def test_a_dripped_download_ends_naming_its_rate_and_the_setting(monkeypatch, raw_server, tmp_path):
    """2 bytes/s against 100 bytes/s asked over each 1 s window: ended after about a window."""
    server = raw_server(pieces(1, 1000, 0.5))
    conn = conn_to(monkeypatch, server.url, timeout=1, min_download_rate=100)
    started = time.monotonic()
    with pytest.raises(CCPDownloadError) as caught:
        CCPHook(conn, retry_limit=0).download_outputs("j1", tmp_path)
    assert time.monotonic() - started < 5  # the whole archive would take 500 s
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"The download of {server.url}/executions/j1/outputs/output.zip was slower than ")
    assert "the connection's min_download_rate of 100 bytes/s: " in message
    assert re.search(
        r": \d bytes \([\d.]+ bytes/s\) in the last 1 s \(the connection's timeout, 1 s\), \d bytes in all$", message
    )
    assert list(tmp_path.iterdir()) == []  # no part file left
    assert server.connections == 1


def test_a_download_that_keeps_the_pace_takes_as_long_as_it_takes(monkeypatch, raw_server, tmp_path):
    """Ten 300-byte pieces 0.3 s apart: 3 s in all, three times the timeout, at 1,000 bytes/s."""
    server = raw_server(pieces(300, 10, 0.3))
    conn = conn_to(monkeypatch, server.url, timeout=1, min_download_rate=200)
    started = time.monotonic()
    downloaded = CCPHook(conn).download_outputs("j1", tmp_path)
    assert time.monotonic() - started > 2  # longer than the timeout: no whole-request deadline on the body
    assert downloaded.path.read_bytes() == b"z" * 3000


def test_the_same_pace_below_the_setting_ends(monkeypatch, raw_server, tmp_path):
    server = raw_server(pieces(300, 10, 0.3))
    conn = conn_to(monkeypatch, server.url, timeout=1, min_download_rate=2000)
    with pytest.raises(CCPDownloadError, match=r"slower than the connection's min_download_rate of 2000 bytes/s"):
        CCPHook(conn).download_outputs("j1", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_download_without_a_rate_ends_at_the_timeout(monkeypatch, raw_server, tmp_path):
    """``min_download_rate`` 0: any byte within each timeout will do, none is a stall."""
    server = raw_server(pieces(500, 2, 3))
    conn = conn_to(monkeypatch, server.url, timeout=1, min_download_rate=0)
    started = time.monotonic()
    with pytest.raises(CCPDownloadError, match=r"output\.zip stalled: no byte in the last 1 s \(the connection's"):
        CCPHook(conn).download_outputs("j1", tmp_path)
    assert time.monotonic() - started < 2.5
    assert not [path for path in tmp_path.iterdir() if path.suffix == ".part"]


def test_the_headers_of_a_download_keep_the_whole_request_deadline(monkeypatch, raw_server, tmp_path):
    """The status line and headers dribbled: they are the request, bounded by the timeout as a whole."""
    head = ZIP_HEAD.format(10).encode()

    def dribble(conn: socket.socket) -> None:
        for byte in head:
            time.sleep(0.2)
            conn.sendall(bytes([byte]))

    server = raw_server(dribble)
    conn = conn_to(monkeypatch, server.url, timeout=1, min_download_rate=0)
    started = time.monotonic()
    with pytest.raises(CCPError, match=r"no complete answer within the connection's timeout of 1 s"):
        CCPHook(conn, retry_limit=0).download_outputs("j1", tmp_path)
    assert time.monotonic() - started < 3
    assert not Path(tmp_path).joinpath("output.zip").exists()


def test_a_request_body_the_server_does_not_read_ends_at_the_timeout(monkeypatch, raw_server):
    """Sending is part of the request: 64 MiB the server never reads fill the socket's buffers, then wait."""
    server = raw_server(lambda conn: time.sleep(3))
    conn = conn_to(monkeypatch, server.url, timeout=1, server="ccp")
    started = time.monotonic()
    with pytest.raises(CCPError, match=r"no complete answer within the connection's timeout of 1 s"):
        CCPHook(conn).submit_execution("m", {"text": "x" * (64 * 1024 * 1024)})
    assert time.monotonic() - started < 4
    assert server.connections == 1  # a POST that may have landed is never resent
