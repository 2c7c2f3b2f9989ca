"""How to wait for a CCP job, with no I/O: the event shape and the polling rules.

The trigger (async, in the triggerer), the operator's worker loop and ``CCPHook.wait_for_job``
all poll through ``JobWatch``, so the three cannot disagree about what ends a wait, which errors
are ridden out and how long to sleep.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_ccp.exceptions import CCPError, CCPNotFoundError, CCPProtocolError
from airflow_provider_ccp.protocol import StatusInfo

EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})
EVENT_KEYS = frozenset({"status", "job_id", "job_status", "message"})
#: Polls in a row that may fail (after the hook's own retries) before the wait gives up.
MAX_CONSECUTIVE_FAILURES = 5
MAX_BACKOFF_SECONDS = 300.0
#: 4xx answers worth asking again: the hook already renewed the token once on 401.
TRANSIENT_CLIENT_STATUSES = frozenset({401, 408, 429})


def job_event(status: str, job_id: str, job_status: str | None, message: str) -> dict[str, Any]:
    """The one event shape the trigger yields and ``execute_complete`` reads: JSON primitives only."""
    return {"status": status, "job_id": job_id, "job_status": job_status, "message": message}


def terminal_event(info: StatusInfo) -> dict[str, Any]:
    return job_event("success" if info.successful else "failed", info.job_id, info.status, info.message)


def validate_event(event: Any) -> dict[str, Any]:
    """Fail loudly on an event this provider did not produce, rather than treat it as success.

    ``job_status`` and ``message`` may be None or empty, but must be there: they are read later.
    """
    if (
        not isinstance(event, Mapping)
        or event.get("status") not in EVENT_STATUSES
        or not event.get("job_id")
        or not EVENT_KEYS.issubset(event)
    ):
        raise CCPProtocolError(f"Unexpected event from CCPJobTrigger: {event!r}")
    return dict(event)


def is_transient(error: CCPError) -> bool:
    """Whether asking again may help: connection trouble, 5xx, 429, an unreadable body."""
    if isinstance(error, CCPNotFoundError):
        return False
    status = error.http_status
    return status is None or status >= 500 or status in TRANSIENT_CLIENT_STATUSES


@dataclass
class JobWatch:
    """The waiting rules, shared by the trigger (async) and the operator's worker loop (sync).

    Feed it each poll's outcome; it answers with the final event, or None to keep waiting, and
    says how long to sleep. ``end_time`` is wall-clock epoch seconds, as it crosses processes.
    """

    job_id: str
    poll_interval: float
    end_time: float | None
    log: Any
    previous: str | None = None
    failures: int = 0

    def on_status(self, info: StatusInfo) -> dict[str, Any] | None:
        self.failures = 0
        if info.status != self.previous:
            progress = f" ({info.progress}%)" if info.progress is not None else ""
            self.log.info("CCP job %s is %s%s: %s", self.job_id, info.status, progress, info.message)
            self.previous = info.status
        return terminal_event(info) if info.terminal else self._deadline_event()

    def on_error(self, error: CCPError) -> dict[str, Any] | None:
        if not is_transient(error):
            return job_event("error", self.job_id, self.previous, f"Cannot follow CCP job {self.job_id}: {error}")
        self.failures += 1
        if self.failures > MAX_CONSECUTIVE_FAILURES:
            message = f"Gave up on CCP job {self.job_id} after {self.failures} failed polls in a row: {error}"
            return job_event("error", self.job_id, self.previous, message)
        self.log.warning(
            "Poll %d of CCP job %s failed (%s); trying again in %.0f s",
            self.failures,
            self.job_id,
            error,
            self.next_delay(),
        )
        return self._deadline_event()

    def next_delay(self) -> float:
        delay = self.poll_interval
        if self.failures:
            delay = min(self.poll_interval * 2 ** (self.failures - 1), max(self.poll_interval, MAX_BACKOFF_SECONDS))
        if self.end_time is not None:
            delay = min(delay, max(0.0, self.end_time - time.time()))
        return delay

    def _deadline_event(self) -> dict[str, Any] | None:
        if self.end_time is None or time.time() < self.end_time:
            return None
        message = f"CCP job {self.job_id} was still {self.previous or 'unknown'} when the wait timed out"
        return job_event("timeout", self.job_id, self.previous, message)
