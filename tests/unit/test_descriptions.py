"""One reading of a Method description: what is required, what takes several values, how values read.

The last tests hold the three readers (the operator's check, the generated form, the typed body)
to the same answers for the same description.
"""

from __future__ import annotations

import ast
import datetime as dt
from decimal import Decimal
from typing import Any

import jsonschema
import pendulum
import pytest

from airflow_provider_ccp import operations, protocol
from airflow_provider_ccp.descriptions import (
    MethodInput,
    input_value_to_string,
    is_ccp_description,
    json_value,
    method_inputs,
    output_ids,
)
from airflow_provider_ccp.exceptions import CCPInputError
from airflow_provider_ccp.inputs import prepare_inputs
from ccp_airflow.dag_template import _schema as param_schema

_ABSENT = object()


def read(spec: dict[str, Any], name: str = "x") -> MethodInput:
    return MethodInput.from_description(name, spec)


def occurs(min_occurs: Any = _ABSENT, max_occurs: Any = _ABSENT, **schema: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"schema": {"type": "string", **schema}}
    if min_occurs is not _ABSENT:
        spec["minOccurs"] = min_occurs
    if max_occurs is not _ABSENT:
        spec["maxOccurs"] = max_occurs
    return spec


# --------------------------------------------------------------------------- required and multiple


@pytest.mark.parametrize(
    ("spec", "required"),
    [
        (occurs(), True),  # OGC: minOccurs is 1 when left out
        (occurs(1), True),
        (occurs("2"), True),
        (occurs(0), False),
        (occurs(1, default="words"), False),  # a default stands in for a value (OGC)
        (occurs(0, default="words"), False),
        (occurs(1, default=None), True),  # a null default is no default
        (occurs(1, default=0), False),  # a falsy default is a default
        (occurs("junk"), True),
        (occurs(-1), False),
    ],
)
def test_required_means_at_least_one_occurrence_and_no_default(spec, required):
    assert read(spec).required is required


@pytest.mark.parametrize(
    ("max_occurs", "multiple"),
    [(_ABSENT, False), (1, False), ("1", False), (2, True), ("3", True), ("unbounded", True), ("junk", False)],
)
def test_multiple_means_unbounded_or_more_than_one(max_occurs, multiple):
    assert read(occurs(max_occurs=max_occurs)).multiple is multiple


@pytest.mark.parametrize(("format_", "secret"), [("secret", True), ("Password", True), ("url", False), (None, False)])
def test_secret_formats(format_, secret):
    assert read(occurs(format=format_)).secret is secret


def test_the_map_and_the_list_form_read_the_same():
    as_map = {"inputs": {"a": occurs(0), "b": occurs(max_occurs="unbounded")}, "outputs": {"r": {}}}
    as_list = {
        "inputs": [{"id": "a", **occurs(0)}, {"id": "b", **occurs(max_occurs="unbounded")}],
        "outputs": [{"id": "r"}],
    }
    assert method_inputs(as_map) == {name: read(spec | {}, name) for name, spec in as_map["inputs"].items()}
    assert [(i.id, i.required, i.multiple) for i in method_inputs(as_list).values()] == [
        ("a", False, False),
        ("b", True, True),
    ]
    assert output_ids(as_map) == output_ids(as_list) == ["r"]


@pytest.mark.parametrize("inputs", [None, "text", 3, [1, "x", {"no": "id"}]])
def test_a_malformed_inputs_member_reads_as_no_inputs(inputs):
    assert method_inputs({"inputs": inputs}) == {}
    assert not is_ccp_description({"inputs": inputs})


