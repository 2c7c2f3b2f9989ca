"""A fast fake CCP for the benchmarks: one asyncio process answering the few calls the client makes.

Not the sandbox: the sandbox is a full FastAPI application, and the benchmarks measure the client,
so the server must cost as little as possible per request. HTTP/1.1 with keep-alive, no framework.

    python tests/benchmarks/fake_ccp.py [--port 0] [--token-lifetime 300] [--output-size BYTES]

Prints ``PORT <n>`` once it listens. Answers:

- ``POST /token``: a password or refresh_token grant (counted by grant type); tokens live
  ``--token-lifetime`` seconds, refresh tokens 10 times as long.
- ``GET /jobs/{id}``: a ``running`` statusInfo (counted as a poll; with ``--interval``, a poll more
  than 10% + 100 ms after the job's previous one is counted late).
- ``POST /processes/{id}/execution``: 201 with a fresh jobID (counted as a submission).
- ``GET /executions/{id}/outputs/output.zip``: ``--output-size`` bytes, streamed with Content-Length.
- ``GET /jobs?limit=&offset=``: a listing of ``--jobs`` ended executions, newest first, in the shape of
  CCP's documented jobStatus (no ``finished``; ``updated`` the time of the listing), paged with ``next``
  links (counted as listings).
- ``GET /_stats``: the counters as JSON (TCP connections accepted, connections open, polls, grants, late
  polls, ...) and the server's own CPU seconds (the floor a client's figures are set against).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

STATUS_TIMES = {
    "created": "2026-01-01T10:00:00.000000Z",
    "started": "2026-01-01T10:00:05.000000Z",
    "updated": "2026-01-01T10:00:06.000000Z",
}


class FakeCCP:
    def __init__(self, token_lifetime: float, output_size: int, interval: float = 0.0, jobs: int = 0) -> None:
        self.jobs = [
            {"jobID": f"{n:08x}-0000-4000-8000-000000000000", "status": "successful", "message": "Runtime removed"}
            | {"created": f"2026-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"}
            for n in range(jobs, 0, -1)
        ]
        self.token_lifetime = token_lifetime
        self.output_size = output_size
        # A poll is on time when it comes at most the poll jitter (10%) plus 100 ms after the job's last one.
        self.late_after = interval * 1.1 + 0.1
        self.last_poll: dict[str, float] = {}
        self.counts: Counter[str] = Counter()
        self.open_connections = 0
        self.serial = itertools.count(1)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        self.open_connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in header_lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                path, _, query = target.partition("?")
                if method == "GET" and path == "/jobs":
                    self.listing(parse_qs(query), writer)
                    await writer.drain()
                else:
                    await self.answer(method, path, body, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        finally:
            self.open_connections -= 1
            writer.close()

    async def answer(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path.startswith("/jobs/"):
            self.counts["polls"] += 1
            self.time_poll(path[6:])
            self.json(writer, 200, {"jobID": path[6:], "status": "running", "message": "Running", **STATUS_TIMES})
        elif method == "POST" and path == "/token":
            grant = parse_qs(body.decode()).get("grant_type", ["?"])[0]
            self.counts[f"grant:{grant}"] += 1
            serial = next(self.serial)
            self.json(
                writer,
                200,
                {
                    "access_token": f"access-{serial}",
                    "expires_in": self.token_lifetime,
                    "refresh_token": f"refresh-{serial}",
                    "refresh_expires_in": self.token_lifetime * 10,
                    "token_type": "Bearer",
                },
            )
        elif method == "POST" and path.startswith("/processes/") and path.endswith("/execution"):
            self.counts["submissions"] += 1
            self.json(writer, 201, {"jobID": f"job-{next(self.serial)}", "status": "accepted"})
        elif method == "GET" and path.endswith("/outputs/output.zip"):
            self.counts["downloads"] += 1
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\n"
                + f"Content-Length: {self.output_size}\r\n\r\n".encode()
            )
            await writer.drain()
            # A sparse file sent with sendfile(2): the server costs next to nothing per byte.
            with tempfile.TemporaryFile() as output:
                output.truncate(self.output_size)
                await asyncio.get_running_loop().sendfile(writer.transport, output)
        elif path == "/_stats":
            self.json(writer, 200, {**self.counts, "open_connections": self.open_connections, "cpu": cpu_seconds()})
        else:
            self.json(writer, 404, {"type": "not-found", "title": f"No {method} {path} here"})
        await writer.drain()

    def listing(self, query: dict[str, list[str]], writer: asyncio.StreamWriter) -> None:
        self.counts["listings"] += 1
        limit, offset = int(query.get("limit", ["10"])[0]), int(query.get("offset", ["0"])[0])
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        page = [job | {"updated": now} for job in self.jobs[offset : offset + limit]]
        links = []
        if offset + limit < len(self.jobs):
            links.append({"rel": "next", "href": f"/jobs?limit={limit}&offset={offset + limit}"})
        self.json(writer, 200, {"jobs": page, "links": links})

    def time_poll(self, job_id: str) -> None:
        now = time.monotonic()
        last = self.last_poll.get(job_id)
        self.last_poll[job_id] = now
        if last is not None:
            self.counts["repolls"] += 1
            self.counts["late_polls"] += now - last > self.late_after

    @staticmethod
    def json(writer: asyncio.StreamWriter, status: int, document: object) -> None:
        payload = json.dumps(document).encode()
        reason = {200: "OK", 201: "Created", 404: "Not Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )


async def serve(port: int, token_lifetime: float, output_size: int, interval: float, jobs: int) -> None:
    fake = FakeCCP(token_lifetime, output_size, interval, jobs)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", port, backlog=4096)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class FakeServer:
    """Runs the fake CCP in its own process (stopped by its PID) and reads its counters."""

    def __init__(
        self, token_lifetime: float = 300.0, output_size: int = 1024**3, interval: float = 0.0, jobs: int = 0
    ) -> None:
        self.args = ["--token-lifetime", str(token_lifetime), "--output-size", str(output_size)]
        self.args += ["--interval", str(interval), "--jobs", str(jobs)]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeServer:
        self.process = subprocess.Popen(
            [sys.executable, __file__, *self.args], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake CCP did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_stats", timeout=30) as answer:
            return dict(json.loads(answer.read()))

    def connection_json(self, **extra: Any) -> str:
        """An Airflow connection (for AIRFLOW_CONN_*) to this server, password_scope by default."""
        return json.dumps(
            {
                "conn_type": "ccp",
                "host": self.url,
                "login": "bench-user",
                "password": "bench-password",
                "extra": {
                    "token_url": self.url + "/token",
                    "client_id": "bench",
                    "context": "/d4science.research-infrastructures.eu/bench",
                    "auth_flow": "password_scope",
                    **extra,
                },
            }
        )


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads."""
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-lifetime", type=float, default=300.0)
    parser.add_argument("--output-size", type=int, default=1024**3)
    parser.add_argument("--interval", type=float, default=0.0, help="the pollers' interval, to count late polls")
    parser.add_argument("--jobs", type=int, default=0, help="ended executions in GET /jobs")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.token_lifetime, args.output_size, args.interval, args.jobs))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
