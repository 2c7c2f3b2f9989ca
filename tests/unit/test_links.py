"""CCPExecutionLink: built from the execution_url XCom, never an error when it is missing."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from airflow_provider_ccp import links
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.get_provider_info import get_provider_info
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from airflow_provider_ccp.links import CCPExecutionLink
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator


@pytest.fixture
def xcom(monkeypatch: pytest.MonkeyPatch) -> dict:
    stored: dict = {}
    monkeypatch.setattr(links.XCom, "get_value", lambda *, ti_key, key: stored.get(key))
    return stored


def test_link_reads_the_execution_url_xcom(xcom):
    xcom["execution_url"] = "https://ccp.example/ui/executions/j-1"

    assert CCPExecutionLink().get_link(MagicMock(), ti_key=MagicMock()) == "https://ccp.example/ui/executions/j-1"


def test_link_of_a_task_run_by_an_earlier_version_still_works(xcom):
    xcom["ccp_job_url"] = "https://ccp.example/ui/executions/j-0"

    assert CCPExecutionLink().get_link(MagicMock(), ti_key=MagicMock()) == "https://ccp.example/ui/executions/j-0"


def test_link_is_empty_before_the_job_exists(xcom):
    assert CCPExecutionLink().get_link(MagicMock(), ti_key=MagicMock()) == ""


def test_link_is_named_and_registered():
    assert CCPExecutionLink.name == "CCP execution"
    assert "airflow_provider_ccp.links.CCPExecutionLink" in get_provider_info()["extra-links"]
    assert any(isinstance(link, CCPExecutionLink) for link in CCPExecuteMethodOperator.operator_extra_links)


@pytest.mark.parametrize(
    ("ui_url", "expected"),
    [
        (None, "https://ccp.example.org/ogc/jobs/j%2F1"),
        ("https://ui.example.org/", "https://ui.example.org/executions/j%2F1"),
    ],
)
async def test_both_hooks_build_the_link_one_way(ui_url, expected):
    # CCP's UI when the connection names one, else the job's statusInfo URL; an id stays one segment.
    settings = CCPConnectionSettings.from_fields(
        host="https://ccp.example.org/ogc", login=None, password=None, extra={"auth_flow": "none", "ui_url": ui_url}
    )
    assert links.execution_link(settings, "j/1") == expected
    assert CCPHook(settings=settings).execution_link("j/1") == expected
    assert await CCPAsyncHook(settings=settings).execution_link("j/1") == expected
