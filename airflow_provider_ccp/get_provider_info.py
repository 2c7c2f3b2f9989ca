"""What Airflow's provider discovery reads (entry point group ``apache_airflow_provider``), and the connection
form from ``connection_fields.FIELDS``: 3.2+ reads ``conn-fields`` here, 3.1 asks the hook. Nothing of Airflow is
imported: discovery may run while Airflow is still importing itself.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from airflow_provider_ccp import __version__
from airflow_provider_ccp.connection_fields import FIELDS

__all__ = ["get_provider_info", "ui_field_behaviour", "connection_form_widgets", "CONN_FIELDS", "CONFIG"]

#: The connection id the hooks, the operator and ``ccp-airflow`` use when none is given.
DEFAULT_CONN_ID = "ccp_default"

#: Extra fields of the ``ccp`` connection form (Airflow >= 3.2 reads them from the provider info).
#: ``examples`` is what Airflow's form shows as suggestions (its placeholders apply to standard fields only).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    spec.key: {"label": spec.label, "description": spec.description, "schema": spec.schema}
    for spec in FIELDS
    if spec.extra and spec.schema is not None
}


#: The Airflow releases whose Test button (in the connection list) cannot test a connection saved without a port:
#: their UI sends ``port: 0`` for an empty port, and their API refuses 0 against the stored null as "another
#: destination" (apache/airflow #69957, released in 3.3.1; fixed upstream by #73298).
TEST_BUTTON_NEEDS_A_PORT = ("3.3.1", "3.3.2")


def _installed_airflow() -> str | None:
    """Read from the distribution's metadata: discovery may run while Airflow is still importing itself, so
    this Airflow-version branch cannot come from version_compat (which imports Airflow)."""
    try:
        return version("apache-airflow")
    except PackageNotFoundError:
        return None


def ui_field_behaviour() -> dict[str, Any]:
    # CCP's URL carries the port (Host holds the whole URL), so the form hides Port; except on the
    # releases whose Test button needs a port stored, where it asks for 0 ("no port" to the provider).
    needs_port = _installed_airflow() in TEST_BUTTON_NEEDS_A_PORT
    labels = {spec.key: spec.label for spec in FIELDS if not spec.extra}
    if needs_port:
        labels["port"] = "Port: enter 0 (the URL carries the port; this Airflow's Test button needs a number)"
    return {
        "hidden_fields": ["schema"] if needs_port else ["schema", "port"],
        "relabeling": labels,
        "placeholders": {spec.key: spec.placeholder for spec in FIELDS if spec.placeholder is not None},
    }


def connection_form_widgets() -> dict[str, Any]:
    """wtforms widgets for Airflow 3.1 when the FAB UI libraries are installed."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from wtforms import PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in CONN_FIELDS.items():
        secret = spec["schema"].get("format") == "password"
        field_class, widget = (PasswordField, BS3PasswordFieldWidget) if secret else (StringField, BS3TextFieldWidget)
        widgets[name] = field_class(spec["label"], widget=widget(), description=spec["description"])
    return widgets


#: The ``[ccp]`` section of airflow.cfg (``AIRFLOW__CCP__<OPTION>``), shown by ``airflow config list``.
CONFIG: dict[str, Any] = {
    "ccp": {
        "description": "Defaults of the D4Science CCP provider's operators (docs/deployment.md).\n",
        "options": {
            "output_path": {
                "description": (
                    "Where CCPExecuteMethodOperator puts a Method's outputs when the task sets no output_path: "
                    "a local folder or any ObjectStoragePath URI (s3://<conn_id>@<bucket>/<prefix>, gs://...). "
                    "Empty: $AIRFLOW_HOME/ccp-outputs on the worker's own disk, which downstream tasks on other "
                    "machines (Celery, Kubernetes, Edge workers) cannot read.\n"
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://aws_default@my-bucket/ccp-outputs",
                "default": "",
            },
            "min_defer_seconds": {
                "description": (
                    "How long after a deferral a CCP task is resumed at the earliest, even when its execution ended "
                    "sooner: Airflow fails a task whose trigger fires before the scheduler has read the executor's "
                    "report of the deferring worker's exit (apache/airflow #66374, #67287, #71580, #72716). "
                    "0 turns the hold off (docs/operators.md).\n"
                ),
                "version_added": "0.2.0",
                "type": "float",
                "example": "10",
                "default": "10",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-ccp",
        "name": "D4Science CCP",
        "description": "Run D4Science Cloud Computing Platform (CCP) Methods as Airflow tasks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "D4Science CCP",
                "external-doc-url": "https://ccp.cloud.d4science.org/docs/",
                "tags": ["service"],
            }
        ],
        **{
            kind: [{"integration-name": "D4Science CCP", "python-modules": [f"airflow_provider_ccp.{kind}.ccp"]}]
            for kind in ("hooks", "operators", "sensors", "triggers")
        },
        "task-decorators": [{"class-name": "airflow_provider_ccp.decorators.ccp.ccp_task", "name": "ccp"}],
        "connection-types": [
            {
                "connection-type": "ccp",
                "hook-class-name": "airflow_provider_ccp.hooks.ccp.CCPHook",
                "hook-name": "D4Science CCP",
                "ui-field-behaviour": {key.replace("_", "-"): value for key, value in ui_field_behaviour().items()},
                "conn-fields": CONN_FIELDS,
            }
        ],
        "extra-links": ["airflow_provider_ccp.links.CCPExecutionLink"],
        "config": CONFIG,
    }
