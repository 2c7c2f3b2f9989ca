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
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_provider_ccp import protocol
from airflow_provider_ccp.exceptions import (
    CCPError,
    CCPJobFailedError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    CCPProtocolError,
)
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.inputs import (
    check_mapping,
    default_outputs,
    mask_secret_inputs,
    prepare_inputs,
    public_inputs,
    secret_inputs_sent,
)
from airflow_provider_ccp.links import XCOM_JOB_ID, XCOM_JOB_URL, CCPExecutionLink
from airflow_provider_ccp.outputs import (
    ExtractionLimits,
    fetch_tails,
    log_tails,
    store_outputs,
    task_output_path,
)
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.waiting import JobWatch, terminal_event, validate_event

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk.definitions.context import Context

#: ``task_state_store`` key holding ``{"job_id", "fingerprint"}`` of the submitted job (Airflow >= 3.3).
#: Renaming it would make in-flight retries submit a second execution, so it never changes.
STATE_KEY = "ccp_job_id"
#: Events after which the job has ended: dismissing it then would delete its results.
FINISHED_EVENTS = frozenset({"success", "failed"})
#: Airflow's own deferral timeout sits this far past the trigger's deadline, so that the trigger
#: (which can dismiss the job) always fires first; Airflow's timeout kills the trigger silently.
DEFER_TIMEOUT_GRACE = timedelta(minutes=10)


