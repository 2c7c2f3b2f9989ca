"""``CCPExecuteMethodOperator``: run one CCP Method execution as an Airflow task.

A try checks the inputs against the Method's description; submits, or reattaches to what an earlier try
left (``submission.Submitter``); waits (in the triggerer when deferrable); and completes in
``execute_complete``, which both modes share (its steps: ``operators/_completion.py``). See docs/operators.md.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import XComArg

from airflow_provider_ccp.archives import ExtractionLimits
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.exceptions import CCPError, CCPJobFailedError, CCPJobTimeoutError, cut
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import mask_secret_inputs, secret_inputs_sent, secret_values, with_secret_inputs
from airflow_provider_ccp.links import CCPExecutionLink
from airflow_provider_ccp.masking import redact
from airflow_provider_ccp.operators._completion import (
    emit_asset_events,
    final_status,
    log_outputs,
    output_target,
    report_failure,
)
from airflow_provider_ccp.outputs import StoredOutputs, store_outputs, store_results
from airflow_provider_ccp.protocol import SyncResults
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy, fail_without_retry
from airflow_provider_ccp.submission import (
    STATE_KEY,
    OnAmbiguousSubmit,
    Submitter,
    XComRecord,
    forget_submission,
    prepare_request,
    stored_submission,
)
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger, CCPStartTrigger
from airflow_provider_ccp.version_compat import (
    AIRFLOW_V_3_3_PLUS,
    RenderedFieldsOperator,
    StartTriggerArgs,
    conf,
    trigger_kwargs_hidden,
)
from airflow_provider_ccp.waiting import (
    WITHHELD,
    EventStatus,
    JobWatch,
    configured_min_defer_seconds,
    event_error,
    follow,
    terminal_event,
    validate_event,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.definitions.context import Context

__all__ = ["CCPExecuteMethodOperator"]

#: Airflow's own deferral timeout sits this far past the trigger's deadline, so that the trigger
#: (which can dismiss the job) always fires first; Airflow's timeout kills the trigger silently.
DEFER_TIMEOUT_GRACE = timedelta(minutes=10)


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
        ``$AIRFLOW_HOME/ccp-outputs`` (a warning when tasks run on a non-local executor). Templated.
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
    :param min_defer_seconds: a deferred task is resumed this long after it deferred at the earliest, so
        that Airflow's scheduler cannot fail it (docs/operators.md). Default ``[ccp] min_defer_seconds``, else 10.
    :param ccp_retry_limit: retries of one request to CCP, in the worker and the trigger (the hooks'
        retry policy, docs/connection.md "Retries"; ``retries`` is the task's own).
    :param ccp_retry_delay: seconds before the first of those retries, doubled for each next one.
    :param start_from_trigger: (Airflow >= 3.3, deferrable, unmapped) submit from the triggerer instead
        of a worker: no worker runs the task until its execution has ended (``CCPStartTrigger``;
        docs/task-duration.md). Default False.

    Each ``Asset`` in ``outlets`` gets an asset event when the execution succeeds, whose ``extra``
    holds ``ccp_job_id``, ``ccp_method_id``, ``execution_url`` and the output ``files``' URIs.

    Returns (XCom ``return_value``) a manifest: ``job_id``, ``method_id``, ``status``, ``message``,
    ``created``, ``started``, ``finished``, ``duration_seconds``, ``archive``, ``manifest`` (the URI of
    ``manifest.json``, the full listing), ``files`` (the first 100: ``path``, ``uri``, ``size`` each),
    ``file_count``, ``refused`` (the first 100), ``refused_count``, ``withheld`` and ``execution_url``;
    each key is also its own XCom (``multiple_outputs``), so ``op.output["files"]`` works.
    """

    template_fields: Sequence[str] = ("method_id", "inputs", "outputs", "request_members", "output_path", "ccp_conn_id")
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
        on_ambiguous_submit: OnAmbiguousSubmit | str = OnAmbiguousSubmit.FAIL,
        min_defer_seconds: float | None = None,
        secret_inputs: Collection[str] = (),
        ccp_retry_limit: int = DEFAULT_RETRY.limit,
        ccp_retry_delay: float = DEFAULT_RETRY.delay,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        # The manifest's keys become XComs of their own too, so a TaskFlow task can take
        # ``op.output["files"]``; without waiting there is no manifest, only the job id.
        kwargs.setdefault("multiple_outputs", wait_for_completion)
        super().__init__(**kwargs)
        try:
            ambiguous = OnAmbiguousSubmit(on_ambiguous_submit)
        except ValueError:
            expected = tuple(kind.value for kind in OnAmbiguousSubmit)
            raise ValueError(f"on_ambiguous_submit must be one of {expected}, got {on_ambiguous_submit!r}") from None
        if min_defer_seconds is None:
            min_defer_seconds = configured_min_defer_seconds()
        check_poll_interval(poll_interval)
        check_number("timeout", timeout, minimum=0, exclusive=True, seconds=True, none_means="wait forever")
        check_number("log_lines", log_lines, minimum=0, whole=True)
        check_number("min_defer_seconds", min_defer_seconds, minimum=0, seconds=True)
        check_number("ccp_retry_limit", ccp_retry_limit, minimum=0, whole=True)
        check_number("ccp_retry_delay", ccp_retry_delay, minimum=0, seconds=True)
        check_number("max_extract_bytes", max_extract_bytes, minimum=1, none_means="no limit")
        check_number("max_extract_entries", max_extract_entries, minimum=1, whole=True, none_means="no limit")
        check_number("max_compression_ratio", max_compression_ratio, minimum=0, exclusive=True, none_means="no limit")
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
        self.on_ambiguous_submit = ambiguous
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
        if start_from_trigger:
            self._start_from_trigger()

    def _start_from_trigger(self) -> None:
        """Start tries in the triggerer; ``execute`` still runs where Airflow does not (``airflow dags test``)."""
        if not AIRFLOW_V_3_3_PLUS:
            raise ValueError("start_from_trigger needs Airflow >= 3.3 (it renders templates in the triggerer)")
        if not self.wait_for_completion:
            raise ValueError("start_from_trigger needs wait_for_completion=True")
        for name in ("ccp_conn_id", "method_id", "inputs", "outputs", "request_members"):
            if any(XComArg.iter_xcom_references(getattr(self, name))):  # the triggerer never resolves them
                raise ValueError(f"start_from_trigger cannot take {name} from an upstream task's output (XComArg)")
        self.deferrable = self.start_from_trigger = True
        trigger = CCPStartTrigger(
            self.ccp_conn_id,
            self.method_id,
            self.inputs,
            self.outputs,
            self.request_members,
            secret_inputs=self.secret_inputs,
            on_ambiguous_submit=self.on_ambiguous_submit,
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            cancel_on_kill=self.cancel_on_kill,
            retry_limit=self.retry.limit,
            retry_delay=self.retry.delay,
        )
        timeout = None if self.timeout is None else timedelta(seconds=self.timeout) + DEFER_TIMEOUT_GRACE
        classpath, kwargs = trigger.serialize()
        self.start_trigger_args = StartTriggerArgs(classpath, "execute_complete", kwargs, timeout=timeout)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Airflow's own timeout of a try started in the triggerer (``execution_timeout``) cuts the trigger
        without ``on_kill``: the worker that fails the task dismisses the job, as the ``timeout`` event does."""
        timed_out = next_method == "__fail__" and (next_kwargs or {}).get("error") == "Trigger timeout"
        record = XComRecord(context["ti"]) if timed_out and self.start_from_trigger else None
        submission = stored_submission({"task_state_store": record})
        if submission and submission.job_id:
            self.log.warning("Airflow's timeout ended the wait for CCP job %s: dismissing it", submission.job_id)
            self._dismiss(submission.job_id)
        return super().resume_execution(next_method, next_kwargs, context)

    @cached_property
    def hook(self) -> CCPHook:
        return CCPHook(self.ccp_conn_id, retry=self.retry)

    def _method_description(self) -> dict[str, Any]:
        """Read once per process (rendering and ``execute`` both need it), with ``secret_inputs`` marked secret."""
        if (description := self._known_description()) is None:
            description = with_secret_inputs(self.hook.get_method(self.method_id), self.secret_inputs)
            self._description = (self.method_id, description)
        return description

    def _known_description(self) -> dict[str, Any] | None:
        """The description this process already read: lineage must never be the reason CCP is called."""
        known = self._description
        return known[1] if known is not None and known[0] == self.method_id else None

    # ------------------------------------------------------------------ rendering

    def _description_or_named(self) -> dict[str, Any]:
        """The Method's description; when it cannot be read, one naming the task's ``secret_inputs`` at least."""
        try:
            return self._method_description()
        except Exception as err:  # rendering must not fail: execute() reads the description again
            self.log.warning("Could not read Method %s to mask its secret inputs: %s", self.method_id, err)
            return with_secret_inputs({"inputs": {name: {} for name in self.secret_inputs}}, self.secret_inputs)

    def after_rendering(self) -> None:
        """Mask the secret inputs' values: Airflow sends the rendered fields to the API server (Rendered
        Templates) right after rendering, before ``execute`` runs, and renders again when a task resumes."""
        if self.inputs:
            self._mask_secret_inputs()

    def _mask_secret_inputs(self) -> None:
        if isinstance(self.inputs, Mapping):  # execute() refuses anything else, before anything is sent
            self.inputs = mask_secret_inputs(self._description_or_named(), self.inputs)

    # ------------------------------------------------------------------ execute

    @fail_without_retry
    def execute(self, context: Context) -> Any:
        request = prepare_request(
            self.method_id, self.inputs, self.outputs, self.request_members, self._method_description
        )
        submitter = Submitter(
            self.hook,
            context,
            request,
            log=self.log,
            on_ambiguous_submit=self.on_ambiguous_submit,
            poll_interval=self.poll_interval,
            on_job=self._track,
        )
        job = submitter.reattach() or submitter.submit()
        if isinstance(job, SyncResults):
            return self._finish_synchronous(context, job)
        if not self.wait_for_completion:
            submitter.forget()  # no retry to save: clearing the task later must submit again
            return job.job_id
        if job.terminal:
            return self.execute_complete(context, terminal_event(job, self._secret_values()))
        limits = [self.timeout] if self.timeout is not None else []
        if self.deferrable and self.execution_timeout is not None:  # Airflow enforces it on a worker only
            limits.append(self.execution_timeout.total_seconds())
        end_time = self.hook.clock.time() + min(limits) if limits else None
        if self.deferrable:
            self._defer(job.job_id, end_time)
        return self.execute_complete(context, self._poll(job.job_id, end_time))

    def _track(self, job_id: str, running: bool) -> None:
        """For on_kill: the job is dismissed then unless it is known to have ended."""
        self.job_id = job_id
        self._job_may_run = running

    def _defer(self, job_id: str, end_time: float | None) -> None:
        values = self._secret_values()
        # The values go only where Airflow keeps trigger arguments out of its REST API; elsewhere the
        # trigger withholds CCP's words instead.
        hide = {"secrets": values} if trigger_kwargs_hidden() or not values else {"withhold_messages": True}
        trigger = CCPJobTrigger.deferring(
            self.hook,
            job_id,
            end_time,
            self.min_defer_seconds,
            poll_interval=self.poll_interval,
            cancel_on_kill=self.cancel_on_kill,
            **hide,
        )
        timeout = (
            None if end_time is None else timedelta(seconds=end_time - self.hook.clock.time()) + DEFER_TIMEOUT_GRACE
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def _poll(self, job_id: str, end_time: float | None) -> dict[str, Any]:
        """The trigger's wait, run on the worker: same rules, same event."""
        clock, secrets, policy = self.hook.clock, self._secret_values(), self.hook.retry
        watch = JobWatch(
            job_id,
            self.poll_interval,
            end_time,
            self.log,
            secrets=secrets,
            clock=clock,
            policy=policy,
            since=clock.time(),
        )
        return follow(partial(self.hook.get_job, job_id), watch)

    # ------------------------------------------------------------------ completion (deferred or not)

    @fail_without_retry
    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Finish the task from the trigger's event; after a deferral this runs in a new process."""
        event = validate_event(event)
        job_id = str(event["job_id"])
        self.job_id = job_id or None  # none when a trigger that starts the try stopped before submitting
        # A job that ended must not be dismissed: that would delete its results.
        self._job_may_run = event["status"] not in (EventStatus.SUCCESS, EventStatus.FAILED)
        if event["status"] == EventStatus.SUCCESS:
            manifest = self._succeed(context, job_id)
            forget_submission(context)
            if self.start_from_trigger:
                XComRecord(context["ti"]).delete(STATE_KEY)
            return manifest
        if event["status"] == EventStatus.FAILED:
            if event["message"] == WITHHELD:  # the trigger had no secrets to hide: read CCP's words here
                event = {**event, "message": redact(self.hook.get_job(job_id).message, self._secret_values())}
            report_failure(self.hook, job_id, event, self.log_lines, self.log)
            raise CCPJobFailedError(self._failure_message(job_id, event), job_id=job_id, method_id=self.method_id)
        if event["status"] == EventStatus.TIMEOUT:
            self._dismiss(job_id)
            raise CCPJobTimeoutError(event["message"], job_id=job_id, method_id=self.method_id)
        raise event_error(event, job_id=self.job_id, method_id=self.method_id)

    def _succeed(self, context: Context, job_id: str) -> dict[str, Any]:
        info = final_status(self.hook, job_id, self.log)
        target = output_target(context, self.output_path, self.executor, self.log)
        stored = store_outputs(
            self.hook,
            job_id,
            target,
            extract=self.extract,
            log_lines=self.log_lines,
            limits=self.limits,
            secret_inputs=self._secret_inputs_sent(),
        )
        log_outputs(stored, target, job_id, self.log)
        return self._deliver(context, info.to_dict(), stored)

    def _finish_synchronous(self, context: Context, results: SyncResults) -> dict[str, Any]:
        """The server ran the execution while answering the POST (OGC sync execute): the results it
        answered with are the outputs, stored as a job's ``results.json`` would be (docs/operators.md)."""
        target = output_target(context, self.output_path, self.executor, self.log)
        stored = store_results(results, target, secret_inputs=self._secret_inputs_sent())
        message = "run synchronously: the server answered the execution request with its results, and no job"
        self.log.info("Method %s was %s; saved as %s", self.method_id, message, stored.archive)
        return self._deliver(context, {"job_id": None, "status": "successful", "message": message}, stored)

    def _deliver(self, context: Context, status: Mapping[str, Any], stored: StoredOutputs) -> dict[str, Any]:
        """The manifest (the task's XCom), and the asset events that point at it; ``status`` is as
        ``StatusInfo.to_dict()`` gives it (no times for a synchronous run)."""
        job_id = status["job_id"]
        manifest = self._manifest = {
            "job_id": job_id,
            "method_id": self.method_id,
            **{
                key: status.get(key)
                for key in ("status", "message", "created", "started", "finished", "duration_seconds")
            },
            **stored.for_xcom(),
            "execution_url": self.hook.execution_link(job_id) if job_id else None,
        }
        emit_asset_events(self.outlets, context, manifest)
        return manifest

    def _secret_values(self) -> tuple[str, ...]:
        """The secret inputs' values, hidden in the job's messages (CCP may echo one in a failure)."""
        inputs = self.inputs if isinstance(self.inputs, Mapping) else {}
        return tuple(secret_values(self._description_or_named(), inputs))

    def _secret_inputs_sent(self) -> bool:
        """Whether the outputs may hold a secret input; when the description cannot be read, assume so."""
        try:
            return secret_inputs_sent(self._method_description(), self.inputs)
        except CCPError as err:
            self.log.warning(
                "Could not read Method %s; outputs handled as holding a secret input: %s", self.method_id, err
            )
            return True

    def _failure_message(self, job_id: str, event: Mapping[str, Any]) -> str:
        """One line (task logs and Airflow's failure summary show only the first): CCP's reason, short enough
        for the log viewer (the task log has it whole), then which job and where."""
        # Cut here, not by the exception as a whole: the job and its link must stay on the line.
        reason = cut(" ".join(str(event["message"] or "").split()), 500) or "CCP gave no reason"
        where = f"Method {self.method_id!r}, job {job_id}: {self.hook.execution_link(job_id)}"
        return f"The CCP execution {event['job_status'] or 'failed'}: {reason} ({where})"

    # ------------------------------------------------------------------ OpenLineage (optional extra)

    def get_openlineage_facets_on_start(self) -> OperatorLineage:
        from airflow_provider_ccp.lineage import method_lineage

        return method_lineage(str(self.method_id), self._known_description(), self.inputs)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        from airflow_provider_ccp.lineage import execution_lineage

        job_url = self.hook.execution_link(self.job_id) if self.job_id else None
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
