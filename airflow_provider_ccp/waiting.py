"""How to wait for a CCP job, with no I/O: the event shape and the polling rules.

The trigger, the operator's worker loop and ``CCPHook.wait_for_job`` all poll through ``JobWatch``, so they
cannot disagree about what ends a wait, which errors are ridden out and how long to sleep. The two sync
waits are one loop, ``follow``; the trigger runs the same steps with ``await`` in its own loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, TypeVar

from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError, cut
from airflow_provider_ccp.masking import redact
from airflow_provider_ccp.protocol import StatusInfo, is_known
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy, as_final, is_final
from airflow_provider_ccp.version_compat import AirflowFailException

__all__ = ["EventStatus", "JobWatch", "follow", "ride_out", "job_event", "terminal_event", "validate_event", "jittered"]


class EventStatus(StrEnum):
    """How a wait ended: an event's ``status`` (a plain string in the event, as earlier versions stored)."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    ERROR = "error"


#: How long after a deferral the trigger may resume the task at the earliest (``JobWatch.not_before``).
#: Airflow fails a task whose trigger fires before the scheduler has read the executor's report of
#: the deferring worker's exit (apache/airflow #66374, #67287, #71580, #72716); docs/operators.md.
MIN_DEFER_SECONDS = 10.0
#: The wait before the first poll of a wait that knows when it started (``JobWatch.since``), and the
#: shortest wait of its ramp.
FIRST_POLL_SECONDS = 1.0
#: On the ramp, each wait is this share of the time waited so far, until it reaches the poll interval: a
#: job is noticed at most half its run time late (a 4 s job by 6 s), and a long one costs about seven polls
#: more than a steady 30 s interval would (docs/task-duration.md).
RAMP = 0.5

T = TypeVar("T")


#: Each wait is stretched or shrunk by up to this fraction, so triggers deferred together drift apart.
POLL_JITTER = 0.1


def jittered(delay: float, spread: float = POLL_JITTER, rng: random.Random | None = None) -> float:
    return delay * (1.0 + spread * (2.0 * (rng or random).random() - 1.0))


def first_poll_delay(period: float, rng: random.Random | None = None) -> float:
    """Anywhere in the first period: a thousand tasks deferred in the same second poll spread over it."""
    return period * (rng or random).random()


def configured_min_defer_seconds() -> float:
    from airflow_provider_ccp.version_compat import conf

    return conf.getfloat("ccp", "min_defer_seconds", fallback=MIN_DEFER_SECONDS)


def job_event(
    status: EventStatus, job_id: str, job_status: str | None, message: str, *, final: bool = False
) -> dict[str, Any]:
    """The one event shape the trigger yields and ``execute_complete`` reads: JSON primitives only.
    ``final`` (an error no retry heals) is left out otherwise, so events of earlier versions read the same."""
    event = {"status": str(status), "job_id": job_id, "job_status": job_status, "message": cut(message)}
    return event | {"final": True} if final else event


def error_event(job_id: str, job_status: str | None, message: str, error: BaseException) -> dict[str, Any]:
    """The event of a wait that ``error`` ended; final when no retry can heal it, by the provider's rules
    (``retries.is_final``) or Airflow's (an ``AirflowFailException``)."""
    final = is_final(error) or isinstance(error, AirflowFailException)
    return job_event(EventStatus.ERROR, job_id, job_status, message, final=final)


def terminal_event(info: StatusInfo, secrets: Iterable[str] = ()) -> dict[str, Any]:
    status = EventStatus.SUCCESS if info.successful else EventStatus.FAILED
    return job_event(status, info.job_id, info.status, redact(info.message, secrets))


def validate_event(event: Any) -> dict[str, Any]:
    """Fail loudly on an event this provider did not produce, rather than treat it as success. ``job_id``
    may be empty in an error event only (a trigger that starts the try stopped before submitting)."""
    if (
        not isinstance(event, Mapping)
        or event.get("status") not in frozenset(EventStatus)
        or not (event.get("job_id") or event["status"] == EventStatus.ERROR)
        or not {"status", "job_id", "job_status", "message"} <= event.keys()
    ):
        raise CCPProtocolError(f"Unexpected event from CCPJobTrigger: {event!r}")
    return dict(event)


def event_error(event: Mapping[str, Any], **ids: Any) -> CCPError:
    """What an ``error`` event ends the task with, for the operator and the sensor alike: an error the
    trigger marked final becomes an ``AirflowFailException`` too, so that no task retry repeats it."""
    error = CCPError(event["message"], **ids)
    return as_final(error) if event.get("final") else error


#: What replaces CCP's words where the secret inputs' values are not at hand to hide them.
WITHHELD = "CCP's message withheld: the task has secret inputs"


