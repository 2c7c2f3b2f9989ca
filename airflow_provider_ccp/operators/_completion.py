"""The end of a try, deferred or not: the job's final status, where its outputs go, what the task log says about them
or about a failed execution, and the asset events that point at them. The operator's ``execute_complete`` decides how
a try ends and keeps the task's state; these take what they need."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_ccp.archives import read_tails
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.hooks.ccp import OutputsKind
from airflow_provider_ccp.outputs import local_outputs_warning, task_output_path
from airflow_provider_ccp.protocol import StatusInfo

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.definitions.context import Context

    from airflow_provider_ccp.hooks.ccp import CCPHook
    from airflow_provider_ccp.outputs import StoredOutputs

#: Output files named one per line in the task log; a huge archive gets a count for the rest.
LOGGED_FILES = 20


def final_status(hook: CCPHook, job_id: str, log: Any) -> StatusInfo:
    """The job's statusInfo, with the times CCP's jobStatus leaves out (``finished``) taken from
    the execution record when it has them. The record's shape is undocumented: best effort."""
    info = hook.get_job(job_id)
    try:
        record = hook.get_execution(job_id)
    except CCPError as err:
        log.warning("Could not read the execution record of CCP job %s: %s", job_id, err)
        return info
    times = {key: record[key] for key in ("created", "started", "finished") if record.get(key)}
    return StatusInfo.from_json(times | {key: value for key, value in info.raw.items() if value})


def output_target(context: Context, output_path: str | None, executor: str | None, log: Any) -> ObjectStoragePath:
    """The task's outputs folder under ``output_path``, with a warning when other machines cannot read it."""
    ti = context["ti"]
    if warning := local_outputs_warning(output_path, executor):
        log.warning(warning)
    return task_output_path(output_path, ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


def log_outputs(stored: StoredOutputs, target: ObjectStoragePath, job_id: str, log: Any) -> None:
    """The stdout/stderr tails, then the files stored under ``target``: the first ``LOGGED_FILES`` by name."""
    _log_tails(stored.tails, log, logging.INFO)
    log.info("CCP job %s: %d file(s) under %s", job_id, len(stored.files), target)
    for item in stored.files[:LOGGED_FILES]:
        log.info("  %s (%s bytes)", item["path"], item["size"])
    if len(stored.files) > LOGGED_FILES:
        log.info("  ... and %d more (the manifest lists them all)", len(stored.files) - LOGGED_FILES)


def emit_asset_events(outlets: Iterable[Any], context: Context, manifest: Mapping[str, Any]) -> None:
    """Say which execution changed each outlet Asset, so that a DAG scheduled on it can find the files."""
    extra = {
        "ccp_job_id": manifest["job_id"],
        "ccp_method_id": manifest["method_id"],
        "execution_url": manifest["execution_url"],
        "files": [item["uri"] for item in manifest["files"] if item.get("uri")],
    }
    for outlet in outlets:
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra.update(extra)


def report_failure(hook: CCPHook, job_id: str, event: Mapping[str, Any], log_lines: int, log: Any) -> None:
    """Put CCP's message and the stderr/stdout tails in the task log (best effort) before failing."""
    log.error("CCP job %s ended %s: %s", job_id, event["job_status"], event["message"])
    if not log_lines:
        return
    try:
        tails = fetch_tails(hook, job_id, log_lines)
    except Exception as err:  # whatever goes wrong here, the task must fail with CCPJobFailedError
        log.warning("Could not fetch the logs of CCP job %s: %s", job_id, err)
        return
    _log_tails(tails, log, logging.ERROR)


def fetch_tails(hook: CCPHook, job_id: str, lines: int) -> dict[str, list[str]]:
    """The stdout/stderr tails of a job, from a throw-away download of its outputs."""
    with tempfile.TemporaryDirectory(prefix="ccp-logs-") as folder:
        downloaded = hook.download_outputs(job_id, folder)
        return read_tails(downloaded.path, lines) if downloaded.kind == OutputsKind.ZIP else {}


def _log_tails(tails: dict[str, list[str]], log: Any, level: int) -> None:
    for name, lines in tails.items():
        if lines:  # one block per non-empty file
            log.log(level, "----- last %d line(s) of %s -----\n%s", len(lines), name, "\n".join(lines))
