"""Every module of the provider and of ``ccp-airflow`` says what its public surface is (``__all__``): the API
reference and ``from module import *`` show that, and nothing the module merely imports or keeps for itself."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import airflow_provider_ccp
import ccp_airflow

PACKAGES = [airflow_provider_ccp, ccp_airflow]
MODULES = sorted(
    info.name
    for package in PACKAGES
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    if not info.name.rsplit(".", 1)[1].startswith("_")  # private modules keep no public surface
)


def test_every_module_is_checked():
    assert {
        "airflow_provider_ccp.operators.ccp",
        "airflow_provider_ccp.submission",
        "ccp_airflow.commands",
    } <= set(MODULES)


@pytest.mark.parametrize("name", [package.__name__ for package in PACKAGES] + MODULES)
def test_each_module_names_its_public_surface(name):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ names something twice"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert not [item for item in exported if item.startswith("_") and item != "__version__"]


@pytest.mark.parametrize(
    ("name", "main"),
    [
        ("airflow_provider_ccp.operators.ccp", "CCPExecuteMethodOperator"),
        ("airflow_provider_ccp.sensors.ccp", "CCPJobSensor"),
        ("airflow_provider_ccp.triggers.ccp", "CCPJobTrigger"),
        ("airflow_provider_ccp.hooks.ccp", "CCPHook"),
        ("airflow_provider_ccp.connection", "CCPConnectionSettings"),
        ("airflow_provider_ccp.links", "CCPExecutionLink"),
    ],
)
def test_the_main_class_comes_first_and_internal_constants_stay_out(name, main):
    exported = importlib.import_module(name).__all__
    assert exported[0] == main
    assert "STATE_KEY" not in exported
    assert "LOGGED_FILES" not in exported


def test_the_package_offers_what_dag_authors_import_and_loads_it_on_first_use():
    import subprocess
    import sys

    script = (
        "import sys, airflow_provider_ccp as p; "
        "assert 'airflow_provider_ccp.hooks.ccp' not in sys.modules; "
        "from airflow_provider_ccp import CCPHook, CCPExecuteMethodOperator, CCPError, StatusInfo; "
        "from airflow_provider_ccp.hooks.ccp import CCPHook as H; assert CCPHook is H"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("CCPAsyncHook", "CCPJobSensor", "CCPJobTrigger", "ccp_task", "CCPJobFailedError", "StoredOutputs"):
        assert name in airflow_provider_ccp.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = airflow_provider_ccp.nothing