def test_ccp_count_inputs_read_as_whole_numbers_from_one():
    replicas = read({"minOccurs": 0, "schema": {"type": "string", "default": "1"}}, "ccpreplicas")
    assert (replicas.type, replicas.default, replicas.schema["minimum"]) == ("integer", "1", 1)
    # Anything else the Method says about them wins: an enum, a default that is not a number, another type.
    assert read({"schema": {"type": "string", "enum": ["1", "2"]}}, "ccpreplicas").type == "string"
    assert read({"schema": {"type": "string", "default": "many"}}, "ccpmaxtime").type == "string"
    assert read({"schema": {"type": "string"}}, "ccpnote").type == "string"


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("a", "a"),
        (True, "true"),
        (3, "3"),
        (Decimal("1.10"), "1.10"),
        (pendulum.datetime(2025, 1, 2, 3, 4, 5, tz="UTC"), "2025-01-02T03:04:05+00:00"),
        (dt.date(2025, 1, 2), "2025-01-02"),
        (dt.time(3, 4), "03:04:00"),
        (["a", 2, False], "a,2,false"),
        ({"k": dt.date(2025, 1, 2), "n": Decimal("2")}, '{"k": "2025-01-02", "n": 2}'),
    ],
)
def test_ccp_strings(value, sent):
    assert input_value_to_string("x", value) == sent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "a value"),
        (b"\x00", "text: decode the bytes"),
        (bytearray(b"a"), "text: decode the bytes"),
        ({"b", "a"}, "a list: a set has no order"),
        (frozenset({1}), "a list: a set has no order"),
        (Decimal("NaN"), "a finite number"),
        (object(), "a string, number, boolean, date, list or mapping"),
        ([1, None], "a value"),
    ],
)
def test_values_with_no_obvious_reading_are_refused_naming_the_input(value, expected):
    with pytest.raises(CCPInputError, match=rf"^Input 'blob' has a value of type \w+; expected {expected}"):
        input_value_to_string("blob", value)
    with pytest.raises(CCPInputError, match=r"^Input 'blob'"):
        json_value("blob", value)


@pytest.mark.parametrize(
    ("schema", "value", "sent"),
    [
        ({"type": "integer"}, Decimal("3"), 3),
        ({"type": "number"}, Decimal("1.5"), 1.5),
        ({"type": "string"}, pendulum.datetime(2025, 1, 2, tz="UTC"), "2025-01-02T00:00:00+00:00"),
        ({"type": "string", "format": "date"}, dt.date(2025, 1, 2), "2025-01-02"),
        ({}, dt.date(2025, 1, 2), "2025-01-02"),
        ({}, (Decimal("0.5"), "a"), [0.5, "a"]),
        ({"type": "array", "items": {"type": "integer"}}, (Decimal("1"), "2"), [1, 2]),
    ],
)
def test_typed_values_convert_dates_and_decimals(schema, value, sent):
    assert read({"schema": schema}).typed(value) == sent


@pytest.mark.parametrize(
    ("schema", "value", "message"),
    [
        ({"type": "integer"}, Decimal("1.5"), r"Input 'x': Decimal\('1.5'\) is not an integer"),
        ({"type": "integer"}, "two", r"Input 'x': 'two' is not an integer"),
        ({"type": "integer", "format": "password"}, "two", r"Input 'x': a value is not an integer"),
        ({"type": "number"}, b"1", r"Input 'x' has a value of type bytes"),
        ({}, {"a", "b"}, r"Input 'x' has a value of type set"),
        ({"type": "boolean"}, None, r"Input 'x' has a value of type NoneType"),
    ],
)
def test_typed_values_refused_in_one_line(schema, value, message):
    with pytest.raises(CCPInputError, match=message) as raised:
        read({"schema": schema}).typed(value)
    assert "\n" not in str(raised.value)


def test_the_typed_body_refuses_what_the_string_body_refuses():
    for encode in (protocol.string_inputs, lambda inputs: operations.typed_inputs(inputs, {"inputs": {}})):
        with pytest.raises(CCPInputError, match=r"'blob'.*bytes"):
            encode({"blob": b"\x00"})


# --------------------------------------------------------------------------- one reading, three readers

DESCRIPTION = {
    "id": "m",
    "inputs": {
        "ccpimage": {"minOccurs": 1, "schema": {"type": "string", "default": "bash", "readOnly": True}},
        "ccpreplicas": {"minOccurs": 0, "schema": {"type": "string", "default": "1"}},
        "text": {"schema": {"type": "string"}},
        "mode": {"minOccurs": 1, "schema": {"type": "string", "default": "words", "enum": ["words", "chars"]}},
        "note": {"minOccurs": 0, "schema": {"type": "string"}},
        "size": {"minOccurs": 0, "schema": {"type": "integer", "minimum": 1, "maximum": 9}},
        "tags": {"minOccurs": 0, "maxOccurs": "unbounded", "schema": {"type": "string", "enum": ["a", "b"]}},
    },
}


def form_accepts(name: str, value: Any) -> bool:
    try:
        jsonschema.validate(value, param_schema(method_inputs(DESCRIPTION)[name]))
    except jsonschema.ValidationError:
        return False
    return True


