"""``CCPExecuteMethodOperator``: run one CCP Method execution as an Airflow task.

The life of a try: check the inputs against the Method's description; reattach to the execution
an earlier try left for the same request (Airflow >= 3.3), or submit on the worker; publish the
job id and URL; take the first status from the submission's answer; then wait (in the triggerer
when deferrable, else on the worker) and finish in ``execute_complete``, which both modes share.
See docs/operators.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import Asset

from airflow_provider_ccp import protocol
from airflow_provider_ccp.exceptions import (
    CCPAmbiguousSubmissionError,
    CCPError,
    CCPJobFailedError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    fail_without_retry,
)
from airflow_provider_ccp.exchange import DEFAULT_RETRY, RetryPolicy
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import (
    check_mapping,
    default_outputs,
    mask_secret_inputs,
    prepare_inputs,
    public_inputs,
    secret_inputs_sent,
    secret_values,
    with_secret_inputs,
)
from airflow_provider_ccp.links import XCOM_JOB_ID, XCOM_JOB_URL, CCPExecutionLink
from airflow_provider_ccp.outputs import (
    ExtractionLimits,
    fetch_tails,
    local_outputs_warning,
    log_tails,
    store_outputs,
    store_results,
    task_output_path,
)
from airflow_provider_ccp.protocol import StatusInfo, SyncResults
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.version_compat import RenderedFieldsOperator, conf
from airflow_provider_ccp.waiting import (
    JobWatch,
    configured_min_defer_seconds,
    is_transient,
    ride_out,
    terminal_event,
    validate_event,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.definitions.context import Context

#: ``task_state_store`` key holding the ``Submission`` of the try (Airflow >= 3.3): written before the
#: POST, completed with the job id after it. Renaming it would make in-flight retries submit a second
#: execution, so it never changes.
STATE_KEY = "ccp_job_id"
ON_AMBIGUOUS_SUBMIT = ("fail", "resubmit")
#: How long a submission whose answer was lost is looked for before concluding it created nothing.
LOOKUP_SECONDS = 10.0
LOOKUP_INTERVAL = 1.0
#: Clock difference tolerated between the worker and the server when a job is matched by its
#: creation time (servers that keep nothing of the request: no marker).
CLOCK_SKEW = timedelta(seconds=30)
#: Events after which the job has ended: dismissing it then would delete its results.
FINISHED_EVENTS = frozenset({"success", "failed"})
#: Airflow's own deferral timeout sits this far past the trigger's deadline, so that the trigger
#: (which can dismiss the job) always fires first; Airflow's timeout kills the trigger silently.
DEFER_TIMEOUT_GRACE = timedelta(minutes=10)
#: Output files named one per line in the task log; a huge archive gets a count for the rest.
LOGGED_FILES = 20


class CCPExecuteMethodOperator(RenderedFieldsOperator):
    """Execute a CCP Method and hand its outputs to downstream tasks.

    :param method_id: the Method (process) id. Templated.
    :param inputs: input values by id. CCP receives every value as a string; another OGC server
        receives the type the input's schema declares (connection extra ``server``). Declared defaults
        (e.g. ``ccpimage``) are filled in. Templated.
    :param outputs: the OGC ``outputs`` request; None asks for every declared output by value, and on
        CCP for ``stdout`` and ``stderr`` too, as CCP's own execution form does. Templated.
    :param request_members: top-level members added to the execute request, e.g. ``{"subscribers":
        [{"successUri": ...}]}`` (CCP archives the outputs to the Workspace); ``inputs``, ``outputs``
        and ``response`` are refused there. Templated.
    :param ccp_conn_id: the ``ccp`` connection. Templated.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls.
    :param timeout: seconds to wait for the execution before dismissing it and failing; None waits forever.
    :param wait_for_completion: False submits, pushes the ids and returns the job id.
    :param output_path: folder or ObjectStoragePath URI (``s3://bucket/prefix``) the outputs go under, as
        ``<output_path>/<dag_id>/<run_id>/<task_id>[/<map_index>]/``. Default ``[ccp] output_path``, else
        ``$AIRFLOW_HOME/ccp-outputs`` (a warning when tasks run on a non-local executor).
        Templated.
    :param extract: extract ``output.zip`` next to it (entries that would escape the folder are refused).
    :param max_extract_bytes: most bytes ``output.zip`` may expand to (default 20 GiB; None: no limit).
    :param max_extract_entries: most entries ``output.zip`` may hold to be extracted (default 100,000; None: no limit).
    :param max_compression_ratio: most times ``output.zip`` may expand once it expands to more than
        64 MiB (default 200; None: no limit). Over any limit the task fails and nothing is extracted.
    :param cancel_on_kill: dismiss the execution when the task is killed.
    :param log_lines: lines of each stdout/stderr file copied into the task log (0: none).
    :param on_ambiguous_submit: when the answer to the submission was lost and the execution cannot
        be found or ruled out: ``"fail"`` (``CCPAmbiguousSubmissionError``, no retry) or ``"resubmit"``
        (the next try submits a new execution).
    :param secret_inputs: ids of inputs to treat as secret besides those the Method's description marks
        secret (``format: secret``): masked in Rendered Templates and logs as soon as the templates are
        rendered (even when CCP cannot be reached then), kept out of the retry fingerprint and lineage.
    :param min_defer_seconds: a deferred task is resumed this long after it deferred at the earliest,
        so that Airflow's scheduler cannot fail it (see docs/operators.md). Default: ``[ccp]
        min_defer_seconds`` in Airflow's configuration, else 10.
    :param ccp_retry_limit: retries of one request to CCP, in the worker and the trigger (the hooks'
        retry policy, docs/connection.md "Retries"; ``retries`` is the task's own).
    :param ccp_retry_delay: seconds before the first of those retries, doubled for each next one.

    Each ``Asset`` in ``outlets`` gets an asset event when the execution succeeds, whose ``extra``
    holds ``ccp_job_id``, ``ccp_method_id``, ``execution_url`` and the output ``files``' URIs.

    Returns (XCom ``return_value``) a manifest: ``job_id``, ``method_id``, ``status``, ``message``,
    ``created``, ``started``, ``finished``, ``duration_seconds``, ``archive``, ``manifest`` (the URI of
    ``manifest.json``, the full listing), ``files`` (the first 100: ``path``, ``uri``, ``size`` each),
    ``file_count``, ``refused`` (the first 100), ``refused_count``, ``withheld`` and ``execution_url``;
    each key is also its own XCom (``multiple_outputs``), so ``op.output["files"]`` works.
    """

    template_fields: Sequence[str] = (
        "method_id",
        "inputs",
        "outputs",
        "request_members",
        "output_path",
        "ccp_conn_id",
    )
    template_fields_renderers = {"inputs": "json", "outputs": "json", "request_members": "json"}
    operator_extra_links = (CCPExecutionLink(),)
    ui_color = "#cfe8f7"

    def __init__(
        self,
        *,
        method_id: str,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
        request_members: Mapping[str, Any] | None = None,
        ccp_conn_id: str = CCPHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30,
        timeout: float | None = None,
        wait_for_completion: bool = True,
        output_path: str | None = None,
        extract: bool = True,
        max_extract_bytes: int | None = ExtractionLimits.max_bytes,
        max_extract_entries: int | None = ExtractionLimits.max_entries,
        max_compression_ratio: float | None = ExtractionLimits.max_ratio,
        cancel_on_kill: bool = True,
        log_lines: int = 50,
        on_ambiguous_submit: str = "fail",
        min_defer_seconds: float | None = None,
        secret_inputs: Collection[str] = (),
        ccp_retry_limit: int = DEFAULT_RETRY.limit,
        ccp_retry_delay: float = DEFAULT_RETRY.delay,
        **kwargs: Any,
    ) -> None:
        # The manifest's keys become XComs of their own too, so a TaskFlow task can take
        # ``op.output["files"]``; without waiting there is no manifest, only the job id.
        kwargs.setdefault("multiple_outputs", wait_for_completion)
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout!r}")
        if log_lines < 0:
            raise ValueError(f"log_lines must be 0 or more, got {log_lines!r}")
        if on_ambiguous_submit not in ON_AMBIGUOUS_SUBMIT:
            raise ValueError(f"on_ambiguous_submit must be one of {ON_AMBIGUOUS_SUBMIT}, got {on_ambiguous_submit!r}")
        if min_defer_seconds is None:
            min_defer_seconds = configured_min_defer_seconds()
        if min_defer_seconds < 0:
            raise ValueError(f"min_defer_seconds must be 0 or more, got {min_defer_seconds!r}")
        limits = {
            "max_extract_bytes": max_extract_bytes,
            "max_extract_entries": max_extract_entries,
            "max_compression_ratio": max_compression_ratio,
        }
        for name, limit in limits.items():
            if limit is not None and not limit > 0:
                raise ValueError(f"{name} must be positive or None, got {limit!r}")
        self.method_id = method_id
        self.inputs = inputs
        self.outputs = outputs
        self.request_members = request_members
        self.ccp_conn_id = ccp_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.wait_for_completion = wait_for_completion
        self.output_path = output_path
        self.extract = extract
        self.limits = ExtractionLimits(max_extract_bytes, max_extract_entries, max_compression_ratio)
        self.cancel_on_kill = cancel_on_kill
        self.log_lines = log_lines
        self.on_ambiguous_submit = on_ambiguous_submit
        self.min_defer_seconds = min_defer_seconds
        if isinstance(secret_inputs, str):
            raise ValueError(f"secret_inputs must be a list of input ids, got the string {secret_inputs!r}")
        self.secret_inputs = tuple(secret_inputs)
        self.retry = RetryPolicy(limit=ccp_retry_limit, delay=ccp_retry_delay)
        self.job_id: str | None = None
        #: Whether on_kill should dismiss ``job_id``: not once the job is known to have ended.
        self._job_may_run = False
        self._description: tuple[str, dict[str, Any]] | None = None
        #: What ``execute_complete`` delivered, for OpenLineage's completion facets.
        self._manifest: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> CCPHook:
        return CCPHook(ccp_conn_id=self.ccp_conn_id, retry_limit=self.retry.limit, retry_delay=self.retry.delay)

    def _method_description(self) -> dict[str, Any]:
        """Read once per process: rendering (to mask secrets) and ``execute`` both need it.

        The inputs the task lists in ``secret_inputs`` are marked secret in it, as if the Method did.
        """
        if self._description is None or self._description[0] != self.method_id:
            description = with_secret_inputs(self.hook.get_method(self.method_id), self.secret_inputs)
            self._description = (self.method_id, description)
        return self._description[1]

    # ------------------------------------------------------------------ rendering

    def after_rendering(self) -> None:
        """Mask the values of secret inputs before Airflow serializes the rendered fields.

        Airflow sends them to the API server (Rendered Templates) right after rendering, before
        ``execute`` runs, and renders again when a deferred task resumes.
        """
        if self.inputs:
            self._mask_secret_inputs()

    def _mask_secret_inputs(self) -> None:
        if not isinstance(self.inputs, Mapping):
            return  # execute() refuses it with a clear error, before anything is sent
        try:
            description = self._method_description()
        except Exception as err:  # rendering must not fail: execute() reads the description again
            self.log.warning(
                "Could not read Method %s to mask its secret inputs in the rendered fields: %s", self.method_id, err
            )
            # Those the task names, at least.
            description = {"inputs": {name: {} for name in self.secret_inputs}}
            description = with_secret_inputs(description, self.secret_inputs)
        self.inputs = mask_secret_inputs(description, self.inputs)

    # ------------------------------------------------------------------ execute

    @fail_without_retry
    def execute(self, context: Context) -> Any:
        given = self.inputs if self.inputs is not None else {}
        check_mapping(self.method_id, given)  # before any request
        protocol.request_members(self.request_members)
        description = self._method_description()
        inputs = prepare_inputs(self.method_id, description, given)
        fingerprint = request_fingerprint(self.method_id, protocol.string_inputs(public_inputs(description, inputs)))
        job = self._reattach(context, fingerprint) or self._submit(context, description, inputs, fingerprint)
        if isinstance(job, SyncResults):
            return self._finish_synchronous(context, job)
        if not self.wait_for_completion:
            self._forget(context)  # no retry to save: clearing the task later must submit again
            return job.job_id
        if job.terminal:
            return self.execute_complete(context, terminal_event(job, self._secret_values()))
        end_time = self._end_time()
        if self.deferrable:
            self._defer(job.job_id, end_time)
        return self.execute_complete(context, self._poll(job.job_id, end_time))

    def _reattach(self, context: Context, fingerprint: str) -> StatusInfo | None:
        """The job an earlier try submitted for the same request, when it is still running or has succeeded.

        Needs Airflow >= 3.3's ``task_state_store``; older Airflow clears a task's XComs when a new
        try starts, so there every try submits its own execution (docs/operators.md).
        """
        previous = stored_submission(context)
        if previous is None:
            return None
        if previous.fingerprint not in (None, fingerprint):
            label = previous.job_id or previous.marker
            self.log.warning(
                "CCP job %s of an earlier try ran another Method or other inputs: submitting a new execution", label
            )
            return None
        job_id = previous.job_id or self._find_unconfirmed(context, previous)
        if job_id is None:
            return None
        try:
            info = self._status(job_id)
        except CCPNotFoundError:
            self.log.warning("CCP job %s of an earlier try no longer exists: submitting a new execution", job_id)
            return None
        if info.failed:
            self.log.warning("CCP job %s of an earlier try ended %s: submitting a new execution", job_id, info.status)
            return None
        self.log.info("Reattaching to CCP job %s (%s), submitted by an earlier try", info.job_id, info.status)
        self._track(info.job_id, running=not info.terminal)
        self._push(context, info.job_id)
        return info

    def _find_unconfirmed(self, context: Context, previous: Submission) -> str | None:
        """An earlier try sent a submission and never learnt its job id: look for it before submitting."""
        self.log.warning(
            "An earlier try submitted Method %s at %s and did not get the answer: looking for that execution",
            self.method_id,
            previous.submitted_at,
        )
        try:
            job_id = self._look_up(previous)
        except _Undecided as undecided:
            failure, resubmit = self._undecided(context, previous, undecided)
            if not resubmit:
                raise failure from None
            self.log.warning("%s", failure)
            return None
        if job_id is None:
            self.log.warning("That submission created no execution: submitting a new one")
            return None
        self.log.info("Found CCP job %s, created by the earlier try's submission", job_id)
        self._remember(context, replace(previous, job_id=job_id))
        return job_id

    def _submit(
        self, context: Context, description: Mapping[str, Any], inputs: Mapping[str, Any], fingerprint: str
    ) -> StatusInfo | SyncResults:
        """POST the execution, remembered before it is sent so that a lost answer can be looked up."""
        outputs = self.outputs if self.outputs is not None else default_outputs(description)
        marker = protocol.new_marker() if is_ccp_method(description) else None
        if marker:
            note = protocol.note_with_marker(inputs.get(protocol.MARKER_INPUT), marker)
            inputs = {**inputs, protocol.MARKER_INPUT: note}
        submission = Submission(fingerprint, marker=marker, submitted_at=pendulum.now("UTC").isoformat())
        self._remember(context, submission)
        url = protocol.execution_request_url(self.hook.settings.base_url, self.method_id)
        answer: StatusInfo | None = None
        try:
            submitted = self.hook.submit_execution(
                self.method_id, inputs, outputs, request_members=self.request_members, description=description
            )
        except CCPError as err:
            if not protocol.submission_may_have_landed(err, url):
                self._forget(context)  # refused: nothing to look for on a retry
                raise
            job_id = self._find_lost(context, submission, err)
        else:
            if isinstance(submitted, SyncResults):
                self._forget(context)  # it ran and ended: a retry has no job to reattach to
                return submitted
            answer, job_id = submitted, submitted.job_id
        # Cheapest and surest first: the log, then the store a retry reattaches from, then XComs.
        self._track(job_id, running=True)
        self._remember(context, replace(submission, job_id=job_id))
        self._push(context, job_id)
        return self._first_status(job_id, answer)

    def _find_lost(self, context: Context, submission: Submission, error: CCPError) -> str:
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
            raise self._undecided(context, submission, undecided)[0] from None
        if job_id is None:
            # The submission stays stored: on Airflow >= 3.3 the retry looks once more before submitting.
            raise CCPError(
                f"The submission of Method {self.method_id!r} failed ({error}) and no execution of it was found "
                f"after looking for {LOOKUP_SECONDS:g} s: none was created, a retry submits again",
                method_id=self.method_id,
            ) from None
        self.log.info("Found CCP job %s: the submission did create it", job_id)
        return job_id

    def _look_up(self, submission: Submission) -> str | None:
        """The job the submission created, or None once the server has shown for a while that there is none.

        Raises ``_Undecided`` when the server cannot tell (no list to read, several candidates).
        """
        finder: Callable[[], str | None]
        if submission.marker:
            finder = partial(self.hook.find_execution, submission.marker)
        else:
            finder = partial(self._job_created_at, submission)
        deadline = time.time() + LOOKUP_SECONDS
        watch = JobWatch(f"(submission at {submission.submitted_at})", LOOKUP_INTERVAL, deadline, self.log)
        while True:
            try:
                job_id = ride_out(finder, watch)
            except CCPError as err:
                raise _Undecided(f"the lookup failed: {err}", may_pass=is_transient(err)) from None
            if job_id is not None or time.time() >= deadline:
                return job_id
            time.sleep(watch.next_delay())

    def _job_created_at(self, submission: Submission) -> str | None:
        """A server that keeps nothing of the request: the one job of the Method created around the POST."""
        sent = pendulum.parse(submission.submitted_at or "")
        if not isinstance(sent, pendulum.DateTime):
            raise _Undecided(f"the submission time {submission.submitted_at!r} is not a date and time")
        jobs = self.hook.list_jobs(method_id=self.method_id)
        end = pendulum.now("UTC") + CLOCK_SKEW
        candidates = protocol.jobs_created_between(jobs, self.method_id, sent - CLOCK_SKEW, end)
        if len(candidates) > 1:
            ids = ", ".join(job.job_id for job in candidates)
            raise _Undecided(f"{len(candidates)} jobs of Method {self.method_id!r} were created then ({ids})")
        return candidates[0].job_id if candidates else None

    def _undecided(self, context: Context, submission: Submission, undecided: _Undecided) -> tuple[CCPError, bool]:
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
        if undecided.may_pass and context.get("task_state_store") is not None:
            later = f"{message}; the next try looks for it again before submitting"
            return CCPError(later, method_id=self.method_id), False
        self._forget(context)  # the DAG author decided: a clear, or with resubmit a retry, submits anew
        if self.on_ambiguous_submit == "fail":
            error = CCPAmbiguousSubmissionError(
                f"{message}; clear this task to submit again, or set on_ambiguous_submit='resubmit'",
                marker=submission.marker,
                submitted_at=submission.submitted_at or "",
                method_id=self.method_id,
            )
            return error, False
        return CCPError(f"{message}; on_ambiguous_submit='resubmit': submitting again", method_id=self.method_id), True

    def _status(self, job_id: str) -> StatusInfo:
        """``GET /jobs/{id}``, riding out transient errors by the rules polling follows."""
        watch = JobWatch(job_id, float(self.poll_interval), None, self.log)
        return ride_out(partial(self.hook.get_job, job_id), watch)

    def _first_status(self, job_id: str, answer: StatusInfo | None) -> StatusInfo:
        """The status in the submission's answer: a GET right then could fail a try whose job runs fine."""
        if answer is not None and answer.status:
            return answer
        self.log.info("The answer to the submission of CCP job %s holds no status: asking for it", job_id)
        return self._status(job_id)

    def _remember(self, context: Context, submission: Submission) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_KEY, submission.to_json())

    def _forget(self, context: Context) -> None:
        """Done: clearing the task later means "run it again", not "reuse that execution"."""
        store = context.get("task_state_store")
        if store is not None:
            store.delete(STATE_KEY)

    def _track(self, job_id: str, *, running: bool) -> None:
        """Make the job known to on_kill and log where to see it; nothing here can fail."""
        self.job_id = job_id
        self._job_may_run = running
        self.log.info("CCP job %s runs Method %s: %s", job_id, self.method_id, self._job_url(job_id))

    def _push(self, context: Context, job_id: str) -> None:
        """The XComs the UI link and downstream tasks read."""
        context["ti"].xcom_push(key=XCOM_JOB_ID, value=job_id)
        context["ti"].xcom_push(key=XCOM_JOB_URL, value=self._job_url(job_id))

    def _job_url(self, job_id: str) -> str:
        settings = self.hook.settings
        return protocol.ui_execution_url(settings.ui_url, job_id) or protocol.job_url(settings.base_url, job_id)

    def _end_time(self) -> float | None:
        """The wall-clock deadline of the wait.

        In deferrable mode it also honours ``execution_timeout``, which Airflow does not enforce
        while a task is deferred; on a worker Airflow enforces it itself (and calls ``on_kill``).
        """
        limits = [self.timeout] if self.timeout is not None else []
        if self.deferrable and self.execution_timeout is not None:
            limits.append(self.execution_timeout.total_seconds())
        return time.time() + min(limits) if limits else None

    def _defer(self, job_id: str, end_time: float | None) -> None:
        trigger = CCPJobTrigger(
            conn_id=self.ccp_conn_id,
            job_id=job_id,
            poll_interval=self.poll_interval,
            end_time=end_time,
            cancel_on_kill=self.cancel_on_kill,
            not_before=time.time() + self.min_defer_seconds,
            retry_limit=self.retry.limit,
            retry_delay=self.retry.delay,
            secrets=self._secret_values(),
        )
        timeout = None if end_time is None else timedelta(seconds=end_time - time.time()) + DEFER_TIMEOUT_GRACE
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def _poll(self, job_id: str, end_time: float | None) -> dict[str, Any]:
        """The trigger's loop, run on the worker: same rules, same event."""
        watch = JobWatch(job_id, float(self.poll_interval), end_time, self.log, secrets=self._secret_values())
        while True:
            try:
                event = watch.on_status(self.hook.get_job(job_id))
            except CCPError as err:
                event = watch.on_error(err)
            if event is not None:
                return event
            time.sleep(watch.next_delay())

    # ------------------------------------------------------------------ completion (deferred or not)

    @fail_without_retry
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the task from the trigger's event; after a deferral this runs in a new process."""
        event = validate_event(event)
        job_id = self.job_id = str(event["job_id"])
        self._job_may_run = event["status"] not in FINISHED_EVENTS
        if event["status"] == "success":
            manifest = self._succeed(context, job_id)
            self._forget(context)
            return manifest
        if event["status"] == "failed":
            self._report_failure(job_id, event)
            raise CCPJobFailedError(
                f"CCP job {job_id} (Method {self.method_id}) ended {event['job_status']}: {event['message']}",
                job_id=job_id,
                method_id=self.method_id,
            )
        if event["status"] == "timeout":
            self._dismiss(job_id)
            raise CCPJobTimeoutError(event["message"], job_id=job_id, method_id=self.method_id)
        raise CCPError(event["message"], job_id=job_id, method_id=self.method_id)

    def _succeed(self, context: Context, job_id: str) -> dict[str, Any]:
        info = self._final_status(job_id)
        target = self._output_target(context)
        stored = store_outputs(
            self.hook,
            job_id,
            target,
            extract=self.extract,
            log_lines=self.log_lines,
            limits=self.limits,
            secret_inputs=self._secret_inputs_sent(),
        )
        log_tails(stored.tails, self.log)
        self.log.info("CCP job %s: %d file(s) under %s", job_id, len(stored.files), target)
        for item in stored.files[:LOGGED_FILES]:
            self.log.info("  %s (%s bytes)", item["path"], item["size"])
        if len(stored.files) > LOGGED_FILES:
            self.log.info("  ... and %d more (the manifest lists them all)", len(stored.files) - LOGGED_FILES)
        times = info.to_dict()
        return self._deliver(
            context, job_id, info.status, info.message, times, stored.for_xcom(), self._job_url(job_id)
        )

    def _finish_synchronous(self, context: Context, results: SyncResults) -> dict[str, Any]:
        """The server ran the execution while answering the POST (OGC sync execute): the results it
        answered with are the outputs, stored as a job's ``results.json`` would be (docs/operators.md)."""
        target = self._output_target(context)
        stored = store_results(results, target, secret_inputs=self._secret_inputs_sent())
        message = "run synchronously: the server answered the execution request with its results, and no job"
        self.log.info("Method %s was %s; saved as %s", self.method_id, message, stored.archive)
        times = dict.fromkeys(("created", "started", "finished", "duration_seconds"))
        return self._deliver(context, None, "successful", message, times, stored.for_xcom(), None)

    def _output_target(self, context: Context) -> ObjectStoragePath:
        ti = context["ti"]
        warning = local_outputs_warning(self.output_path, self.executor)
        if warning:
            self.log.warning(warning)
        return task_output_path(self.output_path, ti.dag_id, ti.run_id, ti.task_id, ti.map_index)

    def _deliver(
        self,
        context: Context,
        job_id: str | None,
        status: str,
        message: str,
        times: Mapping[str, Any],
        files: Mapping[str, Any],
        execution_url: str | None,
    ) -> dict[str, Any]:
        """The manifest (the task's XCom), and the asset events that point at it."""
        manifest = self._manifest = {
            "job_id": job_id,
            "method_id": self.method_id,
            "status": status,
            "message": message,
            **{key: times[key] for key in ("created", "started", "finished", "duration_seconds")},
            **files,
            "execution_url": execution_url,
        }
        self._emit_asset_events(context, manifest)
        return manifest

    def _emit_asset_events(self, context: Context, manifest: Mapping[str, Any]) -> None:
        """Say which execution changed each outlet Asset, so that a DAG scheduled on it can find the files."""
        extra = {
            "ccp_job_id": manifest["job_id"],
            "ccp_method_id": manifest["method_id"],
            "execution_url": manifest["execution_url"],
            "files": [item["uri"] for item in manifest["files"] if item.get("uri")],
        }
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)

    def _secret_values(self) -> tuple[str, ...]:
        """The secret inputs' values, hidden in the job's messages (CCP may echo one in a failure).

        When the description cannot be read, the inputs the task names in ``secret_inputs``.
        """
        try:
            description = self._method_description()
        except CCPError:
            named: dict[str, Any] = {"inputs": {name: {} for name in self.secret_inputs}}
            description = with_secret_inputs(named, self.secret_inputs)
        return tuple(secret_values(description, self.inputs if isinstance(self.inputs, Mapping) else {}))

    def _secret_inputs_sent(self) -> bool:
        """Whether the outputs may hold a secret input; when the description cannot be read, assume so."""
        try:
            return secret_inputs_sent(self._method_description(), self.inputs)
        except CCPError as err:
            self.log.warning(
                "Could not read Method %s; outputs handled as holding a secret input: %s", self.method_id, err
            )
            return True

    def _final_status(self, job_id: str) -> StatusInfo:
        """The job's statusInfo, with the times CCP's jobStatus leaves out (``finished``) taken from
        the execution record when it has them. The record's shape is undocumented: best effort."""
        info = self.hook.get_job(job_id)
        try:
            record = self.hook.get_execution(job_id)
        except CCPError as err:
            self.log.warning("Could not read the execution record of CCP job %s: %s", job_id, err)
            return info
        times = {key: record[key] for key in ("created", "started", "finished") if record.get(key)}
        return StatusInfo.from_json(times | {key: value for key, value in info.raw.items() if value})

    def _report_failure(self, job_id: str, event: Mapping[str, Any]) -> None:
        """Put CCP's message and the stderr/stdout tails in the task log (best effort) before failing."""
        self.log.error("CCP job %s ended %s: %s", job_id, event["job_status"], event["message"])
        if not self.log_lines:
            return
        try:
            tails = fetch_tails(self.hook, job_id, self.log_lines)
        except Exception as err:  # whatever goes wrong here, the task must fail with CCPJobFailedError
            self.log.warning("Could not fetch the logs of CCP job %s: %s", job_id, err)
            return
        log_tails(tails, self.log, level=logging.ERROR)

    # ------------------------------------------------------------------ OpenLineage (optional extra)

    def _known_description(self) -> dict[str, Any] | None:
        """The description this process already read: lineage must never be the reason CCP is called."""
        if self._description is None or self._description[0] != self.method_id:
            return None
        return self._description[1]

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_provider_ccp.lineage import method_lineage

        return method_lineage(str(self.method_id), self._known_description(), self.inputs)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_provider_ccp.lineage import execution_lineage

        job_url = self._job_url(self.job_id) if self.job_id else None
        return execution_lineage(
            str(self.method_id), self._known_description(), self.inputs, self.job_id, job_url, self._manifest
        )

    # ------------------------------------------------------------------ cancel

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.job_id and self._job_may_run:
            self._dismiss(self.job_id)

    def _dismiss(self, job_id: str) -> None:
        """Best effort: a dismiss that fails is logged, never raised over the real reason."""
        try:
            result = self.hook.dismiss_job(job_id)
        except Exception:
            self.log.warning("Could not dismiss CCP job %s", job_id, exc_info=True)
            return
        self.log.log(logging.INFO if result.supported else logging.WARNING, "%s", result.message)


