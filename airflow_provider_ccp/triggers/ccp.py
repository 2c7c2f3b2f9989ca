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
import inspect
import random
from collections.abc import AsyncIterator, Collection, Hashable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pendulum
from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

from airflow_provider_ccp import protocol
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError
from airflow_provider_ccp.execution_events import EVENTS_PER_POLL, MAX_REMEMBERED, ListingReading, Reported
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from airflow_provider_ccp.inputs import secret_values, with_secret_inputs
from airflow_provider_ccp.masking import HELD, redact
from airflow_provider_ccp.protocol import StatusInfo, SyncResults
from airflow_provider_ccp.retries import DEFAULT_RETRY
from airflow_provider_ccp.submission import (
    ExecutionRequest,
    OnAmbiguousSubmit,
    Submitter,
    XComRecord,
    prepare_request,
    stored_submission,
)
from airflow_provider_ccp.version_compat import trigger_runs_inline, watcher_state_store, watchers_keep_state
from airflow_provider_ccp.waiting import JobWatch, error_event, terminal_event

__all__ = [
    "CCPJobTrigger",
    "CCPStartTrigger",
    "CCPExecutionEventTrigger",
    "jittered",
    "first_poll_delay",
    "POLL_JITTER",
]

#: Each wait is stretched or shrunk by up to this fraction, so triggers deferred together drift apart.
POLL_JITTER = 0.1


def jittered(delay: float, spread: float = POLL_JITTER, rng: random.Random | None = None) -> float:
    return delay * (1.0 + spread * (2.0 * (rng or random).random() - 1.0))


def first_poll_delay(period: float, rng: random.Random | None = None) -> float:
    """Anywhere in the first period: a thousand tasks deferred in the same second poll spread over it."""
    return period * (rng or random).random()


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
    :param not_before: epoch seconds before which a job that ended is not reported (see ``JobWatch``);
        ignored where the trigger runs inside the task's process (``airflow dags test``), which no
        scheduler races with.
    :param since: epoch seconds the wait started (the deferral): the polls start within a second and
        ramp up to ``poll_interval`` (``waiting.RAMP``), so a short job is noticed promptly. None (the
        triggers stored by earlier versions, a trigger restarted long after): every wait is ``poll_interval``.
    :param retry_limit: retries of one poll request (the hook's retry policy, docs/connection.md).
    :param retry_delay: first backoff of those retries, in seconds.
    :param secrets: the values of the task's secret inputs. CCP may echo one in a status or failure
        message: the trigger registers them with the masker and hides them in its event. Airflow
        stores a trigger's arguments encrypted (Fernet), so they are as safe there as a connection;
        before Airflow 3.3.2 its REST API shows them in clear, so the operator sends none there.
    :param withhold_messages: keep CCP's messages out of the trigger's log lines and event altogether
        (the task has secret inputs whose values it could not send); the worker reads the message of a
        failed job itself and hides the secrets in it.

    The first poll comes at a random moment within the first wait (a second with ``since``, else
    ``poll_interval``) and each later wait is jittered by ±10%, so that triggers deferred in the same
    second do not poll in lock-step.
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
        since: float | None = None,
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
        self.since = _epoch("since", since, "no ramp")

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
                        ("since", self.since, None),
                    )
                    if value != default
                },
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Masked while the wait runs, forgotten after it (the event hides them): a triggerer lives for weeks.
        async with HELD.holding(self.secrets):
            try:
                event = await self._wait()
            except Exception as err:  # a broken connection definition, a bug: fail the task, never hang it
                self.log.exception("Stopped following CCP job %s", self.job_id or "(none submitted)")
                text = redact(str(err), self.secrets)
                message = f"Cannot follow CCP job {self.job_id}: {text}" if self.job_id else text
                event = error_event(self.job_id, None, message, err)
        yield TriggerEvent(event)

    def _hook(self) -> CCPAsyncHook:
        return CCPAsyncHook(self.conn_id, retry_limit=self.retry_limit, retry_delay=self.retry_delay)

    async def _wait(self) -> dict[str, Any]:
        clock = self.clock
        not_before = None if trigger_runs_inline() else self.not_before
        async with self._hook() as hook:
            watch = JobWatch(
                self.job_id,
                self.poll_interval,
                self.end_time,
                self.log,
                not_before,
                secrets=self.secrets,
                clock=clock,
                policy=hook.retry,  # the hook's policy, so retry_limit/retry_delay rule the polls too
                withhold=self.withhold_messages,
                since=self.since,
            )
            await clock.asleep(first_poll_delay(watch.next_delay()))
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
        if not self.job_id:  # a trigger that starts the try, killed before it submitted
            return
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


