"""Method definitions (CCP's method.json): loading, OGC summaries, input validation, script rendering."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccp_sandbox.config import INFRASTRUCTURE

BUILTIN_DIR = Path(__file__).with_name("methods")
# Inputs CCP accepts for every Method, declared or not.
SYSTEM_INPUTS = ("ccpimage", "ccpreplicas", "ccpmaxtime", "ccpnote", "ccpsize")
MAX_REPLICAS = 32
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
JOB_CONTROL = ["async-execute", "dismiss"]
TRANSMISSION = ["value"]
SUMMARY_FIELDS = ("id", "title", "description", "version", "keywords", "metadata")


class MethodDefinitionError(ValueError):
    """A Method JSON file that cannot be run."""


class InputError(ValueError):
    """An execution request whose inputs do not fit the Method; the message names the input."""


@dataclass(frozen=True)
class ExecutionPlan:
    """What a validated execution request asks the runner to do."""

    script: str
    image: str
    replicas: int
    max_seconds: float | None


@dataclass(frozen=True)
class Method:
    document: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def inputs(self) -> dict[str, dict[str, Any]]:
        inputs: dict[str, dict[str, Any]] = self.document["inputs"]
        return inputs

    def reference(self) -> dict[str, Any]:
        return {key: self.document.get(key) for key in ("id", "title", "version")}

    def summary(self) -> dict[str, Any]:
        summary = {key: copy.deepcopy(self.document[key]) for key in SUMMARY_FIELDS if key in self.document}
        return {
            **summary,
            "jobControlOptions": JOB_CONTROL,
            "outputTransmission": TRANSMISSION,
            "links": copy.deepcopy(self.document["links"]),
        }

    def description(self) -> dict[str, Any]:
        return {**copy.deepcopy(self.document), "jobControlOptions": JOB_CONTROL, "outputTransmission": TRANSMISSION}

    def plan(self, inputs: object) -> ExecutionPlan:
        """Validate request inputs as CCP would (no server-side defaults) and render the entrypoint."""
        if not isinstance(inputs, dict):
            raise InputError("'inputs' must be a JSON object mapping input ids to string values")
        for name, value in inputs.items():
            self._check_value(name, value)
        for name in [*self._required(), "ccpimage"]:
            if name not in inputs:
                raise InputError(f"Missing required input '{name}' for method '{self.id}'")
        return ExecutionPlan(
            script=self.render(inputs),
            image=inputs["ccpimage"],
            replicas=_replicas(inputs.get("ccpreplicas", "1")),
            max_seconds=_max_seconds(inputs.get("ccpmaxtime")),
        )

    def render(self, values: Mapping[str, str]) -> str:
        """Literal {{name}} substitution, as CCP does: no quoting, so scripts must quote themselves."""
        known = {name: "" for name in [*self.inputs, *SYSTEM_INPUTS]} | dict(values)

        def substitute(match: re.Match[str]) -> str:
            return known.get(match.group(1), match.group(0))

        lines = ["#!/usr/bin/env bash"]
        for name in ("deploy-script", "execute-script"):
            lines += [f"# {name}", *(PLACEHOLDER.sub(substitute, line) for line in self._script(name))]
        return "\n".join(lines) + "\n"

    def _check_value(self, name: str, value: object) -> None:
        if name not in self.inputs and name not in SYSTEM_INPUTS:
            raise InputError(f"Unknown input '{name}' for method '{self.id}'")
        if not isinstance(value, str):
            raise InputError(
                f"Input '{name}' must be a JSON string (CCP sends every value as a string), got {type(value).__name__}"
            )
        allowed = self.inputs.get(name, {}).get("schema", {}).get("enum")
        if allowed and value not in allowed:
            raise InputError(f"Input '{name}' must be one of {allowed}, got {value!r}")

    def _required(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if int(spec.get("minOccurs", 1)) >= 1]

    def _script(self, name: str) -> list[str]:
        for parameter in self.document["additionalParameters"]["parameters"]:
            if parameter.get("name") == name:
                return [str(line) for line in parameter.get("value", [])]
        return []


def _replicas(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_REPLICAS:
        raise InputError(f"Input 'ccpreplicas' must be an integer from 1 to {MAX_REPLICAS}, got {value!r}")
    return int(value)


def _max_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise InputError(f"Input 'ccpmaxtime' must be a positive number of seconds, got {value!r}")
    return seconds


def load_method(path: Path) -> Method:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MethodDefinitionError(f"{path}: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        raise MethodDefinitionError(f"{path}: a Method is a JSON object with a string 'id'")
    inputs = document.setdefault("inputs", {})
    if not isinstance(inputs, dict):
        raise MethodDefinitionError(f"{path}: 'inputs' must be an object keyed by input id")
    for name, spec in inputs.items():
        spec.setdefault("id", name)
    parameters = document.setdefault("additionalParameters", {}).setdefault("parameters", [])
    if not any(p.get("name") == "execute-script" for p in parameters):
        raise MethodDefinitionError(f"{path}: additionalParameters.parameters needs an 'execute-script'")
    document.setdefault("version", "1.0.0")
    document.setdefault("outputs", {})
    document.setdefault("links", [{"rel": "compatibleWith", "href": f"infrastructures/{INFRASTRUCTURE}"}])
    return Method(document)


class MethodCatalog:
    """Built-in Methods plus those of extra folders; a later file with the same id replaces an earlier one."""

    def __init__(self, extra_dirs: Iterable[Path] = ()) -> None:
        self._methods: dict[str, Method] = {}
        for folder in [BUILTIN_DIR, *extra_dirs]:
            if not Path(folder).is_dir():
                raise MethodDefinitionError(f"{folder}: not a directory of Method JSON files")
            for path in sorted(Path(folder).glob("*.json")):
                method = load_method(path)
                self._methods[method.id] = method

    def get(self, method_id: str) -> Method | None:
        return self._methods.get(method_id)

    def all(self) -> list[Method]:
        return [self._methods[key] for key in sorted(self._methods)]
