"""One paid execution per task try: reattach to what an earlier try submitted, or submit, and find
the execution a submission whose answer was lost created.

``CCPExecuteMethodOperator`` hands its request to a ``Submitter``. With Airflow >= 3.3's
``task_state_store`` the submission is remembered before the POST is sent and completed with the
job id after it, so that a retry reattaches instead of paying for a second execution, and a lost
answer is looked up by the marker CCP keeps in the execution record (or, on another OGC server, by
the job's creation time). See docs/operators.md.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Any

import pendulum

from airflow_provider_ccp import protocol
from airflow_provider_ccp.descriptions import input_value_to_string, is_ccp_description
from airflow_provider_ccp.exceptions import (
    CCPAmbiguousSubmissionError,
    CCPError,
    CCPNotFoundError,
    CCPSubmissionLostError,
)
from airflow_provider_ccp.execution_records import MARKER_INPUT
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import check_mapping, default_outputs, prepare_inputs, public_inputs
from airflow_provider_ccp.links import XCOM_JOB_ID, XCOM_JOB_URL
from airflow_provider_ccp.protocol import StatusInfo, SyncResults
from airflow_provider_ccp.version_compat import XCom
from airflow_provider_ccp.waiting import JobWatch, ride_out

__all__ = [
    "Submitter",
    "ExecutionRequest",
    "Submission",
    "OnAmbiguousSubmit",
    "stored_submission",
    "forget_submission",
    "XComRecord",
    "prepare_request",
]

#: ``task_state_store`` key holding the ``Submission`` of the try (Airflow >= 3.3): written before the
#: POST, completed with the job id after it. Renaming it would make in-flight retries submit a second
#: execution, so it never changes.
STATE_KEY = "ccp_job_id"
#: How long a submission whose answer was lost is looked for before concluding it created nothing.
LOOKUP_SECONDS = 10.0
LOOKUP_INTERVAL = 1.0
#: Clock difference tolerated between the worker and the server when a job is matched by its
#: creation time (servers that keep nothing of the request: no marker).
CLOCK_SKEW = timedelta(seconds=30)
#: What a submission's marker starts with, in the ``ccpnote`` it is sent in.
MARKER_PREFIX = "airflow-submission:"


class OnAmbiguousSubmit(StrEnum):
    """What to do when a lost submission can be neither found nor ruled out (the operator's
    ``on_ambiguous_submit``; a DAG may pass the plain string)."""

    #: ``CCPAmbiguousSubmissionError``, no retry: a retry could pay for a second execution.
    FAIL = "fail"
    #: The next try submits a new execution.
    RESUBMIT = "resubmit"


def request_fingerprint(method_id: str, inputs: Mapping[str, str]) -> str:
    """What a retry compares before reattaching: the Method and its non-secret inputs (even hashed, a
    short secret in the task state store could be guessed)."""
    document = json.dumps({"method_id": method_id, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()


def new_marker() -> str:
    return MARKER_PREFIX + uuid.uuid4().hex


def note_with_marker(note: Any, marker: str) -> str:
    """The user's own ``ccpnote``, if any, then the marker in brackets."""
    text = "" if note is None else input_value_to_string(MARKER_INPUT, note).strip()
    return f"{text} [{marker}]" if text else f"[{marker}]"


@dataclass(frozen=True)
class ExecutionRequest:
    """What a try asks CCP to run, checked and complete (declared defaults filled in)."""

    method_id: str
    description: Mapping[str, Any]
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any] | None = None
    members: Mapping[str, Any] | None = None

    def fingerprint(self) -> str:
        public = public_inputs(self.description, self.inputs)
        return request_fingerprint(self.method_id, protocol.string_inputs(public))


@dataclass(frozen=True)
class Submission:
    """What the task state store keeps of a try's submission (key ``STATE_KEY``)."""

    fingerprint: str | None
    job_id: str | None = None
    #: The identity CCP keeps in the execution record (in ``ccpnote``); None for other OGC servers.
    marker: str | None = None
    #: When the POST was sent (ISO 8601, UTC).
    submitted_at: str | None = None
    #: The try that sent it, where a record outlives a restart of that same try (``XComRecord``).
    try_number: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def stored_submission(context: Mapping[str, Any]) -> Submission | None:
    """The submission an earlier try stored; a plain id is what earlier versions stored."""
    store = context.get("task_state_store")
    value = store.get(STATE_KEY) if store is not None else None
    if isinstance(value, str):
        return Submission(None, job_id=value) if value else None
    if not isinstance(value, Mapping) or not (value.get("job_id") or value.get("submitted_at")):
        return None
    fields = {key: str(value[key]) if value.get(key) else None for key in ("job_id", "marker", "submitted_at")}
    try_number = int(value["try_number"]) if isinstance(value.get("try_number"), int) else None
    return Submission(str(value["fingerprint"]) if value.get("fingerprint") else None, **fields, try_number=try_number)


