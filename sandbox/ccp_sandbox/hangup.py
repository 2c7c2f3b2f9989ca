"""Abruptly closing a client connection from inside the ASGI app (the 'drop' and 'truncate' faults).

ASGI offers no way to hang up without answering, so the sandbox runs uvicorn with an h11 protocol
subclass that remembers each open connection's transport, keyed by the (server, client) addresses
that also appear in the request scope.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

_OPEN: dict[tuple[Any, Any], asyncio.Transport] = {}


class TrackingH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _OPEN[(self.server, self.client)] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        _OPEN.pop((self.server, self.client), None)
        super().connection_lost(exc)


async def hang_up(scope: Scope, receive: Receive) -> None:
    """Abort the request's TCP connection and wait until uvicorn has noticed, so it sends nothing more."""
    transport = _OPEN.get((scope.get("server"), scope.get("client")))
    if transport is None:
        raise RuntimeError("hang_up needs the sandbox's TrackingH11Protocol (see ccp_sandbox.server)")
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass
