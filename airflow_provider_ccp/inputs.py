"""Check a Method's inputs against its description before anything is submitted.

CCP rejects a bad execution request only after a round trip, and sometimes not at all (an
unknown input is silently ignored by some servers), so the operator checks locally and reports
every problem at once, together with what the Method accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_ccp import masking
from airflow_provider_ccp.descriptions import (
    CCP_SYSTEM_INPUTS,
    MethodInput,
    input_value_to_string,
    is_ccp_description,
    json_value,
    method_inputs,
    output_ids,
    raw_inputs,
)
from airflow_provider_ccp.exceptions import CCPInputError
from airflow_provider_ccp.protocol import CCP_LOG_OUTPUTS, value_outputs

__all__ = ["prepare_inputs", "with_secret_inputs", "mask_secret_inputs", "public_inputs", "default_outputs"]


def _enum_texts(spec: MethodInput) -> tuple[str, ...]:
    """The enum as the strings CCP compares a value with."""
    return tuple(input_value_to_string(spec.id, item) for item in spec.enum)


def _accepted(spec: MethodInput) -> str:
    notes = ["required"] if spec.required else []
    if spec.enum:
        notes.append("one of " + ", ".join(_enum_texts(spec)))
    if spec.has_default and not spec.secret:
        notes.append(f"default {input_value_to_string(spec.id, spec.default)!r}")
    if spec.secret:
        notes.append("secret")
    return f"{spec.id} ({'; '.join(notes)})" if notes else spec.id


def _enum_problem(spec: MethodInput, value: Any) -> str | None:
    if not spec.enum:
        return None
    enum = _enum_texts(spec)
    values = value if isinstance(value, list | tuple) else [value]
    bad = [text for item in values if (text := input_value_to_string(spec.id, item)) not in enum]
    if not bad:
        return None
    shown = "a value" if spec.secret else ", ".join(repr(item) for item in bad)
    return f"{spec.id}: {shown} is not one of {', '.join(enum)}"


#: Types a CCP string can be checked against before sending: CCP itself would refuse the value.
_CHECKED_TYPES = frozenset({"integer", "number", "boolean"})


def _value_problem(name: str, value: Any, spec: MethodInput | None) -> str | None:
    """What is wrong with a value, as one clause: its Python type, a list for one value, its declared type
    or its enum."""
    if spec is not None and isinstance(value, list | tuple) and not (spec.multiple or spec.type == "array"):
        # Sent anyway, CCP would get the items comma-joined as one value the user never wrote.
        return f"{name}: a list of {len(value)} values, but the Method's input takes one value (maxOccurs 1)"
    try:
        json_value(name, value)  # the types any server takes; how CCP's strings join lists is checked when sent
        if spec is not None and spec.type in _CHECKED_TYPES:
            spec.typed(value)
    except CCPInputError as error:
        return str(error).removeprefix("Input ")
    return _enum_problem(spec, value) if spec is not None else None


def _unset_secret(spec: MethodInput | None, value: Any) -> bool:
    return spec is not None and spec.secret and not spec.required and value == ""


def prepare_inputs(method_id: str, description: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs to send: ``given`` plus the declared defaults, as given (the hook encodes them).

    An input given as None is not given (left out, or its default sent); so is an optional secret input given as
    ``""`` (an unset secret, e.g. a generated DAG's missing Variable, never reaches CCP empty). Raises one
    ``CCPInputError`` naming every unknown input, missing required input and value of the wrong type or outside
    an ``enum``, followed by the inputs the Method accepts."""
    check_mapping(method_id, given)
    specs = method_inputs(description)
    problems = [f"unknown input {name!r}" for name in given if name not in specs and name not in CCP_SYSTEM_INPUTS]
    empty = {name for name, value in given.items() if value is None or _unset_secret(specs.get(name), value)}
    given = {name: value for name, value in given.items() if name not in empty}
    problems += [
        f"missing required input {name!r}" + (" (it is None)" if name in empty else "")
        for name, spec in specs.items()
        if spec.required and name not in given
    ]
    problems += [p for name, value in given.items() if (p := _value_problem(name, value, specs.get(name)))]
    if problems:
        accepted = [_accepted(spec) for spec in specs.values()]
        accepted += sorted(f"{name} (CCP)" for name in CCP_SYSTEM_INPUTS - specs.keys())
        raise CCPInputError(
            f"Invalid inputs for Method {method_id!r}: {'; '.join(problems)}. "
            f"The Method accepts: {', '.join(accepted)}",
            method_id=method_id,
        )
    prepared = {name: spec.default for name, spec in specs.items() if spec.has_default}
    prepared.update(given)
    _mask_secrets({name for name, spec in specs.items() if spec.secret}, prepared)
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
    """``description`` with the inputs ``names`` marked secret, as if the Method declared them so: what reads
    secrecy from the description (masking, the retry fingerprint, lineage) then hides their values. A CCP system
    input (``ccpnote``) is added as optional; another undeclared name is left out, so its value is still refused."""
    specs = {name: dict(spec) for name, spec in raw_inputs(description).items()}
    marked = [name for name in names if name in specs or name in CCP_SYSTEM_INPUTS]
    if not marked:
        return dict(description)
    for name in marked:
        spec = dict(specs.get(name) or {"minOccurs": 0})
        spec["schema"] = {**(spec.get("schema") or {}), "format": "secret"}
        specs[name] = spec
    return {**description, "inputs": specs}


