"""Loopback doubles for the unit suite: a Keycloak token endpoint and CCP routes on pytest-httpserver.

Every secret is drawn fresh per test, so a secret registered with Airflow's masker by an earlier
test can never make a masking assertion pass by accident.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_ccp.clock import Clock

TOKEN_PATH = "/auth/realms/d4science/protocol/openid-connect/token"
CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab"
ENCODED_CONTEXT = "%2Fd4science.research-infrastructures.eu%2FD4OS%2FBlue-CloudLab"
CLIENT_ID = "blue-cloud.d4science.org"
USER = "alice"
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"


def status_body(job_id: str = "job-1", status: str = "running", **more: Any) -> dict[str, Any]:
    return {"jobID": job_id, "status": status, "message": "", **more}


@dataclass
class TokenCall:
    form: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    answer: dict[str, Any]

    @property
    def grant(self) -> str:
        return self.form.get("grant_type", "")


@dataclass
class FakeKeycloak:
    """The token endpoint: answers every grant with fresh, distinct tokens and records each request."""

    server: HTTPServer
    expires_in: float | None = 300
    refresh_expires_in: float | None = 1800
    issue_refresh_token: bool = True
    calls: list[TokenCall] = field(default_factory=list)
    refuse: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    delay: float = 0.0  # seconds each answer takes, to make concurrent callers overlap

    def __post_init__(self) -> None:
        self.server.expect_request(TOKEN_PATH, method="POST").respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for(TOKEN_PATH)

    @property
    def grants(self) -> list[str]:
        return [call.grant for call in self.calls]

    def last_access_token(self) -> str:
        return str(self.calls[-1].answer["access_token"])

    def _handle(self, request: Request) -> Response:
        pairs = parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
        form = dict(pairs)
        assert len(form) == len(pairs), f"a form field was sent twice: {[name for name, _ in pairs]}"
        call = TokenCall(form, {k.lower(): v for k, v in request.headers.items()}, {})
        self.calls.append(call)
        time.sleep(self.delay)
        if call.grant in self.refuse:
            status, body = self.refuse[call.grant]
            call.answer = body
            return Response(json.dumps(body), status=status, content_type="application/json")
        answer: dict[str, Any] = {"access_token": f"at-{secrets.token_hex(12)}", "token_type": "Bearer"}
        if self.expires_in is not None:
            answer["expires_in"] = self.expires_in
        if self.issue_refresh_token:
            answer["refresh_token"] = f"rt-{secrets.token_hex(12)}"
            answer["refresh_expires_in"] = self.refresh_expires_in
        call.answer = answer
        return Response(json.dumps(answer), status=200, content_type="application/json")


class ShiftedClock(Clock):
    """A hook's clock whose monotonic time jumps ``offset`` seconds ahead, nothing really sleeping longer.

    Only the hooks' view of the clock moves, so the event loop and the HTTP libraries keep real time.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


class SleepRecorder(Clock):
    """A hook's clock that records the retry waits instead of waiting them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class RealWaits(Clock):
    """Real time, with every wait recorded: when each poll came."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds)


class SteppingClock(Clock):
    """A clock whose waits only move its own wall-clock time forward: an hour of polling takes no time.

    ``limit`` waits at most, so that code which reads the real clock instead fails instead of spinning.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.now = time.time()
        self.waits: list[float] = []
        self.limit = limit

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        assert len(self.waits) <= self.limit, "still waiting after the clock's limit: is the real clock read?"
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def ccp_requests(server: HTTPServer, path_prefix: str = "/jobs") -> list[Request]:
    """Requests that reached CCP routes (not the token endpoint), in order."""
    return [request for request, _ in server.log if request.path.startswith(path_prefix)]


def bearer_of(request: Request) -> str | None:
    value = request.headers.get("Authorization")
    return value.removeprefix("Bearer ") if value else None


@dataclass
class Rule:
    """One hostile answer of a ``HostileFront``: to ``method`` requests whose path matches ``path``."""

    method: str
    path: re.Pattern[str]
    answer: Callable[[Request, Callable[[], Response]], Response]
    count: int | None = None  # None: every matching request


@dataclass
class HostileFront:
    """A server on loopback in front of the sandbox: it passes every request through, except those a
    rule answers with something hostile (a redirect elsewhere, another job's status, a slow answer...).

    ``answer(request, forward)`` gets the request and a function that forwards it and returns the
    sandbox's answer, so a rule can also alter a real answer.
    """

    server: HTTPServer
    upstream: str
    rules: list[Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server.expect_request(re.compile(".*")).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    @property
    def other_origin(self) -> str:
        """The same server under another origin (``localhost`` for ``127.0.0.1``): what it receives
        there is what a redirect or a link to another host would have carried away."""
        return self.url.replace("127.0.0.1", "localhost")

    def stolen(self) -> list[Request]:
        return [request for request, _ in self.server.log if request.host.startswith("localhost")]

    def add(
        self, method: str, path: str, answer: Callable[[Request, Callable[[], Response]], Response], count: int | None
    ) -> None:
        self.rules.append(Rule(method.upper(), re.compile(path), answer, count))

    def _handle(self, request: Request) -> Response:
        def forward() -> Response:
            return _forward(self.upstream, request)

        for rule in self.rules:
            if rule.method == request.method and rule.path.search(request.path) and rule.count != 0:
                if rule.count is not None:
                    rule.count -= 1
                return rule.answer(request, forward)
        return forward()


_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


def _forward(upstream: str, request: Request) -> Response:
    answer = requests.request(
        request.method,
        upstream + request.full_path.rstrip("?"),
        headers={name: value for name, value in request.headers.items() if name.lower() not in _HOP_HEADERS},
        data=request.get_data(),
        allow_redirects=False,
        timeout=30,
    )
    headers = [(name, value) for name, value in answer.headers.items() if name.lower() not in _HOP_HEADERS]
    return Response(answer.content, status=answer.status_code, headers=headers)


def dribbled(body: bytes, seconds_per_byte: float = 1.0) -> Response:
    """A 200 whose headers come at once and whose body comes one byte per ``seconds_per_byte``."""

    def chunks() -> Iterator[bytes]:
        for byte in body:
            time.sleep(seconds_per_byte)
            yield bytes([byte])

    return Response(chunks(), status=200, content_type="application/json")


class RawServer:
    """A TCP server on 127.0.0.1 that hands each connection to ``handle`` in a thread of its own: for
    answers no HTTP framework sends (a status line dribbled a byte at a time, TLS with any certificate).

    ``connections`` counts the connections accepted: a request retried shows as more than one.
    """

    def __init__(self, handle: Callable[[socket.socket], None], tls: ssl.SSLContext | None = None) -> None:
        self._handle = handle
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(10)
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            read_request(conn)
            self._handle(conn)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), which close() does not
        self._listener.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)


def read_request(conn: socket.socket) -> bytes:
    """The request head (a GET or a small POST: the body, if any, is not needed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def json_answer(document: Any) -> bytes:
    body = json.dumps(document).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def self_signed(folder: Any) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and the certificate's
    path (its own CA: the bundle a connection's ``verify`` can name)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccp-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "ccp-test.pem"
    key_path = folder / "ccp-test.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, str(cert_path)
