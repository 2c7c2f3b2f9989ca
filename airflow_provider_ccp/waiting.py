"""How to wait for a CCP job, with no I/O: the event shape and the polling rules.

The trigger (async, in the triggerer), the operator's worker loop and ``CCPHook.wait_for_job``
all poll through ``JobWatch``, so the three cannot disagree about what ends a wait, which errors
are ridden out and how long to sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airflow_provider_ccp.exceptions import (
    CCPAuthError,
    CCPConfigError,
    CCPCredentialsError,
    CCPError,
    CCPNotFoundError,
    CCPProtocolError,
    CCPTrustError,
    cut,
)
from airflow_provider_ccp.exchange import redact
from airflow_provider_ccp.protocol import StatusInfo, is_known

EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})
EVENT_KEYS = frozenset({"status", "job_id", "job_status", "message"})
#: Polls in a row that may fail (after the hook's own retries) before the wait gives up.
MAX_CONSECUTIVE_FAILURES = 5
MAX_BACKOFF_SECONDS = 300.0
#: 4xx answers worth asking again: the hook already renewed the token once on 401.
TRANSIENT_CLIENT_STATUSES = frozenset({401, 408, 429})
#: A server error that asking again never fixes: the server has no such feature.
NOT_IMPLEMENTED = 501
#: How long after a deferral the trigger may resume the task at the earliest (``JobWatch.not_before``).
#: Airflow fails a task whose trigger fires before the scheduler has read the executor's report of
#: the deferring worker's exit (apache/airflow #66374, #67287, #71580, #72716); docs/operators.md.
MIN_DEFER_SECONDS = 10.0

T = TypeVar("T")


def configured_min_defer_seconds() -> float:
    """``[ccp] min_defer_seconds`` from Airflow's configuration, else ``MIN_DEFER_SECONDS``."""
    from airflow_provider_ccp.version_compat import conf

    return conf.getfloat("ccp", "min_defer_seconds", fallback=MIN_DEFER_SECONDS)


def job_event(status: str, job_id: str, job_status: str | None, message: str) -> dict[str, Any]:
    """The one event shape the trigger yields and ``execute_complete`` reads: JSON primitives only."""
    return {"status": status, "job_id": job_id, "job_status": job_status, "message": cut(message)}


def terminal_event(info: StatusInfo, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The event of a job that ended; ``secrets`` (the secret inputs' values) are hidden in its message."""
    status = "success" if info.successful else "failed"
    return job_event(status, info.job_id, info.status, redact(info.message, secrets))


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
    """Whether asking again may help: connection trouble, 5xx, 429, an unreadable body.

    An auth error raised before any answer (no HTTP status) is final: the token flow itself said no,
    e.g. a static token (``auth_flow=token``) that CCP rejected cannot be renewed.
    """
    if isinstance(error, CCPNotFoundError | CCPTrustError | CCPConfigError | CCPCredentialsError):
        return False
    if isinstance(error, CCPAuthError) and error.http_status is None:
        return False
    status = error.http_status
    if status == NOT_IMPLEMENTED:
        return False
    return status is None or status >= 500 or status in TRANSIENT_CLIENT_STATUSES


@dataclass
class JobWatch:
    """The waiting rules, shared by the trigger (async) and the operator's worker loop (sync).

    Feed it each poll's outcome; it answers with the final event, or None to keep waiting, and
    says how long to sleep. ``end_time`` is wall-clock epoch seconds, as it crosses processes.
    ``not_before`` (epoch seconds) holds back the end of a job that finished sooner: the status is
    asked again then, and only that answer ends the wait.
    """

    job_id: str
    poll_interval: float
    end_time: float | None
    log: Any
    not_before: float | None = None
    previous: str | None = None
    failures: int = 0
    holding: bool = False
    #: Status words outside OGC's and CCP's, already warned about: once per wait, however long it polls.
    unknown: set[str] = field(default_factory=set)
    #: Values of the secret inputs: CCP may echo one in a message, which then reaches no log or event.
    secrets: tuple[str, ...] = ()

    def on_status(self, info: StatusInfo) -> dict[str, Any] | None:
        self.failures = 0
        self.check_word(info.status)
        if info.status != self.previous:
            progress = f" ({info.progress}%)" if info.progress is not None else ""
            message = redact(info.message, self.secrets)
            self.log.info("CCP job %s is %s%s: %s", self.job_id, info.status, progress, message)
            self.previous = info.status
        if not info.terminal:
            return self._deadline_event()
        self.holding = self.not_before is not None and time.time() < self.not_before
        if self.holding:
            self.log.info("CCP job %s ended early: resuming the task in %.1f s", self.job_id, self.next_delay())
            return None
        return terminal_event(info, self.secrets)

    def check_word(self, status: str) -> None:
        """Warn the first time the job shows a status word this provider does not know."""
        if not is_known(status) and status not in self.unknown:
            self.unknown.add(status)
            self.log.warning(
                "CCP job %s has the unknown status %r: treated as not finished; polling continues", self.job_id, status
            )

    def on_error(self, error: CCPError) -> dict[str, Any] | None:
        text = redact(str(error), self.secrets)
        if not is_transient(error):
            return job_event("error", self.job_id, self.previous, f"Cannot follow CCP job {self.job_id}: {text}")
        self.failures += 1
        if self.failures > MAX_CONSECUTIVE_FAILURES:
            message = f"Gave up on CCP job {self.job_id} after {self.failures} failed polls in a row: {text}"
            return job_event("error", self.job_id, self.previous, message)
        self.log.warning(
            "Poll %d of CCP job %s failed (%s); trying again in %.0f s",
            self.failures,
            self.job_id,
            text,
            self.next_delay(),
        )
        return self._deadline_event()

    def next_delay(self) -> float:
        delay = self.poll_interval
        if self.failures:
            delay = min(self.poll_interval * 2 ** (self.failures - 1), max(self.poll_interval, MAX_BACKOFF_SECONDS))
        if self.holding and self.not_before is not None:
            delay = min(delay, max(0.0, self.not_before - time.time()))
        if self.end_time is not None:
            delay = min(delay, max(0.0, self.end_time - time.time()))
        return delay

    def _deadline_event(self) -> dict[str, Any] | None:
        if self.end_time is None or time.time() < self.end_time:
            return None
        message = f"CCP job {self.job_id} was still {self.previous or 'unknown'} when the wait timed out"
        return job_event("timeout", self.job_id, self.previous, message)


def ride_out(call: Callable[[], T], watch: JobWatch, sleep: Callable[[float], Any] = time.sleep) -> T:
    """``call()`` until it answers, riding out transient errors by ``watch``'s rules (the ones polling
    follows); the error that makes them give up (not transient, too many, the deadline) is raised."""
    while True:
        try:
            return call()
        except CCPError as err:
            if watch.on_error(err) is not None:
                raise
        sleep(watch.next_delay())