@dataclass
class JobWatch:
    """The waiting rules, shared by the trigger (async) and the operator's worker loop (sync).

    Feed it each poll's outcome; it answers with the final event, or None to keep waiting, and says how
    long to sleep. Times are wall-clock epoch seconds, as they cross processes. ``not_before`` holds back
    the end of a job that finished sooner: the status is asked again then, and only that answer ends the
    wait. From ``since`` (when the wait started) the polls ramp up to ``poll_interval`` (``RAMP``).
    ``policy`` says which failed polls are ridden out, how many in a row, and the backoff after them.
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
    latest: StatusInfo | None = None
    error: CCPError | None = None
    clock: Clock = SYSTEM_CLOCK
    policy: RetryPolicy = DEFAULT_RETRY
    #: CCP's words are kept out of logs and events altogether: the task has secret inputs whose values
    #: this process must not hold (``CCPJobTrigger``'s ``withhold_messages``).
    withhold: bool = False
    since: float | None = None

    def hide(self, text: str) -> str:
        if self.withhold:
            return WITHHELD if text else text
        return redact(text, self.secrets)

    def on_status(self, info: StatusInfo) -> dict[str, Any] | None:
        self.failures = 0
        self.latest = info
        if not is_known(info.status) and info.status not in self.unknown:
            self.unknown.add(info.status)
            message = "CCP job %s has the unknown status %r: treated as not finished; polling continues"
            self.log.warning(message, self.job_id, info.status)
        if info.status != self.previous:
            progress = f" ({info.progress}%)" if info.progress is not None else ""
            message = self.hide(info.message)
            self.log.info("CCP job %s is %s%s: %s", self.job_id, info.status, progress, message)
            self.previous = info.status
        if not info.terminal:
            return self._deadline_event()
        left = 0.0 if self.not_before is None else self.not_before - self.clock.time()
        if left > 0:
            if not self.holding:  # once: the polls until then would repeat it
                self.log.info("CCP job %s ended early: resuming the task in %.1f s", self.job_id, left)
            self.holding = True
            return None
        self.holding = False
        return terminal_event(replace(info, message=self.hide(info.message)))

    def on_error(self, error: CCPError) -> dict[str, Any] | None:
        self.error = error
        text = f"{type(error).__name__} ({WITHHELD})" if self.withhold else redact(str(error), self.secrets)
        if not self.policy.transient(error):
            return error_event(self.job_id, self.previous, f"Cannot follow CCP job {self.job_id}: {text}", error)
        self.failures += 1
        if self.failures > self.policy.poll_failures:
            message = f"Gave up on CCP job {self.job_id} after {self.failures} failed polls in a row: {text}"
            return job_event(EventStatus.ERROR, self.job_id, self.previous, message)
        delay = self.next_delay()
        self.log.warning(
            "Poll %d of CCP job %s failed (%s); trying again in %.0f s", self.failures, self.job_id, text, delay
        )
        return self._deadline_event()

    def next_delay(self, spread: Callable[[float], float] | None = None) -> float:
        """The wait before the next poll: the interval, backed off after failures and ``spread`` by the
        caller's jitter, then cut at the end of a hold and at the deadline. The cut comes after the jitter:
        a cut wait shortened again would leave a sliver of time, polled for in ever shorter waits."""
        interval = self.poll_interval
        if self.since is not None:  # the ramp
            interval = min(interval, max(FIRST_POLL_SECONDS, RAMP * (self.clock.time() - self.since)))
        delay = self.policy.poll_delay(interval, self.failures)
        if spread is not None:
            delay = spread(delay)
        if self.holding and self.not_before is not None:
            delay = min(delay, max(0.0, self.not_before - self.clock.time()))
        if self.end_time is not None:
            delay = min(delay, max(0.0, self.end_time - self.clock.time()))
        return delay

    def _deadline_event(self) -> dict[str, Any] | None:
        if self.end_time is None or self.clock.time() < self.end_time:
            return None
        message = f"CCP job {self.job_id} was still {self.previous or 'unknown'} when the wait timed out"
        return job_event(EventStatus.TIMEOUT, self.job_id, self.previous, message)


def follow(get_status: Callable[[], StatusInfo], watch: JobWatch) -> dict[str, Any]:
    """Poll on this thread until ``watch`` ends the wait (the worker loop and the hook)."""
    while True:
        try:
            event = watch.on_status(get_status())
        except CCPError as err:
            event = watch.on_error(err)
        if event is not None:
            return event
        watch.clock.sleep(watch.next_delay())


def ride_out(call: Callable[[], T], watch: JobWatch) -> T:
    """``call()`` until it answers, riding out transient errors by ``watch``'s rules (the ones polling
    follows); the error that makes them give up (not transient, too many, the deadline) is raised."""
    while True:
        try:
            return call()
        except CCPError as err:
            if watch.on_error(err) is not None:
                raise
        watch.clock.sleep(watch.next_delay())
