"""Turn any failure into one line: what went wrong, and a hint about what to do."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.connection_fields import AuthFlow
from airflow_provider_ccp.exceptions import CCPAuthError, CCPError, CCPNotFoundError
from ccp_airflow.connect import PASSWORD_ENV, ConnectionNotFoundError
from ccp_airflow.render import clean

__all__ = ["hint", "transport_reason", "one_line"]


def _auth_hint(error: CCPAuthError, settings: CCPConnectionSettings | None) -> str:
    if settings is None:
        return "check the connection's credentials"
    if settings.auth_flow in (AuthFlow.TOKEN, AuthFlow.NONE):
        return f"auth_flow={settings.auth_flow}: check the token, or pick another flow with --auth-flow"
    if settings.token_url in str(error):
        return "the token endpoint refused the login: check the user, the password and the client id"
    # CCP itself refused a token it was given: usually a token for another context or client.
    return (
        f"the token came from {settings.token_url} with auth_flow={settings.auth_flow}, "
        f"client_id={settings.client_id}, context={settings.context}: is that the context CCP expects?"
    )


def _not_found_hint(error: CCPNotFoundError) -> str:
    if error.method_id:
        return "`ccp-airflow methods list` shows the Method ids this context can see"
    if error.job_id:
        return "`ccp-airflow jobs list` shows the known jobs"
    return "this server may not offer that endpoint"


def hint(error: Exception, settings: CCPConnectionSettings | None, conn_id: str) -> str | None:
    """The hint for an error, or None when the message says it all."""
    if isinstance(error, ConnectionNotFoundError):
        return (
            f"define it (e.g. AIRFLOW_CONN_{conn_id.upper()}, `airflow connections add`, a secrets backend), "
            "or pass --url with --user/--context/--client-id"
        )
    if isinstance(error, FileExistsError):
        return "pass --force to overwrite it"
    if isinstance(error, CCPAuthError):
        return _auth_hint(error, settings)
    if isinstance(error, CCPNotFoundError):
        return _not_found_hint(error)
    if isinstance(error, CCPError) and str(error).startswith("Could not reach the token endpoint"):
        return "check the token URL (--token-url or the connection's extra 'token_url') and the network"
    if isinstance(error, CCPError) and str(error).startswith("Could not reach CCP"):
        where = settings.base_url if settings else "the connection's host"
        return f"is CCP running at {where}? Check --url or the connection's host"
    if isinstance(error, CCPError) and "needs: " in str(error):
        if PASSWORD_ENV in str(error) or "needs: --" in str(error):  # worded for --url already
            return "give them as flags; `ccp-airflow --help` lists them"
        return f"fix the Airflow connection, or with --url give them as flags (the password through {PASSWORD_ENV})"
    return None


def transport_reason(url: str, error: requests.ConnectionError) -> str:
    """Why a request did not reach its server, in words: "connection refused by 127.0.0.1:8080"."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if "refused" in str(error).lower():
        return f"connection refused by {where}"
    cause = getattr(error.args[0], "reason", None) if error.args else None
    return f"{type(cause or error).__name__} talking to {where}: {cause or error}"


def _names_only(reason: str, error: requests.ConnectionError) -> bool:
    """The hook could not reach CCP and says no more than the exception's type: not when the request
    was cut at the connection's timeout (the recorded error is then the cut, not the cause)."""
    return reason.startswith("Could not reach") and reason.rsplit(": ", 1)[-1] == type(error).__name__


def one_line(
    error: Exception,
    settings: CCPConnectionSettings | None,
    conn_id: str,
    transport: tuple[str, requests.ConnectionError] | None = None,
) -> str:
    reason = str(error) if isinstance(error, CCPError | OSError) else f"{type(error).__name__}: {error}"
    if transport is not None and isinstance(error, CCPError) and _names_only(reason, transport[1]):
        # The hook's message names only the exception type ("ConnectionError"): say what happened.
        reason = f"{reason.rsplit(': ', 1)[0]}: {transport_reason(*transport)}"
    reason = " ".join(reason.split())
    extra = hint(error, settings, conn_id)
    return clean(f"Error: {reason}" + (f" (hint: {extra})" if extra else ""))
