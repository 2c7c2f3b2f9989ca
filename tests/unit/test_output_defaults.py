"""``[ccp] output_path`` as the operator's default, and the warning when outputs stay on one worker's disk."""

from __future__ import annotations

import pytest

from airflow_provider_ccp import outputs
from airflow_provider_ccp.get_provider_info import get_provider_info
from airflow_provider_ccp.outputs import executor_name, local_outputs_warning, task_output_path
from tests.task_helpers import task_log

__all__ = ["task_log"]  # a fixture, used by name


@pytest.fixture(autouse=True)
def _no_deployment_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW__CCP__OUTPUT_PATH", raising=False)
    monkeypatch.delenv("AIRFLOW_IS_K8S_EXECUTOR_POD", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")


def test_the_configured_output_path_is_the_default_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CCP__OUTPUT_PATH", "s3://aws_default@bucket/ccp")

    assert outputs.default_output_root() == "s3://aws_default@bucket/ccp"
    assert str(task_output_path(None, "d", "r", "t", 4)) == "s3://aws_default@bucket/ccp/d/r/t/4"
    # The task's own output_path still wins.
    assert str(task_output_path("s3://other/x", "d", "r", "t", None)) == "s3://other/x/d/r/t"


def test_an_empty_output_path_means_airflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW__CCP__OUTPUT_PATH", "  ")

    assert outputs.default_output_root() == str(tmp_path / "ccp-outputs")


@pytest.mark.parametrize(
    ("configured", "task_executor", "expected"),
    [
        ("CeleryExecutor", None, "CeleryExecutor"),
        ("airflow.providers.celery.executors.celery_executor.CeleryExecutor", None, "CeleryExecutor"),
        ("LocalExecutor,KubernetesExecutor", None, "LocalExecutor"),
        ("LocalExecutor,KubernetesExecutor", "KubernetesExecutor", "KubernetesExecutor"),
        ("edge:airflow.providers.edge3.executors.EdgeExecutor", None, "EdgeExecutor"),
    ],
)
def test_executor_name(monkeypatch: pytest.MonkeyPatch, configured: str, task_executor: str | None, expected: str):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", configured)

    assert executor_name(task_executor) == expected


@pytest.mark.parametrize("executor", ["CeleryExecutor", "KubernetesExecutor", "EdgeExecutor"])
def test_local_default_on_a_remote_executor_warns(monkeypatch: pytest.MonkeyPatch, tmp_path, executor: str) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)

    warning = local_outputs_warning(None, None)

    assert warning is not None
    assert str(tmp_path / "ccp-outputs") in warning
    assert executor in warning
    assert "cannot read" in warning
    assert "[ccp] output_path" in warning
    assert "AIRFLOW__CCP__OUTPUT_PATH=s3://" in warning


def test_no_warning_when_outputs_are_shared_or_tasks_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert local_outputs_warning(None, None) is None  # LocalExecutor: one machine
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    assert local_outputs_warning("/mnt/shared/ccp", None) is None  # an explicit path may be a shared mount
    assert local_outputs_warning(None, "LocalExecutor") is None  # this task runs on the local executor
    monkeypatch.setenv("AIRFLOW__CCP__OUTPUT_PATH", "s3://aws_default@bucket/ccp")
    assert local_outputs_warning(None, None) is None


def test_a_kubernetes_executor_pod_warns_whatever_its_executor_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_IS_K8S_EXECUTOR_POD", "True")

    assert local_outputs_warning(None, None) is not None


def test_the_ccp_section_is_declared_to_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    option = get_provider_info()["config"]["ccp"]["options"]["output_path"]
    assert option["type"] == "string"
    assert option["default"] == ""
    # Airflow's provider discovery (the entry point) reads it: `airflow config list` shows [ccp].
    discovered = dict(ProvidersManager().provider_configs)["airflow-provider-ccp"]
    assert discovered["ccp"]["options"]["output_path"] == option
