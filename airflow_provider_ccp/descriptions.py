"""One reading of a Method description (an OGC API - Processes process description).

The operator's check of the inputs (``inputs``), the trigger form of a generated DAG (``ccp_airflow.dag_template``)
and the typed execute body for servers that are not CCP (``operations``) all read a Method's inputs here, so the
form cannot promise what the operator refuses; the readings are those of docs/operators.md, "Inputs".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from airflow_provider_ccp.exceptions import CCPInputError

__all__ = ["MethodInput", "method_inputs", "input_value_to_string", "is_ccp_description", "CCP_SYSTEM_INPUTS"]

#: Inputs every CCP Method accepts, whether or not its description declares them (ccp-api.md §3.1).
CCP_SYSTEM_INPUTS = frozenset({"ccpimage", "ccpreplicas", "ccpnote", "ccpmaxtime", "ccpsize"})
#: ``schema.format`` values that mark an input as a credential (CCP uses ``secret``).
SECRET_FORMATS = frozenset({"secret", "password"})
#: CCP inputs declared as strings whose values are whole numbers from 1 (replicas, seconds).
CCP_COUNT_INPUTS = frozenset({"ccpreplicas", "ccpmaxtime"})

_A_TYPE = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "array": "an array (a list, or a JSON array)",
    "object": "an object (a mapping, or a JSON object)",
}
_BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _whole(value: Any, fallback: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return fallback


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def schema_type(schema: Mapping[str, Any]) -> str | None:
    """The one JSON type a schema declares (``["integer", "null"]`` counts as integer), else None."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [item for item in kind if item != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return kind if kind in _A_TYPE else None


@dataclass(frozen=True)
class MethodInput:
    """One input of a Method, as its description declares it."""

    id: str
    title: str
    description: str
    min_occurs: int
    #: None when unbounded.
    max_occurs: int | None
    schema: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_description(cls, input_id: str, spec: Mapping[str, Any]) -> MethodInput:
        max_occurs = spec.get("maxOccurs", 1)
        return cls(
            id=input_id,
            title=str(spec.get("title") or input_id),
            description=str(spec.get("description") or ""),
            min_occurs=max(_whole(spec.get("minOccurs", 1), 1), 0),
            max_occurs=None if max_occurs == "unbounded" else max(_whole(max_occurs, 1), 1),
            schema=_ccp_refined(input_id, _mapping(spec.get("schema"))),
        )

    @property
    def type(self) -> str | None:
        """The JSON type of a value (of each value, for several), or None when the schema names none."""
        return schema_type(self.schema)

    @property
    def default(self) -> Any:
        return self.schema.get("default")

    @property
    def has_default(self) -> bool:
        return self.default is not None

    @property
    def enum(self) -> tuple[Any, ...]:
        enum = self.schema.get("enum")
        return tuple(enum) if isinstance(enum, list) else ()

    @property
    def format(self) -> str | None:
        return str(self.schema["format"]) if self.schema.get("format") else None

    @property
    def read_only(self) -> bool:
        """Bound by the Method's author (CCP's locked ``ccpimage``): not offered to the user."""
        return bool(self.schema.get("readOnly"))

    @property
    def secret(self) -> bool:
        return (self.format or "").lower() in SECRET_FORMATS

    @property
    def required(self) -> bool:
        """It must be given: at least one occurrence and no default to stand in for it."""
        return self.min_occurs > 0 and not self.has_default

    @property
    def multiple(self) -> bool:
        return self.max_occurs is None or self.max_occurs > 1

    def typed(self, value: Any) -> Any:
        """``value`` as the JSON type the schema declares (each item of several); a string is read as
        that type (``"4"`` is 4 for an integer). Raises ``CCPInputError`` naming the input otherwise."""
        kind = self.type
        try:
            if self.multiple and kind != "array" and isinstance(value, list | tuple):
                return [_typed_value(self.id, item, self.schema) for item in value]
            return _typed_value(self.id, value, self.schema)
        except CCPInputError:
            raise  # a ValueError too, already naming the input and what was expected
        except (TypeError, ValueError, ArithmeticError):
            shown = "a value" if self.secret else repr(value)  # never a secret's
            raise CCPInputError(
                f"Input {self.id!r}: {shown} is not {_A_TYPE[str(kind)]}, which is what the Method's schema declares"
            ) from None


