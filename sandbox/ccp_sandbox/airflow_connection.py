"""The Airflow connection (as a dict) that points the provider at a sandbox instance."""

from __future__ import annotations

from typing import Any

from ccp_sandbox.config import TOKEN_PATH

#: The provider's connection extra naming the token endpoint (docs/connection.md). Written out here,
#: not imported: the sandbox imports nothing of the provider, so that it installs and runs without it.
TOKEN_ENDPOINT_FIELD = "keycloak_url"
# Flows whose secret is the user's password; for 'token' and 'refresh_token' the caller fills it in.
PASSWORD_FLOWS = ("password_uma", "password_scope", "context_header")


def airflow_connection(
    url: str,
    *,
    user: str,
    password: str,
    public_client_id: str,
    client_id: str,
    client_secret: str,
    context: str,
    auth_flow: str = "password_uma",
    **extra: Any,
) -> dict[str, Any]:
    conn: dict[str, Any] = {"conn_type": "ccp", "host": url}
    settings: dict[str, Any] = {
        TOKEN_ENDPOINT_FIELD: url + TOKEN_PATH,
        "client_id": public_client_id,
        "context": context,
        "auth_flow": auth_flow,
        "ui_url": url + "/ui",
    }
    if auth_flow == "client_credentials":
        settings |= {"client_id": client_id, "client_secret": client_secret}
    else:
        conn["login"] = user
    if auth_flow in PASSWORD_FLOWS:
        conn["password"] = password
    conn["extra"] = settings | extra
    return conn
