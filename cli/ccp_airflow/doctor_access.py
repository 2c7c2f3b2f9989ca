"""The doctor's first steps: the connection, the network, and the token flow as the provider runs it."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from airflow_provider_ccp import auth
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.connection_fields import AuthFlow
from airflow_provider_ccp.exceptions import CCPError, CCPTrustError
from airflow_provider_ccp.hooks._requests import send
from ccp_airflow import errors, verbose
from ccp_airflow.connect import resolve_settings
from ccp_airflow.doctor_state import UMA_GRANT, Doctor, DoctorHook, Failed, GrantRecord, Outcome, Step

__all__ = ["check_connection", "check_network", "check_token", "check_context", "check_lifetime"]


# --------------------------------------------------------------------------- the steps


def check_connection(d: Doctor, step: Step) -> None:
    try:
        settings = d.settings = resolve_settings(d.args)
    except CCPError as error:
        raise Failed(str(error), errors.hint(error, None, d.args.conn_id) or "the field the message names") from None
    d.hook = DoctorHook(d.args.conn_id, settings)
    if d.args.verbose:
        verbose.trace(d.hook.session)
        verbose.trace(d.hook.token_session)
    given = ", ".join(
        name for name, value in (("password", settings.secret), ("client secret", settings.client_secret)) if value
    )
    step.evidence += [
        f"host {settings.base_url}, auth_flow {settings.auth_flow}, token endpoint {settings.token_url}",
        f"client_id {settings.client_id}, context {settings.context}, user {settings.user}",
        f"set: {given or 'no secret'}",
        f"verify {settings.verify}, timeout {settings.timeout:g} s, server {settings.server}",
    ]


def _tls_spoken(host: str, port: int, timeout: float) -> bool:
    """Whether the port completes a TLS handshake (certificate unchecked: this only names the protocol)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except OSError:
        return False


def _reach(d: Doctor, step: Step, url: str, session: requests.Session, fix: str) -> None:
    settings, _ = d.ready
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except OSError as error:
        raise Failed(f"DNS: {host} does not resolve ({error})", fix) from None
    try:
        socket.create_connection((host, port), timeout=settings.timeout).close()
    except OSError as error:
        raise Failed(f"TCP: {host}:{port} ({', '.join(addresses)}) refused or unreachable ({error})", fix) from None
    try:
        answer = send(session, "GET", url, settings)
    except CCPTrustError as error:
        raise Failed(str(error), d.setting("verify")) from None
    if answer.status is None:
        reason = (
            errors.transport_reason(url, answer.response)
            if isinstance(answer.response, requests.ConnectionError)
            else str(answer.response)
        )
        if parts.scheme == "https" and isinstance(answer.response, requests.exceptions.SSLError):
            raise Failed(f"TLS: {reason}; {host}:{port} does not speak TLS", f"{fix}: http:// instead of https://")
        if parts.scheme == "http" and _tls_spoken(host, port, settings.timeout):
            raise Failed(f"HTTP: {reason}; {host}:{port} speaks TLS", f"{fix}: https:// instead of http://")
        raise Failed(f"HTTP: {reason}", fix)
    kind = answer.response.headers.get("Content-Type", "no content type")
    if url == settings.base_url:
        d.landing_type = kind
    if parts.scheme == "http":
        tls = "plain http, no TLS"
        if not (parts.hostname or "").startswith("127.") and parts.hostname != "localhost":
            step.notes.append(f"{host} is reached over plain http: passwords and tokens cross the network unencrypted")
    elif settings.verify is False:
        tls = "TLS, certificate NOT checked (verify false)"
        step.notes.append(f"verify is false: anyone between you and {host} can read the tokens")
    else:
        bundle = "the default CA bundle" if settings.verify is True else settings.verify
        tls = f"TLS, certificate verified against {bundle}"
    step.evidence.append(
        f"{host}:{port} ({', '.join(addresses)}): TCP connected; {tls}; GET {url} → HTTP {answer.status} ({kind})"
    )


