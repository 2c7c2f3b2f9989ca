"""``CCPExecutionLink``: the "CCP execution" button of a task, opening the execution in CCP's web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_ccp import protocol
from airflow_provider_ccp.version_compat import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

    from airflow_provider_ccp.connection import CCPConnectionSettings

__all__ = ["CCPExecutionLink", "execution_link", "XCOM_JOB_ID", "XCOM_JOB_URL", "LEGACY_XCOM_JOB_URL"]

#: XComs the operator pushes right after submitting, before it waits or defers. They carry the manifest's own key
#: names, so the manifest's keys (``multiple_outputs``) rewrite them instead of adding a second copy under another name.
XCOM_JOB_ID = "job_id"
XCOM_JOB_URL = "execution_url"
#: What versions up to 0.1.0 pushed: the link of a task they ran still works.
LEGACY_XCOM_JOB_URL = "ccp_job_url"


def execution_link(settings: CCPConnectionSettings, job_id: str) -> str:
    """Where a person looks at the execution: its page in CCP's web UI when the connection names one,
    else its statusInfo URL. The one place the link is built: both hooks' ``execution_link`` read it."""
    if settings.ui_url:
        return protocol.api_url(settings.ui_url, "executions", protocol.job_segment(job_id))
    return protocol.job_url(settings.base_url, job_id)


class CCPExecutionLink(BaseOperatorLink):
    """Reads the ``execution_url`` XCom; an empty link (never an error) until the job is submitted. Airflow evaluates
    links when a try ends, deferral included, so the button works while the task waits in the triggerer."""

    name = "CCP execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_URL) or XCom.get_value(ti_key=ti_key, key=LEGACY_XCOM_JOB_URL)
        return str(url) if url else ""