class CCPStartTrigger(CCPJobTrigger):
    """Starts a try in the triggerer (Airflow >= 3.3's ``start_from_trigger``): checks the request, then
    submits or reattaches with the worker's own ``submission.Submitter`` (sync hook, on a thread), which
    remembers the submission in an XCom of the task instance (``XComRecord``: a trigger cannot reach the
    task state store), and waits as ``CCPJobTrigger`` does. ``method_id``, ``inputs``, ``outputs`` and
    ``request_members`` are the operator's templates, rendered by the triggerer (docs/task-duration.md).

    :param timeout: seconds after the submission at which the job is dismissed and the task fails.
    """

    def __init__(
        self,
        ccp_conn_id: str,
        method_id: str,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        request_members: Mapping[str, Any] | None = None,
        *,
        secret_inputs: Collection[str] = (),
        on_ambiguous_submit: str = "fail",
        timeout: float | None = None,
        poll_interval: float = 30.0,
        cancel_on_kill: bool = True,
        retry_limit: int = DEFAULT_RETRY.limit,
        retry_delay: float = DEFAULT_RETRY.delay,
    ) -> None:
        super().__init__(ccp_conn_id, "", poll_interval, None, cancel_on_kill, None, retry_limit, retry_delay)
        self.ccp_conn_id = ccp_conn_id
        self.method_id = method_id
        self.inputs = inputs
        self.outputs = outputs
        self.request_members = request_members
        self.secret_inputs = list(secret_inputs)
        self.on_ambiguous_submit = str(OnAmbiguousSubmit(on_ambiguous_submit))
        self.timeout = check_number("timeout", timeout, minimum=0, exclusive=True, none_means="wait forever")
        self.killed = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Also ``StartTriggerArgs.trigger_kwargs``: each argument as given (templates, never a rendered secret)."""
        names = inspect.signature(CCPStartTrigger).parameters
        return "airflow_provider_ccp.triggers.ccp.CCPStartTrigger", {name: getattr(self, name) for name in names}

    async def _wait(self) -> dict[str, Any]:
        self.conn_id = str(self.ccp_conn_id)  # as the triggerer rendered it
        hook = CCPHook(ccp_conn_id=self.conn_id, retry_limit=self.retry_limit, retry_delay=self.retry_delay)
        request = await asyncio.to_thread(self._request, hook)
        self.secrets = tuple(secret_values(request.description, request.inputs))
        async with HELD.holding(self.secrets):
            ti = self.task_instance
            record = XComRecord(ti)
            context = {"ti": record, "task_state_store": record}
            submitter = Submitter(
                hook,
                context,
                request,
                log=self.log,
                on_ambiguous_submit=OnAmbiguousSubmit(self.on_ambiguous_submit),
                poll_interval=self.poll_interval,
                on_job=lambda job_id, running: self._on_job(hook, job_id),
                try_number=getattr(ti, "try_number", None),
            )
            job = await asyncio.to_thread(lambda: submitter.reattach() or submitter.submit())
            if isinstance(job, SyncResults):
                raise CCPProtocolError(
                    f"The server ran Method {self.method_id!r} while answering its submission (no job): "
                    "start_from_trigger cannot hand such results over; run this task without it"
                )
            if job.terminal:
                return terminal_event(job, self.secrets)
            self.since = self.clock.time()
            submission = stored_submission(context)
            if self.timeout is not None and submission and submission.submitted_at:
                self.end_time = datetime.fromisoformat(submission.submitted_at).timestamp() + self.timeout
            return await super()._wait()

    def _on_job(self, hook: CCPHook, job_id: str) -> None:
        """On the submit thread, which a kill cannot stop: a job whose id arrives after it is dismissed here."""
        self.job_id = job_id
        if not self.killed:
            return
        action = "dismissing it" if self.cancel_on_kill else "leaving it running (cancel_on_kill=False)"
        self.log.warning("CCP job %s was created after the task was killed: %s", job_id, action)
        try:
            if self.cancel_on_kill:
                self.log.info("%s", hook.dismiss_job(job_id).message)
        except Exception:  # best effort, as on_kill's
            self.log.warning("Could not dismiss CCP job %s", job_id, exc_info=True)

    async def on_kill(self) -> None:
        self.killed = True  # before the check of job_id, which the submit thread sets before it reads this
        await super().on_kill()

    def _request(self, hook: CCPHook) -> ExecutionRequest:
        def describe() -> dict[str, Any]:
            return with_secret_inputs(hook.get_method(self.method_id), self.secret_inputs)

        return prepare_request(self.method_id, self.inputs, self.outputs, self.request_members, describe)


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
            "airflow_provider_ccp.triggers.ccp.CCPExecutionEventTrigger",
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
        """One key per connection, Method and statuses: watchers of one Asset that differ in either keep
        apart records (each holds only the executions it dealt with)."""
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
        """Forever: every job of the Method, then the end of the listing; the first listing right away.

        The items stay in the triggerer's process (sibling watchers read the same objects), so each job is
        parsed once, by the hook."""
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
