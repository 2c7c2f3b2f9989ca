"""Provider discovery: the entry point, the provider-info document, and the ``ccp`` connection type."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

import airflow_provider_ccp
from airflow_provider_ccp import get_provider_info as get_provider_info_module
from airflow_provider_ccp.connection_fields import DOCS_URL, AuthFlow
from airflow_provider_ccp.get_provider_info import get_provider_info
from airflow_provider_ccp.hooks.ccp import CCPHook

AIRFLOW_DIR = Path(airflow.__file__).parent


def test_the_entry_point_is_get_provider_info():
    (entry,) = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider_ccp")
    ]
    assert entry.load() is get_provider_info


def test_the_document_is_valid_for_this_airflow():
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-provider-ccp"
    assert info["versions"] == [airflow_provider_ccp.__version__]


def test_the_connection_type():
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == "ccp"
    assert conn_type["hook-class-name"] == "airflow_provider_ccp.hooks.ccp.CCPHook"
    assert set(conn_type["conn-fields"]) == {
        "keycloak_url",
        "client_id",
        "client_secret",
        "context",
        "auth_flow",
        "verify",
        "timeout",
        "min_download_rate",
        "ui_url",
        "server",
    }
    assert conn_type["conn-fields"]["client_secret"]["schema"]["format"] == "password"
    for spec in conn_type["conn-fields"].values():
        assert spec["label"]
        assert spec["description"]


def test_the_auth_flow_dropdown_offers_the_flows_by_name_and_shows_the_default():
    """No "null" entry that silently means password_uma: the default is preselected by its name."""
    (conn_type,) = get_provider_info()["connection-types"]
    schema = conn_type["conn-fields"]["auth_flow"]["schema"]
    assert schema["enum"] == [flow.value for flow in AuthFlow]
    assert all(type(name) is str for name in schema["enum"])  # plain JSON strings, as the form stores them
    assert schema["default"] == "password_uma"


def test_the_form_suggests_values_and_its_help_works_after_pip_install():
    (conn_type,) = get_provider_info()["connection-types"]
    fields = conn_type["conn-fields"]
    # Airflow's form turns a string field's `examples` into its placeholder and suggestions.
    for name in ("context", "client_id", "keycloak_url", "ui_url", "verify"):
        assert fields[name]["schema"]["examples"], name
    help_texts = " ".join(spec["description"] for spec in fields.values())
    assert "docs/connection.md" not in help_texts.replace(DOCS_URL, "")
    assert DOCS_URL.startswith("https://")
    assert "client_credentials" in fields["auth_flow"]["description"]


@pytest.mark.parametrize("release", ["3.1.8", "3.2.2", "3.3.0", "3.3.3", "3.4.0"])
def test_the_form_hides_port_where_the_test_button_tests_a_connection_without_one(
    release: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CCP's URL carries the port: a user fills Host and leaves no port behind for the Test button to trip on."""
    monkeypatch.setattr(get_provider_info_module, "version", lambda name: release)
    behaviour = CCPHook.get_ui_field_behaviour()
    assert "port" in behaviour["hidden_fields"]
    assert "port" not in behaviour["relabeling"]
    assert "port" in get_provider_info()["connection-types"][0]["ui-field-behaviour"]["hidden-fields"]


@pytest.mark.parametrize("release", ["3.3.1", "3.3.2"])
def test_where_the_test_button_needs_a_port_the_form_asks_for_0_and_says_why(
    release: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_provider_info_module, "version", lambda name: release)
    behaviour = CCPHook.get_ui_field_behaviour()
    assert "port" not in behaviour["hidden_fields"]
    assert "enter 0" in behaviour["relabeling"]["port"]
    assert "Test button" in behaviour["relabeling"]["port"]


def test_the_ui_field_behaviour_is_valid():
    schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    behaviour = CCPHook.get_ui_field_behaviour()
    jsonschema.validate(behaviour, schema)
    assert "schema" in behaviour["hidden_fields"]
    assert behaviour["relabeling"]["host"] == "CCP URL"
    assert behaviour["placeholders"]["keycloak_url"].startswith("https://accounts.d4science.org/")


@pytest.mark.parametrize("section", ["hooks", "operators", "sensors", "triggers"])
def test_every_listed_module_imports(section):
    for entry in get_provider_info()[section]:
        for module in entry["python-modules"]:
            assert importlib.import_module(module)


def test_every_extra_link_exists():
    for path in get_provider_info()["extra-links"]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_airflow_discovers_the_provider_and_its_hook():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-ccp" in manager.providers
    hook = manager.hooks["ccp"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_ccp.hooks.ccp.CCPHook"
    assert hook.connection_id_attribute_name == "ccp_conn_id"
    assert hook.hook_name == "D4Science CCP"
    assert hook.connection_testable


def test_reading_the_provider_info_imports_nothing_of_airflow():
    """Discovery may call it while Airflow is still importing itself: it must not import Airflow back."""
    import subprocess
    import sys

    code = (
        "import sys; from airflow_provider_ccp.get_provider_info import get_provider_info; get_provider_info(); "
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_form_the_cli_and_the_docs_read_one_declaration_of_the_fields():
    from airflow_provider_ccp.connection_fields import FIELDS
    from ccp_airflow import CONNECTION_FLAGS, build_parser

    declared = {spec.key for spec in FIELDS}
    (conn_type,) = get_provider_info()["connection-types"]
    behaviour = conn_type["ui-field-behaviour"]
    shown = set(conn_type["conn-fields"]) | set(behaviour["placeholders"]) | set(behaviour["relabeling"])
    assert shown - {"port"} <= declared  # Port: only the Test-button workaround of two releases labels it
    connection_flags = {
        option
        for group in build_parser()._action_groups
        if group.title == "connection"
        for action in group._group_actions
        for option in action.option_strings
    }
    assert connection_flags - {"--conn-id"} == {flag for flag, _ in CONNECTION_FLAGS.values()}
    assert set(CONNECTION_FLAGS) <= declared
    table = (Path(airflow_provider_ccp.__file__).parents[1] / "docs" / "connection.md").read_text()
    assert [spec.key for spec in FIELDS if spec.extra and f"| `{spec.key}` |" not in table] == []
