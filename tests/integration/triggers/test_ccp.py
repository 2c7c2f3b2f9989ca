"""CCPJobTrigger: serialization, and run()/on_kill() against the CCP sandbox (no DB, no triggerer)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy
from airflow_provider_ccp.triggers import ccp as triggers_module
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.waiting import (
    FIRST_POLL_SECONDS,
    POLL_JITTER,
    RAMP,
    JobWatch,
    first_poll_delay,
    jittered,
    job_event,
    validate_event,
)
from tests.integration.doubles import RealWaits, SteppingClock
from tests.task_helpers import finished_job

pytestmark = pytest.mark.usefixtures("sandbox_conn")


def submit(method_id: str, **inputs: str) -> str:
    return str(CCPHook().submit_execution(method_id, {"ccpimage": "bash", **inputs}).job_id)


async def all_events(trigger: CCPJobTrigger) -> list[dict]:
    return [dict(event.payload) async for event in trigger.run()]


def trigger_for(job_id: str, **kwargs) -> CCPJobTrigger:
    return CCPJobTrigger(
        **({"conn_id": "ccp_default", "job_id": job_id, "poll_interval": 0.05, "retry_delay": 0.01} | kwargs)
    )


def test_serialize_round_trips_with_json_primitives():
    trigger = CCPJobTrigger(
        "ccp_x", "job-1", poll_interval=12, end_time=1700000000, cancel_on_kill=False, not_before=1699999000
    )

    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_ccp.triggers.ccp.CCPJobTrigger"
    assert kwargs == {
        "conn_id": "ccp_x",
        "job_id": "job-1",
        "poll_interval": 12.0,
        "end_time": 1700000000.0,
        "cancel_on_kill": False,
        "not_before": 1699999000.0,
    }
    assert CCPJobTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_retry_settings_round_trip_when_set():
    _, kwargs = CCPJobTrigger("ccp_x", "job-1", retry_limit=2, retry_delay=0.25).serialize()
    assert (kwargs["retry_limit"], kwargs["retry_delay"]) == (2, 0.25)
    assert CCPJobTrigger(**kwargs)._hook().retry == RetryPolicy(limit=2, delay=0.25)


def test_poll_interval_must_be_positive():
    with pytest.raises(ValueError, match="poll_interval"):
        CCPJobTrigger("c", "j", poll_interval=0)


async def test_success_yields_exactly_one_event(sandbox):
    job_id = submit("sleep", seconds="0.3")

    events = await all_events(trigger_for(job_id))

    assert events == [
        {"status": "success", "job_id": job_id, "job_status": "successful", "message": events[0]["message"]}
    ]
    assert sandbox.admin.requests_to("POST", "/processes/{process_id}/execution") == 1  # the trigger never submits


async def test_failure_yields_a_failed_event_with_ccps_message(sandbox):
    job_id = submit("fail", message="bad input", exit_code="4")

    [event] = await all_events(trigger_for(job_id))

    assert event["status"] == "failed"
    assert event["job_status"] == "failed"
    assert event["message"]


async def test_a_job_that_ended_at_once_is_reported_no_sooner_than_not_before(sandbox):
    job_id = finished_job("word-count", {"text": "a", "mode": "words"}).job_id
    sandbox.admin.reset()
    deferred_at = time.time()

    # A short period: the first poll (somewhere in the first period) comes well before not_before.
    [event] = await all_events(trigger_for(job_id, poll_interval=0.2, not_before=deferred_at + 1.5))

    assert time.time() >= deferred_at + 1.5
    assert event["status"] == "success"
    # The status is read again once the hold is over, not taken from the first poll.
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") >= 2


async def test_a_held_back_end_is_logged_once_with_the_time_left(sandbox, caplog):
    job_id = finished_job("word-count", {"text": "a", "mode": "words"}).job_id
    trigger = trigger_for(job_id, poll_interval=0.1, not_before=time.time() + 1.5)
    trigger._log = logging.getLogger("t.trigger")  # a stdlib logger: its records can be read

    with caplog.at_level(logging.INFO, logger="t.trigger"):
        [event] = await all_events(trigger)

    assert event["status"] == "success"
    held = [record.getMessage() for record in caplog.records if "ended early" in record.getMessage()]
    assert len(held) == 1, held
    assert 0.0 < float(held[0].rsplit(" in ", 1)[1].removesuffix(" s")) <= 1.5  # until not_before


async def test_without_not_before_an_ended_job_is_reported_at_once(sandbox):
    job_id = finished_job("fail", {"message": "x", "exit_code": "1"}).job_id
    sandbox.admin.reset()

    [event] = await all_events(trigger_for(job_id, poll_interval=0.2))

    assert event["status"] == "failed"
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 1


async def test_a_token_revoked_mid_poll_is_renewed_once(sandbox):
    job_id = submit("sleep", seconds="1")
    task = asyncio.create_task(all_events(trigger_for(job_id)))
    await asyncio.sleep(0.3)  # a few polls in, with the token they started with
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") >= 2
    grants_before = sandbox.admin.token_grants("uma-ticket")

    sandbox.admin.revoke_tokens()
    [event] = await task

    assert event["status"] == "success"
    assert sandbox.admin.token_grants("uma-ticket") == grants_before + 1


async def test_bursts_of_5xx_are_ridden_out(sandbox):
    job_id = finished_job("word-count", {"text": "a", "mode": "words"}).job_id
    # The hook retries each poll once; the failures that outlast it come back to the trigger, which polls again.
    sandbox.admin.fail_next(r"^/jobs/", 503, count=3, method="GET")
    sandbox.admin.fail_next(r"^/jobs/", 500, count=DEFAULT_RETRY.poll_failures, method="GET")

    [event] = await all_events(trigger_for(job_id, poll_interval=0.05, retry_limit=1))

    assert event["status"] == "success"


async def test_endless_errors_end_in_one_error_event(sandbox):
    job_id = finished_job("word-count", {"text": "a", "mode": "words"}).job_id
    sandbox.admin.fail_next(r"^/jobs/", 500, count=DEFAULT_RETRY.poll_failures + 1, method="GET")

    [event] = await all_events(trigger_for(job_id, poll_interval=0.05, retry_limit=0))

    assert event["status"] == "error"
    assert "failed polls in a row" in event["message"]


async def test_a_vanished_job_is_an_error_at_once(sandbox):
    [event] = await all_events(trigger_for("no-such-job"))

    assert event["status"] == "error"
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 1


async def test_deadline_yields_timeout_and_leaves_the_job_alone(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")

    [event] = await all_events(trigger_for(job_id, end_time=time.time() + 0.3))

    assert event == {
        "status": "timeout",
        "job_id": job_id,
        "job_status": "accepted",
        "message": f"CCP job {job_id} was still accepted when the wait timed out",
    }
    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 0


async def test_the_wait_is_measured_with_the_triggers_clock(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    clock = SteppingClock()
    trigger = trigger_for(job_id, poll_interval=60, end_time=clock.now + 600)
    trigger.clock = clock  # ten minutes of polling, in no time

    [event] = await all_events(trigger)

    assert event["status"] == "timeout"
    assert sum(clock.waits) == pytest.approx(600)
    assert 9 <= len(clock.waits) <= 13  # a poll a minute, give or take the jitter


@pytest.fixture
def shortest_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jitter's draws at their shortest, every time: the first poll at once, every wait 10 % short."""
    monkeypatch.setattr(triggers_module, "first_poll_delay", lambda interval: 0.0)
    monkeypatch.setattr(triggers_module, "jittered", lambda delay: delay * 0.9)


