"""The DAG generator on its own: Params, templates and safety against hostile Method descriptions."""

from __future__ import annotations

import ast
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ccp_airflow.dag_template import (
    DagOptions,
    DagTemplateError,
    comment,
    default_dag_id,
    py_literal,
    render_dag,
)

HOSTILE = 'x"""\nimport os; os.system("boom")  # \'\r\x00\u2028{{ 7*7 }}\\'


def options(**overrides: Any) -> DagOptions:
    values: dict[str, Any] = {
        "dag_id": "ccp_test",
        "conn_id": "ccp_default",
        "schedule": None,
        "start": date(2025, 1, 2),
        "defaults": {},
    }
    return DagOptions(**(values | overrides))


def method(**inputs: dict[str, Any]) -> dict[str, Any]:
    return {"id": "m-1", "title": "M", "version": "1", "inputs": inputs, "outputs": {}}


def string_input(**schema: Any) -> dict[str, Any]:
    return {"title": "T", "minOccurs": schema.pop("minOccurs", 1), "schema": {"type": "string", **schema}}


def module_values(source: str, name: str) -> Any:
    """Evaluate the keyword argument ``name`` of the DAG(...) or operator call, without importing Airflow."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == name:
            return node.value
    raise AssertionError(f"{name} not found")


@pytest.mark.parametrize("text", [HOSTILE, "'", '"', "\\", "a'b\"c", "\u00e9\u4e2d", "\x00\x1b"])
def test_py_literal_round_trips(text: str) -> None:
    assert ast.literal_eval(py_literal(text)) == text
    assert ast.literal_eval(py_literal([text, {"k": text}, 3, None, True])) == [text, {"k": text}, 3, None, True]


def test_comment_cannot_end_early() -> None:
    lines = comment(HOSTILE)
    assert all(line.startswith("# ") or line == "#" for line in lines)
    assert "\x00" not in "".join(lines)
    assert ast.parse("\n".join(lines)).body == []


def test_hostile_method_description_cannot_inject_code() -> None:
    hostile = {
        "id": HOSTILE,
        "title": HOSTILE,
        "description": HOSTILE,
        "version": HOSTILE,
        "keywords": [HOSTILE, "k" * 500],
        "inputs": {
            HOSTILE: {"title": HOSTILE, "description": HOSTILE, "schema": {"type": "string", "default": HOSTILE}}
        },
    }
    source = render_dag(hostile, options(dag_id=default_dag_id(hostile)))
    tree = ast.parse(source)
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert calls <= {"DAG", "Param", "CCPExecuteMethodOperator", "list_outputs", "print"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "system"]
    constants = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)}  # type: ignore[attr-defined]
    assert ast.literal_eval(constants["METHOD_ID"]) == HOSTILE
    tags = ast.literal_eval(module_values(source, "tags"))
    assert all(len(tag) <= 100 for tag in tags)


def test_params_mirror_inputs() -> None:
    description = method(
        ccpimage=string_input(default="bash", readOnly=True),
        mode=string_input(default="b", enum=["a", "b"]),
        text=string_input(),
        note=string_input(minOccurs=0),
        flags={"minOccurs": 0, "maxOccurs": "unbounded", "schema": {"type": "string", "enum": ["x", "y"]}},
        on={"schema": {"type": "boolean", "default": False}},
        token=string_input(format="secret"),
    )
    source = render_dag(description, options())
    inputs = {ast.literal_eval(key): operator_input(value) for key, value in zip(*dict_items(source), strict=True)}
    assert inputs == {
        "ccpimage": "bash",
        "mode": ("param", "mode"),
        "text": ("param", "text"),
        "note": ("param", "note"),
        "flags": ("param", "flags"),
        "on": ("param", "on"),
        "token": '{{ var.value.get("ccp_test_token_secret") }}',
    }
    params = module_values(source, "params")
    names = [ast.literal_eval(key) for key in params.keys]
    assert names == ["mode", "text", "note", "flags", "on"]  # no read-only, no secret
    by_name = dict(zip(names, params.values, strict=True))

    def param(name: str) -> tuple[list[Any], dict[str, Any]]:
        call = by_name[name]
        return [ast.literal_eval(a) for a in call.args], {k.arg: ast.literal_eval(k.value) for k in call.keywords}

    # A default makes an input optional (OGC): the field may be emptied, and the Method's default is sent.
    assert param("mode") == (["b"], {"title": "T", "type": ["null", "string"], "enum": ["a", "b", None]})
    assert param("text") == ([], {"title": "T", "type": "string", "minLength": 1})
    assert param("note") == ([None], {"title": "T", "type": ["null", "string"]})
    assert param("flags")[1]["items"] == {"type": "string", "enum": ["x", "y"]}
    assert param("flags")[1]["type"] == ["null", "array"]
    assert param("on") == ([False], {"title": "on", "type": ["null", "boolean"]})


def dict_items(source: str) -> tuple[list[ast.expr], list[ast.expr]]:
    inputs = module_values(source, "inputs")
    assert isinstance(inputs, ast.Dict)
    return inputs.keys, inputs.values  # type: ignore[return-value]


def operator_input(node: ast.expr) -> Any:
    """A constant, or ``("param", name)`` for ``dag.param(name)``: the Param's value, not its text."""
    if isinstance(node, ast.Call):
        assert ast.unparse(node.func) == "dag.param"
        return ("param", ast.literal_eval(node.args[0]))
    return ast.literal_eval(node)


