"""Numbers that cannot work are refused when the operator, sensor or trigger is built (at DAG parsing)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from airflow_provider_ccp.arguments import MIN_POLL_INTERVAL, check_number
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.sensors.ccp import CCPJobSensor
from airflow_provider_ccp.triggers.ccp import CCPJobTrigger

NAN, INF = math.nan, math.inf

#: (argument, value, the accepted range the message must name)
OPERATOR_CASES = [
    ("poll_interval", NAN, "a number of seconds of at least 0.05"),
    ("poll_interval", INF, "a number of seconds of at least 0.05"),
    ("poll_interval", 0.001, "a number of seconds of at least 0.05"),
    ("poll_interval", 0, "a number of seconds of at least 0.05"),
    ("poll_interval", "30", "a number of seconds of at least 0.05"),
    ("poll_interval", True, "a number of seconds of at least 0.05"),
    ("timeout", NAN, r"a number of seconds more than 0, or None \(wait forever\)"),
    ("timeout", INF, r"a number of seconds more than 0, or None \(wait forever\)"),
    ("timeout", 0, r"a number of seconds more than 0, or None \(wait forever\)"),
    ("log_lines", 1.5, "a whole number of at least 0"),
    ("log_lines", -1, "a whole number of at least 0"),
    ("min_defer_seconds", NAN, "a number of seconds of at least 0"),
    ("min_defer_seconds", INF, "a number of seconds of at least 0"),
    ("ccp_retry_limit", NAN, "a whole number of at least 0"),
    ("ccp_retry_limit", 2.5, "a whole number of at least 0"),
    ("ccp_retry_limit", -1, "a whole number of at least 0"),
    ("ccp_retry_delay", INF, "a number of seconds of at least 0"),
    ("ccp_retry_delay", NAN, "a number of seconds of at least 0"),
    ("max_extract_bytes", INF, r"a number of at least 1, or None \(no limit\)"),
    ("max_extract_bytes", NAN, r"a number of at least 1, or None \(no limit\)"),
    ("max_extract_entries", 1.5, r"a whole number of at least 1, or None \(no limit\)"),
    ("max_extract_entries", 0, r"a whole number of at least 1, or None \(no limit\)"),
    ("max_compression_ratio", INF, r"a number more than 0, or None \(no limit\)"),
    ("max_compression_ratio", 0, r"a number more than 0, or None \(no limit\)"),
]


def operator(**arguments: Any) -> CCPExecuteMethodOperator:
    return CCPExecuteMethodOperator(task_id="t", method_id="word-count", **arguments)


@pytest.mark.parametrize(("argument", "value", "accepted"), OPERATOR_CASES)
def test_the_operator_refuses_a_number_that_cannot_work(argument: str, value: Any, accepted: str) -> None:
    with pytest.raises(ValueError, match=f"^{argument} must be {accepted}, got {re.escape(repr(value))}$"):
        operator(**{argument: value})


def test_the_operator_accepts_the_edges_of_each_range() -> None:
    op = operator(
        poll_interval=MIN_POLL_INTERVAL,
        timeout=None,
        log_lines=0,
        min_defer_seconds=0,
        ccp_retry_limit=0,
        ccp_retry_delay=0,
        max_extract_bytes=None,
        max_extract_entries=1,
        max_compression_ratio=None,
    )
    assert op.poll_interval == MIN_POLL_INTERVAL


def test_a_configured_min_defer_seconds_that_is_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CCP__MIN_DEFER_SECONDS", "nan")
    with pytest.raises(ValueError, match=r"^min_defer_seconds must be a number of seconds of at least 0, got nan$"):
        operator()


@pytest.mark.parametrize(
    ("argument", "value"),
    [("poke_interval", 0.001), ("poke_interval", 0.0), ("ccp_retry_limit", NAN), ("ccp_retry_delay", INF)],
)
def test_the_sensor_refuses_a_number_that_cannot_work(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument} must be .*, got {re.escape(repr(value))}$"):
        CCPJobSensor(task_id="s", job_id="j1", **{argument: value})


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("poll_interval", NAN),
        ("poll_interval", INF),
        ("poll_interval", 0.001),
        ("end_time", NAN),
        ("end_time", INF),
        ("not_before", NAN),
        ("since", NAN),
        ("since", -1.0),
        ("retry_limit", -1),
        ("retry_limit", 1.5),
        ("retry_delay", NAN),
    ],
)
def test_a_trigger_built_directly_refuses_a_number_that_cannot_work(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument} must be .*, got {re.escape(repr(value))}$"):
        CCPJobTrigger("ccp_default", "j1", **{argument: value})


@pytest.mark.parametrize(("argument", "value"), [("poll_interval", 0.001), ("timeout", NAN), ("timeout", INF)])
def test_wait_for_job_refuses_a_number_that_cannot_work_before_any_request(argument: str, value: Any) -> None:
    # The connection does not exist: reaching it would raise something else than this ValueError.
    hook = CCPHook(ccp_conn_id="no_such_connection")
    with pytest.raises(ValueError, match=f"^{argument} must be "):
        hook.wait_for_job("j1", **{argument: value})


def test_a_huge_whole_number_is_refused_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="must be a number of at least 1"):
        check_number("max_extract_bytes", 10**400, minimum=1)
