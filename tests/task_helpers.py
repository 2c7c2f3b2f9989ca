"""Helpers for running the provider's operator, sensor and trigger without a metadata DB or a triggerer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from unittest.mock import MagicMock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.protocol import StatusInfo


class DictStore:
    """Stands in for Airflow 3.3's ``task_state_store``: survives between tries of one task instance."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def make_context(store: DictStore | None = None, *, map_index: int = -1, task_id: str = "count") -> dict[str, Any]:
    """What a worker passes to ``execute``: a task instance (mocked, it records XCom pushes) and the store."""
    ti = MagicMock(dag_id="ccp_tests", run_id="manual__2025-01-01T00:00:00+00:00", task_id=task_id, map_index=map_index)
    context: dict[str, Any] = {"ti": ti}
    if store is not None:
        context["task_state_store"] = store
    return context


def pushed(context: dict[str, Any]) -> dict[str, Any]:
    """The XComs the task pushed, by key."""
    return {call.kwargs["key"]: call.kwargs["value"] for call in context["ti"].xcom_push.call_args_list}


async def first_event(trigger: Any) -> dict[str, Any]:
    """What the triggerer hands back to the task: the payload of the trigger's first event."""
    events = trigger.run()
    try:
        event = await anext(events)
    finally:
        await events.aclose()
    return dict(event.payload)


def run_deferrable(task: Any, context: dict[str, Any]) -> Any:
    """execute(), then as long as it defers: run the trigger to its first event and resume the task.

    The provider's own small version of apache/airflow's test utility of the same name.
    """
    try:
        return task.execute(context)
    except TaskDeferred as deferred:
        step = deferred
    while True:
        event = asyncio.run(first_event(step.trigger))
        try:
            return getattr(task, step.method_name)(context, event=event, **(step.kwargs or {}))
        except TaskDeferred as deferred:
            step = deferred


def finished_job(method_id: str, inputs: dict[str, Any], conn_id: str = "ccp_default") -> StatusInfo:
    """Run an execution to its end with the hook, the way another DAG or a person would have."""
    hook = CCPHook(ccp_conn_id=conn_id)
    answer = hook.submit_execution(method_id, {"ccpimage": "bash", **inputs})
    return hook.wait_for_job(answer.job_id, poll_interval=0.05, timeout=30)


@pytest.fixture
def task_log(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Everything logged so far: Airflow's task loggers print through structlog, stdlib loggers go to caplog."""
    seen: list[str] = []

    def read() -> str:
        out, err = capfd.readouterr()
        seen.extend((out, err))
        return "".join(seen) + caplog.text

    caplog.set_level(logging.INFO)
    return read