def check_network(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    _reach(d, step, settings.base_url, hook.session, d.setting("host"))
    if settings.auth_flow not in (AuthFlow.TOKEN, AuthFlow.NONE):
        _reach(d, step, settings.token_url, hook.token_session, d.setting("token_url"))


def _context_refusal(d: Doctor, error: CCPError) -> bool:
    """The grant that binds the token to the context refused: the context step reports it."""
    settings, hook = d.ready
    return error.http_status == 403 or bool(hook.grants and _binds_context(settings, hook.grants[-1]))


def _binds_context(settings: CCPConnectionSettings, grant: GrantRecord) -> bool:
    """With password_uma the login and the context are two grants: the second is the context step's."""
    return settings.auth_flow == AuthFlow.PASSWORD_UMA and grant.grant == UMA_GRANT


def _token_fix(d: Doctor, error: CCPError) -> str:
    settings, _ = d.ready
    word = error.title or ""
    if error.http_status is None or error.http_status not in (400, 401):
        return f"{d.setting('token_url')}: {settings.token_url} is not a token endpoint that answers this grant"
    if word in ("invalid_client", "unauthorized_client"):
        return f"{d.setting('client_id')} and {d.setting('client_secret')}"
    if settings.auth_flow == AuthFlow.REFRESH_TOKEN:
        return f"{d.setting('password')}: a new offline (refresh) token"
    return f"{d.setting('login')} and {d.setting('password')} (user {settings.user!r} at {settings.token_url})"


def check_token(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    if settings.auth_flow == AuthFlow.NONE:
        step.outcome = Outcome.SKIPPED
        step.evidence.append("auth_flow none: no token is sent")
        return
    try:
        hook.get_token()
    except CCPError as error:
        if not _context_refusal(d, error):
            step.evidence += [grant.line() for grant in hook.grants]
            raise Failed(str(error), _token_fix(d, error)) from None
        d.context_error = error
    step.evidence += [grant.line() for grant in hook.grants if not _binds_context(settings, grant)]
    if settings.auth_flow == AuthFlow.TOKEN:
        step.evidence.append("auth_flow token: the pre-issued token in the password field is used as it is")


def _claims(token: str | None) -> dict[str, Any]:
    try:
        payload = (token or "").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


CONTEXT_CARRIERS = {
    AuthFlow.PASSWORD_SCOPE: "the password grant's scope d4s-context:<context>",
    AuthFlow.CONTEXT_HEADER: "the password grant's X-D4Science-Context header",
    AuthFlow.CLIENT_CREDENTIALS: "the service account's uma-ticket grant (audience = the context)",
    AuthFlow.REFRESH_TOKEN: "the refresh grant's X-D4Science-Context header",
    AuthFlow.TOKEN: "the pre-issued token itself",
}


def check_context(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    if settings.auth_flow == AuthFlow.NONE:
        step.outcome = Outcome.SKIPPED
        return
    if settings.auth_flow == AuthFlow.PASSWORD_UMA:
        step.evidence += [grant.line() for grant in hook.grants if _binds_context(settings, grant)]
    else:
        step.evidence.append(f"the context is carried by {CONTEXT_CARRIERS[settings.auth_flow]}")
    if d.context_error is not None:
        raise Failed(str(d.context_error), f"{d.setting('context')}: a VRE path your account is a member of")
    token = hook._token_state.usable_token(hook.clock.monotonic())
    claims = _claims(token)
    audiences = claims.get("aud")
    audiences = [unquote(str(aud)) for aud in (audiences if isinstance(audiences, list) else [audiences]) if aud]
    if settings.context in audiences:
        step.evidence.append(f"the token's audience is the context {settings.context}")
    elif claims:
        step.notes.append(
            f"the token's audience is {audiences or 'not set'}, not {settings.context}: CCP may refuse it"
        )
    else:
        step.notes.append("the token is not a JWT: its context cannot be read here (CCP's answer below tells)")


def check_lifetime(d: Doctor, step: Step) -> None:
    settings, hook = d.ready
    state = hook._token_state
    if settings.auth_flow == AuthFlow.NONE or state.context is None:
        step.outcome = Outcome.SKIPPED
        return
    if settings.auth_flow == AuthFlow.TOKEN:
        expires = state.context.expires_at
        left = (
            f"{expires - hook.clock.monotonic():.0f} s left (its exp claim)" if expires is not None else "no exp claim"
        )
        step.evidence.append(f"pre-issued token: {left}; auth_flow token cannot renew it")
        return
    issued = hook.grants[-1]
    if issued.expires_in is None:
        step.notes.append("no expires_in: the provider uses the token until CCP answers 401, then renews it")
    else:
        lead = min(auth.REFRESH_LEAD_SECONDS, float(issued.expires_in) * 0.1)
        step.evidence.append(f"the context token lives {issued.expires_in} s; the provider renews it {lead:g} s early")
    before = len(hook.grants)
    state.reject(state.context.access_token)  # as a 401 from CCP would: the next call renews it
    try:
        hook.get_token()
    except CCPError as error:
        raise Failed(f"renewing the token failed: {error}", _token_fix(d, error)) from None
    renewal = hook.grants[before:]
    step.evidence.append("renewal: " + "; ".join(grant.line() for grant in renewal))
    if not issued.refresh_token:
        step.notes.append(f"no refresh token: each renewal runs the whole flow again ({len(renewal)} grant(s))")
    elif renewal[0].grant != "refresh_token" or renewal[0].status != 200:
        step.notes.append("the refresh token was not accepted: the provider logged in afresh")
