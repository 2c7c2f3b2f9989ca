"""``CCPJobTrigger``: waits for a CCP job in the triggerer, without holding a worker slot.

The trigger only reads (``GET /jobs/{id}``); the execution is submitted by the operator on a
worker, because ``run()`` starts from scratch whenever a triggerer restarts and a POST made here
would start a second execution. The only remote change it ever makes is the dismiss in
``on_kill``, which Airflow >= 3.3 calls when a user kills the deferred task, and only then.

The waiting rules (what ends the wait, which errors to ride out, how long to sleep) live in
``airflow_provider_ccp.waiting``, shared with the operator's worker loop and the hook.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ccp.auth import amask
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.exchange import DEFAULT_RETRY, redact
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook
from airflow_provider_ccp.waiting import JobWatch, job_event

#: Each wait is stretched or shrunk by up to this fraction, so triggers deferred together drift apart.
POLL_JITTER = 0.1


def jittered(delay: float, spread: float = POLL_JITTER, rng: random.Random | None = None) -> float:
    return delay * (1.0 + spread * (2.0 * (rng or random).random() - 1.0))


def first_poll_delay(poll_interval: float, rng: random.Random | None = None) -> float:
    """Anywhere in the first period: a thousand tasks deferred in the same second poll spread over it."""
    return poll_interval * (rng or random).random()


class CCPJobTrigger(BaseTrigger):
    """Polls ``GET /jobs/{job_id}`` until the job ends or ``end_time`` passes; yields exactly one event.

    The event is ``{"status": "success"|"failed"|"timeout"|"error", "job_id", "job_status", "message"}``.

    :param conn_id: the ``ccp`` connection; the hook is rebuilt from it inside ``run()``.
    :param job_id: the CCP job (execution) id.
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which the trigger yields ``timeout``; None waits forever.
    :param cancel_on_kill: dismiss the job when a user kills the deferred task (Airflow >= 3.3).
    :param not_before: epoch seconds before which a job that ended is not reported (see ``JobWatch``).
    :param retry_limit: retries of one poll request (the hook's retry policy, docs/connection.md).
    :param retry_delay: first backoff of those retries, in seconds.
    :param secrets: the values of the task's secret inputs. CCP may echo one in a status or failure
        message: the trigger registers them with the masker and hides them in its event. Airflow
        stores a trigger's arguments encrypted (Fernet), so they are as safe there as a connection.

    The first poll comes at a random moment within the first ``poll_interval`` and each later wait
    is jittered by ±10%, so that triggers deferred in the same second do not poll in lock-step.
    """

    def __init__(
        self,
        conn_id: str,
        job_id: str,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        cancel_on_kill: bool = True,
        not_before: float | None = None,
        retry_limit: int = DEFAULT_RETRY.limit,
        retry_delay: float = DEFAULT_RETRY.delay,
        secrets: Collection[str] = (),
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
        self.not_before = None if not_before is None else float(not_before)
        self.retry_limit = int(retry_limit)
        self.retry_delay = float(retry_delay)
        self.secrets = tuple(str(secret) for secret in secrets)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_ccp.triggers.ccp.CCPJobTrigger",
            {
                "conn_id": self.conn_id,
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_kill": self.cancel_on_kill,
                "not_before": self.not_before,
                # Only when set: the triggers already stored by earlier versions keep their exact form.
                **{
                    name: value
                    for name, value, default in (
                        ("retry_limit", self.retry_limit, DEFAULT_RETRY.limit),
                        ("retry_delay", self.retry_delay, DEFAULT_RETRY.delay),
                        ("secrets", list(self.secrets), []),
                    )
                    if value != default
                },
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await amask(*self.secrets)
        try:
            event = await self._wait()
        except Exception as err:  # a broken connection definition, a bug: fail the task, never hang it
            self.log.exception("Stopped following CCP job %s", self.job_id)
            text = redact(str(err), self.secrets)
            event = job_event("error", self.job_id, None, f"Cannot follow CCP job {self.job_id}: {text}")
        yield TriggerEvent(event)

    def _pause(self, delay: float) -> float:
        pause = jittered(delay)
        if self.end_time is not None:  # jitter never carries a poll past the deadline
            pause = min(pause, max(0.0, self.end_time - time.time()))
        return pause

    def _hook(self) -> CCPAsyncHook:
        return CCPAsyncHook(self.conn_id, retry_limit=self.retry_limit, retry_delay=self.retry_delay)

    async def _wait(self) -> dict[str, Any]:
        watch = JobWatch(
            self.job_id, self.poll_interval, self.end_time, self.log, self.not_before, secrets=self.secrets
        )
        async with self._hook() as hook:
            await asyncio.sleep(min(first_poll_delay(self.poll_interval), watch.next_delay()))
            while True:
                try:
                    info = await hook.get_job(self.job_id)
                except CCPError as err:
                    event = watch.on_error(err)
                else:
                    event = watch.on_status(info)
                if event is not None:
                    return event
                await asyncio.sleep(self._pause(watch.next_delay()))

    async def on_kill(self) -> None:
        """Dismiss the job: Airflow >= 3.3 calls this only when a user kills the deferred task.

        Not on a triggerer restart, redistribution or trigger timeout, and never from
        ``cleanup()``: the job must outlive the triggerer that watches it.
        """
        if not self.cancel_on_kill:
            self.log.info("Leaving CCP job %s running (cancel_on_kill=False)", self.job_id)
            return
        try:
            async with self._hook() as hook:
                result = await hook.dismiss_job(self.job_id)
        except Exception:  # best effort: the kill itself must go through
            self.log.warning("Could not dismiss CCP job %s", self.job_id, exc_info=True)
            return
        self.log.info("%s", result.message)
