"""Check a Method's inputs against its description before anything is submitted.

CCP rejects a bad execution request only after a round trip, and sometimes not at all (an
unknown input is silently ignored by some servers), so the operator checks locally and reports
every problem at once, together with what the Method accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_ccp import auth
from airflow_provider_ccp.exceptions import CCPInputError
from airflow_provider_ccp.protocol import (
    CCP_LOG_OUTPUTS,
    CCP_SYSTEM_INPUTS,
    SECRET_FORMATS,
    described_inputs,
    input_value_to_string,
    is_ccp_description,
    value_outputs,
)

__all__ = [
    "InputSpec",
    "declared_inputs",
    "declared_outputs",
    "prepare_inputs",
    "check_mapping",
    "with_secret_inputs",
    "mask_secret_inputs",
    "secret_inputs_sent",
    "public_inputs",
    "default_outputs",
]


@dataclass(frozen=True)
class InputSpec:
    """One declared input, reduced to what validation needs."""

    name: str
    required: bool
    default: str | None
    enum: tuple[str, ...]
    secret: bool
    #: The declared default as the description gives it (``default`` is its string form).
    default_value: Any = None

    @classmethod
    def from_description(cls, name: str, spec: Mapping[str, Any]) -> InputSpec:
        schema: Mapping[str, Any] = spec["schema"] if isinstance(spec.get("schema"), Mapping) else {}
        default = schema.get("default")
        # OGC API - Processes: minOccurs defaults to 1 when the description leaves it out.
        min_occurs = spec.get("minOccurs", 1)
        return cls(
            name=name,
            required=_as_int(min_occurs, 1) >= 1 and default is None,
            default=None if default is None else input_value_to_string(name, default),
            enum=tuple(input_value_to_string(name, item) for item in schema.get("enum") or ()),
            secret=str(schema.get("format") or "").lower() in SECRET_FORMATS,
            default_value=default,
        )

    def describe(self) -> str:
        notes = []
        if self.required:
            notes.append("required")
        if self.enum:
            notes.append("one of " + ", ".join(self.enum))
        if self.default is not None and not self.secret:
            notes.append(f"default {self.default!r}")
        if self.secret:
            notes.append("secret")
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name


def _as_int(value: Any, fallback: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return fallback


def declared_inputs(description: Mapping[str, Any]) -> dict[str, InputSpec]:
    """The inputs of a process description: OGC 1.0 (a map by id) or the older list form."""
    return {name: InputSpec.from_description(name, spec) for name, spec in described_inputs(description).items()}


def declared_outputs(description: Mapping[str, Any]) -> list[str]:
    raw = description.get("outputs") or {}
    if isinstance(raw, Mapping):
        return [str(name) for name in raw]
    return [str(spec["id"]) for spec in raw if isinstance(spec, Mapping) and spec.get("id")]


def _enum_problem(spec: InputSpec, value: Any) -> str | None:
    if not spec.enum:
        return None
    values = value if isinstance(value, list | tuple) else [value]
    bad = [input_value_to_string(spec.name, item) for item in values]
    bad = [item for item in bad if item not in spec.enum]
    if not bad:
        return None
    shown = "a value" if spec.secret else ", ".join(repr(item) for item in bad)
    return f"{spec.name}: {shown} is not one of {', '.join(spec.enum)}"


def prepare_inputs(method_id: str, description: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs to send: ``given`` plus the declared defaults, as given (the hook encodes them).

    Raises one ``CCPInputError`` naming every unknown input, missing required input and value
    outside an ``enum``, followed by the list of inputs the Method accepts.
    """
    check_mapping(method_id, given)
    specs = declared_inputs(description)
    problems = [f"unknown input {name!r}" for name in given if name not in specs and name not in CCP_SYSTEM_INPUTS]
    problems += [
        f"missing required input {name!r}" for name, spec in specs.items() if spec.required and name not in given
    ]
    problems += [p for name, value in given.items() if name in specs and (p := _enum_problem(specs[name], value))]
    if problems:
        accepted = [spec.describe() for spec in specs.values()]
        accepted += sorted(f"{name} (CCP)" for name in CCP_SYSTEM_INPUTS - specs.keys())
        raise CCPInputError(
            f"Invalid inputs for Method {method_id!r}: {'; '.join(problems)}. "
            f"The Method accepts: {', '.join(accepted)}",
            method_id=method_id,
        )
    prepared = {name: spec.default_value for name, spec in specs.items() if spec.default is not None}
    prepared.update(given)
    _mask_secrets(specs, prepared)
    return prepared


