"""``CCPJobTrigger``: waits for a CCP job in the triggerer, without holding a worker slot.

The trigger only reads (``GET /jobs/{id}``); the execution is submitted by the operator on a
worker, because ``run()`` starts from scratch whenever a triggerer restarts and a POST made here
would start a second execution. The only remote change it ever makes is the dismiss in
``on_kill``, which Airflow >= 3.3 calls when a user kills the deferred task, and only then.

The waiting rules (what ends the wait, which errors to ride out, how long to sleep) live in
``airflow_provider_ccp.waiting``, shared with the operator's worker loop and the hook; the loop
here is their async twin, kept apart so that a poll costs no more than the request itself.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import AsyncIterator, Collection, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import pendulum
from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_ccp import protocol
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.auth import amask
from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.exchange import DEFAULT_RETRY, redact
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.version_compat import watcher_state_store
from airflow_provider_ccp.waiting import JobWatch, error_event

__all__ = ["CCPJobTrigger", "CCPExecutionEventTrigger", "jittered", "first_poll_delay", "POLL_JITTER"]

#: Each wait is stretched or shrunk by up to this fraction, so triggers deferred together drift apart.
POLL_JITTER = 0.1


def jittered(delay: float, spread: float = POLL_JITTER, rng: random.Random | None = None) -> float:
    return delay * (1.0 + spread * (2.0 * (rng or random).random() - 1.0))


def first_poll_delay(poll_interval: float, rng: random.Random | None = None) -> float:
    """Anywhere in the first period: a thousand tasks deferred in the same second poll spread over it."""
    return poll_interval * (rng or random).random()


def _epoch(name: str, value: float | None, none_means: str) -> float | None:
    checked = check_number(name, value, minimum=0, seconds=True, none_means=none_means)
    return None if checked is None else float(checked)


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
        stores a trigger's arguments encrypted (Fernet), so they are as safe there as a connection;
        before Airflow 3.3.2 its REST API shows them in clear, so the operator sends none there.
    :param withhold_messages: keep CCP's messages out of the trigger's log lines and event altogether
        (the task has secret inputs whose values it could not send); the worker reads the message of a
        failed job itself and hides the secrets in it.

    The first poll comes at a random moment within the first ``poll_interval`` and each later wait
    is jittered by ±10%, so that triggers deferred in the same second do not poll in lock-step.
    """

    #: The time the wait is measured with; not serialized (a test sets its own on the instance).
    clock: Clock = SYSTEM_CLOCK

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
        withhold_messages: bool = False,
    ) -> None:
        super().__init__()
        # Checked and coerced here so that serialize() can only ever emit JSON primitives, all finite.
        self.conn_id = str(conn_id)
        self.job_id = str(job_id)
        self.poll_interval = check_poll_interval(poll_interval)
        self.end_time = _epoch("end_time", end_time, "wait forever")
        self.cancel_on_kill = bool(cancel_on_kill)
        self.not_before = _epoch("not_before", not_before, "no hold")
        self.retry_limit = int(check_number("retry_limit", retry_limit, minimum=0, whole=True))
        self.retry_delay = float(check_number("retry_delay", retry_delay, minimum=0, seconds=True))
        self.secrets = tuple(str(secret) for secret in secrets)
        self.withhold_messages = bool(withhold_messages)

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
                        ("withhold_messages", self.withhold_messages, False),
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
            event = error_event(self.job_id, None, f"Cannot follow CCP job {self.job_id}: {text}", err)
        yield TriggerEvent(event)

    def _hook(self) -> CCPAsyncHook:
        return CCPAsyncHook(self.conn_id, retry_limit=self.retry_limit, retry_delay=self.retry_delay)

    async def _wait(self) -> dict[str, Any]:
        clock = self.clock
        watch = JobWatch(
            self.job_id, self.poll_interval, self.end_time, self.log, self.not_before, secrets=self.secrets, clock=clock
        )
        watch.withhold = self.withhold_messages
        async with self._hook() as hook:
            await clock.asleep(min(first_poll_delay(self.poll_interval), watch.next_delay()))
            while True:
                try:
                    info = await hook.get_job(self.job_id)
                except CCPError as err:
                    event = watch.on_error(err)
                else:
                    event = watch.on_status(info)
                if event is not None:
                    return event
                await clock.asleep(watch.next_delay(jittered))

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


#: Most events one poll fires: the oldest executions first, the others at the next poll.
EVENTS_PER_POLL = 100
#: Most job ids kept for the watermark's instant (executions that ended in the same second).
IDS_AT_WATERMARK = 1000


