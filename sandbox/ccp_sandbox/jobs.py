"""Jobs (CCP executions): their state machine, their OGC statusInfo and execution-record views, the store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ccp_sandbox.config import INFRASTRUCTURE
from ccp_sandbox.methods import ExecutionPlan, Method
from ccp_sandbox.ogc import REL_RESULTS, iso, utc_now

ACCEPTED, RUNNING, SUCCESSFUL, FAILED, DISMISSED = "accepted", "running", "successful", "failed", "dismissed"
TERMINAL = frozenset({SUCCESSFUL, FAILED, DISMISSED})
#: The outputs every CCP Method has besides its declared ones: each replica's console.
LOG_OUTPUTS = ("stdout", "stderr")


@dataclass
class Replica:
    number: int
    process: asyncio.subprocess.Process

    def view(self) -> dict[str, Any]:
        return {"replica": self.number, "pid": self.process.pid, "returncode": self.process.returncode}


@dataclass
class Job:
    id: str
    method: Method
    context: str
    user: str
    request: dict[str, Any]
    plan: ExecutionPlan
    folder: Path
    status: str = ACCEPTED
    message: str = "Execution accepted"
    progress: int = 0
    created: datetime = field(default_factory=utc_now)
    started: datetime | None = None
    finished: datetime | None = None
    updated: datetime | None = None
    replicas: list[Replica] = field(default_factory=list)
    dismiss_requested: bool = False
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.updated = self.created

    @property
    def data_dir(self) -> Path:
        """Stands in for the container's /ccp_data."""
        return self.folder / "ccp_data"

    @property
    def archive(self) -> Path:
        return self.folder / "output.zip"

    def log_not_requested(self, name: str) -> bool:
        """Whether ``name`` is a replica's log (``stdout.1.txt``) that the request did not ask for.

        Like CCP, whose execution form captures stdout/stderr only when asked to: a request that
        names outputs gets the logs it names; one that names none (or leaves ``outputs`` out) gets
        every output, logs included, by OGC's rule.
        """
        stream, dot, _ = name.partition(".")
        if "/" in name or not dot or stream not in LOG_OUTPUTS or not name.endswith(".txt"):
            return False
        requested = self.request.get("outputs")
        return isinstance(requested, dict) and bool(requested) and stream not in requested

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def set_status(self, status: str, message: str, progress: int | None = None) -> None:
        """Move on in the lifecycle; a terminal job keeps its status (dismissal wins over late results)."""
        if self.terminal and status != DISMISSED:
            return
        now = utc_now()
        if status == RUNNING and self.started is None:
            self.started = now
        if status in TERMINAL and self.finished is None:
            self.finished = now
        self.status, self.message, self.updated = status, message, now
        if progress is not None:
            self.progress = progress

    def status_info(self, base_url: str, style: str = "ogc") -> dict[str, Any]:
        """OGC's statusInfo; with ``style="ccp"``, CCP's documented jobStatus: none of the optional fields
        it does not show (``finished``, ``progress``, ``processID``, ``type``), and ``updated`` the time of
        this view, which OGC allows (it only recommends a new ``updated`` on a change of status)."""
        links = [
            _link(f"{base_url}/jobs/{self.id}", "self", "application/json", "Job status"),
            _link(f"{base_url}/jobs/{self.id}", "status", "application/json", "Job status"),
            _link(f"{base_url}/executions/{self.id}", "prov", "application/json", "Execution record"),
            _link(f"{base_url}/ui/executions/{self.id}", "alternate", "text/html", "Execution in the CCP UI"),
        ]
        if self.status == SUCCESSFUL:
            links.append(_link(f"{base_url}/jobs/{self.id}/results", REL_RESULTS, "application/json", "Results"))
        if style == "ccp":
            return {
                "jobID": self.id,
                "status": self.status,
                "message": self.message,
                "created": iso(self.created),
                "started": iso(self.started),
                "updated": iso(utc_now()),
                "links": links,
            }
        return {
            "jobID": self.id,
            "processID": self.method.id,
            "type": "process",
            "status": self.status,
            "message": self.message,
            "progress": self.progress,
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "updated": iso(self.updated),
            "links": links,
        }

    def record(self, base_url: str, style: str = "ogc") -> dict[str, Any]:
        """The execution record behind GET /executions/{id}; CCP's real shape is undocumented."""
        return {
            "id": self.id,
            "method": self.method.reference(),
            "context": self.context,
            "user": self.user,
            "request": self.request,
            "status": self.status_info(base_url, style),
            "image": self.plan.image,
            "replicas": self.plan.replicas,
            "maxtime": self.plan.max_seconds,
            "infrastructure": INFRASTRUCTURE,
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "processes": [replica.view() for replica in self.replicas],
            "links": [
                _link(
                    f"{base_url}/executions/{self.id}/outputs/output.zip", "enclosure", "application/zip", "output.zip"
                ),
            ],
        }


def _link(href: str, rel: str, media_type: str, title: str) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": media_type, "title": title}


class JobStore:
    """All jobs of the instance; a caller only ever sees the jobs of its own context and user."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(self, job: Job) -> None:
        self._jobs[job.id] = job

    def get(self, job_id: str, context: str, user: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and (job.context, job.user) == (context, user) else None

    def visible(self, context: str, user: str) -> list[Job]:
        """Newest first."""
        jobs = [job for job in self._jobs.values() if (job.context, job.user) == (context, user)]
        return sorted(jobs, key=lambda job: job.created, reverse=True)

    def all(self) -> list[Job]:
        return list(self._jobs.values())
