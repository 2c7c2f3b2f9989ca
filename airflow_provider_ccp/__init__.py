"""Apache Airflow provider for the D4Science Cloud Computing Platform (CCP).

``get_provider_info()`` is what Airflow's provider discovery reads (entry point group
``apache_airflow_provider``); the connection form is declared here once for every Airflow line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_HOOK = "airflow_provider_ccp.hooks.ccp.CCPHook"

#: The ways the ``ccp`` connection gets a token (docs/connection.md); the first is the default.
AUTH_FLOWS = (
    "password_uma",
    "password_scope",
    "context_header",
    "client_credentials",
    "refresh_token",
    "token",
    "none",
)

#: Extra fields of the ``ccp`` connection form (Airflow >= 3.2 reads them from the provider info).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "context": {
        "label": "Context (VRE)",
        "description": "The D4Science VRE path whose token CCP accepts.",
        "schema": {"type": ["string", "null"]},
    },
    "client_id": {
        "label": "Client ID",
        "description": "Keycloak client: the VRE gateway (e.g. blue-cloud.d4science.org) or a service account.",
        "schema": {"type": ["string", "null"]},
    },
    "client_secret": {
        "label": "Client secret",
        "description": "Only for auth_flow=client_credentials (service accounts).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "auth_flow": {
        "label": "Auth flow",
        "description": "How the token is obtained (docs/connection.md).",
        "schema": {
            "type": ["string", "null"],
            "enum": [*AUTH_FLOWS, None],
        },
    },
    "token_url": {
        "label": "Token URL",
        "description": "D4Science Keycloak token endpoint.",
        "schema": {"type": ["string", "null"], "format": "url"},
    },
    "ui_url": {
        "label": "CCP web UI URL",
        "description": "Base of the links to an execution in CCP's web UI.",
        "schema": {"type": ["string", "null"], "format": "url"},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "HTTP timeout per request, in seconds (default 60).",
        "schema": {"type": ["number", "null"]},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true, false, or the path of a CA bundle.",
        "schema": {"type": ["string", "null"]},
    },
}

_PLACEHOLDERS = {
    "host": "https://ccp.cloud.d4science.org",
    "login": "your D4Science user",
    "password": "password (or refresh/bearer token, by auth flow)",
    "context": "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab",
    "client_id": "blue-cloud.d4science.org",
    "auth_flow": "password_uma",
    "token_url": "https://accounts.d4science.org/auth/realms/d4science/protocol/openid-connect/token",
    "ui_url": "https://ccp.cloud.d4science.org/ui",
    "timeout": "60",
    "verify": "true",
}


def ui_field_behaviour() -> dict[str, Any]:
    return {
        "hidden_fields": ["schema", "port"],
        "relabeling": {"host": "CCP URL", "login": "D4Science user", "password": "Password / token"},
        "placeholders": _PLACEHOLDERS,
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
            }
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
        "hooks": [{"integration-name": "D4Science CCP", "python-modules": ["airflow_provider_ccp.hooks.ccp"]}],
        "operators": [{"integration-name": "D4Science CCP", "python-modules": ["airflow_provider_ccp.operators.ccp"]}],
        "sensors": [{"integration-name": "D4Science CCP", "python-modules": ["airflow_provider_ccp.sensors.ccp"]}],
        "triggers": [{"integration-name": "D4Science CCP", "python-modules": ["airflow_provider_ccp.triggers.ccp"]}],
        "connection-types": [
            {
                "connection-type": "ccp",
                "hook-class-name": _HOOK,
                "hook-name": "D4Science CCP",
                "ui-field-behaviour": {
                    "hidden-fields": ui_field_behaviour()["hidden_fields"],
                    "relabeling": ui_field_behaviour()["relabeling"],
                    "placeholders": _PLACEHOLDERS,
                },
                "conn-fields": CONN_FIELDS,
            }
        ],
        "extra-links": ["airflow_provider_ccp.links.CCPExecutionLink"],
        "config": CONFIG,
    }