@pytest.mark.usefixtures("shortest_jitter")
async def test_a_short_jitter_never_splits_the_last_wait_before_the_deadline(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    clock = SteppingClock(limit=50)
    trigger = trigger_for(job_id, poll_interval=60, end_time=clock.now + 600)
    trigger.clock = clock

    [event] = await all_events(trigger)

    assert event["status"] == "timeout"
    # 11 jittered minutes (594 s), then the 6 s left in one wait: not 5.4 s, 0.54 s, 0.054 s...
    assert clock.waits == [0.0] + [54.0] * 11 + [pytest.approx(6.0)]


@pytest.mark.usefixtures("shortest_jitter")
async def test_a_short_jitter_never_splits_the_wait_until_not_before(sandbox):
    job_id = finished_job("sleep", {"seconds": "0"}).job_id
    clock = SteppingClock(limit=50)
    trigger = trigger_for(job_id, poll_interval=60, not_before=clock.now + 30)
    trigger.clock = clock

    [event] = await all_events(trigger)

    assert event["status"] == "success"
    assert clock.waits == [0.0, pytest.approx(30.0)]  # polled at once, held, asked again when the hold ends


@pytest.fixture
def longest_first_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first poll's draw at its latest: the end of the first wait."""
    monkeypatch.setattr(triggers_module, "first_poll_delay", lambda period: period)


@pytest.mark.usefixtures("longest_first_poll")
async def test_a_short_job_is_noticed_within_a_second_of_its_end(sandbox):
    clock = RealWaits()
    since = clock.time()
    job_id = submit("sleep", seconds="2")
    sandbox.admin.reset()
    trigger = trigger_for(job_id, poll_interval=30, since=since)
    trigger.clock = clock

    [event] = await all_events(trigger)

    assert event["status"] == "success"
    assert clock.waits[0] <= FIRST_POLL_SECONDS  # not anywhere in the first 30 s
    # The job ran 2 s from `since`: the poll that saw its end came at most a (jittered) second later.
    assert sum(clock.waits) <= 2 + FIRST_POLL_SECONDS * (1 + POLL_JITTER)
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == len(clock.waits) <= 4


async def test_a_long_job_costs_a_few_polls_more_than_a_steady_interval(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    polls = {}
    for ramp in (False, True):
        clock = SteppingClock(limit=400)
        since = clock.now if ramp else None
        trigger = trigger_for(job_id, poll_interval=30, end_time=clock.now + 3600, since=since)
        trigger.clock = clock
        sandbox.admin.reset()

        [event] = await all_events(trigger)

        assert event["status"] == "timeout"
        polls[ramp] = sandbox.admin.requests_to("GET", "/jobs/{job_id}")
        if ramp:  # each wait half the time waited so far, from a second up to the interval
            assert clock.waits[0] <= FIRST_POLL_SECONDS
            ramp_waits = clock.waits[1 : clock.waits.index(max(clock.waits))]
            assert all(
                wait <= (1 + POLL_JITTER) * max(1.0, RAMP * sum(clock.waits[: n + 1]))
                for n, wait in enumerate(ramp_waits, 1)
            )
    # An hour at 30 s is about 120 polls either way; the ramp's first minute adds about nine.
    assert 115 <= polls[False] < polls[True] <= polls[False] + 10, polls


async def test_inside_the_tasks_own_process_an_end_is_not_held(sandbox):
    """``airflow dags test`` runs the trigger in the task's process: no scheduler, no race to hold for."""
    from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms, set_supervisor_comms

    job_id = finished_job("sleep", {"seconds": "0"}).job_id
    sandbox.admin.reset()
    clock = SteppingClock(limit=50)
    trigger = trigger_for(job_id, poll_interval=60, not_before=clock.now + 30, since=clock.now)
    trigger.clock = clock

    with set_supervisor_comms(InProcessSupervisorComms(supervisor=None)):
        [event] = await all_events(trigger)

    assert event["status"] == "success"
    assert sum(clock.waits) <= FIRST_POLL_SECONDS  # the first poll's answer, not one 30 s later
    assert sandbox.admin.requests_to("GET", "/jobs/{job_id}") == 1


async def test_an_unknown_connection_ends_the_wait_with_a_final_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CCP_DEFAULT")

    [event] = await all_events(trigger_for("job-1"))

    assert event["status"] == "error"
    assert "Connection 'ccp_default' (ccp_conn_id) is not defined" in event["message"]
    assert event.get("final") is True  # a retry would meet the same missing connection


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"max_connections": "many"}, "Connection extra 'max_connections' is 'many'"),
        ({"auth_flow": "bogus"}, "Connection extra 'auth_flow' is 'bogus'"),
        ({"timeout": "nan"}, "Connection extra 'timeout' is 'nan'"),
    ],
)
async def test_a_connection_that_cannot_work_ends_the_wait_with_a_final_event(make_conn, extra, expected):
    conn = make_conn(**({"auth_flow": "none", "login": None, "secret": ""} | extra))

    [event] = await all_events(CCPJobTrigger(conn, "j1", poll_interval=0.05))

    assert event["status"] == "error"
    assert expected in event["message"]
    assert event.get("final") is True  # execute_complete fails the task without retries


