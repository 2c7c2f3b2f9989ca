"""``CCPJobSensor``: wait for a CCP execution that something else submitted (another task, DAG or person)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.exceptions import CCPJobFailedError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger
from airflow_provider_ccp.version_compat import AirflowSensorTimeout, BaseSensorOperator, PokeReturnValue, conf
from airflow_provider_ccp.waiting import EventStatus, JobWatch, event_error, validate_event

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

__all__ = ["CCPJobSensor"]


class CCPJobSensor(BaseSensorOperator):
    """Succeeds when the CCP job is ``successful``; fails at once when it ended in a failure status.

    Returns (XCom ``return_value``) the job's status: ``job_id``, ``status``, ``message``, timestamps.
    It never dismisses the job: the sensor only watches an execution it does not own.

    :param job_id: the CCP job (execution) id, e.g. ``submit.output["job_id"]`` of a
        ``CCPExecuteMethodOperator`` with ``wait_for_completion=False``. Templated.
    :param ccp_conn_id: the ``ccp`` connection. Templated.
    :param deferrable: wait in the triggerer (polling every ``poke_interval`` seconds until ``timeout``).
    :param ccp_retry_limit: retries of one request to CCP (the hooks' retry policy, docs/connection.md).
    :param ccp_retry_delay: seconds before the first of those retries, doubled for each next one.
    """

    template_fields: Sequence[str] = ("job_id", "ccp_conn_id")

    def __init__(
        self,
        *,
        job_id: str,
        ccp_conn_id: str = CCPHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        ccp_retry_limit: int = DEFAULT_RETRY.limit,
        ccp_retry_delay: float = DEFAULT_RETRY.delay,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Airflow's own check lets NaN, infinity and a poke every millisecond through.
        check_poll_interval(self.poke_interval, "poke_interval")
        check_number("timeout", self.timeout, minimum=0, seconds=True)
        check_number("ccp_retry_limit", ccp_retry_limit, minimum=0, whole=True)
        check_number("ccp_retry_delay", ccp_retry_delay, minimum=0, seconds=True)
        self.job_id = job_id
        self.ccp_conn_id = ccp_conn_id
        self.deferrable = deferrable
        self.retry = RetryPolicy(limit=ccp_retry_limit, delay=ccp_retry_delay)

    @cached_property
    def hook(self) -> CCPHook:
        return CCPHook(self.ccp_conn_id, retry=self.retry)

    @cached_property
    def _watch(self) -> JobWatch:
        return JobWatch(str(self.job_id), float(self.poke_interval), None, self.log, clock=self.hook.clock)

    def poke(self, context: Context) -> PokeReturnValue:
        info = self.hook.get_job(self.job_id)
        # The operator's waiting rules: a new status logged once, an unknown status word warned about once.
        event = self._watch.on_status(info)
        if event is not None:
            self._raise_unless_successful(event)
        return PokeReturnValue(is_done=event is not None, xcom_value=None if event is None else info.to_dict())

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        end_time = self.hook.clock.time() + float(self.timeout)
        trigger = CCPJobTrigger.deferring(
            self.hook, self.job_id, end_time, poll_interval=self.poke_interval, cancel_on_kill=False
        )
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = validate_event(event)
        self._raise_unless_successful(event)
        return self.hook.get_job(str(event["job_id"])).to_dict()

    def _raise_unless_successful(self, event: dict[str, Any]) -> None:
        status, job_id, message = event["status"], event["job_id"], event["message"]
        if status == EventStatus.FAILED:
            raise CCPJobFailedError(f"CCP job {job_id} ended {event['job_status']}: {message}", job_id=job_id)
        if status == EventStatus.TIMEOUT:
            raise AirflowSensorTimeout(message)
        if status == EventStatus.ERROR:
            raise event_error(event, job_id=job_id)
