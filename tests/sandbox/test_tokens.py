"""The Keycloak-like token endpoint: every grant, errors, expiry, refresh and revocation."""

from __future__ import annotations

import time
from urllib.parse import quote

import jwt
import pytest
import requests
from ccp_client import CCP, UMA

from ccp_sandbox.testing import SandboxServer

OTHER_CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Elsewhere"


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def password_form(sandbox: SandboxServer, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": sandbox.public_client_id,
        "username": sandbox.user,
        "password": sandbox.password,
        **extra,
    }


def can_list_jobs(sandbox: SandboxServer, token: str) -> int:
    return requests.get(f"{sandbox.url}/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def test_password_grant_gives_an_unbound_login_token(ccp: CCP, sandbox: SandboxServer) -> None:
    answer = ccp.grant(**password_form(sandbox))
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert (body["expires_in"], body["refresh_expires_in"]) == (300, 3000)
    token = claims(body["access_token"])
    assert (token["preferred_username"], token["azp"]) == (sandbox.user, sandbox.public_client_id)
    assert "aud" not in token
    assert can_list_jobs(sandbox, body["access_token"]) == 401
    assert sandbox.admin.token_grants("password") == 1


@pytest.mark.parametrize("encode", [False, True], ids=["raw", "encoded"])
def test_password_grant_with_context_scope(ccp: CCP, sandbox: SandboxServer, encode: bool) -> None:
    context = quote(sandbox.context, safe="") if encode else sandbox.context
    body = ccp.grant(**password_form(sandbox, scope=f"openid offline_access d4s-context:{context}")).json()
    assert claims(body["access_token"])["aud"] == sandbox.context
    assert body["refresh_expires_in"] == 300 * 100  # offline token
    assert can_list_jobs(sandbox, body["access_token"]) == 200


def test_password_grant_with_context_header(sandbox: SandboxServer) -> None:
    answer = requests.post(
        sandbox.token_url,
        data=password_form(sandbox),
        headers={"X-D4Science-Context": quote(sandbox.context, safe="")},
        timeout=10,
    )
    assert claims(answer.json()["access_token"])["aud"] == sandbox.context


def test_uma_ticket_with_bearer_login_token(ccp: CCP, sandbox: SandboxServer) -> None:
    login = ccp.grant(**password_form(sandbox)).json()["access_token"]
    answer = requests.post(
        sandbox.token_url,
        data={"grant_type": UMA, "audience": quote(sandbox.context, safe="")},
        headers={"Authorization": f"Bearer {login}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert claims(answer.json()["access_token"])["aud"] == sandbox.context
    assert can_list_jobs(sandbox, answer.json()["access_token"]) == 200
    assert sandbox.admin.token_grants("uma-ticket") == 1


def test_uma_ticket_for_a_foreign_context_is_denied(ccp: CCP, sandbox: SandboxServer) -> None:
    login = ccp.grant(**password_form(sandbox)).json()["access_token"]
    answer = requests.post(
        sandbox.token_url,
        data={"grant_type": UMA, "audience": OTHER_CONTEXT},
        headers={"Authorization": f"Bearer {login}"},
        timeout=10,
    )
    assert answer.status_code == 403
    assert answer.json() == {"error": "access_denied", "error_description": "not_authorized"}


def test_service_account_uma_with_basic_auth(sandbox: SandboxServer) -> None:
    answer = requests.post(
        sandbox.token_url,
        data={"grant_type": UMA, "audience": sandbox.context},
        auth=(sandbox.client_id, sandbox.client_secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token = claims(answer.json()["access_token"])
    assert (token["azp"], token["preferred_username"]) == (sandbox.client_id, f"service-account-{sandbox.client_id}")


@pytest.mark.parametrize("basic", [True, False], ids=["basic", "form"])
def test_client_credentials(sandbox: SandboxServer, basic: bool) -> None:
    form = {"grant_type": "client_credentials", "scope": f"openid d4s-context:{sandbox.context}"}
    if basic:
        answer = requests.post(
            sandbox.token_url, data=form, auth=(sandbox.client_id, sandbox.client_secret), timeout=10
        )
    else:
        credentials = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
        answer = requests.post(sandbox.token_url, data=form | credentials, timeout=10)
    assert answer.status_code == 200, answer.text
    assert can_list_jobs(sandbox, answer.json()["access_token"]) == 200
    assert sandbox.admin.token_grants("client_credentials") == 1


def test_refresh_keeps_the_context_and_can_add_one(ccp: CCP, sandbox: SandboxServer) -> None:
    bound = ccp.grant(**password_form(sandbox, scope=f"d4s-context:{sandbox.context}")).json()
    refreshed = ccp.grant(
        grant_type="refresh_token", client_id=sandbox.public_client_id, refresh_token=bound["refresh_token"]
    )
    assert claims(refreshed.json()["access_token"])["aud"] == sandbox.context

    unbound = ccp.grant(**password_form(sandbox)).json()
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.public_client_id,
        "refresh_token": unbound["refresh_token"],
    }
    answer = requests.post(sandbox.token_url, data=form, headers={"X-D4Science-Context": sandbox.context}, timeout=10)
    assert claims(answer.json()["access_token"])["aud"] == sandbox.context
    assert sandbox.admin.token_grants("refresh_token") == 2


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "password", "client_id": "ccp-sandbox", "username": "demo", "password": "wrong"},
            401,
            "invalid_grant",
        ),
        (
            {"grant_type": "password", "client_id": "nobody", "username": "demo", "password": "demo-password"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "ccp-service", "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        ({"grant_type": "client_credentials", "client_id": "ccp-sandbox"}, 400, "unauthorized_client"),
        ({"grant_type": "authorization_code", "client_id": "ccp-sandbox"}, 400, "unsupported_grant_type"),
        ({"client_id": "ccp-sandbox"}, 400, "invalid_request"),
        ({"grant_type": "refresh_token", "client_id": "ccp-sandbox", "refresh_token": "garbage"}, 400, "invalid_grant"),
        (
            {"grant_type": UMA, "client_id": "ccp-service", "client_secret": "ccp-service-secret"},
            400,
            "invalid_request",
        ),
    ],
)
def test_token_errors_look_like_keycloak(ccp: CCP, form: dict[str, str], status: int, error: str) -> None:
    answer = ccp.grant(**form)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert answer.json()["error_description"]


def test_refresh_token_of_another_client_is_rejected(ccp: CCP, sandbox: SandboxServer) -> None:
    refresh = ccp.grant(**password_form(sandbox)).json()["refresh_token"]
    answer = ccp.grant(
        grant_type="refresh_token",
        client_id=sandbox.client_id,
        client_secret=sandbox.client_secret,
        refresh_token=refresh,
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


def test_ccp_rejects_missing_and_foreign_tokens_with_a_bearer_challenge(sandbox: SandboxServer) -> None:
    foreign = jwt.encode(
        {"sub": "x", "exp": time.time() + 60, "iat": time.time()},
        "a different signing key, 32+ bytes long",
        algorithm="HS256",
    )
    for headers in ({}, {"Authorization": f"Bearer {foreign}"}, {"Authorization": "Basic ZGVtbzpkZW1v"}):
        answer = requests.get(f"{sandbox.url}/processes", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="d4science", error="invalid_token"')
        assert answer.json()["type"].endswith("/unauthorized")


def test_revoking_tokens_kills_old_ones_only(ccp: CCP, sandbox: SandboxServer) -> None:
    old = ccp.grant(**password_form(sandbox, scope=f"d4s-context:{sandbox.context}")).json()
    sandbox.admin.revoke_tokens()
    assert can_list_jobs(sandbox, old["access_token"]) == 401
    refreshed = ccp.grant(
        grant_type="refresh_token", client_id=sandbox.public_client_id, refresh_token=old["refresh_token"]
    )
    assert (refreshed.status_code, refreshed.json()["error_description"]) == (400, "Token is not active")
    new = ccp.login()
    assert can_list_jobs(sandbox, new) == 200


def test_short_lived_token_expires_then_refresh_works(tmp_path) -> None:
    with SandboxServer(tmp_path, token_ttl=1) as short:
        ccp = CCP(short)
        body = ccp.grant(**password_form(short, scope=f"d4s-context:{short.context}")).json()
        assert body["expires_in"] == 1
        assert can_list_jobs(short, body["access_token"]) == 200
        time.sleep(2.1)
        expired = requests.get(
            f"{short.url}/jobs", headers={"Authorization": f"Bearer {body['access_token']}"}, timeout=10
        )
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"].lower()
        refreshed = ccp.grant(
            grant_type="refresh_token", client_id=short.public_client_id, refresh_token=body["refresh_token"]
        )
        assert refreshed.status_code == 200, refreshed.text
        assert can_list_jobs(short, refreshed.json()["access_token"]) == 200