def operator_accepts(name: str, value: Any) -> bool:
    try:
        prepare_inputs("m", DESCRIPTION, {"text": "t", name: value})
    except CCPInputError:
        return False
    return True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (name, value)
        for name in ("ccpreplicas", "mode", "note", "size", "tags")
        for value in (None, "", "two", 2, 0, 12, "words", "zzz", ["a"], ["a", "c"], True)
    ]
    + [("text", None), ("text", ""), ("text", "hello")],
)
def test_the_form_never_promises_what_the_operator_refuses(name, value):
    if form_accepts(name, value):
        assert operator_accepts(name, value)


def test_an_empty_optional_field_is_not_given_and_the_default_is_sent():
    for name in ("ccpreplicas", "mode", "note", "size", "tags"):
        assert form_accepts(name, None)
    sent = prepare_inputs("m", DESCRIPTION, {"text": "t", "ccpreplicas": None, "mode": None, "note": None})
    assert sent == {"ccpimage": "bash", "ccpreplicas": "1", "mode": "words", "text": "t"}


LISTS = {
    "inputs": {
        "one": {"schema": {"type": "string"}},
        "key": {"schema": {"type": "string", "format": "secret"}},
        "several": {"maxOccurs": 3, "schema": {"type": "string"}},
        "array": {"schema": {"type": "array", "items": {"type": "string"}}},
    }
}


@pytest.mark.parametrize("name", ["one", "key"])
def test_a_list_for_a_single_valued_input_is_refused_naming_it(name):
    # It used to be sent comma-joined: one value the DAG author never wrote.
    given = {"one": "a", "key": "s3cr3t-1", "several": ["a"], "array": ["a"]} | {name: ["s3cr3t-1", "s3cr3t-2"]}
    with pytest.raises(CCPInputError) as raised:
        prepare_inputs("m", LISTS, given)
    message = str(raised.value)
    assert message.startswith(
        f"Invalid inputs for Method 'm': {name}: a list of 2 values, but the Method's input takes one value "
        "(maxOccurs 1). The Method accepts: "
    )
    assert "s3cr3t" not in message
    assert "\n" not in message


def test_lists_go_to_inputs_that_take_several_values_or_an_array():
    given = {"one": "a", "key": "s3cr3t-1", "several": ["a", "b"], "array": ("c", "d")}
    assert prepare_inputs("m", LISTS, given) == given


@pytest.mark.parametrize("items", [["a", "b,c"], ["a", ["b", "c"]]])
def test_a_list_item_holding_a_comma_is_refused_where_ccp_would_split_it(items):
    with pytest.raises(CCPInputError) as raised:
        protocol.string_inputs({"several": items})
    assert str(raised.value) == (
        "Input 'several': item 2 of its list holds a comma, which CCP reads as a separator between values; "
        "expected items without commas"
    )
    # Another OGC server gets a JSON array, where a comma is only a character.
    assert operations.typed_inputs({"several": ["a", "b,c"]}, LISTS) == {"several": ["a", "b,c"]}


def test_an_optional_secret_left_empty_is_not_given():
    description = {
        "inputs": {
            "api_key": {"minOccurs": 0, "schema": {"type": "string", "format": "secret"}},
            "password": {"minOccurs": 0, "schema": {"type": "string", "format": "password", "default": "dflt"}},
            "note": {"minOccurs": 0, "schema": {"type": "string"}},
        }
    }
    sent = prepare_inputs("m", description, {"api_key": "", "password": "", "note": ""})
    assert sent == {"password": "dflt", "note": ""}  # a plain text may be empty on purpose; a secret is unset


def test_a_required_input_given_as_none_is_missing():
    assert not form_accepts("text", None)
    with pytest.raises(CCPInputError, match=r"missing required input 'text' \(it is None\)"):
        prepare_inputs("m", DESCRIPTION, {"text": None})


def test_a_wrong_type_is_refused_by_the_form_and_by_the_operator():
    assert not form_accepts("ccpreplicas", "two")
    with pytest.raises(CCPInputError, match=r"ccpreplicas': 'two' is not an integer"):
        prepare_inputs("m", DESCRIPTION, {"text": "t", "ccpreplicas": "two"})


def test_the_typed_body_reads_the_same_multiple_as_the_form():
    tags = method_inputs(DESCRIPTION)["tags"]
    assert param_schema(tags)["type"] == ["null", "array"]
    assert operations.typed_inputs({"tags": ("a", "b")}, DESCRIPTION) == {"tags": ["a", "b"]}


def test_param_schema_bounds_follow_the_method():
    size = param_schema(method_inputs(DESCRIPTION)["size"])
    assert (size["minimum"], size["maximum"], size["type"]) == (1, 9, ["null", "integer"])
    assert ast.literal_eval(repr(size)) == size