def request_fingerprint(method_id: str, inputs: Mapping[str, str]) -> str:
    """What a retry compares before reattaching: the Method and its non-secret inputs, sorted.

    Secret values stay out: even hashed, a short secret in the task state store could be guessed.
    """
    document = json.dumps({"method_id": method_id, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()


class _Undecided(Exception):
    """The lookup of a lost submission could not tell whether it created an execution."""

    def __init__(self, reason: str, *, may_pass: bool = False) -> None:
        super().__init__(reason)
        #: Only transient errors stood in the way: a later lookup may decide.
        self.may_pass = may_pass


@dataclass(frozen=True)
class Submission:
    """What the task state store keeps of a try's submission (key ``STATE_KEY``)."""

    fingerprint: str | None
    job_id: str | None = None
    #: The identity CCP keeps in the execution record (in ``ccpnote``); None for other OGC servers.
    marker: str | None = None
    #: When the POST was sent (ISO 8601, UTC).
    submitted_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def is_ccp_method(description: Mapping[str, Any]) -> bool:
    """CCP Methods declare the runtime image input; a plain OGC process has no ``ccpnote`` to carry a marker."""
    return protocol.is_ccp_description(description)


def stored_submission(context: Context) -> Submission | None:
    """The submission an earlier try stored; a plain id is what earlier versions stored."""
    store = context.get("task_state_store")
    value = store.get(STATE_KEY) if store is not None else None
    if isinstance(value, str):
        return Submission(None, job_id=value) if value else None
    if not isinstance(value, Mapping) or not (value.get("job_id") or value.get("submitted_at")):
        return None
    fields = {key: str(value[key]) if value.get(key) else None for key in ("job_id", "marker", "submitted_at")}
    return Submission(str(value["fingerprint"]) if value.get("fingerprint") else None, **fields)
