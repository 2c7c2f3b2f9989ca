"""CCPExecutionEventTrigger against the CCP sandbox: one event per execution that ends after the watcher
started, whoever started it; none twice, across a restart too (no DB, no triggerer). The sandbox tests run
in both its job-status styles: OGC's statusInfo, and CCP's documented jobStatus (no ``finished``,
``updated`` moving at every view)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from typing import Any

import pytest
from werkzeug import Request, Response

from airflow_provider_ccp.execution_events import Reported
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.triggers.ccp import CCPExecutionEventTrigger
from airflow_provider_ccp.triggers.executions import LISTING_COMPLETE
from airflow_provider_ccp.version_compat import WATCHER_STATE_SINCE, get_base_airflow_version_tuple
from tests.task_helpers import task_log

__all__ = ["task_log"]  # a fixture, used by name

pytestmark = pytest.mark.usefixtures("sandbox_conn")

KEEPS_STATE = get_base_airflow_version_tuple() >= WATCHER_STATE_SINCE


@pytest.fixture(params=["ogc", "ccp"])
def style(request: pytest.FixtureRequest, sandbox: Any) -> str:
    """The sandbox's job-status style for the test (the ``sandbox`` fixture's reset restores OGC's)."""
    sandbox.admin.set_job_status(request.param)
    return str(request.param)


#: Polls a test lets pass to see that no other event comes.
QUIET_POLLS = 10
POLL = 0.05


class AsyncStore:
    """Stands in for Airflow 3.3's asset state store of a watcher of one Asset: survives the trigger."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value


def run_to_end(method_id: str, **inputs: str) -> str:
    """An execution started on CCP directly, as CCP's UI or a notebook would, followed until it ends."""
    hook = CCPHook(retry_delay=0.01)
    job_id = str(hook.submit_execution(method_id, {"ccpimage": "bash", **inputs}).job_id)
    hook.wait_for_job(job_id, poll_interval=POLL)
    return job_id


def watcher(store: AsyncStore | None = None, **kwargs: Any) -> CCPExecutionEventTrigger:
    kwargs = {"ccp_conn_id": "ccp_default", "method_id": "word-count", "poll_interval": POLL} | kwargs
    trigger = CCPExecutionEventTrigger(**kwargs)
    if store is not None:
        trigger.asset_state_store = store  # what Airflow >= 3.3's triggerer injects
    return trigger


async def started(trigger: CCPExecutionEventTrigger) -> Any:
    """The trigger's event stream, once its first listing has set the watermark."""
    events = trigger.run()
    pending = asyncio.ensure_future(anext(events))
    while trigger._reported is None:
        assert not pending.done(), pending.result()
        await asyncio.sleep(0.01)
    return events, pending


async def no_more(events: Any, later: asyncio.Future[Any] | None = None) -> None:
    """No further event within a few polls; then the stream is closed."""
    later = later or asyncio.ensure_future(anext(events))
    await asyncio.sleep(QUIET_POLLS * POLL * 1.2)
    assert not later.done(), later.result()
    later.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await later
    await events.aclose()


async def test_one_event_per_successful_execution_that_ends_after_the_watcher_started(sandbox, style):
    before = await asyncio.to_thread(run_to_end, "word-count", text="ended before", mode="words")
    events, pending = await started(watcher())

    after = await asyncio.to_thread(run_to_end, "word-count", text="ended after", mode="words")
    other = await asyncio.to_thread(run_to_end, "hello", name="another Method")
    event = (await asyncio.wait_for(pending, 10)).payload

    assert event["job_id"] == after
    assert event["method_id"] == "word-count"
    assert event["status"] == "successful"
    assert bool(event["finished"]) is (style == "ogc")  # CCP's jobStatus says no end time
    assert event["execution_url"].endswith(f"/{after}")
    assert event["execution_url"].startswith(sandbox.url)
    assert before not in (after, other)
    await no_more(events)


async def test_failed_executions_fire_when_asked_for(sandbox, style):
    events, pending = await started(watcher(method_id="fail", statuses=["failed"]))
    only_successes = watcher(method_id="fail")
    successes, none = await started(only_successes)

    failed = await asyncio.to_thread(run_to_end, "fail", message="boom", exit_code="3")
    event = (await asyncio.wait_for(pending, 10)).payload

    assert (event["job_id"], event["status"]) == (failed, "failed")
    await no_more(successes, none)
    await no_more(events)


