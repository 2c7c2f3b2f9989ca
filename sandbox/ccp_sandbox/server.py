"""Serving the app with uvicorn on a socket bound up front, so port 0 yields a known port at once."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from ccp_sandbox.app import create_app
from ccp_sandbox.config import SandboxConfig
from ccp_sandbox.hangup import TrackingH11Protocol
from ccp_sandbox.state import SandboxState


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


@dataclass
class BoundSandbox:
    """A sandbox app with its listening socket and the uvicorn server that will serve it."""

    server: uvicorn.Server
    sock: socket.socket
    state: SandboxState
    url: str

    def serve(self) -> None:
        """Blocks until the server stops (in the main thread uvicorn handles SIGINT/SIGTERM itself)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.state.runner.kill_all()
            self.sock.close()


def bind_sandbox(
    config: SandboxConfig, on_started: Callable[[], None] = lambda: None, log_level: str = "warning"
) -> BoundSandbox:
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    port = sock.getsockname()[1]
    host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
    app = create_app(config)
    uvicorn_config = uvicorn.Config(
        app,
        http=TrackingH11Protocol,
        ws="none",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return BoundSandbox(_Server(uvicorn_config, on_started), sock, app.state.sandbox, f"http://{host}:{port}")
