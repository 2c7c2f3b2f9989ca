"""``CCPExecutionEventTrigger``, documented (and stored) as ``airflow_provider_ccp.triggers.ccp``'s, which
imports it: reports a Method's executions to an ``AssetWatcher``; ``execution_events`` keeps its record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection, Hashable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_ccp import protocol
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.execution_events import EVENTS_PER_POLL, MAX_REMEMBERED, ListingReading, Reported
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.version_compat import watcher_state_store, watchers_keep_state
from airflow_provider_ccp.waiting import jittered

__all__ = ["CCPExecutionEventTrigger"]

#: Jobs asked for per page of a listing: 10,000 jobs take 10 requests (a page of CCP statuses is about
#: 0.7 KB a job, well under the hooks' 8 MiB cap on a body); a server that caps it pages on.
LISTING_PAGE_SIZE = 1000

#: Raw items of the listing stream (shared between sibling watchers on Airflow >= 3.3): a job, or the
#: end of one listing, complete or broken off (then nothing of it is reported: an older job may be missing).
LISTING_COMPLETE = {"listing": "complete"}
LISTING_BROKEN = {"listing": "broken"}


def _report_since(value: datetime | timedelta | str | float | None) -> str | float | None:
    """An ISO time, or seconds before the first start: the primitives the trigger is serialized with."""
    if value is None:
        return None
    if not watchers_keep_state():
        raise ValueError(
            "report_since needs Airflow 3.3's asset state store: before it every triggerer restart is a "
            "first start, which would report the same executions again"
        )
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(check_number("report_since", value, minimum=0, seconds=True))
    try:
        moment = pendulum.instance(value) if isinstance(value, datetime) else pendulum.parse(str(value))
    except (ValueError, TypeError):
        moment = None
    if not isinstance(moment, pendulum.DateTime):
        raise ValueError(f"report_since must be a datetime, a timedelta or an ISO 8601 time, got {value!r}")
    return moment.in_timezone("UTC").isoformat()


class CCPExecutionEventTrigger(BaseEventTrigger):
    """Fires one event per execution of a Method that ends after the watcher started, whoever started it.

    For an ``AssetWatcher``: a DAG scheduled on the Asset runs once per such execution. The event's
    payload is ``{"job_id", "method_id", "status", "message", "finished", "execution_url"}``
    (``finished`` is None where the server's status has none, as CCP's does); the DAG fetches the
    outputs with ``CCPHook(...).download_outputs(job_id, ...)``.

    :param ccp_conn_id: the ``ccp`` connection.
    :param method_id: the Method whose executions are watched.
    :param poll_interval: seconds between two listings of the Method's jobs (``GET /jobs``, every page).
    :param statuses: the final statuses that fire an event (default: ``successful`` only).
    :param report_since: on the watcher's first start, also report the executions created since then that
        have already ended: a datetime or ISO 8601 time, or a timedelta (or seconds) before the first
        start. Airflow >= 3.3 only. Default: report only what ends from the first start on.

    An execution is reported at most once, by its job id, whatever its timestamps do. The ids dealt
    with are kept in the watched Asset's state store on Airflow >= 3.3, so a restarted, moved or
    re-created watcher reports each execution that ended meanwhile once and nothing twice. Airflow 3.1
    and 3.2 have no such store: the record lives in memory, and executions that end while no triggerer
    runs the watcher are not reported (none is reported twice). See docs/operators.md, "Asset events".
    """

    def __init__(
        self,
        ccp_conn_id: str,
        method_id: str,
        poll_interval: float = 60.0,
        statuses: Collection[str] = ("successful",),
        report_since: datetime | timedelta | str | float | None = None,
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
        self.report_since = _report_since(report_since)
        self._reported: Reported | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_provider_ccp.triggers.ccp.CCPExecutionEventTrigger",  # as stored by earlier versions
            {
                "ccp_conn_id": self.ccp_conn_id,
                "method_id": self.method_id,
                "poll_interval": self.poll_interval,
                "statuses": list(self.statuses),
                # Only when set: the watchers stored by earlier versions keep their exact form.
                **({"report_since": self.report_since} if self.report_since is not None else {}),
            },
        )

    @property
    def state_key(self) -> str:
        """Watchers of one Asset that differ in connection, Method or statuses keep apart records."""
        return f"ccp_executions:{self.ccp_conn_id}:{self.method_id}:{','.join(self.statuses)}"

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

    async def _listings(self) -> AsyncIterator[StatusInfo | Mapping[str, str]]:
        """Forever: every job of the Method, then the end of the listing; the first listing right away. The
        items stay in the triggerer's process (siblings read the same objects): each job is parsed once."""
        async with CCPAsyncHook(self.ccp_conn_id) as hook:
            while True:
                end = LISTING_COMPLETE
                try:
                    async for job in hook.iter_jobs(self.method_id, limit=LISTING_PAGE_SIZE):
                        yield job
                except CCPError as err:  # transient or not, the next listing may work: keep watching
                    self.log.warning("Could not list the jobs of CCP Method %s: %s", self.method_id, err)
                    end = LISTING_BROKEN
                yield end
                await asyncio.sleep(jittered(self.poll_interval))

    async def _events(
        self, stream: AsyncIterator[StatusInfo | Mapping[str, str]], *, from_next_listing: bool = False
    ) -> AsyncIterator[TriggerEvent]:
        """Events from a stream of listings; a listing is read only whole (an execution on a page not read
        yet could otherwise be taken for one CCP no longer lists, and its id forgotten)."""
        self._reported = await self._load()
        reading: ListingReading | None = None if from_next_listing else self._reading()
        async for item in stream:
            if item == LISTING_BROKEN:
                reading = self._reading()
            elif item == LISTING_COMPLETE:
                if reading is not None:
                    async for event in self._report(reading):
                        yield event
                reading = self._reading()
            elif reading is not None and isinstance(item, StatusInfo):
                reading.add(item)

    def _reading(self) -> ListingReading:
        return ListingReading(self._reported, frozenset(self.statuses), self._since())

    def _since(self) -> pendulum.DateTime | None:
        if isinstance(self.report_since, str):
            moment = pendulum.parse(self.report_since)
            return moment if isinstance(moment, pendulum.DateTime) else None
        if self.report_since is not None:
            return pendulum.now("UTC").subtract(seconds=self.report_since)
        return None

    async def _report(self, reading: ListingReading) -> AsyncIterator[TriggerEvent]:
        reported = reading.reported
        if reading.first:
            since = f", and the {reading.new_count} ended since {self._since()}" if self.report_since else ""
            self.log.info("Watching the executions of CCP Method %s that end from now on%s", self.method_id, since)
        if reading.new_count > EVENTS_PER_POLL:
            self.log.info(
                "%d executions of CCP Method %s ended: reporting the %d oldest now, the rest at the next polls",
                reading.new_count,
                self.method_id,
                EVENTS_PER_POLL,
            )
        async with CCPAsyncHook(self.ccp_conn_id) as hook:
            for job in reading.new_executions():
                payload = {
                    "job_id": job.job_id,
                    "method_id": self.method_id,
                    "status": job.status,
                    "message": job.message,
                    "finished": job.finished.isoformat() if job.finished else None,
                    "execution_url": await hook.execution_link(job.job_id),
                }
                # Saved before the event leaves: a triggerer dying in between loses this event rather
                # than firing it twice (docs/operators.md).
                reported = reported.noting(job)
                await self._save(reported)
                self.log.info("CCP job %s of Method %s ended %s", job.job_id, self.method_id, job.status)
                yield TriggerEvent(payload)
        settled, passed = reading.settled(reported)
        if passed:
            self.log.warning(
                "Kept the ids of the newest %d executions of CCP Method %s only: an execution created before "
                "%s that has not ended yet, or not been reported yet, will not be reported",
                MAX_REMEMBERED,
                self.method_id,
                pendulum.from_timestamp(settled.floor or 0).isoformat(),
            )
        if settled != self._reported:
            await self._save(settled)

    # ------------------------------------------------------------------ the record of what was reported

    async def _load(self) -> Reported | None:
        store = watcher_state_store(self)
        if store is None:
            return self._reported
        try:
            return Reported.from_json(await store.aget(self.state_key))
        except ValueError:  # Airflow's store speaks for one Asset only
            self.log.warning("This watcher watches several Assets: its record is kept in memory only")
            self.asset_state_store = None
            return self._reported

    async def _save(self, reported: Reported) -> None:
        self._reported = reported
        store = watcher_state_store(self)
        if store is not None:
            await store.aset(self.state_key, reported.to_json())
