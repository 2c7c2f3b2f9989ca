"""What CCPExecutionEventTrigger keeps between listings: the watermark, and the bounded pick of new executions."""

from __future__ import annotations

import pendulum
import pytest

from airflow_provider_ccp.triggers import ccp
from airflow_provider_ccp.triggers.ccp import Watermark, _Listing

T0 = pendulum.datetime(2026, 1, 1, 12, 0, 0)


def job(job_id: str, seconds: int | None, status: str = "successful", method: str = "m") -> dict:
    ended = {} if seconds is None else {"finished": T0.add(seconds=seconds).isoformat()}
    return {"jobID": job_id, "status": status, "processID": method, **ended}


def picked(listing: _Listing) -> list[str]:
    return [info.job_id for _, info in listing.ended_jobs()]


def test_the_first_listing_only_sets_the_baseline_at_ccps_newest_end_time():
    listing = _Listing(None, frozenset({"successful"}))
    for item in (job("a", 1), job("b", 3, "failed"), job("c", 3), job("d", None, "running")):
        listing.add(item)

    assert picked(listing) == []
    assert listing.baseline == Watermark(T0.add(seconds=3).isoformat(), ("b", "c"))


def test_only_executions_past_the_watermark_with_a_wanted_status_are_picked_oldest_first():
    mark = Watermark(T0.add(seconds=3).isoformat(), ("c",))
    listing = _Listing(mark, frozenset({"successful"}))
    for item in (job("late", 9), job("a", 1), job("c", 3), job("same-second", 3), job("failed", 5, "failed")):
        listing.add(item)
    listing.add(job("undated", None))

    assert picked(listing) == ["same-second", "late"]
    assert listing.undated == 1


def test_a_listing_of_many_new_executions_keeps_only_the_oldest_few(monkeypatch):
    monkeypatch.setattr(ccp, "EVENTS_PER_POLL", 3)
    listing = _Listing(Watermark(None), frozenset({"successful"}))
    for n in reversed(range(50)):  # CCP lists the newest first
        listing.add(job(f"j{n}", n))

    assert picked(listing) == ["j0", "j1", "j2"]
    assert len(listing._oldest) == 3


@pytest.mark.parametrize(
    ("seconds", "job_id", "new"),
    [(2, "x", False), (3, "c", False), (3, "d", True), (4, "c", True)],
)
def test_is_new(seconds, job_id, new):
    mark = Watermark(T0.add(seconds=3).isoformat(), ("c",))
    assert mark.is_new(T0.add(seconds=seconds), job_id) is new


def test_the_watermark_moves_forward_only_and_round_trips_as_json():
    mark = Watermark(None).after(T0, "a").after(T0, "b").after(T0.subtract(seconds=1), "old")

    assert mark == Watermark(T0.isoformat(), ("a", "b"))
    assert mark.after(T0.add(seconds=1), "c") == Watermark(T0.add(seconds=1).isoformat(), ("c",))
    assert Watermark.from_json(mark.to_json()) == mark
    assert Watermark.from_json(None) is None
