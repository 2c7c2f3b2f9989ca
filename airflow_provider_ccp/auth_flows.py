"""The ways the ``ccp`` connection gets a token, and what each needs from the connection.

No imports beyond the standard library: provider discovery (``get_provider_info``) reads the flow
names before Airflow has finished importing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["AuthFlow", "DEFAULT_AUTH_FLOW", "FlowNeeds", "AUTH_FLOW_NEEDS"]


class AuthFlow(StrEnum):
    """The extra ``auth_flow`` (docs/connection.md, "Auth flows").

    A ``str`` enum: connections store the value (``"password_uma"``), and a stored string compares
    equal to its member, so connections saved before the enum existed keep working.
    """

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
    """What one flow needs: the settings that must be set, and what its Password field holds."""

    #: ``CCPConnectionSettings`` attribute names (``secret`` is the Password field).
    fields: tuple[str, ...]
    #: What the Password field holds, when it is not the user's password.
    password: str = ""


_USER_FLOW = FlowNeeds(("client_id", "context", "user", "secret"))

#: The one table of what each flow needs; the connection's validation reads it.
AUTH_FLOW_NEEDS: Mapping[AuthFlow, FlowNeeds] = {
    AuthFlow.PASSWORD_UMA: _USER_FLOW,
    AuthFlow.PASSWORD_SCOPE: _USER_FLOW,
    AuthFlow.CONTEXT_HEADER: _USER_FLOW,
    AuthFlow.CLIENT_CREDENTIALS: FlowNeeds(("client_id", "client_secret", "context")),
    AuthFlow.REFRESH_TOKEN: FlowNeeds(("client_id", "context", "secret"), "the offline/refresh token"),
    AuthFlow.TOKEN: FlowNeeds(("secret",), "the bearer token"),
    AuthFlow.NONE: FlowNeeds(()),
}