async def test_a_restarted_watcher_reports_what_ended_meanwhile_and_nothing_twice(sandbox, style):
    """Airflow >= 3.3 keeps the record in the Asset's state store; before, only in memory (nothing twice,
    but an execution that ended while no triggerer ran the watcher is not reported)."""
    store = AsyncStore()
    events, pending = await started(watcher(store))
    first = await asyncio.to_thread(run_to_end, "word-count", text="one", mode="words")
    assert (await asyncio.wait_for(pending, 10)).payload["job_id"] == first
    await events.aclose()

    meanwhile = await asyncio.to_thread(run_to_end, "word-count", text="while no triggerer ran", mode="words")
    restarted = watcher(store)
    events = restarted.run()

    if KEEPS_STATE:
        event = await asyncio.wait_for(anext(events), 10)
        assert event.payload["job_id"] == meanwhile
        assert {first, meanwhile} <= set(Reported.from_json(store.values[restarted.state_key]).ids)
    else:
        assert store.values == {}
    await no_more(events)


def test_invalid_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match="poll_interval"):
        CCPExecutionEventTrigger(ccp_conn_id="c", method_id="m", poll_interval=0)
    with pytest.raises(ValueError, match="statuses must be final statuses"):
        CCPExecutionEventTrigger(ccp_conn_id="c", method_id="m", statuses=["running"])


def test_serialize_round_trips_and_siblings_share_one_listing():
    trigger = CCPExecutionEventTrigger(ccp_conn_id="c", method_id="m", poll_interval=30)
    classpath, kwargs = trigger.serialize()
    sibling = CCPExecutionEventTrigger(**(kwargs | {"statuses": ["failed"]}))

    assert classpath == "airflow_provider_ccp.triggers.ccp.CCPExecutionEventTrigger"
    assert CCPExecutionEventTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert sibling.shared_stream_key() == trigger.shared_stream_key()


async def test_iter_jobs_follows_every_page(sandbox):
    jobs = [await asyncio.to_thread(run_to_end, "word-count", text=str(n), mode="words") for n in range(3)]

    async with CCPAsyncHook(retry_delay=0.01) as hook:
        listed = [job.job_id async for job in hook.iter_jobs("word-count", limit=2)]

    assert set(jobs) <= set(listed)  # the sandbox may hold the executions of earlier tests too
    assert len(listed) == len(set(listed))
    assert sandbox.admin.requests_to("GET", "/jobs") == (len(listed) + 1) // 2


async def test_a_watcher_joining_a_shared_listing_midway_reads_from_the_next_whole_listing(sandbox):
    """Airflow >= 3.3 fans one listing out to sibling watchers; one that joins mid-listing must not take
    the rest of that listing for the whole (B ended before it started, and was on a page it missed)."""
    a, b, c = (
        StatusInfo.from_json(
            {"jobID": job_id, "status": "successful", "processID": "word-count", "created": f"2026-01-01T12:00:0{n}Z"}
        )
        for n, job_id in ((1, "A"), (5, "B"), (7, "C"))
    )
    complete = LISTING_COMPLETE.copy()  # the shared stream may hand on copies

    async def shared() -> Any:
        for item in (a, complete, b, a, complete, c, b, a, complete):
            yield item

    events = [event.payload["job_id"] async for event in watcher().filter_shared_stream(shared())]

    assert events == ["C"]


MALFORMED_ENTRIES = [{"status": "successful"}, {"jobID": "no-status"}, "not a job", 7]


def ended_job(job_id: str, finished: str) -> dict[str, Any]:
    return {"jobID": job_id, "processID": "word-count", "status": "successful", "finished": finished, "message": ""}


async def test_a_malformed_entry_in_the_listing_hides_no_execution(make_conn, httpserver, task_log):
    """One entry that is no job (no jobID, no status, not an object) is skipped with a warning; the
    executions beside it are still reported, by this listing and every later one."""
    listings = [[], [*MALFORMED_ENTRIES, ended_job("j-after", "2030-01-01T00:00:05Z")]]

    def listing(request: Request) -> Response:
        return Response(json.dumps({"jobs": listings[0] if len(listings) == 1 else listings.pop(0)}))

    httpserver.expect_request("/jobs", method="GET").respond_with_handler(listing)
    conn = make_conn(auth_flow="none", login=None, secret="")
    events = watcher(ccp_conn_id=conn).run()

    event = await asyncio.wait_for(anext(events), 10)
    await events.aclose()

    assert event.payload["job_id"] == "j-after"
    assert "Skipped an entry of CCP's jobs listing that it cannot read" in task_log()