@dataclass(frozen=True)
class Watermark:
    """The newest end time reported (or seen ending before the watcher started), and the executions
    that ended at exactly that time: what ``CCPExecutionEventTrigger`` needs to fire no event twice.

    It is a time of CCP's clock, not the triggerer's: no clock skew can hide an execution.
    """

    ended: str | None
    job_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Any) -> Watermark | None:
        if not isinstance(value, Mapping):
            return None
        ended = value.get("ended")
        ids = value.get("job_ids")
        return cls(str(ended) if ended else None, tuple(str(i) for i in ids) if isinstance(ids, list) else ())

    def to_json(self) -> dict[str, Any]:
        return {"ended": self.ended, "job_ids": list(self.job_ids)}

    def is_new(self, ended: pendulum.DateTime, job_id: str) -> bool:
        mark = _parse(self.ended)
        return mark is None or ended > mark or (ended == mark and job_id not in self.job_ids)

    def after(self, ended: pendulum.DateTime, job_id: str) -> Watermark:
        mark = _parse(self.ended)
        if mark is not None and ended == mark:
            return Watermark(self.ended, (*self.job_ids, job_id)[-IDS_AT_WATERMARK:])
        if mark is not None and ended < mark:
            return self
        return Watermark(ended.isoformat(), (job_id,))


def _parse(value: str | None) -> pendulum.DateTime | None:
    parsed = pendulum.parse(value) if value else None
    return parsed if isinstance(parsed, pendulum.DateTime) else None


def _ended(job: StatusInfo) -> pendulum.DateTime | None:
    """When the execution ended; CCP's jobStatus may lack ``finished``, then its last update is that time."""
    return job.finished or job.updated


class _Listing:
    """One listing of a Method's jobs read against the watermark: the oldest new ones ended, bounded."""

    def __init__(self, watermark: Watermark | None, statuses: frozenset[str]) -> None:
        self.watermark = watermark
        self.statuses = statuses
        self._oldest: list[tuple[float, str, str, dict[str, Any]]] = []  # a max-heap by negated time
        self.baseline = Watermark(None)
        self.undated = 0

    def add(self, raw: Mapping[str, Any]) -> None:
        job = StatusInfo.from_json(raw)
        if not job.terminal:
            return
        ended = _ended(job)
        if ended is None:
            self.undated += 1
            return
        if self.watermark is None:  # the first listing: everything that has ended so far is the past
            self.baseline = self.baseline.after(ended, job.job_id)
            return
        if job.status not in self.statuses or not self.watermark.is_new(ended, job.job_id):
            return
        entry = (-ended.timestamp(), job.job_id, ended.isoformat(), dict(raw))
        if len(self._oldest) < EVENTS_PER_POLL:
            heapq.heappush(self._oldest, entry)
        elif entry > self._oldest[0]:
            heapq.heapreplace(self._oldest, entry)

    def ended_jobs(self) -> list[tuple[pendulum.DateTime, StatusInfo]]:
        """The new executions that ended, oldest first."""
        entries = sorted(self._oldest, key=lambda entry: (-entry[0], entry[1]))
        return [(_parse(ended) or pendulum.now("UTC"), StatusInfo.from_json(raw)) for _, _, ended, raw in entries]


#: Raw items of the listing stream (shared between sibling watchers on Airflow >= 3.3): a job, or the
#: end of one listing, complete or broken off (then nothing of it is reported: an older job may be missing).
LISTING_COMPLETE = {"listing": "complete"}
LISTING_BROKEN = {"listing": "broken"}


