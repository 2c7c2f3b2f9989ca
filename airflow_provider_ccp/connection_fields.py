"""The fields of the ``ccp`` connection and its auth flows, declared once (docs/connection.md describes them).

The connection form (``get_provider_info``), the validation and its names for a missing or wrong field
(``connection``) and the command line's connection flags (``ccp_airflow``) all read ``FIELDS``. Standard library only:
provider discovery reads this before Airflow has finished importing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ConnectionField",
    "FIELDS",
    "AuthFlow",
    "DEFAULT_AUTH_FLOW",
    "AUTH_FLOW_NEEDS",
    "ServerKind",
    "DOCS_URL",
    "TOKEN_ENDPOINT_FIELD",
    "DEFAULT_HOST",
    "DEFAULT_TOKEN_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MIN_DOWNLOAD_RATE",
]

#: Where the documentation lives once the package is installed (the repository's docs/ folder).
DOCS_URL = "https://github.com/airflow-provider-ccp/airflow-provider-ccp/blob/main/docs/connection.md"
#: The extra holding the Keycloak token endpoint. Its old name, ``token_url``, contains "token", so
#: Airflow's secrets masker hid the one URL a user needs to read in forms, the API and error messages.
TOKEN_ENDPOINT_FIELD = "keycloak_url"
LEGACY_TOKEN_ENDPOINT_FIELD = "token_url"

DEFAULT_HOST = "https://ccp.cloud.d4science.org"
DEFAULT_TOKEN_URL = "https://accounts.d4science.org/auth/realms/d4science/protocol/openid-connect/token"
DEFAULT_TIMEOUT = 60.0
#: Bytes per second a download must average over each ``timeout`` window: far below any working
#: network, far above a server that drips its answer to keep a worker busy.
DEFAULT_MIN_DOWNLOAD_RATE = 1024.0
#: Connections one triggerer opens to one CCP connection, shared by all its triggers (extra ``max_connections``).
POOL_CONNECTIONS = 50
CONTEXT_EXAMPLE = "/d4science.research-infrastructures.eu/D4OS/Blue-CloudLab"


class AuthFlow(StrEnum):
    """The extra ``auth_flow`` (docs/connection.md, "Auth flows"). A ``str`` enum: a stored string compares
    equal to its member, so connections saved before the enum existed keep working."""

    PASSWORD_UMA = "password_uma"
    PASSWORD_SCOPE = "password_scope"
    CONTEXT_HEADER = "context_header"
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"
    TOKEN = "token"
    NONE = "none"


DEFAULT_AUTH_FLOW = AuthFlow.PASSWORD_UMA


@dataclass(frozen=True)
class FlowNeeds:
    #: ``CCPConnectionSettings`` attribute names (``secret`` is the Password field).
    fields: tuple[str, ...]
    #: What the Password field holds, when it is not the user's password.
    password: str = ""


_USER_FLOW = FlowNeeds(("client_id", "context", "user", "secret"))

#: What each flow needs from the connection; the connection's validation reads it.
AUTH_FLOW_NEEDS: Mapping[AuthFlow, FlowNeeds] = {
    AuthFlow.PASSWORD_UMA: _USER_FLOW,
    AuthFlow.PASSWORD_SCOPE: _USER_FLOW,
    AuthFlow.CONTEXT_HEADER: _USER_FLOW,
    AuthFlow.CLIENT_CREDENTIALS: FlowNeeds(("client_id", "client_secret", "context")),
    AuthFlow.REFRESH_TOKEN: FlowNeeds(("client_id", "context", "secret"), "the offline/refresh token"),
    AuthFlow.TOKEN: FlowNeeds(("secret",), "the bearer token"),
    AuthFlow.NONE: FlowNeeds(()),
}


class ServerKind(StrEnum):
    """What a connection's server is (extra ``server``); ``auto`` tells CCP from other OGC API - Processes
    servers per Method."""

    AUTO = "auto"
    CCP = "ccp"
    OGC = "ogc"


@dataclass(frozen=True)
class ConnectionField:
    """One field: where Airflow stores it, how the form shows it, how errors name it."""

    #: The Airflow field (``host``, ``login``, ``password``) or the extra's name.
    key: str
    #: The form's label: an extra's own, or the relabeling of a standard field.
    label: str
    #: An extra's help text and JSON schema in the form (Airflow >= 3.2 ``conn-fields``); none: not in the form.
    description: str = ""
    schema: dict[str, Any] | None = None
    placeholder: str | None = None
    #: The ``CCPConnectionSettings`` attribute a flow may need, and how a "needs:" message names it.
    setting: str | None = None
    needed_as: str | None = None

    @property
    def extra(self) -> bool:
        return self.key not in ("host", "login", "password", "schema", "port")


FIELDS: tuple[ConnectionField, ...] = (
    ConnectionField("host", "CCP URL", placeholder=DEFAULT_HOST),
    ConnectionField(
        "login",
        "D4Science user",
        placeholder="your D4Science user",
        setting="user",
        needed_as="login (the D4Science user)",
    ),
    ConnectionField(
        "password",
        "Password / token",
        placeholder="password (or refresh/bearer token, by auth flow)",
        setting="secret",
        needed_as="password",
    ),
    ConnectionField(
        "auth_flow",
        "Auth flow",
        description=(
            "How the token is obtained. password_uma (default): user + password, then a UMA ticket for the "
            "context; client_credentials: a service account (client id + secret); refresh_token / token: "
            f"the Password field holds an offline or bearer token; none: an open server. Details: {DOCS_URL}"
        ),
        schema={"type": "string", "enum": [flow.value for flow in AuthFlow], "default": DEFAULT_AUTH_FLOW.value},
        placeholder=DEFAULT_AUTH_FLOW.value,
    ),
    ConnectionField(
        "context",
        "Context (VRE)",
        description="The D4Science VRE path whose token CCP accepts, starting with '/'.",
        schema={"type": ["string", "null"], "examples": [CONTEXT_EXAMPLE]},
        placeholder=CONTEXT_EXAMPLE,
        setting="context",
        needed_as=f"extra 'context' (the VRE path, e.g. {CONTEXT_EXAMPLE})",
    ),
    ConnectionField(
        "client_id",
        "Client ID",
        description="Keycloak client: the VRE gateway (e.g. blue-cloud.d4science.org) or a service account.",
        schema={"type": ["string", "null"], "examples": ["blue-cloud.d4science.org"]},
        placeholder="blue-cloud.d4science.org",
        setting="client_id",
        needed_as="extra 'client_id'",
    ),
    ConnectionField(
        "client_secret",
        "Client secret",
        description="Only for auth_flow=client_credentials (service accounts).",
        schema={"type": ["string", "null"], "format": "password"},
        setting="client_secret",
        needed_as="extra 'client_secret'",
    ),
    ConnectionField(
        TOKEN_ENDPOINT_FIELD,
        "Token URL (Keycloak)",
        description=(
            "D4Science Keycloak token endpoint; empty: production "
            "(https://accounts.d4science.org/...). Older connections may name this extra token_url."
        ),
        schema={
            "type": ["string", "null"],
            "examples": [
                DEFAULT_TOKEN_URL,
                "https://accounts.dev.d4science.org/auth/realms/d4science/protocol/openid-connect/token",
            ],
        },
        placeholder=DEFAULT_TOKEN_URL,
    ),
    ConnectionField(
        "ui_url",
        "CCP web UI URL",
        description='Base of the "CCP execution" links to an execution in CCP\'s web UI; empty: the API URL.',
        schema={"type": ["string", "null"], "examples": ["https://ccp.cloud.d4science.org/ui"]},
        placeholder="https://ccp.cloud.d4science.org/ui",
    ),
    ConnectionField(
        "server",
        "Server",
        description=(
            "auto (default): CCP when the inputs or the Method name ccpimage; ccp: every input value as a string; "
            "ogc: another OGC API - Processes server, inputs sent as the types their schemas declare."
        ),
        schema={"type": "string", "enum": [kind.value for kind in ServerKind], "default": ServerKind.AUTO.value},
    ),
    ConnectionField(
        "timeout",
        "Timeout (s)",
        description=f"HTTP timeout per request, in seconds; empty: {DEFAULT_TIMEOUT:g}.",
        schema={"type": ["number", "null"], "examples": [60]},
        placeholder=f"{DEFAULT_TIMEOUT:g}",
    ),
    ConnectionField(
        "min_download_rate",
        "Minimum download rate (bytes/s)",
        description=(
            "An output download must average this many bytes per second over each timeout window, "
            f"else it fails; empty: {DEFAULT_MIN_DOWNLOAD_RATE:g}; 0: any progress within each timeout."
        ),
        schema={"type": ["number", "null"], "examples": [1024]},
        placeholder=f"{DEFAULT_MIN_DOWNLOAD_RATE:g}",
    ),
    ConnectionField(
        "verify",
        "Verify TLS",
        description="true (default), false, or the path of a CA bundle file.",
        schema={"type": ["string", "null"], "examples": ["true", "false"]},
        placeholder="true",
    ),
    # Read by the triggerer's pool only (docs/connection.md, "Connection pool"); set in the Extra JSON.
    ConnectionField("max_connections", "Max connections"),
)
