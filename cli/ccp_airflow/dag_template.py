"""Write a DAG file from a CCP Method description: the Airflow counterpart of CCP's code generators.

Every piece of text that comes from the server (ids, titles, descriptions, defaults) reaches the
generated source only through ``py_literal`` (a ``repr``) or ``comment`` (control characters
stripped, one ``#`` per line), so a hostile Method description cannot inject code.

Choices the generated DAG makes (docs/cli.md explains them to users):

- every user-editable input becomes an Airflow ``Param`` whose JSON schema follows the Method's
  (type, enum, format, bounds; a default unless the input is required), so the Trigger form is
  like CCP's execution form and refuses what CCP would; an optional Param may be left empty;
- the operator's ``inputs`` take each Param's value as it is (``dag.param``, no text rendering):
  an empty optional Param reaches the operator as None, which means "not given" there (the
  Method's default, or the input left out);
- a read-only input (``schema.readOnly``, e.g. ``ccpimage``) is bound by the Method's author, so
  its default is written into ``inputs`` as a constant instead of being offered in the form;
- a secret input (``schema.format`` ``secret``) never becomes a Param (a run's conf is stored in
  clear): it is read at run time from an Airflow Variable whose key ends in ``_secret``, which
  makes Airflow mask its value in logs and rendered templates.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from airflow_provider_ccp.descriptions import MethodInput
from airflow_provider_ccp.descriptions import method_inputs as described_inputs
from airflow_provider_ccp.exceptions import CCPError, CCPInputError

__all__ = [
    "DagTemplateError",
    "MethodInput",
    "DagOptions",
    "render_dag",
    "default_dag_id",
    "check_options",
    "method_inputs",
    "installed_airflow_version",
    "retry_note",
    "variable_key",
    "py_literal",
    "comment",
    "mapping",
    "DAG_ID_PATTERN",
    "MAX_TAG_LENGTH",
    "PARAM_FORMATS",
]

DAG_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
MAX_TAG_LENGTH = 100
#: CCP ``schema.format`` values with a matching widget in Airflow's trigger form.
PARAM_FORMATS = {"date": "date", "date-time": "date-time", "datetime": "date-time", "time": "time"}
#: JSON-schema keywords a Param keeps from the Method's schema: the form enforces them.
PARAM_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern")
_MISSING = object()


class DagTemplateError(CCPError):
    """The Method cannot be turned into a DAG with the options given."""


@dataclass(frozen=True)
class DagOptions:
    dag_id: str
    conn_id: str
    schedule: str | None
    start: date
    #: Defaults given on the command line (``--set name=value``), overriding the Method's.
    defaults: Mapping[str, str]
    #: The Airflow the DAG is written for: what a retry does depends on it.
    airflow_version: str = field(default_factory=lambda: installed_airflow_version())


def installed_airflow_version() -> str:
    from airflow_provider_ccp.version_compat import get_base_airflow_version_tuple

    return ".".join(map(str, get_base_airflow_version_tuple()))


def retry_note(airflow_version: str) -> str:
    """What a retry of the generated task does on that Airflow (docs/operators.md, "Retries")."""
    from airflow_provider_ccp.version_compat import REATTACH_SINCE

    major, minor = (int(part) if part.isdigit() else 0 for part in ([*airflow_version.split("."), "0"])[:2])
    since = ".".join(map(str, REATTACH_SINCE))
    if (major, minor) >= REATTACH_SINCE:
        return f"a retry reattaches to the execution an earlier try started (Airflow >= {since})"
    return f"a retry submits a new execution (Airflow {major}.{minor} cannot reattach; {since} can)"


def mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object from the server, or an empty one when it sent something else."""
    return value if isinstance(value, Mapping) else {}


def method_inputs(method: Mapping[str, Any]) -> list[MethodInput]:
    return list(described_inputs(method).values())


def default_dag_id(method: Mapping[str, Any]) -> str:
    """``ccp_<title>`` (CCP ids are UUIDs, titles read better), falling back to the id."""
    for source in (method.get("title"), method.get("id")):
        slug = re.sub(r"[^a-z0-9]+", "_", str(source or "").lower()).strip("_")
        if slug:
            return f"ccp_{slug}"[:250]
    return "ccp_method"