class CCPExecutionEventTrigger(BaseEventTrigger):
    """Fires one event per execution of a Method that ends after the watcher started, whoever started it.

    For an ``AssetWatcher``: a DAG scheduled on the Asset runs once per such execution. The event's
    payload is ``{"job_id", "method_id", "status", "message", "finished", "execution_url"}``; the DAG
    fetches the outputs with ``CCPHook(...).download_outputs(job_id, ...)``.

    :param ccp_conn_id: the ``ccp`` connection.
    :param method_id: the Method whose executions are watched.
    :param poll_interval: seconds between two listings of the Method's jobs (``GET /jobs``, every page).
    :param statuses: the final statuses that fire an event (default: ``successful`` only).

    No execution fires twice: the trigger keeps a watermark (CCP's end time of the newest execution
    reported) in the watched Asset's state store on Airflow >= 3.3, so a restarted or moved trigger
    carries on where it stopped, reporting what ended meanwhile. Airflow 3.1 and 3.2 have no such
    store: the watermark lives in memory, and executions that end while no triggerer runs the
    watcher are not reported (none is reported twice). See docs/operators.md, "Asset events".
    """

    def __init__(
        self,
        ccp_conn_id: str,
        method_id: str,
        poll_interval: float = 60.0,
        statuses: Collection[str] = ("successful",),
    ) -> None:
        super().__init__()
        self.poll_interval = check_poll_interval(poll_interval)
        if isinstance(statuses, str):
            statuses = (statuses,)
        wrong = [word for word in statuses if not protocol.is_terminal(word)]
        if wrong or not statuses:
            final = sorted(protocol.SUCCESS_STATUSES | protocol.FAILURE_STATUSES)
            raise ValueError(f"statuses must be final statuses among {final}, got {list(statuses)!r}")
        self.ccp_conn_id = str(ccp_conn_id)
        self.method_id = str(protocol.method_segment(method_id))
        self.statuses = tuple(sorted({protocol.normalize_status(word) for word in statuses}))
        self._watermark: Watermark | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_ccp.triggers.ccp.CCPExecutionEventTrigger",
            {
                "ccp_conn_id": self.ccp_conn_id,
                "method_id": self.method_id,
                "poll_interval": self.poll_interval,
                "statuses": list(self.statuses),
            },
        )

    @property
    def state_key(self) -> str:
        """One key per connection and Method: an Asset watched for several Methods keeps each apart."""
        return f"ccp_watermark:{self.ccp_conn_id}:{self.method_id}"

    # ------------------------------------------------------------------ one poll for sibling watchers (3.3)

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of the same Method on the same connection share one listing, whatever their statuses."""
        return ("ccp-executions", self.ccp_conn_id, self.method_id, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        async for item in cls(**kwargs)._listings():
            yield item

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        # A watcher joining a running group may come in mid-listing: it reads from the next listing on.
        async for event in self._events(shared_stream, from_next_listing=True):
            yield event

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self._events(self._listings()):
            yield event

    # ------------------------------------------------------------------ listing

    async def _listings(self) -> AsyncIterator[Mapping[str, Any]]:
        """Forever: every job of the Method, then the end of the listing; the first listing right away."""
        async with CCPAsyncHook(self.ccp_conn_id) as hook:
            while True:
                end = LISTING_COMPLETE
                try:
                    async for job in hook.iter_jobs(self.method_id):
                        yield dict(job.raw)
                except CCPError as err:  # transient or not, the next listing may work: keep watching
                    self.log.warning("Could not list the jobs of CCP Method %s: %s", self.method_id, err)
                    end = LISTING_BROKEN
                yield end
                await asyncio.sleep(jittered(self.poll_interval))

    async def _events(
        self, stream: AsyncIterator[Mapping[str, Any]], *, from_next_listing: bool = False
    ) -> AsyncIterator[TriggerEvent]:
        """Events from a stream of listings; a listing is read only whole (an older job may be on a
        page not read yet, and the watermark must never pass it)."""
        self._watermark = await self._load()
        listing: _Listing | None = None if from_next_listing else self._listing()
        async for item in stream:
            if item == LISTING_BROKEN:
                listing = self._listing()
            elif item == LISTING_COMPLETE:
                if listing is not None:
                    async for event in self._report(listing):
                        yield event
                listing = self._listing()
            elif listing is not None:
                listing.add(item)

    def _listing(self) -> _Listing:
        return _Listing(self._watermark, frozenset(self.statuses))

    async def _report(self, listing: _Listing) -> AsyncIterator[TriggerEvent]:
        if listing.undated:
            self.log.warning(
                "%d ended job(s) of CCP Method %s carry no end time and are not reported",
                listing.undated,
                self.method_id,
            )
        if self._watermark is None:
            self.log.info("Watching the executions of CCP Method %s that end from now on", self.method_id)
            await self._save(listing.baseline)
            return
        async with CCPAsyncHook(self.ccp_conn_id) as hook:
            for ended, job in listing.ended_jobs():
                payload = {
                    "job_id": job.job_id,
                    "method_id": self.method_id,
                    "status": job.status,
                    "message": job.message,
                    "finished": ended.isoformat(),
                    "execution_url": await hook.execution_link(job.job_id),
                }
                # Saved before the event leaves: a triggerer dying in between loses this event rather
                # than firing it twice (docs/operators.md).
                await self._save(self._watermark.after(ended, job.job_id))
                self.log.info("CCP job %s of Method %s ended %s", job.job_id, self.method_id, job.status)
                yield TriggerEvent(payload)

    # ------------------------------------------------------------------ the watermark

    async def _load(self) -> Watermark | None:
        store = watcher_state_store(self)
        if store is None:
            return self._watermark
        try:
            return Watermark.from_json(await store.aget(self.state_key))
        except ValueError:  # Airflow's store speaks for one Asset only
            self.log.warning("This watcher watches several Assets: its watermark is kept in memory only")
            self.asset_state_store = None
            return self._watermark

    async def _save(self, watermark: Watermark) -> None:
        self._watermark = watermark
        store = watcher_state_store(self)
        if store is not None:
            await store.aset(self.state_key, watermark.to_json())