class XComRecord:
    """The task state store of a try started in the triggerer (which cannot reach Airflow's): the XCom
    ``RECORD_KEY``, which Airflow clears only when a worker starts a try; forgetting stores None. It is the
    trigger's ``ti`` too: in the triggerer, Airflow 3.3.2's ``RuntimeTaskInstance.xcom_push`` fails on the
    serialized task it holds (docs/task-duration.md, *Start from the triggerer*)."""

    RECORD_KEY = "ccp_submission"

    def __init__(self, ti: Any) -> None:
        self.ti = ti

    def _where(self) -> dict[str, Any]:
        ti = self.ti
        return {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}

    def xcom_push(self, key: str, value: Any) -> None:
        XCom.set(key, value, **self._where())

    def get(self, key: str, default: Any = None) -> Any:
        value = XCom.get_one(key=self.RECORD_KEY, **self._where())
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        self.xcom_push(self.RECORD_KEY, value)

    def delete(self, key: str) -> None:
        self.set(key, None)


def prepare_request(
    method_id: str,
    given: Any,
    outputs: Mapping[str, Any] | None,
    members: Mapping[str, Any] | None,
    describe: Callable[[], Mapping[str, Any]],
) -> ExecutionRequest:
    """The request checked against the Method's description (``describe()``), before anything is sent;
    a mistake raises one ``CCPInputError`` line naming the input."""
    given = given if given is not None else {}
    check_mapping(method_id, given)
    protocol.request_members(members)
    description = describe()
    inputs = prepare_inputs(method_id, description, given)
    outputs = outputs if outputs is not None else default_outputs(description)
    return ExecutionRequest(method_id, description, inputs, outputs, members)


class _Undecided(Exception):
    """The lookup of a lost submission could not tell whether it created an execution."""

    def __init__(self, reason: str, *, may_pass: bool = False) -> None:
        super().__init__(reason)
        #: Only transient errors stood in the way: a later lookup may decide.
        self.may_pass = may_pass


