"""The closed sets the provider owns are ``str`` enums whose values are the strings stored before them.

Connections keep their extras, the metadata database keeps trigger events and DAG files keep their
arguments as plain strings: each must still read as its member, and what the provider writes must
still be the plain string.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_ccp.connection import CCPConnectionSettings, ServerKind
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.get_provider_info import get_provider_info
from airflow_provider_ccp.hooks.ccp import OutputsKind
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.protocol import StatusInfo
from airflow_provider_ccp.submission import OnAmbiguousSubmit
from airflow_provider_ccp.waiting import EventStatus, job_event, terminal_event, validate_event


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (EventStatus, {"success", "failed", "timeout", "error"}),
        (ServerKind, {"auto", "ccp", "ogc"}),
        (OutputsKind, {"zip", "json"}),
        (OnAmbiguousSubmit, {"fail", "resubmit"}),
    ],
)
def test_the_values_are_the_strings_stored_before(enum, values):
    assert {member.value for member in enum} == values
    assert all(enum(value) == value and str(enum(value)) == value for value in values)


def test_events_carry_plain_strings_and_old_events_still_read():
    for event in (
        job_event(EventStatus.TIMEOUT, "j1", "running", "late"),
        terminal_event(StatusInfo.from_json({"jobID": "j1", "status": "successful"})),
    ):
        assert type(event["status"]) is str
        assert json.loads(json.dumps(event)) == event
    stored = {"status": "failed", "job_id": "j1", "job_status": "failed", "message": "boom"}
    assert validate_event(stored)["status"] == EventStatus.FAILED


@pytest.mark.parametrize("stored", ["ogc", " OGC ", ServerKind.OGC])
def test_a_stored_server_extra_reads_as_its_member(stored):
    settings = CCPConnectionSettings.from_fields(
        host="https://ccp.example.org", login=None, password=None, extra={"auth_flow": "none", "server": stored}
    )
    assert settings.server is ServerKind.OGC


def test_an_unknown_server_extra_names_the_valid_ones():
    with pytest.raises(CCPError, match=r"'pygeoapi'; expected one of auto, ccp, ogc$"):
        CCPConnectionSettings.from_fields(
            host="https://ccp.example.org", login=None, password=None, extra={"server": "pygeoapi"}
        )


def test_the_connection_form_offers_the_plain_values():
    form = get_provider_info()["connection-types"][0]["conn-fields"]["server"]["schema"]
    assert json.dumps(form["enum"]) == '["auto", "ccp", "ogc"]'
    assert json.dumps(form["default"]) == '"auto"'


@pytest.mark.parametrize("given", ["resubmit", OnAmbiguousSubmit.RESUBMIT])
def test_a_dag_may_pass_on_ambiguous_submit_as_a_string(given):
    task = CCPExecuteMethodOperator(task_id="t", method_id="m", on_ambiguous_submit=given)
    assert task.on_ambiguous_submit is OnAmbiguousSubmit.RESUBMIT


def test_an_unknown_on_ambiguous_submit_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"one of \('fail', 'resubmit'\), got 'retry'"):
        CCPExecuteMethodOperator(task_id="t", method_id="m", on_ambiguous_submit="retry")