def test_set_gives_defaults_and_schedule_needs_them() -> None:
    description = method(text=string_input(), count={"schema": {"type": "integer"}})
    with pytest.raises(DagTemplateError, match="--set text=VALUE"):
        render_dag(description, options(schedule="@daily"))
    source = render_dag(description, options(schedule="@daily", defaults={"text": "hi", "count": "3"}))
    params = module_values(source, "params")
    assert [ast.literal_eval(call.args[0]) for call in params.values] == ["hi", 3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dag_id": "bad id"}, "not valid"),
        ({"defaults": {"nope": "1"}}, "not an editable input"),
        ({"defaults": {"ccpimage": "python"}}, "not an editable input"),
    ],
)
def test_bad_options_are_refused(overrides: dict[str, Any], message: str) -> None:
    description = method(ccpimage=string_input(default="bash", readOnly=True))
    with pytest.raises(DagTemplateError, match=message):
        render_dag(description, options(**overrides))


@pytest.mark.parametrize(
    ("title", "method_id", "expected"),
    [("Word count", "x", "ccp_word_count"), ("", "5c94-AB", "ccp_5c94_ab"), ("\u4e2d", "", "ccp_method")],
)
def test_default_dag_id(title: str, method_id: str, expected: str) -> None:
    assert default_dag_id({"title": title, "id": method_id}) == expected


def test_the_comment_uses_the_installed_airflow_ui_words() -> None:
    import airflow

    ui = Path(airflow.__file__).parent / "ui" / "dist"
    words = json.loads((ui / "i18n" / "locales" / "en" / "components.json").read_text())["triggerDag"]
    source = render_dag(method(text=string_input()), options())
    assert "w/ config" not in source  # Airflow 2's menu entry
    assert f"the Dag's {words['button']} button" in source
    assert "Run Parameters form" in source
    assert any("Run Parameters" in bundle.read_text() for bundle in (ui / "assets").glob("index-*.js"))


def test_ccp_replicas_is_a_whole_number_field_and_bounds_follow_the_schema() -> None:
    description = method(
        ccpreplicas={"minOccurs": 0, "schema": {"type": "string", "default": "1"}},
        size={"minOccurs": 0, "schema": {"type": "integer", "default": "3", "minimum": 1, "maximum": 9}},
        name={"schema": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"}},
    )
    params = module_values(render_dag(description, options()), "params")
    found = {
        ast.literal_eval(key): (
            [ast.literal_eval(a) for a in call.args],
            {k.arg: ast.literal_eval(k.value) for k in call.keywords},
        )
        for key, call in zip(params.keys, params.values, strict=True)
    }
    assert found["ccpreplicas"] == ([1], {"title": "ccpreplicas", "type": ["null", "integer"], "minimum": 1})
    assert found["size"] == ([3], {"title": "size", "type": ["null", "integer"], "minimum": 1, "maximum": 9})
    assert found["name"] == (
        [],
        {"title": "name", "type": "string", "maxLength": 5, "pattern": "^[a-z]+$", "minLength": 1},
    )
