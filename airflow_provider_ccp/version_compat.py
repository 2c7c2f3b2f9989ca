"""Every difference between the Airflow lines the provider supports (3.1 to 3.3), in one place: modules import
Airflow names that moved between lines from here, and branch on the flags below, as Airflow's own providers do.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    PokeReturnValue,
    XCom,
    conf,
)
from airflow.triggers.base import StartTriggerArgs

if TYPE_CHECKING:
    from collections.abc import Iterable

    import jinja2
    from airflow.sdk import Connection
    from airflow.sdk.definitions.context import Context


def get_base_airflow_version_tuple() -> tuple[int, int, int]:
    from airflow import __version__
    from packaging.version import Version

    version = Version(__version__)
    return version.major, version.minor, version.micro


AIRFLOW_V_3_3_PLUS: bool = get_base_airflow_version_tuple() >= (3, 3, 0)

#: The first Airflow with ``task_state_store``, which lets a retry reattach to the execution of an
#: earlier try (docs/operators.md, "Retries").
REATTACH_SINCE = (3, 3)
#: The first Airflow whose event triggers get a state store per watched asset (``asset_state_store``),
#: where ``CCPExecutionEventTrigger`` keeps its record of reported executions across triggerer restarts,
#: and share one poll between sibling watchers (``shared_stream_key``).
WATCHER_STATE_SINCE = (3, 3)
#: The first Airflow known to keep trigger arguments out of its REST API (apache/airflow#67868, checked in
#: 3.3.2; earlier 3.3 releases are treated as older ones). Before it, ``GET .../taskInstances/...`` shows a
#: deferred task's trigger arguments in clear, so a trigger must not carry secret input values there.
TRIGGER_KWARGS_HIDDEN_SINCE = (3, 3, 2)


def trigger_kwargs_hidden() -> bool:
    return get_base_airflow_version_tuple() >= TRIGGER_KWARGS_HIDDEN_SINCE


def watchers_keep_state() -> bool:
    return get_base_airflow_version_tuple() >= WATCHER_STATE_SINCE


def watcher_state_store(trigger: Any) -> Any | None:
    """The asset state store the triggerer gave an event trigger (Airflow >= 3.3), else None."""
    return trigger.asset_state_store if watchers_keep_state() else None


def trigger_runs_inline() -> bool:
    """Whether this trigger runs inside the task's own process, as ``dag.test()`` (``airflow dags test``)
    runs it: there the task resumes from the trigger's event directly, with no scheduler to race with
    (the race ``min_defer_seconds`` guards against, docs/operators.md). Airflow has no public way to
    tell; its in-process supervisor's comms class (3.1 to 3.3) is the sign. Not known: not inline."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


def mask_secret(secret: str) -> None:
    from airflow.sdk.log import mask_secret as sdk_mask_secret

    sdk_mask_secret(secret)


async def amask_secret(secret: str) -> None:
    """Register a secret from the event loop: 3.3 tells the supervisor without blocking the loop; before
    3.3 there is only the sync call, which would block the triggerer, so only the local masker learns it."""
    if AIRFLOW_V_3_3_PLUS:
        from airflow.sdk.log import amask_secret as sdk_amask_secret

        await sdk_amask_secret(secret)
    else:
        _local_masker().add_mask(secret)


def _local_masker() -> Any:
    # The masker airflow.sdk.log registers with on every line from 3.1 to 3.3.
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    return _secrets_masker()


def is_masked(secret: str) -> bool:
    """Whether this process's masker hides ``secret`` already."""
    return re.escape(secret) in _local_masker().patterns


def forget_secrets(secrets: Iterable[str]) -> None:
    """Take ``secrets`` back from this process's masker, setting its public ``patterns`` and ``replacer`` the way
    ``add_mask`` does: Airflow has no call for it (3.1 to 3.3), and no message takes one back from a supervisor."""
    masker = _local_masker()
    masker.patterns.difference_update(re.escape(secret) for secret in secrets)
    masker.replacer = re.compile("|".join(masker.patterns)) if masker.patterns else None


class RenderedFieldsOperator(BaseOperator):
    """A ``BaseOperator`` whose ``after_rendering()`` runs once its templates are rendered, before Airflow sends
    the rendered fields to the API server and before ``execute``. Airflow has no public hook there: a mapped task
    renders through the private ``_do_render_template_fields``, not the public ``render_template_fields``, on every
    line from 3.1 to 3.3 (tests/integration/operators/test_ccp.py renders plain and mapped tasks on each line)."""

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            self.after_rendering()

    def after_rendering(self) -> None:
        """Runs after each rendering of this task's own template fields (not of nested objects)."""


async def read_async_connection(conn_id: str, hook: Any) -> tuple[Connection, dict[str, Any]]:
    """A connection and its extras, read without blocking the event loop (each line has its own way)."""
    from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

    conn = await get_async_connection(conn_id, hook=hook)
    return conn, dict(await get_async_extra_dejson(conn))


__all__ = [
    "AIRFLOW_V_3_3_PLUS",
    "REATTACH_SINCE",
    "WATCHER_STATE_SINCE",
    "trigger_kwargs_hidden",
    "trigger_runs_inline",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "PokeReturnValue",
    "RenderedFieldsOperator",
    "StartTriggerArgs",
    "XCom",
    "amask_secret",
    "conf",
    "forget_secrets",
    "is_masked",
    "get_base_airflow_version_tuple",
    "mask_secret",
    "read_async_connection",
    "watcher_state_store",
    "watchers_keep_state",
]