async def test_both_hooks_list_the_jobs_beside_a_malformed_entry(make_conn, httpserver):
    jobs = [*MALFORMED_ENTRIES, ended_job("j1", "2030-01-01T00:00:05Z")]
    httpserver.expect_request("/jobs", method="GET").respond_with_json({"jobs": jobs})
    conn = make_conn(auth_flow="none", login=None, secret="")

    listed = await asyncio.to_thread(CCPHook(conn).list_jobs)
    async with CCPAsyncHook(conn) as hook:
        iterated = [job async for job in hook.iter_jobs("word-count")]

    assert [job.job_id for job in listed] == [job.job_id for job in iterated] == ["j1"]


async def events_within(events: Any, seconds: float) -> list[str]:
    """The job ids of every event the stream fires within ``seconds``; then the stream is closed."""
    fired: list[str] = []

    async def collect() -> None:
        async for event in events:
            fired.append(event.payload["job_id"])

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), seconds)
    await events.aclose()
    return fired


async def test_each_execution_fires_once_across_a_restart_whatever_the_servers_times_do(sandbox, style):
    """The issue's case, at poll_interval=1: one execution ended before the first watcher (0 events), one ends
    while it runs (1), five end while no watcher runs (1 each after the restart with the same store on
    Airflow >= 3.3; before 3.3 they are lost, and none fires twice)."""
    store = AsyncStore()
    before = await asyncio.to_thread(run_to_end, "word-count", text="before", mode="words")
    first = watcher(store, poll_interval=1)
    events, pending = await started(first)
    during = await asyncio.to_thread(run_to_end, "word-count", text="during", mode="words")
    fired = [(await asyncio.wait_for(pending, 10)).payload["job_id"]]
    fired += await events_within(events, 5)  # five more listings: CCP's updated moves at each

    meanwhile = [await asyncio.to_thread(run_to_end, "word-count", text=f"n{n}", mode="words") for n in range(5)]
    fired += await events_within(watcher(store, poll_interval=1).run(), 8)

    assert before not in fired
    assert fired[0] == during
    assert fired == ([during, *meanwhile] if KEEPS_STATE else [during])  # oldest first


async def test_a_backfill_window_reports_once_what_was_created_since_then(sandbox, style):
    if not KEEPS_STATE:
        with pytest.raises(ValueError, match=r"report_since needs Airflow 3\.3"):
            watcher(report_since=60)
        return
    store = AsyncStore()
    earlier = await asyncio.to_thread(run_to_end, "word-count", text="in the window", mode="words")
    fired = await events_within(watcher(store, report_since=datetime.timedelta(minutes=10)).run(), 1)
    fired += await events_within(watcher(store, report_since=datetime.timedelta(minutes=10)).run(), 1)

    assert fired.count(earlier) == 1


def test_report_since_is_checked_and_serialized_as_a_primitive():
    assert "report_since" not in watcher().serialize()[1]
    if not KEEPS_STATE:  # refused whatever the value, before it is read
        for value in (datetime.timedelta(hours=1), "2026-01-01T12:00:00+01:00", "yesterday", -5):
            with pytest.raises(ValueError, match=r"report_since needs Airflow 3\.3"):
                watcher(report_since=value)
        return
    assert watcher(report_since=datetime.timedelta(hours=1)).serialize()[1]["report_since"] == 3600.0
    when = watcher(report_since="2026-01-01T12:00:00+01:00").serialize()[1]["report_since"]
    assert when == "2026-01-01T11:00:00+00:00"
    with pytest.raises(ValueError, match="report_since must be"):
        watcher(report_since="yesterday")
    with pytest.raises(ValueError, match="report_since"):
        watcher(report_since=-5)


def test_watchers_with_other_statuses_keep_apart_records():
    assert watcher().state_key != watcher(statuses=["failed"]).state_key
    assert watcher(statuses=["successful"]).state_key == watcher().state_key