def check_mapping(method_id: str, given: Any) -> None:
    """``inputs`` must be a mapping of input ids to values; a string or list is a mistake worth one line."""
    if not isinstance(given, Mapping):
        raise CCPInputError(
            f"inputs of Method {method_id!r} must be a mapping of input ids to values "
            f"(e.g. {{'text': 'hello'}}), got a {type(given).__name__}",
            method_id=method_id,
        )


def with_secret_inputs(description: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``description`` with the inputs ``names`` marked secret, as if the Method declared them so: what
    reads secrecy from the description (masking, the retry fingerprint, lineage) then hides their values.

    A CCP system input (``ccpnote``) is added as optional; another name the description does not
    declare is left out, so that a value given for it is still refused as an unknown input.
    """
    specs = _input_specs(description)
    marked = [name for name in names if name in specs or name in CCP_SYSTEM_INPUTS]
    if not marked:
        return dict(description)
    for name in marked:
        spec = dict(specs.get(name) or {"minOccurs": 0})
        spec["schema"] = {**(spec.get("schema") or {}), "format": "secret"}
        specs[name] = spec
    return {**description, "inputs": specs}


def _input_specs(description: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The raw input specs by id, from either form ``declared_inputs`` reads."""
    raw = description.get("inputs") or {}
    if isinstance(raw, Mapping):
        return {str(name): dict(spec) for name, spec in raw.items() if isinstance(spec, Mapping)}
    return {str(spec["id"]): dict(spec) for spec in raw if isinstance(spec, Mapping) and spec.get("id")}


def mask_secret_inputs(description: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each secret input in a form Airflow's masker can hide, its forms registered.

    The masker only rewrites strings, so a number or a mapping would show in clear: each becomes
    the string CCP receives anyway; a list stays a list (an enum checks its items) of strings.
    """
    specs = declared_inputs(description)
    shown = {name: _maskable(name, value) if _is_secret(specs, name) else value for name, value in values.items()}
    _mask_secrets(specs, shown)
    return shown


def secret_inputs_sent(description: Mapping[str, Any], values: Any) -> bool:
    """Whether any input the description marks secret has a value in ``values``."""
    specs = declared_inputs(description)
    return isinstance(values, Mapping) and any(_is_secret(specs, name) for name in values)


def public_inputs(description: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of every input the description does not mark secret."""
    specs = declared_inputs(description)
    return {name: value for name, value in values.items() if not _is_secret(specs, name)}


def _is_secret(specs: Mapping[str, InputSpec], name: str) -> bool:
    return name in specs and specs[name].secret


def _maskable(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [input_value_to_string(name, item) for item in value]
    return input_value_to_string(name, value)


def _mask_secrets(specs: Mapping[str, InputSpec], values: Mapping[str, Any]) -> None:
    # The string CCP receives, and each item of a list, which is how a rendered list shows it.
    for name in (name for name in values if _is_secret(specs, name)):
        value = values[name]
        items = value if isinstance(value, list | tuple) else []
        auth.mask(input_value_to_string(name, value), *(input_value_to_string(name, item) for item in items))


def default_outputs(description: Mapping[str, Any]) -> dict[str, dict[str, str]] | None:
    """Every output the description declares, by value, and on CCP ``stdout`` and ``stderr`` too:
    what CCP's own execution form and generated code ask for. None (every output, by OGC's rule)
    for a plain OGC process that declares none."""
    outputs = declared_outputs(description)
    if is_ccp_description(description):
        outputs += [name for name in CCP_LOG_OUTPUTS if name not in outputs]
    return value_outputs(outputs) if outputs else None