async def test_a_finished_trigger_takes_its_secrets_back_from_the_masker(sandbox):
    from airflow.sdk._shared.secrets_masker import _secrets_masker, redact

    job_id = submit("word-count", text="a", mode="words")
    masker = _secrets_masker()
    before = set(masker.patterns)
    keys = [f"api-key-{n}-{time.monotonic_ns()}" for n in range(20)]

    # Twenty triggers at once, each with its own secret input and one shared by all.
    runs = [all_events(trigger_for(job_id, secrets=[key, "shared-secret-value"])) for key in keys]
    events = await asyncio.gather(*runs)
    await asyncio.sleep(0)  # the values released in one turn of the loop are forgotten in the next

    assert {event["status"] for [event] in events} == {"success"}
    # A triggerer runs for weeks: what finished triggers registered must not pile up in it.
    assert set(masker.patterns) == before
    assert redact(keys[0]) == keys[0]


async def test_on_kill_dismisses_the_job(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")

    await trigger_for(job_id).on_kill()

    assert CCPHook().get_job(job_id).status == "dismissed"


async def test_on_kill_respects_cancel_on_kill_false_and_never_raises(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    await trigger_for(job_id, cancel_on_kill=False).on_kill()
    sandbox.admin.fail_next(r"^/jobs/", 403, method="DELETE")
    await trigger_for(job_id).on_kill()

    assert CCPHook().get_job(job_id).status == "accepted"


async def test_cancelling_the_trigger_like_a_triggerer_restart_does_not_dismiss(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    task = asyncio.create_task(all_events(trigger_for(job_id)))
    await asyncio.sleep(0.3)

    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert task.cancelled()
    assert sandbox.admin.requests_to("DELETE", "/jobs/{job_id}") == 0


def test_failures_back_off_but_never_past_the_deadline():
    watch = JobWatch("j", poll_interval=2, end_time=time.time() + 5, log=__import__("logging").getLogger("t"))
    assert watch.next_delay() == 2
    watch.on_error(CCPError("down"))
    watch.on_error(CCPError("down"))
    assert watch.next_delay() == 4
    watch.on_error(CCPError("down"))
    assert 4 < watch.next_delay() <= 5


def test_each_watch_warns_once_about_an_unknown_status_word_and_keeps_polling(caplog):
    log = logging.getLogger("t.watch")

    def statuses(watch: JobWatch, *words: str) -> list:
        return [watch.on_status(StatusInfo(job_id=watch.job_id, status=word)) for word in words]

    with caplog.at_level(logging.WARNING, logger="t.watch"):
        first, second = JobWatch("j1", 1, None, log), JobWatch("j2", 1, None, log)
        assert statuses(first, "executing", "running", "executing", "scheduled") == [None] * 4
        assert statuses(second, "executing") == [None]  # another wait (another job) is told too
    assert [record.getMessage() for record in caplog.records] == [
        "CCP job j1 has the unknown status 'executing': treated as not finished; polling continues",
        "CCP job j1 has the unknown status 'scheduled': treated as not finished; polling continues",
        "CCP job j2 has the unknown status 'executing': treated as not finished; polling continues",
    ]


@pytest.mark.parametrize("missing", ["job_status", "message"])
def test_an_event_without_job_status_or_message_is_a_protocol_error(missing):
    event = job_event("failed", "j-1", "failed", "boom")
    del event[missing]

    with pytest.raises(CCPProtocolError, match="Unexpected event"):
        validate_event(event)


def test_job_status_and_message_may_be_empty():
    assert validate_event(job_event("error", "j-1", None, "")) == job_event("error", "j-1", None, "")


def test_first_polls_spread_over_the_first_interval():
    import random

    rng = random.Random(11)
    delays = [first_poll_delay(30.0, rng) for _ in range(1000)]
    assert all(0.0 <= delay < 30.0 for delay in delays)
    # A thousand triggers deferred in the same second: about a tenth of them in each tenth of the interval.
    per_tenth = [sum(1 for delay in delays if tenth * 3 <= delay < (tenth + 1) * 3) for tenth in range(10)]
    assert min(per_tenth) > 60


def test_later_waits_are_jittered_by_a_tenth():
    import random

    rng = random.Random(7)
    waits = [jittered(30.0, rng=rng) for _ in range(1000)]
    assert all(27.0 <= wait <= 33.0 for wait in waits)
    assert max(waits) - min(waits) > 5.0


async def test_jitter_never_carries_a_poll_past_the_deadline(sandbox):
    sandbox.admin.hold_jobs("word-count")
    job_id = submit("word-count", text="a", mode="words")
    started = time.monotonic()
    [event] = await all_events(trigger_for(job_id, poll_interval=5.0, end_time=time.time() + 0.5))
    assert event["status"] == "timeout"
    assert time.monotonic() - started < 2.0
