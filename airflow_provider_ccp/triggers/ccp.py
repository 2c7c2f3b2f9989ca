"""``CCPJobTrigger``: waits for a CCP job in the triggerer, and the polling rules it shares with the worker.

The trigger only reads (``GET /jobs/{id}``); the execution is submitted by the operator on a
worker, because ``run()`` starts from scratch whenever a triggerer restarts and a POST made here
would start a second execution. The only remote change it ever makes is the dismiss in
``on_kill``, which Airflow >= 3.3 calls when a user kills the deferred task, and only then.

``JobWatch`` holds the rules (what ends the wait, which errors to ride out, how long to sleep)
with no I/O, so the trigger and the operator's non-deferrable loop behave the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ccp.exceptions import CCPError, CCPNotFoundError, CCPProtocolError
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook
from airflow_provider_ccp.protocol import StatusInfo

EVENT_STATUSES = frozenset({"success", "failed", "timeout", "error"})
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
    """Fail loudly on an event this provider did not produce, rather than treat it as success."""
    if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES or not event.get("job_id"):
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


class CCPJobTrigger(BaseTrigger):
    """Polls ``GET /jobs/{job_id}`` until the job ends or ``end_time`` passes; yields exactly one event.

    The event is ``{"status": "success"|"failed"|"timeout"|"error", "job_id", "job_status", "message"}``.

    :param conn_id: the ``ccp`` connection; the hook is rebuilt from it inside ``run()``.
    :param job_id: the CCP job (execution) id.
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which the trigger yields ``timeout``; None waits forever.
    :param cancel_on_kill: dismiss the job when a user kills the deferred task (Airflow >= 3.3).
    """

    def __init__(
        self,
        conn_id: str,
        job_id: str,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()
        if float(poll_interval) <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        # Coerced here so that serialize() can only ever emit JSON primitives.
        self.conn_id = str(conn_id)
        self.job_id = str(job_id)
        self.poll_interval = float(poll_interval)
        self.end_time = None if end_time is None else float(end_time)
        self.cancel_on_kill = bool(cancel_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_ccp.triggers.ccp.CCPJobTrigger",
            {
                "conn_id": self.conn_id,
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            event = await self._wait()
        except Exception as err:  # a broken connection definition, a bug: fail the task, never hang it
            self.log.exception("Stopped following CCP job %s", self.job_id)
            event = job_event("error", self.job_id, None, f"Cannot follow CCP job {self.job_id}: {err}")
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        watch = JobWatch(self.job_id, self.poll_interval, self.end_time, self.log)
        async with CCPAsyncHook(self.conn_id) as hook:
            while True:
                try:
                    info = await hook.get_job(self.job_id)
                except CCPError as err:
                    event = watch.on_error(err)
                else:
                    event = watch.on_status(info)
                if event is not None:
                    return event
                await asyncio.sleep(watch.next_delay())

    async def on_kill(self) -> None:
        """Dismiss the job: Airflow >= 3.3 calls this only when a user kills the deferred task.

        Not on a triggerer restart, redistribution or trigger timeout, and never from
        ``cleanup()``: the job must outlive the triggerer that watches it.
        """
        if not self.cancel_on_kill:
            self.log.info("Leaving CCP job %s running (cancel_on_kill=False)", self.job_id)
            return
        try:
            async with CCPAsyncHook(self.conn_id) as hook:
                result = await hook.dismiss_job(self.job_id)
        except Exception:  # best effort: the kill itself must go through
            self.log.warning("Could not dismiss CCP job %s", self.job_id, exc_info=True)
            return
        self.log.info("%s", result.message)