def mask_secret_inputs(description: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with each secret input in a form Airflow's masker can hide, its forms registered. The masker
    only rewrites strings, so a number or a mapping would show in clear: each becomes the string CCP receives
    anyway; a list stays a list (an enum checks its items) of strings."""
    secret = _secret_names(description)
    shown = {name: _maskable(name, value) if name in secret else value for name, value in values.items()}
    _mask_secrets(secret, shown)
    return shown


def secret_inputs_sent(description: Mapping[str, Any], values: Any) -> bool:
    """Whether any input the description marks secret has a value in ``values``."""
    return isinstance(values, Mapping) and not _secret_names(description).isdisjoint(values)


def secret_values(description: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """The values of the inputs the description marks secret, as CCP receives them (and may echo them)."""
    secret = _secret_names(description)
    found: list[str] = []
    for name, value in values.items():
        if name in secret:
            shown = _maskable(name, value)
            found += shown if isinstance(shown, list) else [shown]
    return found


def public_inputs(description: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of every input the description does not mark secret."""
    secret = _secret_names(description)
    return {name: value for name, value in values.items() if name not in secret}


def _secret_names(description: Mapping[str, Any]) -> set[str]:
    return {name for name, spec in method_inputs(description).items() if spec.secret}


def _maskable(name: str, value: Any) -> Any:
    if value is None:
        return None  # not given: nothing to hide
    try:
        if isinstance(value, list | tuple):
            return [input_value_to_string(name, item) for item in value]
        return input_value_to_string(name, value)
    except CCPInputError:
        return value  # execute() refuses it; _mask_secrets hides how it shows meanwhile


def _mask_secrets(secret: set[str], values: Mapping[str, Any]) -> None:
    # The string CCP receives, and each item of a list, which is how a rendered list shows it.
    for name in secret.intersection(values):
        value = values[name]
        items = value if isinstance(value, list | tuple) else []
        masking.mask(*(_shown_forms(name, item) for item in [value, *items]))


def _shown_forms(name: str, value: Any) -> str | None:
    """The string CCP would receive, or the text a value CCP cannot receive shows as."""
    if value is None:
        return None
    try:
        return input_value_to_string(name, value)
    except CCPInputError:
        return str(value)


def default_outputs(description: Mapping[str, Any]) -> dict[str, dict[str, str]] | None:
    """Every output the description declares, by value, and on CCP ``stdout`` and ``stderr`` too:
    what CCP's own execution form and generated code ask for. None (every output, by OGC's rule)
    for a plain OGC process that declares none."""
    outputs = output_ids(description)
    if is_ccp_description(description):
        outputs += [name for name in CCP_LOG_OUTPUTS if name not in outputs]
    return value_outputs(outputs) if outputs else None
