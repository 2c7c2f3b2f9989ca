"""Fault rules injected through the admin API, and their bookkeeping (how many requests each still hits)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

# Faults applied to a request before the sandbox handles it.
REQUEST_KINDS = ("status", "latency", "drop")
# Faults consulted by the endpoint they concern.
EXECUTION_KINDS = ("hold", "corrupt_output", "lose_answer")
KINDS = (*REQUEST_KINDS, *EXECUTION_KINDS)
STATUS_BODIES = ("ogc", "empty", "html")
CORRUPT_MODES = ("truncate", "corrupt", "replace")
#: How the execution POST loses its answer after creating the job: an error status, or a hang-up.
LOSE_MODES = ("status", "drop")
MODES = {"corrupt_output": CORRUPT_MODES, "lose_answer": LOSE_MODES}


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    kind: str
    path: re.Pattern[str] | None = None
    method: str | None = None
    remaining: int | None = 1  # None: applies forever
    status: int = 503
    retry_after: float | None = None
    body: str = "ogc"
    seconds: float = 0.0
    method_id: str | None = None
    job_id: str | None = None
    mode: str = "truncate"
    #: What 'replace' serves instead of the job's output.zip (a hostile archive, say).
    archive: bytes = b""

    def matches_request(self, http_method: str, path: str) -> bool:
        return (self.method is None or self.method == http_method.upper()) and (
            self.path is None or self.path.search(path) is not None
        )

    def view(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path.pattern if self.path else None,
            "method": self.method,
            "count": self.remaining,
            **{key: getattr(self, key) for key in _KIND_FIELDS.get(self.kind, ())},
        }


_KIND_FIELDS = {
    "status": ("status", "retry_after", "body"),
    "latency": ("seconds",),
    "hold": ("method_id",),
    "corrupt_output": ("job_id", "mode"),
    "lose_answer": ("method_id", "mode", "status"),
}


def parse_fault(spec: dict[str, Any]) -> Fault:
    """Build a Fault from the admin API's JSON; raises FaultSpecError with a readable reason."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"'kind' must be one of {[*KINDS, 'revoke_tokens']}, got {kind!r}")
    default_count = None if kind == "hold" else 1
    modes = MODES.get(kind, CORRUPT_MODES)
    try:
        fault = Fault(
            kind=kind,
            path=re.compile(spec["path"]) if spec.get("path") else None,
            method=spec["method"].upper() if spec.get("method") else None,
            remaining=_count(spec.get("count", default_count)),
            status=int(spec.get("status", 502 if kind == "lose_answer" else 503)),
            retry_after=float(spec["retry_after"]) if spec.get("retry_after") is not None else None,
            body=str(spec.get("body") or "ogc"),
            seconds=float(spec.get("seconds", 0.0)),
            method_id=spec.get("method_id"),
            job_id=spec.get("job_id"),
            mode=str(spec.get("mode", modes[0])),
            archive=base64.b64decode(spec.get("archive_base64") or "", validate=True),
        )
    except (TypeError, ValueError, re.error, binascii.Error) as error:
        raise FaultSpecError(f"invalid fault {spec!r}: {error}") from error
    if fault.mode not in modes:
        raise FaultSpecError(f"'mode' must be one of {list(modes)}")
    if not 100 <= fault.status <= 599:
        raise FaultSpecError("'status' must be an HTTP status code")
    return fault


def _count(value: object) -> int | None:
    if value is None:
        return None
    count = int(str(value))
    if count < 1:
        raise ValueError("'count' must be at least 1 (or null for 'forever')")
    return count


class FaultStore:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> None:
        self._faults.clear()

    def active(self) -> list[dict[str, Any]]:
        return [fault.view() for fault in self._faults]

    def take_request_faults(self, http_method: str, path: str) -> list[Fault]:
        """Matching latency faults, then at most one fault that answers in the sandbox's place; each spends a use."""
        matching = [f for f in self._faults if f.kind in REQUEST_KINDS and f.matches_request(http_method, path)]
        taken = [f for f in matching if f.kind == "latency"]
        taken += [f for f in matching if f.kind != "latency"][:1]
        for fault in taken:
            self._spend(fault)
        return taken

    def take(self, kind: str, **match: str) -> Fault | None:
        """The first fault of ``kind`` whose optional filters (method_id=..., job_id=...) accept ``match``."""
        for fault in self._faults:
            if fault.kind == kind and all(getattr(fault, key) in (None, value) for key, value in match.items()):
                self._spend(fault)
                return fault
        return None

    def _spend(self, fault: Fault) -> None:
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
