"""Deliberately damaged output.zip downloads (the 'corrupt_output' fault)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ccp_sandbox.hangup import hang_up

CHUNK = 256 * 1024


class DamagedZip(Response):
    """Promises the archive's full Content-Length, then either sends half of it and hangs up
    ('truncate') or sends exactly that many garbage bytes ('corrupt')."""

    def __init__(self, archive: Path, mode: str) -> None:
        super().__init__(media_type="application/zip")
        self.archive = archive
        self.mode = mode
        self.size = archive.stat().st_size
        self.headers["content-length"] = str(self.size)
        self.headers["content-disposition"] = 'attachment; filename="output.zip"'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        chunks = self._garbage() if self.mode == "corrupt" else self._first_half()
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self.mode == "corrupt":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await hang_up(scope, receive)

    def _garbage(self) -> Iterator[bytes]:
        for start in range(0, self.size, CHUNK):
            yield os.urandom(min(CHUNK, self.size - start))

    def _first_half(self) -> Iterator[bytes]:
        remaining = self.size // 2
        with open(self.archive, "rb") as stream:
            while remaining > 0:
                chunk = stream.read(min(CHUNK, remaining))
                remaining -= len(chunk)
                yield chunk
