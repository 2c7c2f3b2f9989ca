"""ccp_on_executions: a pipeline that runs once for each successful execution of a CCP Method,
whoever started it (CCP's web UI, a notebook, Galaxy, another Airflow).

The Asset ``ccp_make_files_executions`` is watched by a ``CCPExecutionEventTrigger``: the triggerer
lists the ``make-files`` Method's jobs every ``poll_interval`` seconds and, for each execution that
ends successfully after the watcher started, emits an asset event whose ``extra["payload"]`` holds
the job id, the Method, the status and the execution's link. This DAG is scheduled on the Asset:
each event starts a run, which downloads that execution's outputs with the hook and reports what
they hold. Airflow >= 3.3 keeps the watcher's place across triggerer restarts (docs/operators.md,
"Asset events").

Needs the connection ``ccp_default`` (``make airflow`` points it at the sandbox).
"""

from __future__ import annotations

import tempfile
import zipfile
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.triggers.ccp import CCPExecutionEventTrigger

EXECUTIONS = Asset(
    "ccp_make_files_executions",
    watchers=[
        AssetWatcher(
            name="ccp_make_files_watcher",
            trigger=CCPExecutionEventTrigger(ccp_conn_id="ccp_default", method_id="make-files", poll_interval=5),
        )
    ],
)

with DAG(
    dag_id="ccp_on_executions",
    description="Report the outputs of every successful make-files execution on CCP",
    schedule=[EXECUTIONS],
    catchup=False,
    tags=["ccp", "example"],
) as dag:

    @task
    def report_outputs(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        reports = []
        for event in triggering_asset_events[EXECUTIONS]:
            execution = event.extra["payload"]
            with tempfile.TemporaryDirectory() as folder:
                downloaded = CCPHook().download_outputs(execution["job_id"], folder)
                with zipfile.ZipFile(downloaded.path) as archive:
                    files = [info for info in archive.infolist() if not info.is_dir()]
            print(f"CCP job {execution['job_id']} ({execution['execution_url']}): {len(files)} file(s)")
            reports.append(
                {
                    "job_id": execution["job_id"],
                    "files": len(files),
                    "bytes": sum(info.file_size for info in files),
                }
            )
        return reports

    report_outputs()