def _ccp_refined(input_id: str, schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """CCP's count inputs, declared as strings, read as the whole numbers they are."""
    if input_id not in CCP_COUNT_INPUTS or schema_type(schema) not in (None, "string") or schema.get("enum"):
        return schema
    if schema.get("default") is not None:
        try:
            _integer(schema["default"])
        except (TypeError, ValueError):
            return schema
    # The default stays as written: it is what CCP receives when the input is left out.
    return {**schema, "type": "integer", "minimum": 1}


def _by_id(raw: Any) -> dict[str, Any]:
    """A description's inputs or outputs by id: OGC 1.0 (a map by id) or the older list form."""
    if isinstance(raw, Mapping):
        return {str(name): spec for name, spec in raw.items()}
    items = raw if isinstance(raw, list) else []
    return {str(spec["id"]): spec for spec in items if isinstance(spec, Mapping) and spec.get("id")}


def raw_inputs(description: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {name: spec for name, spec in _by_id(description.get("inputs")).items() if isinstance(spec, Mapping)}


def method_inputs(description: Mapping[str, Any]) -> dict[str, MethodInput]:
    """Every input the description declares, by id, in its order."""
    return {name: MethodInput.from_description(name, spec) for name, spec in raw_inputs(description).items()}


def output_ids(description: Mapping[str, Any]) -> list[str]:
    return list(_by_id(description.get("outputs")))


def is_ccp_description(description: Mapping[str, Any]) -> bool:
    """CCP Methods declare the runtime image input; a plain OGC process does not."""
    return "ccpimage" in raw_inputs(description)


def _refused(name: str, value: Any, expected: str) -> CCPInputError:
    return CCPInputError(f"Input {name!r} has a value of type {type(value).__name__}; expected {expected}")


def _plain(name: str, value: Any) -> Any:
    """The value a template, a DAG author or native rendering gives, as the JSON value it stands for."""
    if value is None:
        raise _refused(name, value, "a value (leave an input out of inputs= to not give it)")
    if isinstance(value, bytes | bytearray | memoryview):
        raise _refused(name, value, "text: decode the bytes (or base64-encode them) first")
    if isinstance(value, set | frozenset):
        raise _refused(name, value, "a list: a set has no order (e.g. sorted(values))")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _refused(name, value, "a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, str | bool | int | float | list | tuple | Mapping):
        return value
    raise _refused(name, value, "a string, number, boolean, date, list or mapping")


def input_value_to_string(name: str, value: Any) -> str:
    """The string CCP expects for every input value (ccp-api.md §3.1, §7.6)."""
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)  # as written: Decimal("1.10") is "1.10"
    value = _plain(name, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple):
        # Multi-valued inputs travel comma-joined, as CCP's own clients send them.
        return ",".join(_list_item(name, position, item) for position, item in enumerate(value, 1))
    return json.dumps(json_value(name, value), sort_keys=True)


def _list_item(name: str, position: int, item: Any) -> str:
    text = input_value_to_string(name, item)
    if "," in text:  # the item is not shown: it may be a secret input's
        raise CCPInputError(
            f"Input {name!r}: item {position} of its list holds a comma, which CCP reads as a separator between "
            "values; expected items without commas"
        )
    return text


def json_value(name: str, value: Any) -> Any:
    """``value`` as JSON, for an input whose schema names no type."""
    value = _plain(name, value)
    if isinstance(value, list | tuple):
        return [json_value(name, item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_value(name, item) for key, item in value.items()}
    return value


def _typed_value(name: str, value: Any, schema: Mapping[str, Any]) -> Any:
    kind = schema_type(schema)
    qualified = isinstance(value, Mapping) and kind != "object" and ("value" in value or "href" in value)
    if kind is None or qualified:  # a qualified value or a link: the server reads it itself
        return json_value(name, value)
    if kind == "string":
        return input_value_to_string(name, value)
    value = _plain(name, value)
    if kind in _SCALARS:
        return _SCALARS[kind](value)
    parsed = json.loads(value) if isinstance(value, str) else value
    if kind == "object" and isinstance(parsed, Mapping):
        return json_value(name, parsed)
    if kind == "array" and isinstance(parsed, list | tuple):
        items = _mapping(schema.get("items"))
        return [_typed_value(name, item, items) for item in parsed]
    raise TypeError(kind)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.strip().lower()]
    raise TypeError(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            value = float(value)
    if not math.isfinite(value):
        raise ValueError(value)
    return value


_SCALARS: dict[str, Callable[[Any], Any]] = {"boolean": _boolean, "integer": _integer, "number": _number}