def variable_key(dag_id: str, input_id: str) -> str:
    """The Variable holding a secret input; the ``_secret`` suffix makes Airflow mask its value."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", input_id)
    return f"{dag_id}_{slug}_secret"


# --------------------------------------------------------------------------- safe source text


def py_literal(value: Any) -> str:
    """A Python literal for a JSON value, preferring double quotes like ruff format does."""
    if isinstance(value, str):
        text = repr(value)
        # repr escapes nothing inside single quotes when the text has no double quote, so swapping is safe.
        return f'"{text[1:-1]}"' if text.startswith("'") and '"' not in value else text
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{py_literal(str(k))}: {py_literal(v)}" for k, v in value.items()) + "}"
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    return py_literal(str(value))


def _printable(text: str) -> str:
    return "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)


def comment(text: str, indent: str = "") -> list[str]:
    """Comment lines for free text; control characters (a newline among them) cannot end the comment."""
    return [f"{indent}# {_printable(line)}".rstrip() for line in text.splitlines() or [""]]


# --------------------------------------------------------------------------- the pieces of the DAG


def _secret_template(item: MethodInput, dag_id: str) -> str:
    """A secret input is read from its Variable when the task runs (a template: Airflow masks it)."""
    key = json.dumps(variable_key(dag_id, item.id))
    return "{{ " + (f"var.value.get({key})" if item.required else f'var.value.get({key}, "")') + " }}"


def _typed_default(item: MethodInput, value: Any) -> Any:
    """A default as the Param's type: a Method may write the integer 3 as "3"."""
    if item.type in ("integer", "number", "boolean"):
        try:
            return item.typed(value)
        except CCPInputError:
            return value  # check_options reports it against the Param's schema
    return value


def _from_text(item: MethodInput, text: str) -> Any:
    """A command-line default for a Param that is not a string: JSON (``3``, ``true``, ``["a"]``) if it parses."""
    if _param_type(item) == "string" and not item.multiple:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _param_default(item: MethodInput, options: DagOptions) -> Any:
    if item.id in options.defaults:
        return _from_text(item, options.defaults[item.id])
    if item.has_default:
        return _typed_default(item, item.default)
    return _MISSING if item.required else None


def _param_type(item: MethodInput) -> str:
    # An input whose schema names no type (or several) takes text, as CCP sends it.
    return item.type or "string"


def _schema(item: MethodInput) -> dict[str, Any]:
    """The JSON schema of the Param: Airflow validates the run's conf against it and draws the form from it."""
    value: dict[str, Any] = {"type": _param_type(item)}
    if item.enum:
        value["enum"] = list(item.enum)
    if item.format in PARAM_FORMATS:
        value["format"] = PARAM_FORMATS[item.format]
    value.update({key: item.schema[key] for key in PARAM_BOUNDS if key in item.schema})
    if item.required and value["type"] == "string" and not item.enum:
        value.setdefault("minLength", 1)  # required and empty is what CCP's form refuses too
    schema: dict[str, Any] = {"type": "array", "items": value} if item.multiple else value
    if not item.required:
        # The form may leave it empty (null): the operator then leaves it out or sends the Method's default.
        schema["type"] = ["null", schema["type"]]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    return schema


def _param(item: MethodInput, options: DagOptions) -> list[str]:
    fields: dict[str, Any] = {"title": item.title}
    if item.description:
        fields["description"] = item.description
    fields.update(_schema(item))
    default = _param_default(item, options)
    args = [] if default is _MISSING else [py_literal(default)]
    args += [f"{name}={py_literal(value)}" for name, value in fields.items()]
    return [f"        {py_literal(item.id)}: Param(", *(f"            {arg}," for arg in args), "        ),"]


def _input_line(item: MethodInput, dag_id: str) -> list[str]:
    if item.read_only and item.has_default:
        return [
            "            # Read-only in the Method: fixed by its author, like the locked field of CCP's form.",
            f"            {py_literal(item.id)}: {py_literal(item.default)},",
        ]
    if item.secret:
        return [
            f"            # Secret: set the Airflow Variable {py_literal(variable_key(dag_id, item.id))}.",
            f"            {py_literal(item.id)}: {py_literal(_secret_template(item, dag_id))},",
        ]
    return [f"            {py_literal(item.id)}: dag.param({py_literal(item.id)}),"]


def _is_param(item: MethodInput) -> bool:
    return not item.secret and not (item.read_only and item.has_default)


def _tags(method: Mapping[str, Any]) -> list[str]:
    keywords = method.get("keywords")
    tags = ["ccp"]
    for keyword in keywords if isinstance(keywords, list) else []:
        tag = _printable(str(keyword)).strip()[:MAX_TAG_LENGTH]
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def _doc_md(method: Mapping[str, Any], inputs: Iterable[MethodInput], dag_id: str) -> str:
    lines = [f"# {method.get('title') or method.get('id')}", "", str(method.get("description") or "").strip(), ""]
    lines.append(f"Runs the CCP Method `{method.get('id')}` (version {method.get('version') or 'unknown'}).")
    secrets = [item for item in inputs if item.secret]
    if secrets:
        lines += ["", "Secret inputs are read from Airflow Variables (masked in logs), never from the run's conf:", ""]
        lines += [f"- `{item.id}`: Variable `{variable_key(dag_id, item.id)}`" for item in secrets]
    return "\n".join(lines)


