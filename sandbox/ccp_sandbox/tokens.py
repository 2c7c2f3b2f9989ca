"""A Keycloak-like token service for the ``d4science`` realm: grants, JWTs, revocation.

Tokens are HS256 JWTs signed with a key drawn at start-up, so tokens never survive a restart.
A revocation *generation* claim lets "revoke every token issued so far" be a single counter bump.
"""

from __future__ import annotations

import base64
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import jwt

from ccp_sandbox.config import SandboxConfig

UMA_GRANT = "urn:ietf:params:oauth:grant-type:uma-ticket"
CONTEXT_SCOPE_PREFIX = "d4s-context:"
CONTEXT_HEADER = "x-d4science-context"
OFFLINE_SCOPE = "offline_access"
ACCESS_TYPE = "Bearer"
REFRESH_TYPES = ("Refresh", "Offline")
REFRESH_FACTOR = 10
OFFLINE_FACTOR = 100
INACTIVE = "Token is not active"


class TokenError(Exception):
    """A Keycloak-style OAuth error: ``{"error", "error_description"}`` with an HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Principal:
    """Who a valid access token speaks for, and in which context (None = not context-bound)."""

    user: str
    client_id: str
    context: str | None


@dataclass(frozen=True)
class _Subject:
    user: str
    client_id: str


class TokenService:
    def __init__(self, config: SandboxConfig) -> None:
        self._key = secrets.token_bytes(32)
        self.ttl = config.token_ttl
        self._users = dict(config.users)
        self._clients = dict(config.clients)
        self._public_clients = frozenset(config.public_clients)
        self._contexts = frozenset(config.contexts)
        self._generation = 0

    def revoke_all(self) -> None:
        self._generation += 1

    def grant(self, form: Mapping[str, str], headers: Mapping[str, str], issuer: str) -> tuple[str, dict]:
        """Answer one token request; returns the grant's counter name and the JSON body."""
        grant_type = form.get("grant_type", "")
        if grant_type == "password":
            return "password", self._password(form, headers, issuer)
        if grant_type == UMA_GRANT:
            return "uma-ticket", self._uma(form, headers, issuer)
        if grant_type == "client_credentials":
            return "client_credentials", self._client_credentials(form, headers, issuer)
        if grant_type == "refresh_token":
            return "refresh_token", self._refresh(form, headers, issuer)
        if not grant_type:
            raise TokenError(400, "invalid_request", "Missing form parameter: grant_type")
        raise TokenError(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")

    def verify_access(self, token: str) -> Principal:
        """Check an access token; raises TokenError(401, 'invalid_token', why)."""
        try:
            claims = self._decode(token)
        except TokenError as error:
            raise TokenError(401, "invalid_token", error.description) from None
        if claims.get("typ") != ACCESS_TYPE:
            raise TokenError(401, "invalid_token", "Not an access token")
        return Principal(claims["preferred_username"], claims["azp"], claims.get("aud"))

    # -- grants -------------------------------------------------------------------------------

    def _password(self, form: Mapping[str, str], headers: Mapping[str, str], issuer: str) -> dict:
        client_id = self._authenticate_client(form, headers, service_account=False)
        username = _required(form, "username")
        password = self._users.get(username)
        if password is None or not hmac.compare_digest(password, form.get("password", "")):
            raise TokenError(401, "invalid_grant", "Invalid user credentials")
        scopes = form.get("scope", "").split()
        context = self._requested_context(scopes, headers)
        return self._issue(_Subject(username, client_id), context, scopes, issuer)

    def _uma(self, form: Mapping[str, str], headers: Mapping[str, str], issuer: str) -> dict:
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            try:
                principal = self.verify_access(authorization[7:].strip())
            except TokenError as error:
                raise TokenError(401, "invalid_grant", f"Invalid bearer token: {error.description}") from None
            subject = _Subject(principal.user, principal.client_id)
        else:
            client_id = self._authenticate_client(form, headers, service_account=True)
            subject = _Subject(service_account(client_id), client_id)
        context = self._known_context(_required(form, "audience"))
        return self._issue(subject, context, form.get("scope", "").split(), issuer)

    def _client_credentials(self, form: Mapping[str, str], headers: Mapping[str, str], issuer: str) -> dict:
        client_id = self._authenticate_client(form, headers, service_account=True)
        scopes = form.get("scope", "").split()
        context = self._requested_context(scopes, headers)
        return self._issue(_Subject(service_account(client_id), client_id), context, scopes, issuer)

    def _refresh(self, form: Mapping[str, str], headers: Mapping[str, str], issuer: str) -> dict:
        client_id = self._authenticate_client(form, headers, service_account=False)
        try:
            claims = self._decode(_required(form, "refresh_token"))
        except TokenError:
            raise TokenError(400, "invalid_grant", INACTIVE) from None
        if claims.get("typ") not in REFRESH_TYPES:
            raise TokenError(400, "invalid_grant", INACTIVE)
        if claims.get("azp") != client_id:
            raise TokenError(
                400, "invalid_grant", "Invalid refresh token. Token client and authorized client don't match"
            )
        header_context = headers.get(CONTEXT_HEADER)
        context = self._known_context(header_context) if header_context else claims.get("ctx")
        scopes = str(claims.get("scope", "")).split()
        return self._issue(_Subject(claims["preferred_username"], client_id), context, scopes, issuer)

    # -- helpers ------------------------------------------------------------------------------

    def _authenticate_client(
        self, form: Mapping[str, str], headers: Mapping[str, str], *, service_account: bool
    ) -> str:
        """Public clients need only their id; confidential ones (the only ones with service accounts) a secret too."""
        client_id, secret = _basic_credentials(headers.get("authorization", "")) or (
            form.get("client_id", ""),
            form.get("client_secret"),
        )
        expected = self._clients.get(client_id)
        if expected is not None:
            if secret is None or not hmac.compare_digest(expected, secret):
                raise TokenError(401, "invalid_client", "Invalid client or Invalid client credentials")
            return client_id
        if client_id in self._public_clients:
            if service_account:
                raise TokenError(400, "unauthorized_client", "Public client not allowed to retrieve service account")
            return client_id
        if not client_id:
            raise TokenError(401, "invalid_client", "Missing parameter: client_id")
        raise TokenError(401, "invalid_client", "Invalid client or Invalid client credentials")

    def _requested_context(self, scopes: list[str], headers: Mapping[str, str]) -> str | None:
        for scope in scopes:
            if scope.startswith(CONTEXT_SCOPE_PREFIX):
                return self._known_context(scope.removeprefix(CONTEXT_SCOPE_PREFIX))
        header_context = headers.get(CONTEXT_HEADER)
        return self._known_context(header_context) if header_context else None

    def _known_context(self, value: str) -> str:
        # Public clients send the context raw (/a/b) or %2F-encoded; both must name the same VRE.
        context = unquote(value)
        if context not in self._contexts:
            raise TokenError(403, "access_denied", "not_authorized")
        return context

    def _issue(self, subject: _Subject, context: str | None, scopes: list[str], issuer: str) -> dict:
        now = time.time()
        offline = OFFLINE_SCOPE in scopes
        refresh_ttl = self.ttl * (OFFLINE_FACTOR if offline else REFRESH_FACTOR)
        scope = " ".join(scopes) or "profile email"
        common = {
            "iss": issuer,
            "iat": int(now),
            "sub": subject.user,
            "preferred_username": subject.user,
            "azp": subject.client_id,
            "scope": scope,
            "gen": self._generation,
        }
        # Rounding exp up guarantees a token lives at least `ttl` seconds, even with ttl=1.
        access = {**common, "typ": ACCESS_TYPE, "jti": str(uuid.uuid4()), "exp": math.ceil(now + self.ttl)}
        if context is not None:
            access["aud"] = context
        refresh = {
            **common,
            "typ": REFRESH_TYPES[1] if offline else REFRESH_TYPES[0],
            "jti": str(uuid.uuid4()),
            "exp": math.ceil(now + refresh_ttl),
            "ctx": context,
        }
        return {
            "access_token": self._encode(access),
            "expires_in": self.ttl,
            "refresh_expires_in": refresh_ttl,
            "refresh_token": self._encode(refresh),
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": scope,
        }

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="HS256")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                options={"verify_aud": False, "require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(400, "invalid_token", "Token expired") from None
        except jwt.InvalidTokenError:
            raise TokenError(400, "invalid_token", "Malformed or foreign token") from None
        if claims.get("gen") != self._generation:
            raise TokenError(400, "invalid_token", "Token revoked")
        return claims


def service_account(client_id: str) -> str:
    return f"service-account-{client_id}"


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise TokenError(400, "invalid_request", f"Missing form parameter: {name}")
    return value


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise TokenError(401, "invalid_client", "Malformed Basic authorization header") from None
    if not sep:
        raise TokenError(401, "invalid_client", "Malformed Basic authorization header")
    return client_id, secret