class CCPExecuteMethodOperator(BaseOperator):
    """Execute a CCP Method and hand its outputs to downstream tasks.

    :param method_id: the Method (process) id. Templated.
    :param inputs: input values by id; non-string values are sent as strings. Declared defaults
        (e.g. ``ccpimage``) are filled in. Templated.
    :param outputs: the OGC ``outputs`` request; None asks for every declared output by value. Templated.
    :param ccp_conn_id: the ``ccp`` connection. Templated.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_interval: seconds between status polls.
    :param timeout: seconds to wait for the execution before dismissing it and failing; None waits forever.
    :param wait_for_completion: False submits, pushes the ids and returns the job id.
    :param output_path: folder or ObjectStoragePath URI (``s3://bucket/prefix``) the outputs go under, as
        ``<output_path>/<dag_id>/<run_id>/<task_id>[/<map_index>]/``. Default ``$AIRFLOW_HOME/ccp-outputs``.
        Templated.
    :param extract: extract ``output.zip`` next to it (entries that would escape the folder are refused).
    :param max_extract_bytes: most bytes ``output.zip`` may expand to (default 20 GiB; None: no limit).
    :param max_extract_entries: most entries ``output.zip`` may hold to be extracted (default 100,000; None: no limit).
    :param max_compression_ratio: most times ``output.zip`` may expand once it expands to more than
        64 MiB (default 200; None: no limit). Over any limit the task fails and nothing is extracted.
    :param cancel_on_kill: dismiss the execution when the task is killed.
    :param log_lines: lines of each stdout/stderr file copied into the task log (0: none).

    Returns (XCom ``return_value``) a manifest: ``job_id``, ``method_id``, ``status``, ``message``,
    ``created``, ``started``, ``finished``, ``duration_seconds``, ``archive``, ``manifest`` (the URI of
    ``manifest.json``, the full listing), ``files`` (the first 100: ``path``, ``uri``, ``size`` each),
    ``file_count``, ``refused`` (the first 100), ``refused_count``, ``withheld`` and ``execution_url``;
    each key is also its own XCom (``multiple_outputs``), so ``op.output["files"]`` works.
    """

    template_fields: Sequence[str] = ("method_id", "inputs", "outputs", "output_path", "ccp_conn_id")
    template_fields_renderers = {"inputs": "json", "outputs": "json"}
    operator_extra_links = (CCPExecutionLink(),)
    ui_color = "#cfe8f7"

    def __init__(
        self,
        *,
        method_id: str,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, Any] | None = None,
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
        self.job_id: str | None = None
        #: Whether on_kill should dismiss ``job_id``: not once the job is known to have ended.
        self._job_may_run = False
        self._description: tuple[str, dict[str, Any]] | None = None

    @cached_property
    def hook(self) -> CCPHook:
        return CCPHook(ccp_conn_id=self.ccp_conn_id)

    def _method_description(self) -> dict[str, Any]:
        """Read once per process: rendering (to mask secrets) and ``execute`` both need it."""
        if self._description is None or self._description[0] != self.method_id:
            self._description = (self.method_id, self.hook.get_method(self.method_id))
        return self._description[1]

    # ------------------------------------------------------------------ rendering

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Render, then mask the values of secret inputs before Airflow serializes the rendered fields.

        Airflow sends them to the API server (Rendered Templates) right after rendering, before
        ``execute`` runs, and renders again when a deferred task resumes. This method, unlike
        ``render_template_fields``, is also what a mapped (``expand``) task renders through.
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self and self.inputs:
            self._mask_secret_inputs()

    def _mask_secret_inputs(self) -> None:
        if not isinstance(self.inputs, Mapping):
            return  # execute() refuses it with a clear error, before anything is sent
        try:
            self.inputs = mask_secret_inputs(self._method_description(), self.inputs)
        except Exception as err:  # rendering must not fail: execute() reads the description again
            self.log.warning(
                "Could not read Method %s to mask its secret inputs in the rendered fields: %s", self.method_id, err
            )

    # ------------------------------------------------------------------ execute

    def execute(self, context: Context) -> Any:
        given = self.inputs if self.inputs is not None else {}
        check_mapping(self.method_id, given)  # before any request
        description = self._method_description()
        inputs = prepare_inputs(self.method_id, description, given)
        fingerprint = request_fingerprint(self.method_id, public_inputs(description, inputs))
        job = self._reattach(context, fingerprint) or self._submit(context, description, inputs, fingerprint)
        if not self.wait_for_completion:
            self._forget(context)  # no retry to save: clearing the task later must submit again
            return job.job_id
        if job.terminal:
            return self.execute_complete(context, terminal_event(job))
        end_time = self._end_time()
        if self.deferrable:
            self._defer(job.job_id, end_time)
        return self.execute_complete(context, self._poll(job.job_id, end_time))

    def _reattach(self, context: Context, fingerprint: str) -> StatusInfo | None:
        """The job an earlier try submitted for the same request, when it is still running or has succeeded.

        Needs Airflow >= 3.3's ``task_state_store``; older Airflow clears a task's XComs when a new
        try starts, so there every try submits its own execution (docs/operators.md).
        """
        previous, previous_fingerprint = stored_job(context)
        if previous is None:
            return None
        if previous_fingerprint not in (None, fingerprint):
            self.log.warning(
                "CCP job %s of an earlier try ran another Method or other inputs: submitting a new execution", previous
            )
            return None
        try:
            info = self.hook.get_job(previous)
        except CCPNotFoundError:
            self.log.warning("CCP job %s of an earlier try no longer exists: submitting a new execution", previous)
            return None
        if info.failed:
            self.log.warning("CCP job %s of an earlier try ended %s: submitting a new execution", previous, info.status)
            return None
        self.log.info("Reattaching to CCP job %s (%s), submitted by an earlier try", info.job_id, info.status)
        self._track(info.job_id, running=not info.terminal)
        self._push(context, info.job_id)
        return info

    def _submit(
        self, context: Context, description: Mapping[str, Any], inputs: Mapping[str, str], fingerprint: str
    ) -> StatusInfo:
        outputs = self.outputs if self.outputs is not None else default_outputs(description)
        answer = self.hook.submit_execution(self.method_id, inputs, outputs)
        job_id = str(answer["jobID"])
        # Cheapest and surest first: the log, then the store a retry reattaches from, then XComs.
        self._track(job_id, running=True)
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_KEY, {"job_id": job_id, "fingerprint": fingerprint})
        self._push(context, job_id)
        return self._first_status(job_id, answer)

    def _first_status(self, job_id: str, answer: Mapping[str, Any]) -> StatusInfo:
        """The status in the submission's answer: a GET right then could fail a try whose job runs fine."""
        with suppress(CCPProtocolError):
            info = StatusInfo.from_json(answer)
            if info.status:
                return info
        self.log.info("The answer to the submission of CCP job %s holds no status: asking for it", job_id)
        return self.hook.get_job(job_id)

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
        )
        timeout = None if end_time is None else timedelta(seconds=end_time - time.time()) + DEFER_TIMEOUT_GRACE
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def _poll(self, job_id: str, end_time: float | None) -> dict[str, Any]:
        """The trigger's loop, run on the worker: same rules, same event."""
        watch = JobWatch(job_id, float(self.poll_interval), end_time, self.log)
        while True:
            try:
                event = watch.on_status(self.hook.get_job(job_id))
            except CCPError as err:
                event = watch.on_error(err)
            if event is not None:
                return event
            time.sleep(watch.next_delay())

    # ------------------------------------------------------------------ completion (deferred or not)

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
        ti = context["ti"]
        target = task_output_path(self.output_path, ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
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
        times = info.to_dict()
        return {
            "job_id": job_id,
            "method_id": self.method_id,
            "status": info.status,
            "message": info.message,
            "created": times["created"],
            "started": times["started"],
            "finished": times["finished"],
            "duration_seconds": times["duration_seconds"],
            **stored.for_xcom(),
            "execution_url": self._job_url(job_id),
        }

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


def stored_job(context: Context) -> tuple[str | None, str | None]:
    """(job id, fingerprint) an earlier try stored; a plain id is what earlier versions stored."""
    store = context.get("task_state_store")
    value = store.get(STATE_KEY) if store is not None else None
    if isinstance(value, str):
        return value or None, None
    if isinstance(value, Mapping) and value.get("job_id"):
        fingerprint = value.get("fingerprint")
        return str(value["job_id"]), str(fingerprint) if fingerprint else None
    return None, None
