"""Which executions of a Method ``CCPExecutionEventTrigger`` has dealt with, and which are new: no I/O.

An execution is known by its job id, never by a time. CCP's documented jobStatus has no ``finished``,
and a server may move ``updated`` whenever it likes (OGC API - Processes only recommends a new one on a
change of status), so an end time read off a listing can differ at every listing; a watermark of end
times fired the same execution again each time it moved.

Times only bound memory. CCP stamps ``created`` once, when the execution is submitted, so the record
keeps a *floor*: every execution created before it has been dealt with, and only the ids created at or
after it (or with no ``created`` at all) are kept. The floor never passes an execution that may still
end or that is still to be reported, and stays ``FLOOR_MARGIN`` behind the newest creation time listed,
so an execution that shows up late in the listing, or a clock that runs a little behind, hides nothing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pendulum

from airflow_provider_ccp.protocol import StatusInfo, epoch_seconds

__all__ = ["Reported", "ListingReading", "EVENTS_PER_POLL", "MAX_REMEMBERED", "FLOOR_MARGIN"]

#: Most events one listing fires: the oldest new executions first, the others at the next listings.
EVENTS_PER_POLL = 100
#: Most ids the record keeps of executions with a ``created`` time (about 60 bytes each once stored); past
#: it the floor rises to the oldest kept. Executions with no ``created`` are kept while CCP lists them.
MAX_REMEMBERED = 2000
#: How far the floor stays behind the newest ``created`` listed.
FLOOR_MARGIN = pendulum.duration(hours=1)
#: The shape of the stored record; a stored value of another shape (the end-time watermark of earlier
#: versions) reads as no record: a first start, which reports nothing that ended before it.
STATE_VERSION = 2


def _epoch(job: StatusInfo, name: str) -> float | None:
    seconds = epoch_seconds(job.raw.get(name))
    return None if seconds is None else round(seconds, 3)


@dataclass(frozen=True)
class Reported:
    """The executions dealt with (reported, or ended before the watcher started), JSON-serializable: ``ids`` maps a
    job id to its ``created`` time (epoch seconds), or None when CCP gave none."""

    floor: float | None = None
    ids: Mapping[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> Reported | None:
        ids = value.get("ids") if isinstance(value, Mapping) and value.get("version") == STATE_VERSION else None
        if not isinstance(ids, Mapping):
            return None
        return cls(_number(value.get("floor")), {str(job_id): _number(created) for job_id, created in ids.items()})

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "floor": self.floor, "ids": dict(self.ids)}

    def knows(self, job: StatusInfo) -> bool:
        created = _epoch(job, "created")
        return job.job_id in self.ids or (created is not None and self.floor is not None and created < self.floor)

    def noting(self, job: StatusInfo) -> Reported:
        return Reported(self.floor, {**self.ids, job.job_id: _epoch(job, "created")})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class ListingReading:
    """One whole listing of a Method's jobs read against the record: the new ended executions (the oldest
    ``EVENTS_PER_POLL`` of them), and how far the record may forget afterwards. ``reported`` None is the watcher's
    first start: what has ended is the past, except the executions created at or after ``since`` (a deliberate
    backfill), which are new."""

    def __init__(
        self, reported: Reported | None, statuses: frozenset[str], since: pendulum.DateTime | None = None
    ) -> None:
        self.first = reported is None
        self.reported = reported or Reported()
        self.statuses = statuses
        self.since = since.timestamp() if since is not None and self.first else None
        self.new_count = 0
        self._new: list[tuple[float, str, StatusInfo]] = []  # a max-heap by negated order: the oldest kept
        self._past: dict[str, float | None] = {}
        self._undated: set[str] = set()  # ended executions listed with no created time
        self._newest: float | None = None
        self._keep_from: float | None = self.since  # the floor may not pass it, nor an unreported execution

    def add(self, job: StatusInfo) -> None:
        created = _epoch(job, "created")
        if created is None:
            self._undated.add(job.job_id)
        elif self._newest is None or created > self._newest:
            self._newest = created
        if not job.terminal:
            self._keep(created)  # it may still end
        elif self.first and (self.since is None or created is None or created < self.since):
            self._past[job.job_id] = created
        elif job.status in self.statuses and not self.reported.knows(job):
            self._add_new(job, created)

    def _keep(self, created: float | None) -> None:
        if created is not None and (self._keep_from is None or created < self._keep_from):
            self._keep_from = created

    def _add_new(self, job: StatusInfo, created: float | None) -> None:
        """Into the bounded pick of the oldest; one left out of it holds the floor until it is reported."""
        self.new_count += 1
        ended = _epoch(job, "finished") or created or _epoch(job, "updated")
        entry = (-(ended if ended is not None else math.inf), job.job_id, job)
        if len(self._new) < EVENTS_PER_POLL:
            heapq.heappush(self._new, entry)
            return
        if entry[:2] > self._new[0][:2]:
            entry = heapq.heapreplace(self._new, entry)
        self._keep(_epoch(entry[2], "created"))

    def new_executions(self) -> list[StatusInfo]:
        """The new executions to report now, oldest first (by ``finished``, else ``created``), by id at a tie."""
        return [job for _, _, job in sorted(self._new, key=lambda entry: (-entry[0], entry[1]))]

    def settled(self, reported: Reported) -> tuple[Reported, bool]:
        """``reported`` (the record after this listing's events) with the floor raised as far as it may go
        and what lies below it forgotten; also whether the ``MAX_REMEMBERED`` cap raised the floor past an
        execution that may still end or is still to be reported (it will not be reported)."""
        ids = {**self._past, **reported.ids}  # only a first start has a past
        floor = reported.floor
        # The oldest creation time the floor may not pass: of an execution that may still end, or is still to be
        # reported (the backfill's start, or one of this listing's pick that the record does not note).
        unreported = (_epoch(job, "created") for _, _, job in self._new if job.job_id not in ids)
        held = min((t for t in (self._keep_from, *unreported) if t is not None), default=None)
        if self._newest is not None:
            limit = min(self._newest - FLOOR_MARGIN.total_seconds(), held if held is not None else math.inf)
            floor = limit if floor is None else max(floor, limit)
        # An id with no created time stays while CCP lists it: nothing else bounds it.
        kept = {
            job: t for job, t in ids.items() if (job in self._undated if t is None else floor is None or t >= floor)
        }
        floor = _cap(kept, floor)
        return Reported(floor, kept), held is not None and floor is not None and floor > held


def _cap(ids: dict[str, float | None], floor: float | None) -> float | None:
    """Forget the oldest dated ids past ``MAX_REMEMBERED``, raising the floor over them (in place)."""
    dated = [(created, job_id) for job_id, created in ids.items() if created is not None]
    excess = len(dated) - MAX_REMEMBERED
    if excess <= 0:
        return floor
    oldest = heapq.nsmallest(excess + 1, dated)
    new_floor = oldest[-1][0]  # the oldest kept: ids created at that instant all stay
    for created, job_id in oldest:
        if created < new_floor:
            del ids[job_id]
    return new_floor if floor is None else max(floor, new_floor)
