"""What CCPExecutionEventTrigger keeps between listings: the executions it dealt with, known by job id, and
the floor of creation times that bounds that record."""

from __future__ import annotations

import json

import pendulum
import pytest

from airflow_provider_ccp import execution_events
from airflow_provider_ccp.execution_events import FLOOR_MARGIN, ListingReading, Reported
from airflow_provider_ccp.protocol import StatusInfo

T0 = pendulum.datetime(2026, 1, 1, 12, 0, 0)
WANTED = frozenset({"successful"})


def job(job_id: str, created: int | None, status: str = "successful", **times: int) -> dict:
    """A listed job; ``created`` and the other times are seconds after T0, None for no such field."""
    stamps = {"created": created, **times}
    return {"jobID": job_id, "status": status} | {
        name: T0.add(seconds=value).isoformat() for name, value in stamps.items() if value is not None
    }


def read(reported: Reported | None, *jobs: dict, statuses=WANTED, since=None) -> ListingReading:
    reading = ListingReading(reported, statuses, since)
    for item in jobs:
        reading.add(StatusInfo.from_json(item))
    return reading


def new(reading: ListingReading) -> list[str]:
    return [info.job_id for info in reading.new_executions()]


def report_all(reading: ListingReading) -> Reported:
    """What the trigger does with a listing: note each new execution, then settle."""
    reported = reading.reported
    for info in reading.new_executions():
        reported = reported.noting(info)
    return reading.settled(reported)[0]


def test_the_first_listing_reports_nothing_and_remembers_what_ended():
    reading = read(None, job("a", 1), job("b", 2, "failed"), job("c", 3), job("d", 4, "running"))

    assert new(reading) == []
    reported = report_all(reading)
    assert set(reported.ids) == {"a", "b", "c"}
    assert reported.floor == T0.add(seconds=4).timestamp() - FLOOR_MARGIN.total_seconds()  # behind the newest


def test_an_execution_is_known_by_its_id_whatever_its_times_do():
    """CCP's jobStatus: no finished, and updated moves at every view."""
    reported = report_all(read(None, job("a", 1, "running", updated=1)))
    ended = read(reported, job("a", 1, updated=50))
    reported = report_all(ended)
    later = read(reported, job("a", 1, updated=90), job("a2", 2, updated=91, started=3))

    assert new(ended) == ["a"]
    assert new(later) == ["a2"]
    assert new(read(report_all(later), job("a", 1, updated=5), job("a2", 2, updated=1000))) == []


def test_new_executions_come_oldest_first_and_at_most_a_bound_per_listing(monkeypatch):
    monkeypatch.setattr(execution_events, "EVENTS_PER_POLL", 3)
    reported = report_all(read(None, job("old", 0)))
    jobs = [job("e", 5), job("b", 9, finished=2), job("d", 4), job("a", 1), job("c", 3), job("u", None)]
    reading = read(reported, *jobs)

    assert (new(reading), reading.new_count) == (["a", "b", "c"], 6)  # by finished (b), else created
    reported = report_all(reading)
    assert new(read(reported, *jobs)) == ["d", "e", "u"]  # the undated last


def test_wanted_statuses_only():
    reported = report_all(read(None))
    reading = read(reported, job("ok", 1), job("bad", 2, "failed"), job("gone", 3, "dismissed"))
    assert new(reading) == ["ok"]
    failures = read(reported, job("ok", 1), job("bad", 2, "failed"), statuses=frozenset({"failed", "dismissed"}))
    assert new(failures) == ["bad"]


def test_the_floor_forgets_old_ids_but_never_passes_a_running_or_unreported_execution(monkeypatch):
    monkeypatch.setattr(execution_events, "EVENTS_PER_POLL", 1)
    hour = int(FLOOR_MARGIN.total_seconds())
    reported = report_all(read(None, job("past", 0), job("long", 10, "running"), job("newest", 3 * hour)))
    assert reported.floor == T0.add(seconds=10).timestamp()  # held by the running one
    assert set(reported.ids) == {"newest"}  # "past" is below the floor: known by it
    assert reported.knows(StatusInfo.from_json(job("past", 0)))

    backlog = read(reported, job("past", 0), job("long", 10), job("x", 2 * hour), job("newest", 3 * hour))
    assert new(backlog) == ["long"]
    reported = report_all(backlog)
    assert reported.floor == T0.add(seconds=2 * hour).timestamp()  # held by x, still to be reported
    assert new(read(reported, job("past", 0), job("long", 10), job("x", 2 * hour), job("newest", 3 * hour))) == ["x"]


def test_the_floor_only_rises():
    reported = Reported(floor=T0.add(seconds=100).timestamp(), ids={})
    settled = report_all(read(reported, job("early", 1, "running")))
    assert settled.floor == reported.floor


def test_past_the_cap_the_oldest_ids_are_forgotten_under_a_raised_floor(monkeypatch):
    monkeypatch.setattr(execution_events, "MAX_REMEMBERED", 3)
    jobs = [job(f"j{n}", n) for n in range(6)] + [job("late", 7, "running")]
    reading = read(None, *jobs)

    reported, passed = reading.settled(reading.reported)

    assert (set(reported.ids), passed) == ({"j3", "j4", "j5"}, False)
    assert reported.floor == T0.add(seconds=3).timestamp()
    assert new(read(reported, *jobs[:6])) == []
    running_early = read(None, *jobs[:6], job("early", 1, "running"))
    assert running_early.settled(running_early.reported)[1] is True  # "early" now lies under the floor


def test_undated_ids_are_kept_while_ccp_lists_them():
    reported = report_all(read(None, job("u1", None), job("u2", None)))
    assert set(reported.ids) == {"u1", "u2"}
    assert new(read(reported, job("u1", None), job("u2", None))) == []
    assert set(report_all(read(reported, job("u2", None))).ids) == {"u2"}


def test_a_backfill_window_reports_what_was_created_since_it_on_the_first_start():
    since = T0.add(seconds=10)
    reading = read(None, job("before", 5), job("after", 12), job("failed", 13, "failed"), job("u", None), since=since)

    assert new(reading) == ["after"]
    reported = report_all(reading)
    assert set(reported.ids) == {"before", "after", "u"}
    assert new(read(reported, job("before", 5), job("after", 12), job("u", None))) == []


def test_the_record_round_trips_as_json_and_an_older_watermark_reads_as_a_first_start():
    reported = report_all(read(None, job("a", 1), job("u", None), job("r", 2, "running")))

    assert Reported.from_json(json.loads(json.dumps(reported.to_json()))) == reported
    assert Reported.from_json({"ended": "2026-01-01T12:00:00+00:00", "job_ids": ["a"]}) is None
    assert Reported.from_json(None) is None
    assert Reported.from_json({"version": 2, "floor": float("nan"), "ids": {"a": "x"}}) == Reported(None, {"a": None})


@pytest.mark.parametrize("jobs", [100, 5000])
def test_the_stored_record_stays_small(jobs, monkeypatch):
    """Thousands of executions a day: the floor keeps the record to those of the last hour, at most the cap."""
    listed = [job(f"{n:08d}-0000-0000-0000-000000000000", n * 10) for n in range(jobs)]
    reported = report_all(read(None, *listed))

    assert len(reported.ids) <= min(jobs, execution_events.MAX_REMEMBERED)
    assert len(json.dumps(reported.to_json())) < 70 * execution_events.MAX_REMEMBERED
