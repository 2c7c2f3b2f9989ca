"""CCPAsyncHook (httpx) against real HTTP on loopback: same wire format, one refresh for many callers."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from airflow_provider_ccp import auth
from airflow_provider_ccp.exceptions import CCPAuthError, CCPError, CCPNotFoundError
from airflow_provider_ccp.hooks import ccp
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from tests.unit.doubles import (
    CLIENT_ID,
    ENCODED_CONTEXT,
    UMA,
    USER,
    bearer_of,
    ccp_requests,
    status_body,
)


def serve_job(httpserver: HTTPServer, job_id: str = "j1", status: str = "running") -> None:
    httpserver.expect_request(f"/jobs/{job_id}", method="GET").respond_with_json(status_body(job_id, status))


async def test_password_uma_on_the_wire(make_conn, keycloak, httpserver, password):
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn()) as hook:
        assert (await hook.get_job("j1")).status == "running"
    login, uma = keycloak.calls
    assert login.form == {"grant_type": "password", "client_id": CLIENT_ID, "username": USER, "password": password}
    assert login.headers["content-type"] == "application/x-www-form-urlencoded"
    assert uma.form == {"grant_type": UMA, "audience": ENCODED_CONTEXT}
    assert uma.headers["authorization"] == f"Bearer {login.answer['access_token']}"
    (request,) = ccp_requests(httpserver)
    assert bearer_of(request) == uma.answer["access_token"]
    assert request.headers["Accept"] == "application/json"


@pytest.mark.parametrize(
    ("flow", "conn_kwargs"),
    [
        ("password_uma", {}),
        ("password_scope", {}),
        ("context_header", {}),
        ("client_credentials", {"login": None, "secret": "", "client_secret": "svc-secret"}),
        ("refresh_token", {"login": None, "secret": "offline-token"}),
    ],
)
async def test_sync_and_async_send_the_same_token_requests(make_conn, keycloak, httpserver, flow, conn_kwargs):
    serve_job(httpserver)
    conn = make_conn(auth_flow=flow, **conn_kwargs)
    CCPHook(conn).get_job("j1")
    sync_calls = [(call.form, call.headers) for call in keycloak.calls]
    auth.TOKEN_CACHE.clear()
    keycloak.calls.clear()
    async with CCPAsyncHook(conn) as hook:
        await hook.get_job("j1")
    async_calls = [(call.form, call.headers) for call in keycloak.calls]

    def comparable(calls):
        # Tokens differ per run and each library names itself; everything else must be identical.
        return [
            (
                form,
                {k: ("Bearer …" if v.startswith("Bearer ") else v) for k, v in headers.items() if k in _TOKEN_HEADERS},
            )
            for form, headers in calls
        ]

    assert len(sync_calls) == len(async_calls) >= 1
    assert comparable(sync_calls) == comparable(async_calls)


_TOKEN_HEADERS = {"authorization", "content-type", "accept", "x-d4science-context"}


async def test_client_credentials_is_basic_auth(make_conn, keycloak, httpserver, client_secret):
    serve_job(httpserver)
    conn = make_conn(auth_flow="client_credentials", login=None, secret="", client_secret=client_secret)
    async with CCPAsyncHook(conn) as hook:
        await hook.get_job("j1")
    (grant,) = keycloak.calls
    assert (
        grant.headers["authorization"] == "Basic " + base64.b64encode(f"{CLIENT_ID}:{client_secret}".encode()).decode()
    )


async def test_none_flow_sends_no_authorization(make_conn, keycloak, httpserver):
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret="")) as hook:
        assert await hook.get_token() is None
        await hook.get_job("j1")
    assert keycloak.calls == []
    assert "Authorization" not in ccp_requests(httpserver)[0].headers


async def test_sync_and_async_hooks_share_the_process_cache(make_conn, keycloak, httpserver):
    serve_job(httpserver)
    conn = make_conn()
    CCPHook(conn).get_job("j1")
    async with CCPAsyncHook(conn) as hook:
        await hook.get_job("j1")
    assert keycloak.grants == ["password", UMA]


async def test_a_hundred_callers_with_an_empty_cache_cause_one_login(make_conn, keycloak, httpserver):
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn()) as hook:
        results = await asyncio.gather(*(hook.get_job("j1") for _ in range(100)))
    assert len(results) == 100
    assert keycloak.grants == ["password", UMA]


async def test_a_hundred_callers_with_an_expired_token_cause_one_refresh(make_conn, keycloak, httpserver, clock):
    serve_job(httpserver)
    conn = make_conn()
    async with CCPAsyncHook(conn) as hook:
        await hook.get_job("j1")
        stale = keycloak.last_access_token()
        clock.offset = 290  # the 300 s token is past its renewal point; its refresh token lives on
        # Separate hook instances, as separate triggers in one triggerer would be.
        others = [CCPAsyncHook(conn) for _ in range(99)]
        try:
            results = await asyncio.gather(hook.get_job("j1"), *(other.get_job("j1") for other in others))
        finally:
            await asyncio.gather(*(other.aclose() for other in others))
    assert [r.job_id for r in results] == ["j1"] * 100
    assert keycloak.grants == ["password", UMA, "refresh_token"]
    fresh = keycloak.last_access_token()
    assert fresh != stale
    assert [bearer_of(r) for r in ccp_requests(httpserver)[1:]] == [fresh] * 100


async def test_a_401_costs_one_reauthentication_and_one_retry(make_conn, keycloak, httpserver):
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn()) as hook:
        await hook.get_job("j1")
        httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=401)
        assert (await hook.get_job("j1")).job_id == "j1"
    assert keycloak.grants == ["password", UMA, "refresh_token"]
    assert len(ccp_requests(httpserver)) == 3
    assert bearer_of(ccp_requests(httpserver)[-1]) == keycloak.last_access_token()


async def test_a_second_401_surfaces_as_an_auth_error(make_conn, keycloak, httpserver):
    httpserver.expect_request("/jobs/j1").respond_with_data("", status=401)
    async with CCPAsyncHook(make_conn()) as hook:
        with pytest.raises(CCPAuthError) as raised:
            await hook.get_job("j1")
    assert raised.value.http_status == 401
    assert keycloak.grants == ["password", UMA, "refresh_token"]
    assert len(ccp_requests(httpserver)) == 2


async def test_get_is_retried(make_conn, httpserver):
    httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("<html>busy</html>", status=503)
    httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=502)
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""), retry_delay=0.01) as hook:
        assert (await hook.get_job("j1")).status == "running"
    assert len(ccp_requests(httpserver)) == 3


async def test_retry_after_is_honoured(make_conn, httpserver, mocker):
    waits = mocker.spy(ccp.asyncio, "sleep")
    httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=429, headers={"Retry-After": "0.5"})
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret="")) as hook:
        await hook.get_job("j1")
    assert [call.args[0] for call in waits.call_args_list] == [0.5]


async def test_retries_are_bounded(make_conn, httpserver):
    httpserver.expect_request("/jobs/j1").respond_with_data("<html>down</html>", status=503)
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""), retry_delay=0.01, retry_limit=3) as hook:
        with pytest.raises(CCPError) as raised:
            await hook.get_job("j1")
    assert raised.value.http_status == 503
    assert str(raised.value).startswith("HTTP 503 SERVICE UNAVAILABLE from")  # werkzeug's reason phrase
    assert len(ccp_requests(httpserver)) == 3 + 1


async def test_the_token_endpoint_is_retried(make_conn, keycloak, httpserver):
    from tests.unit.doubles import TOKEN_PATH

    httpserver.expect_oneshot_request(TOKEN_PATH, method="POST").respond_with_data("", status=503)
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn(), retry_delay=0.01) as hook:
        await hook.get_job("j1")
    assert keycloak.grants == ["password", UMA]
    assert len([r for r, _ in httpserver.log if r.path == TOKEN_PATH]) == 3


async def test_unreachable_server(make_conn, monkeypatch):
    import json
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = make_conn(auth_flow="none", login=None, secret="")
    document = json.loads(os.environ[f"AIRFLOW_CONN_{conn.upper()}"]) | {"host": f"http://127.0.0.1:{port}"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn.upper()}", json.dumps(document))
    async with CCPAsyncHook(conn) as hook:
        with pytest.raises(CCPError, match=r"Could not reach CCP at .*: ConnectError"):
            await hook.get_job("j1")


async def test_errors_are_mapped_like_the_sync_hook(make_conn, httpserver):
    httpserver.expect_request("/jobs/gone").respond_with_json(
        {"type": "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-job", "title": "No such job"},
        status=404,
    )
    httpserver.expect_request("/jobs/html").respond_with_data("<html>oops</html>", status=500, content_type="text/html")
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""), retry_delay=0.01) as hook:
        with pytest.raises(CCPNotFoundError) as gone:
            await hook.get_job("gone")
        with pytest.raises(CCPError) as html:
            await hook.get_job("html")
    assert gone.value.title == "No such job"
    assert gone.value.error_type.endswith("/no-such-job")
    assert gone.value.job_id == "gone"
    assert str(html.value) == f"HTTP 500 INTERNAL SERVER ERROR from {httpserver.url_for('/jobs/html')} (job 'html')"
    assert html.value.__context__ is None


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_dismiss_unsupported(make_conn, httpserver, status):
    httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_data("", status=status)
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret="")) as hook:
        result = await hook.dismiss_job("j1")
    assert result.supported is False
    assert f"HTTP {status}" in result.message


async def test_dismiss_supported(make_conn, httpserver):
    httpserver.expect_request("/jobs/j1", method="DELETE").respond_with_json(status_body("j1", "dismissed"))
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret="")) as hook:
        result = await hook.dismiss_job("j1")
    assert result.supported is True
    assert result.status is not None
    assert result.status.status == "dismissed"


async def test_the_client_is_closed_on_exit(make_conn):
    hook = CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""))
    async with hook:
        client = hook._client
        assert client is not None
    assert client.is_closed
    assert hook._client is None


async def test_no_secret_in_logs_and_all_are_masked(make_conn, keycloak, httpserver, password, caplog, capfd):
    from airflow.sdk._shared.secrets_masker import redact

    for name in ("", "httpx", "httpcore", "airflow", "airflow_provider_ccp"):
        caplog.set_level(logging.DEBUG, logger=name)
    serve_job(httpserver)
    httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=401)
    async with CCPAsyncHook(make_conn()) as hook:
        await hook.get_job("j1")
        settings = await hook.get_settings()
    issued = [value for call in keycloak.calls for key, value in call.answer.items() if key.endswith("_token")]
    assert len(issued) == 6
    captured = capfd.readouterr()
    logs = "\n".join((caplog.text, captured.out, captured.err))
    assert any(r.name.startswith("httpcore") and r.levelno == logging.DEBUG for r in caplog.records)
    assert "CCP answered 401" in logs
    for secret in (password, *issued):
        assert secret not in logs
        assert secret not in repr(settings)
        assert redact(f"x {secret} y") == "x *** y", "not registered with the masker"


async def test_clients_share_one_ssl_context(make_conn):
    # Building a context reads the CA bundle (blocking, ~30 ms): a triggerer must not pay it per trigger.
    conn = make_conn(auth_flow="none", login=None, secret="")
    async with CCPAsyncHook(conn) as first, CCPAsyncHook(conn) as second:
        contexts = {id(hook._client._transport._pool._ssl_context) for hook in (first, second)}
    assert len(contexts) == 1


@pytest.mark.parametrize("kind", ["file", "folder", "off"])
def test_verify_setting_reaches_the_ssl_context(tmp_path, kind):
    import ssl

    import certifi

    if kind == "off":
        assert ccp._ssl_context(False).verify_mode == ssl.CERT_NONE
        return
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    context = ccp._ssl_context(str(bundle) if kind == "file" else str(tmp_path))
    assert context.verify_mode == ssl.CERT_REQUIRED
    if kind == "file":
        assert context.cert_store_stats()["x509_ca"] > 0
