"""The triggers: ``CCPJobTrigger`` waits for a CCP job without holding a worker slot, ``CCPStartTrigger``
also submits it, ``CCPExecutionEventTrigger`` reports the executions of a Method to an ``AssetWatcher``.

``CCPJobTrigger`` only reads (``GET /jobs/{id}``), and dismisses in ``on_kill``, which Airflow >= 3.3 calls
only when a user kills the deferred task. Its waiting rules are ``airflow_provider_ccp.waiting``'s, shared
with the worker loop and the hook; the loop here is their async twin, so a poll costs only its request.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from airflow_provider_ccp.inputs import secret_values, with_secret_inputs
from airflow_provider_ccp.masking import HELD, redact
from airflow_provider_ccp.protocol import SyncResults
from airflow_provider_ccp.retries import DEFAULT_RETRY
from airflow_provider_ccp.submission import (
    ExecutionRequest,
    OnAmbiguousSubmit,
    Submitter,
    XComRecord,
    prepare_request,
    stored_submission,
)
from airflow_provider_ccp.triggers.executions import CCPExecutionEventTrigger
from airflow_provider_ccp.version_compat import trigger_runs_inline
from airflow_provider_ccp.waiting import (
    JobWatch,
    configured_min_defer_seconds,
    error_event,
    first_poll_delay,
    jittered,
    terminal_event,
)

# CCPExecutionEventTrigger (triggers/executions.py) is imported from here: its documented path, and the
# classpath its stored watchers carry.
__all__ = ["CCPJobTrigger", "CCPStartTrigger", "CCPExecutionEventTrigger"]


def _epoch(name: str, value: float | None, none_means: str) -> float | None:
    checked = check_number(name, value, minimum=0, seconds=True, none_means=none_means)
    return None if checked is None else float(checked)


class CCPJobTrigger(BaseTrigger):
    """Polls ``GET /jobs/{job_id}`` until the job ends or ``end_time`` passes; yields exactly one event,
    ``{"status": "success"|"failed"|"timeout"|"error", "job_id", "job_status", "message"}``.

    :param conn_id: the ``ccp`` connection.
    :param job_id: the CCP job (execution) id.
    :param poll_interval: seconds between polls.
    :param end_time: epoch seconds after which the trigger yields ``timeout``; None waits forever.
    :param cancel_on_kill: dismiss the job when a user kills the deferred task (Airflow >= 3.3).
    :param not_before: epoch seconds before which a job that ended is not reported (``JobWatch``); ignored
        where the trigger runs inside the task's process (``airflow dags test``): no scheduler races with it.
    :param since: epoch seconds the wait started: the polls start within a second and ramp up to
        ``poll_interval`` (``waiting.RAMP``), so a short job is noticed promptly. None: every wait is
        ``poll_interval``.
    :param retry_limit: retries of one poll request (the hook's retry policy, docs/connection.md).
    :param retry_delay: first backoff of those retries, in seconds.
    :param secrets: the values of the task's secret inputs, which CCP may echo in a message: masked while
        the trigger runs and hidden in its event. Airflow stores a trigger's arguments encrypted (Fernet);
        before Airflow 3.3.2 its REST API shows them in clear, so the operator sends none there.
    :param withhold_messages: keep CCP's messages out of the trigger's logs and event altogether (the task
        has secret inputs whose values it could not send); the worker reads a failed job's message itself.

    The first poll comes at a random moment within the first wait and each later wait is jittered by
    ±10%, so that triggers deferred in the same second do not poll in lock-step.
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

    @classmethod
    def deferring(
        cls, hook: CCPHook, job_id: str, end_time: float | None, hold: float | None = None, **kwargs: Any
    ) -> CCPJobTrigger:
        """The trigger a task that uses ``hook`` defers to now (the operator, the sensor): the polls follow
        the hook's retry policy and ramp up from now, and a job that ends within ``hold`` seconds (default
        ``[ccp] min_defer_seconds``) is held back that long (Airflow's defer race, docs/operators.md)."""
        now, retry = hook.clock.time(), hook.retry
        hold = configured_min_defer_seconds() if hold is None else hold
        return cls(
            hook.ccp_conn_id,
            job_id,
            end_time=end_time,
            not_before=now + hold,
            since=now,
            retry_limit=retry.limit,
            retry_delay=retry.delay,
            **kwargs,
        )

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
        """Airflow >= 3.3 calls this only when a user kills the deferred task (never from ``cleanup()``, nor
        on a triggerer restart or a trigger timeout): the job must outlive the triggerer that watches it."""
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