def check_options(method: Mapping[str, Any], options: DagOptions) -> None:
    if not DAG_ID_PATTERN.match(options.dag_id):
        raise DagTemplateError(
            f"DAG id {options.dag_id!r} is not valid: use letters, digits, '_', '.' and '-' (at most 250)"
        )
    inputs = {item.id: item for item in method_inputs(method)}
    for name in options.defaults:
        if name not in inputs or not _is_param(inputs[name]):
            editable = ", ".join(sorted(i for i, item in inputs.items() if _is_param(item))) or "none"
            raise DagTemplateError(f"--set {name}: not an editable input of this Method (editable: {editable})")
        _check_default(inputs[name], options.defaults[name])
    missing = [item.id for item in inputs.values() if _is_param(item) and _param_default(item, options) is _MISSING]
    if options.schedule and missing:
        # Airflow refuses to schedule a DAG whose params have no default: a scheduled run has no form.
        raise DagTemplateError(
            f"A scheduled DAG needs a default for every required input; missing: {', '.join(missing)}. "
            f"Hint: add --set {missing[0]}=VALUE"
        )


def _check_default(item: MethodInput, text: str) -> None:
    """A ``--set`` value the Param's schema refuses would make Airflow reject the whole DAG file."""
    import jsonschema

    try:
        jsonschema.validate(_from_text(item, text), _schema(item))
    except jsonschema.ValidationError as error:
        raise DagTemplateError(f"--set {item.id}={text}: {error.message} (input {item.id!r} of the Method)") from None


def render_dag(method: Mapping[str, Any], options: DagOptions) -> str:
    """The source of a DAG file that runs ``method`` with ``CCPExecuteMethodOperator``."""
    check_options(method, options)
    inputs = method_inputs(method)
    method_id = str(method.get("id"))
    header = [
        f"Method: {method.get('title') or method_id} (id {method_id}, version {method.get('version') or 'unknown'})",
        *str(method.get("description") or "").splitlines(),
    ]
    params = [line for item in inputs if _is_param(item) for line in _param(item, options)]
    operator_inputs = [line for item in inputs for line in _input_line(item, options.dag_id)]
    start = options.start
    lines = [
        '"""A DAG that runs one D4Science CCP Method; generated by `ccp-airflow dag` from its description."""',
        "",
        *comment("\n".join(header)),
        "#",
        "# Trigger it with the Dag's Trigger button: the Run Parameters form mirrors the Method's inputs,",
        "# and an optional field left empty is not given (CCP uses the Method's default).",
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "import pendulum",
        "from airflow.sdk import DAG, Param, task",
        "from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator",
        "",
        f"METHOD_ID = {py_literal(method_id)}",
        "",
        "with DAG(",
        f"    dag_id={py_literal(options.dag_id)},",
        f"    description={py_literal(_printable(str(method.get('title') or method_id))[:200])},",
        f"    doc_md={py_literal(_doc_md(method, inputs, options.dag_id))},",
        f"    schedule={py_literal(options.schedule)},",
        f'    start_date=pendulum.datetime({start.year}, {start.month}, {start.day}, tz="UTC"),',
        "    catchup=False,",
        f"    tags={py_literal(_tags(method))},",
        "    params={",
        *params,
        "    },",
        ") as dag:",
        "    run_method = CCPExecuteMethodOperator(",
        '        task_id="run_method",',
        f"        ccp_conn_id={py_literal(options.conn_id)},",
        "        method_id=METHOD_ID,",
        "        inputs={",
        *operator_inputs,
        "        },",
        f"        # Wait in the triggerer rather than in a worker slot; {retry_note(options.airflow_version)}.",
        "        deferrable=True,",
        "        retries=1,",
        "    )",
        "",
        "    @task",
        "    def list_outputs(manifest: dict[str, Any]) -> list[str]:",
        '        """Print every file the execution produced; return their local paths for downstream tasks."""',
        '        files = manifest.get("files") or []',
        "        for file in files:",
        "            print(f\"{file['path']} ({file['size']} bytes) from {file['uri']}\")",
        '        return [file["path"] for file in files]',
        "",
        "    list_outputs(run_method.output)",
        "",
    ]
    return "\n".join(lines)