class Submitter:
    """The submission of one task try: ``reattach()`` to the job an earlier try left, else ``submit()``.

    :param hook: the hook every request goes through; its clock times the lookups.
    :param context: the task's context: its ``task_state_store`` (Airflow >= 3.3) and ``ti`` (XComs).
    :param request: what to run.
    :param log: the task's logger.
    :param on_ambiguous_submit: ``"fail"`` or ``"resubmit"``, as the operator's parameter.
    :param poll_interval: seconds between the status requests that ride out transient errors.
    :param on_job: called with the job id, and whether the job may still be running, as soon as
        it is known (before anything that can fail): the operator's ``on_kill`` dismisses it.
    :param try_number: the try, when the store outlives a restart of the same try (a trigger's): the
        job that try submitted is then reattached to whatever its status, never submitted again.
    """

    def __init__(
        self,
        hook: CCPHook,
        context: Mapping[str, Any],
        request: ExecutionRequest,
        *,
        log: Any,
        on_ambiguous_submit: OnAmbiguousSubmit = OnAmbiguousSubmit.FAIL,
        poll_interval: float = 30.0,
        on_job: Callable[[str, bool], None] = lambda job_id, running: None,
        try_number: int | None = None,
    ) -> None:
        self.hook = hook
        self.context = context
        self.request = request
        self.method_id = request.method_id
        self.log = log
        self.on_ambiguous_submit = on_ambiguous_submit
        self.poll_interval = float(poll_interval)
        self.on_job = on_job
        self.try_number = try_number

    # ------------------------------------------------------------------ reattach

    def reattach(self) -> StatusInfo | None:
        """The job an earlier try submitted for the same request, when it is still running or has succeeded.

        Needs Airflow >= 3.3's ``task_state_store``; older Airflow clears a task's XComs when a new
        try starts, so there every try submits its own execution (docs/operators.md).
        """
        previous = stored_submission(self.context)
        if previous is None:
            return None
        if previous.fingerprint not in (None, self.request.fingerprint()):
            label = previous.job_id or previous.marker
            self.log.warning(
                "CCP job %s of an earlier try ran another Method or other inputs: submitting a new execution", label
            )
            return None
        who = "this try before its triggerer restarted" if self._restarted(previous) else "an earlier try"
        job_id = previous.job_id or self._find_unconfirmed(previous, who)
        if job_id is None:
            return None
        try:
            info = self._status(job_id)
        except CCPNotFoundError:
            self.log.warning("CCP job %s of an earlier try no longer exists: submitting a new execution", job_id)
            return None
        if info.failed and not self._restarted(previous):
            self.log.warning("CCP job %s of an earlier try ended %s: submitting a new execution", job_id, info.status)
            return None
        self.log.info("Reattaching to CCP job %s (%s), submitted by %s", info.job_id, info.status, who)
        self._announce(info.job_id, running=not info.terminal)
        self._publish(info.job_id)
        return info

    def _restarted(self, previous: Submission) -> bool:
        return bool(self.try_number) and previous.try_number == self.try_number

    def _find_unconfirmed(self, previous: Submission, who: str) -> str | None:
        """A submission was sent and its job id never learnt: look for it before submitting."""
        self.log.warning(
            "%s submitted Method %s at %s and did not get the answer: looking for that execution",
            who.capitalize(),
            self.method_id,
            previous.submitted_at,
        )
        try:
            job_id = self._look_up(previous)
        except _Undecided as undecided:
            failure, resubmit = self._undecided(previous, undecided)
            if not resubmit:
                raise failure from None
            self.log.warning("%s", failure)
            return None
        if job_id is None:
            self.log.warning("That submission created no execution: submitting a new one")
            return None
        self.log.info("Found CCP job %s, created by that submission", job_id)
        self._remember(replace(previous, job_id=job_id))
        return job_id

    # ------------------------------------------------------------------ submit

    def submit(self) -> StatusInfo | SyncResults:
        """POST the execution, remembered before it is sent so that a lost answer can be looked up."""
        request = self.request
        inputs = request.inputs
        marker = new_marker() if is_ccp_description(request.description) else None
        if marker:
            note = note_with_marker(inputs.get(MARKER_INPUT), marker)
            inputs = {**inputs, MARKER_INPUT: note}
        sent_at = pendulum.from_timestamp(self.hook.clock.time(), tz="UTC").isoformat()
        submission = Submission(request.fingerprint(), marker=marker, submitted_at=sent_at, try_number=self.try_number)
        self._remember(submission)
        answer: StatusInfo | None = None
        try:
            submitted = self.hook.submit_execution(
                self.method_id,
                inputs,
                request.outputs,
                request_members=request.members,
                description=request.description,
            )
        except CCPSubmissionLostError as err:
            job_id = self._find_lost(submission, err)
        except CCPError:
            self.forget()  # refused: nothing to look for on a retry
            raise
        else:
            if isinstance(submitted, SyncResults):
                self.forget()  # it ran and ended: a retry has no job to reattach to
                return submitted
            answer, job_id = submitted, submitted.job_id
        # Cheapest and surest first: the log, then the store a retry reattaches from, then XComs.
        self._announce(job_id, running=True)
        self._remember(replace(submission, job_id=job_id))
        self._publish(job_id)
        return self._first_status(job_id, answer)

    def _find_lost(self, submission: Submission, error: CCPError) -> str:
        """The execution a submission whose answer was lost created; raises when there is none to be found."""
        self.log.warning(
            "The answer to the submission of Method %s was lost (%s): looking for the execution %s",
            self.method_id,
            error,
            f"marked {submission.marker}" if submission.marker else "by its creation time",
        )
        try:
            job_id = self._look_up(submission)
        except _Undecided as undecided:
            raise self._undecided(submission, undecided)[0] from None
        if job_id is None:
            # The submission stays stored: on Airflow >= 3.3 the retry looks once more before submitting.
            raise CCPError(
                f"The submission of Method {self.method_id!r} failed ({error}) and no execution of it was found "
                f"after looking for {LOOKUP_SECONDS:g} s: none was created, a retry submits again",
                method_id=self.method_id,
            ) from None
        self.log.info("Found CCP job %s: the submission did create it", job_id)
        return job_id

    # ------------------------------------------------------------------ lookup of a lost submission

    def _look_up(self, submission: Submission) -> str | None:
        """The job the submission created, or None once the server has shown for a while that there is none.

        Raises ``_Undecided`` when the server cannot tell (no list to read, several candidates).
        """
        finder: Callable[[], str | None]
        if submission.marker:
            finder = partial(self.hook.find_execution, submission.marker)
        else:
            finder = partial(self._job_created_at, submission)
        clock = self.hook.clock
        deadline = clock.time() + LOOKUP_SECONDS
        label = f"(submission at {submission.submitted_at})"
        watch = JobWatch(label, LOOKUP_INTERVAL, deadline, self.log, clock=clock, policy=self.hook.retry)
        while True:
            try:
                job_id = ride_out(finder, watch)
            except CCPError as err:
                raise _Undecided(f"the lookup failed: {err}", may_pass=self.hook.retry.transient(err)) from None
            if job_id is not None or clock.time() >= deadline:
                return job_id
            clock.sleep(watch.next_delay())

    def _job_created_at(self, submission: Submission) -> str | None:
        """A server that keeps nothing of the request: the one job of the Method created around the POST
        (a job without a ``created`` time cannot be ruled out)."""
        sent = pendulum.parse(submission.submitted_at or "")
        if not isinstance(sent, pendulum.DateTime):
            raise _Undecided(f"the submission time {submission.submitted_at!r} is not a date and time")
        start, end = sent - CLOCK_SKEW, pendulum.from_timestamp(self.hook.clock.time(), tz="UTC") + CLOCK_SKEW
        candidates = [
            job
            for job in self.hook.list_jobs(method_id=self.method_id)
            if job.process_id in (None, self.method_id) and (job.created is None or start <= job.created <= end)
        ]
        if len(candidates) > 1:
            ids = ", ".join(job.job_id for job in candidates)
            raise _Undecided(f"{len(candidates)} jobs of Method {self.method_id!r} were created then ({ids})")
        return candidates[0].job_id if candidates else None

    def _undecided(self, submission: Submission, undecided: _Undecided) -> tuple[CCPError, bool]:
        """The error that ends the try when a lookup cannot decide, and whether a new execution may be
        submitted instead (``on_ambiguous_submit="resubmit"``: by the next try, or now by a later one).

        A lookup that only met transient errors is left to the next try while the store keeps the
        submission (Airflow >= 3.3). Otherwise ``fail`` ends the task for good with
        ``CCPAmbiguousSubmissionError``: a retry could pay for a second execution.
        """
        if submission.marker:
            where = f"whose note (ccpnote) contains {submission.marker!r} in CCP's execution list (GET /executions)"
        else:
            where = f"of Method {self.method_id!r} created around then (GET /jobs?processID={self.method_id})"
        message = (
            f"An execution of Method {self.method_id!r} may exist: its submission at {submission.submitted_at} "
            f"got no answer and it could not be looked up ({undecided}). Look for an execution {where}"
        )
        if undecided.may_pass and self.context.get("task_state_store") is not None:
            later = f"{message}; the next try looks for it again before submitting"
            return CCPError(later, method_id=self.method_id), False
        self.forget()  # the DAG author decided: a clear, or with resubmit a retry, submits anew
        if self.on_ambiguous_submit == OnAmbiguousSubmit.FAIL:
            error = CCPAmbiguousSubmissionError(
                f"{message}; clear this task to submit again, or set on_ambiguous_submit='resubmit'",
                marker=submission.marker,
                submitted_at=submission.submitted_at or "",
                method_id=self.method_id,
            )
            return error, False
        return CCPError(f"{message}; on_ambiguous_submit='resubmit': submitting again", method_id=self.method_id), True

    # ------------------------------------------------------------------ the job, once known

    def _status(self, job_id: str) -> StatusInfo:
        """``GET /jobs/{id}``, riding out transient errors by the rules polling follows."""
        watch = JobWatch(job_id, self.poll_interval, None, self.log, clock=self.hook.clock, policy=self.hook.retry)
        return ride_out(partial(self.hook.get_job, job_id), watch)

    def _first_status(self, job_id: str, answer: StatusInfo | None) -> StatusInfo:
        """The status in the submission's answer: a GET right then could fail a try whose job runs fine."""
        if answer is not None and answer.status:
            return answer
        self.log.info("The answer to the submission of CCP job %s holds no status: asking for it", job_id)
        return self._status(job_id)

    def _announce(self, job_id: str, *, running: bool) -> None:
        """Make the job known to the operator and log where to see it; nothing here can fail."""
        self.on_job(job_id, running)
        self.log.info("CCP job %s runs Method %s: %s", job_id, self.method_id, self.hook.execution_link(job_id))

    def _publish(self, job_id: str) -> None:
        """The XComs the UI link and downstream tasks read."""
        ti = self.context["ti"]
        ti.xcom_push(key=XCOM_JOB_ID, value=job_id)
        ti.xcom_push(key=XCOM_JOB_URL, value=self.hook.execution_link(job_id))

    # ------------------------------------------------------------------ the task state store

    def _remember(self, submission: Submission) -> None:
        store = self.context.get("task_state_store")
        if store is not None:
            store.set(STATE_KEY, submission.to_json())

    def forget(self) -> None:
        forget_submission(self.context)


def forget_submission(context: Mapping[str, Any]) -> None:
    """Done: clearing the task later means "run it again", not "reuse that execution"."""
    store = context.get("task_state_store")
    if store is not None:
        store.delete(STATE_KEY)
