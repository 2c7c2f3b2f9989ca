"""Apache Airflow provider for the D4Science Cloud Computing Platform (CCP).

``__all__`` is what DAG authors import (``from airflow_provider_ccp import CCPExecuteMethodOperator``), each
name loaded on first use (PEP 562): importing the package imports nothing else, for the build, the CLI and
Airflow's provider discovery.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Where each public name lives: the errors are those a DAG's own code catches or a failure callback tells
#: apart (every one is in ``exceptions``).
_PUBLIC = {
    name: module
    for module, names in {
        "hooks.ccp": "CCPHook CCPAsyncHook DownloadedOutputs",
        "operators.ccp": "CCPExecuteMethodOperator",
        "sensors.ccp": "CCPJobSensor",
        "triggers.ccp": "CCPJobTrigger CCPExecutionEventTrigger",
        "decorators.ccp": "ccp_task",
        "links": "CCPExecutionLink",
        "protocol": "StatusInfo SyncResults",
        "operations": "DismissResult",
        "outputs": "StoredOutputs",
        "exceptions": "CCPError CCPJobFailedError CCPJobTimeoutError CCPAmbiguousSubmissionError CCPInputError "
        "CCPNotFoundError CCPAuthError",
    }.items()
    for name in names.split()
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value
