"""``CCPExecutionLink``: the "CCP execution" button of a task, opening the execution in CCP's web UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XComs the operator pushes right after submitting, before it waits or defers.
XCOM_JOB_ID = "ccp_job_id"
XCOM_JOB_URL = "ccp_job_url"


class CCPExecutionLink(BaseOperatorLink):
    """Reads the ``ccp_job_url`` XCom; an empty link (never an error) until the job is submitted.

    Airflow evaluates links when a try ends, deferral included, so the button works while the
    task waits in the triggerer.
    """

    name = "CCP execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(ti_key=ti_key, key=XCOM_JOB_URL)
        return str(url) if url else ""
