"""Inputs sent with the types a plain OGC API - Processes server declares, strings for CCP.

The server is real HTTP on loopback (pytest-httpserver) behaving like pygeoapi: it declares typed
inputs and answers 400 "size must be an integer" to a string.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_ccp import operations
from airflow_provider_ccp.exceptions import CCPError, CCPInputError
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from tests.integration.doubles import status_body
from tests.task_helpers import make_context

SCHEMAS: dict[str, dict[str, Any]] = {
    "size": {"type": "integer"},
    "ratio": {"type": "number"},
    "verbose": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "options": {"type": "object"},
    "name": {"type": "string"},
    "api_key": {"type": "integer", "format": "password"},
}
PROCESS = {
    "id": "echo",
    "version": "1.0",
    "inputs": {name: {"schema": schema, "minOccurs": 0} for name, schema in SCHEMAS.items()},
    "outputs": {"echo": {"schema": {"type": "object"}}},
}
#: What pygeoapi's JSON Schema check accepts for each declared type.
ACCEPTS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


class TypedOGCServer:
    """A plain OGC server: no CCP inputs, typed schemas, strings refused where they are not declared."""

    def __init__(self, httpserver: HTTPServer, description: dict[str, Any] = PROCESS) -> None:
        self.received: list[dict[str, Any]] = []
        self.description = description
        httpserver.expect_request(f"/processes/{description['id']}").respond_with_json(description)
        httpserver.expect_request(f"/processes/{description['id']}/execution", method="POST").respond_with_handler(
            self.execute
        )

    def execute(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.received.append(body)
        declared = self.description["inputs"]
        for name, value in body["inputs"].items():
            kind = declared[name]["schema"]["type"]
            if not ACCEPTS[kind](value):
                article = "an" if kind[0] in "aeiou" else "a"
                detail = {"type": "InvalidParameterValue", "detail": f"{name} must be {article} {kind}"}
                return Response(json.dumps(detail), 400, content_type="application/json")
        return Response(json.dumps(status_body("j1", "accepted")), 201, content_type="application/json")


@pytest.fixture
def open_conn(make_conn) -> str:
    return make_conn(auth_flow="none", login=None, secret="")


@pytest.fixture
def ogc(httpserver: HTTPServer) -> TypedOGCServer:
    return TypedOGCServer(httpserver)


# --------------------------------------------------------------------------- the hook, called directly


def test_the_hook_sends_an_integer_to_a_server_that_declares_one(open_conn, ogc):
    CCPHook(open_conn).submit_execution("echo", {"size": 4})

    assert ogc.received[-1]["inputs"] == {"size": 4}


def test_every_declared_type_is_sent_as_such_strings_included(open_conn, ogc):
    given = {
        "size": "4",
        "ratio": "0.5",
        "verbose": "true",
        "tags": ["a", "b"],
        "options": '{"depth": 2}',
        "name": 7,
    }

    CCPHook(open_conn).submit_execution("echo", given)

    assert ogc.received[-1]["inputs"] == {
        "size": 4,
        "ratio": 0.5,
        "verbose": True,
        "tags": ["a", "b"],
        "options": {"depth": 2},
        "name": "7",
    }


def test_the_server_does_refuse_strings(make_conn, ogc):
    """The fixture is what the typed encoding is for: forced to strings, it answers like pygeoapi."""
    conn = make_conn(auth_flow="none", login=None, secret="", server="ccp")

    with pytest.raises(CCPError, match="size must be an integer") as raised:
        CCPHook(conn).submit_execution("echo", {"size": 4})

    assert raised.value.http_status == 400
    assert ogc.received[-1]["inputs"] == {"size": "4"}


@pytest.mark.parametrize(
    ("given", "named", "expected"),
    [
        ({"size": "four"}, "'size'", "an integer"),
        ({"size": 4.5}, "'size'", "an integer"),
        ({"ratio": "nan"}, "'ratio'", "a number"),
        ({"verbose": "maybe"}, "'verbose'", "a boolean"),
        ({"tags": "a,b"}, "'tags'", "an array"),
        ({"options": "[1]"}, "'options'", "an object"),
    ],
)
def test_a_value_that_cannot_be_converted_is_one_line_naming_the_input_and_nothing_is_sent(
    open_conn, ogc, given, named, expected
):
    with pytest.raises(CCPInputError) as raised:
        CCPHook(open_conn).submit_execution("echo", given)

    message = str(raised.value)
    assert "\n" not in message
    assert named in message
    assert expected in message
    assert ogc.received == []


def test_a_secret_value_is_not_repeated_in_the_error(open_conn, ogc):
    with pytest.raises(CCPInputError) as raised:
        CCPHook(open_conn).submit_execution("echo", {"api_key": "hunter2-secret"})

    assert "'api_key'" in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)


def test_on_ccp_every_value_stays_a_string(open_conn, httpserver):
    ccp_method = {
        "id": "m1",
        "inputs": {"ccpimage": {"schema": {"type": "string"}}, "size": {"schema": SCHEMAS["size"]}},
    }
    server = TypedOGCServer(httpserver, ccp_method)
    hook = CCPHook(open_conn)

    # Told by a CCP input among the inputs, then by the Method's description.
    with pytest.raises(CCPError, match="size must be an integer"):
        hook.submit_execution("m1", {"ccpimage": "bash", "size": 4})
    with pytest.raises(CCPError, match="size must be an integer"):
        hook.submit_execution("m1", {"size": 4})

    assert [body["inputs"]["size"] for body in server.received] == ["4", "4"]


def test_server_ogc_types_inputs_even_next_to_ccp_named_ones(make_conn, httpserver):
    described = {
        "id": "m1",
        "inputs": {"ccpnote": {"schema": {"type": "string"}}, "size": {"schema": {"type": "integer"}}},
    }
    server = TypedOGCServer(httpserver, described)

    CCPHook(make_conn(auth_flow="none", login=None, secret="", server="ogc")).submit_execution(
        "m1", {"ccpnote": "n", "size": "4"}
    )

    assert server.received[-1]["inputs"] == {"ccpnote": "n", "size": 4}


def test_an_unknown_server_kind_is_refused(make_conn):
    conn = make_conn(auth_flow="none", login=None, secret="", server="pygeoapi")

    with pytest.raises(CCPError, match=r"extra 'server' is 'pygeoapi'; expected one of auto, ccp, ogc"):
        CCPHook(conn).submit_execution("echo", {"size": 4})


# --------------------------------------------------------------------------- the operator


def test_the_operator_sends_rendered_strings_as_the_declared_types(open_conn, ogc, tmp_path):
    task = CCPExecuteMethodOperator(
        task_id="t",
        method_id="echo",
        inputs={"size": "{{ params.size }}", "verbose": "{{ params.verbose }}"},
        ccp_conn_id=open_conn,
        wait_for_completion=False,
        output_path=str(tmp_path),
    )
    context = make_context() | {"params": {"size": 4, "verbose": False}}
    task.render_template_fields(context)

    assert task.execute(context) == "j1"

    assert ogc.received == [
        {"inputs": {"size": 4, "verbose": False}, "response": "raw", "outputs": {"echo": {"transmissionMode": "value"}}}
    ]


def test_the_operator_fails_in_one_line_before_sending_a_value_it_cannot_convert(open_conn, ogc, tmp_path):
    task = CCPExecuteMethodOperator(
        task_id="t", method_id="echo", inputs={"size": "big"}, ccp_conn_id=open_conn, output_path=str(tmp_path)
    )

    with pytest.raises(CCPInputError, match=r"'size': 'big' is not an integer"):
        task.execute(make_context())

    assert ogc.received == []


# --------------------------------------------------------------------------- the encoding itself


@pytest.mark.parametrize(
    ("schema", "value", "sent"),
    [
        ({"type": ["integer", "null"]}, "12", 12),
        ({"type": "integer"}, 3.0, 3),
        ({"type": "number"}, "7", 7),
        ({"type": "boolean"}, "No", False),
        ({"type": "array", "items": {"type": "integer"}}, '["1", 2]', [1, 2]),
        ({"type": "string"}, {"href": "https://x/y.tif"}, {"href": "https://x/y.tif"}),
        ({}, {"anything": 1}, {"anything": 1}),
    ],
)
def test_typed_values(schema, value, sent):
    description = {"inputs": {"x": {"schema": schema}}}
    assert operations.typed_inputs({"x": value}, description) == {"x": sent}


def test_a_multi_valued_input_types_each_item():
    description = {"inputs": [{"id": "n", "maxOccurs": "unbounded", "schema": {"type": "integer"}}]}
    assert operations.typed_inputs({"n": ["1", 2]}, description) == {"n": [1, 2]}


# --------------------------------------------------------------------------- value types (issue 19)


def test_the_operator_sends_dates_and_decimals_as_their_types_and_leaves_none_out(open_conn, ogc, tmp_path):
    task = CCPExecuteMethodOperator(
        task_id="t",
        method_id="echo",
        inputs={
            "size": Decimal("4"),
            "ratio": Decimal("0.25"),
            "name": pendulum.datetime(2025, 1, 2, tz="UTC"),  # native rendering of {{ logical_date }}
            "verbose": None,  # an emptied optional field of the Trigger form
        },
        ccp_conn_id=open_conn,
        wait_for_completion=False,
        output_path=str(tmp_path),
    )

    assert task.execute(make_context()) == "j1"

    assert ogc.received[-1]["inputs"] == {"size": 4, "ratio": 0.25, "name": "2025-01-02T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [({"name": b"x"}, "bytes"), ({"tags": {"a", "b"}}, "set"), ({"options": {"at": object()}}, "object")],
)
def test_the_operator_refuses_a_value_with_no_obvious_reading_finally_and_sends_nothing(
    open_conn, ogc, tmp_path, given, expected
):
    task = CCPExecuteMethodOperator(
        task_id="t", method_id="echo", inputs=given, ccp_conn_id=open_conn, output_path=str(tmp_path), retries=3
    )

    with pytest.raises(CCPInputError, match=rf"has a value of type {expected}; expected") as raised:
        task.execute(make_context())

    assert isinstance(raised.value, AirflowFailException)
    assert ogc.received == []
