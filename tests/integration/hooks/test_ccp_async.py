"""CCPAsyncHook (aiohttp) against real HTTP on loopback: same wire format, one refresh for many callers."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import os
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from airflow_provider_ccp import auth
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPAuthError, CCPConfigError, CCPError, CCPNotFoundError
from airflow_provider_ccp.hooks import _pool
from airflow_provider_ccp.hooks.ccp import CCPAsyncHook, CCPHook
from tests.integration.doubles import (
    CLIENT_ID,
    ENCODED_CONTEXT,
    UMA,
    USER,
    SleepRecorder,
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
    async with CCPAsyncHook(conn, clock=clock) as hook:
        await hook.get_job("j1")
        stale = keycloak.last_access_token()
        clock.offset = 290  # the 300 s token is past its renewal point; its refresh token lives on
        # Separate hook instances, as separate triggers in one triggerer would be.
        others = [CCPAsyncHook(conn, clock=clock) for _ in range(99)]
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


async def test_retry_after_is_honoured(make_conn, httpserver):
    httpserver.expect_oneshot_request("/jobs/j1").respond_with_data("", status=429, headers={"Retry-After": "0.5"})
    serve_job(httpserver)
    waits = SleepRecorder()
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""), clock=waits) as hook:
        await hook.get_job("j1")
    assert waits.waits == [0.5]


async def test_retries_are_bounded(make_conn, httpserver):
    httpserver.expect_request("/jobs/j1").respond_with_data("<html>down</html>", status=503)
    async with CCPAsyncHook(
        make_conn(auth_flow="none", login=None, secret=""), retry_delay=0.01, retry_limit=3
    ) as hook:
        with pytest.raises(CCPError) as raised:
            await hook.get_job("j1")
    assert raised.value.http_status == 503
    assert str(raised.value).startswith("HTTP 503 SERVICE UNAVAILABLE from")  # werkzeug's reason phrase
    assert len(ccp_requests(httpserver)) == 3 + 1


async def test_the_token_endpoint_is_retried(make_conn, keycloak, httpserver):
    from tests.integration.doubles import TOKEN_PATH

    httpserver.expect_oneshot_request(TOKEN_PATH, method="POST").respond_with_data("", status=503)
    serve_job(httpserver)
    async with CCPAsyncHook(make_conn(), retry_delay=0.01) as hook:
        await hook.get_job("j1")
    assert keycloak.grants == ["password", UMA]
    assert len([r for r, _ in httpserver.log if r.path == TOKEN_PATH]) == 3


async def test_an_unchanged_status_is_parsed_once(make_conn, httpserver):
    httpserver.expect_ordered_request("/jobs/j1").respond_with_json(status_body("j1", "running"))
    httpserver.expect_ordered_request("/jobs/j1").respond_with_json(status_body("j1", "running"))
    httpserver.expect_ordered_request("/jobs/j1").respond_with_json(status_body("j1", "successful"))
    async with CCPAsyncHook(make_conn(auth_flow="none", login=None, secret="")) as hook:
        first, second, third = [await hook.get_job("j1") for _ in range(3)]
    assert second is first
    assert third.status == "successful"


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
    async with CCPAsyncHook(conn, retry_delay=0.01) as hook:
        with pytest.raises(CCPError, match=r"Could not reach CCP at .*: (ConnectError|ClientConnectorError)$"):
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


async def test_the_clients_are_closed_on_exit(make_conn):
    hook = CCPAsyncHook(make_conn(auth_flow="none", login=None, secret=""))
    async with hook:
        pool = hook._pool
        assert pool is not None
        assert not pool.clients.is_closed
    assert pool.clients.is_closed
    assert hook._pool is None


async def test_no_secret_in_logs_and_all_are_masked(make_conn, keycloak, httpserver, password, caplog, capfd):
    from airflow.sdk._shared.secrets_masker import redact

    for name in ("", "aiohttp", "airflow", "airflow_provider_ccp"):
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
    assert "CCP answered 401" in logs
    for secret in (password, *issued):
        assert secret not in logs
        assert secret not in repr(settings)
    await asyncio.sleep(0)  # the values released in one turn of the loop are forgotten in the next
    held = set(auth.TOKEN_CACHE.state(settings).masked)
    assert len(held) == 4  # the login and context grants' access and refresh tokens
    for secret in (password, *held):
        assert redact(f"x {secret} y") == "x *** y", "not registered with the masker"
    # The tokens the renewal replaced are taken back: a triggerer renews for weeks (docs/deployment.md).
    for secret in set(issued) - held:
        assert redact(f"x {secret} y") == f"x {secret} y"


async def test_clients_share_one_ssl_context(make_conn):
    # Building a context reads the CA bundle (blocking, ~30 ms): a triggerer must not pay it per trigger.
    first_conn = make_conn("ccp_first", auth_flow="none", login=None, secret="")
    second_conn = make_conn("ccp_second", auth_flow="none", login=None, secret="")
    async with CCPAsyncHook(first_conn) as first, CCPAsyncHook(second_conn) as second:
        assert first._pool is not second._pool
        contexts = {id(hook._pool.clients._session.connector._ssl) for hook in (first, second)}
    assert len(contexts) == 1


@pytest.mark.parametrize("kind", ["file", "folder", "off"])
def test_verify_setting_reaches_the_ssl_context(tmp_path, kind):
    import ssl

    import certifi

    if kind == "off":
        assert _pool._ssl_context(False).verify_mode == ssl.CERT_NONE
        return
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    context = _pool._ssl_context(str(bundle) if kind == "file" else str(tmp_path))
    assert context.verify_mode == ssl.CERT_REQUIRED
    if kind == "file":
        assert context.cert_store_stats()["x509_ca"] > 0


# ---------------------------------------------------------------------- one token refresh, sync and async mixed


async def test_sync_and_async_callers_share_one_refresh(make_conn, keycloak, httpserver, clock):
    serve_job(httpserver)
    conn = make_conn()
    CCPHook(conn, clock=clock).get_job("j1")
    clock.offset = 290  # past the renewal point of the 300 s token
    keycloak.delay = 0.3  # the first refresh is still in flight when the other callers look
    async with CCPAsyncHook(conn, clock=clock) as hook:
        worker = asyncio.to_thread(CCPHook(conn, clock=clock).get_job, "j1")
        results = await asyncio.gather(worker, *(hook.get_job("j1") for _ in range(20)))
    assert len(results) == 21
    assert keycloak.grants == ["password", UMA, "refresh_token"]
    assert {bearer_of(r) for r in ccp_requests(httpserver)[1:]} == {keycloak.last_access_token()}


async def test_an_async_caller_waits_for_a_sync_refresh_without_blocking_its_loop(
    make_conn, keycloak, httpserver, clock
):
    serve_job(httpserver)
    conn = make_conn()
    CCPHook(conn, clock=clock).get_job("j1")
    clock.offset = 290
    keycloak.delay = 0.5
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with CCPAsyncHook(conn, clock=clock) as hook:
        counting = asyncio.create_task(ticker())
        worker = asyncio.create_task(asyncio.to_thread(CCPHook(conn, clock=clock).get_token))
        await asyncio.sleep(0.1)  # the worker thread holds the token lock, its request in flight
        token = await hook.get_token()
        counting.cancel()
        assert token == await worker
    assert ticks >= 20, "the event loop stalled while the sync caller held the lock"
    assert keycloak.grants == ["password", UMA, "refresh_token"]


# ---------------------------------------------------------------------- one pool per (connection, event loop)


async def test_hooks_of_one_connection_share_one_pool_until_the_last_leaves(make_conn, httpserver):
    serve_job(httpserver)
    conn = make_conn(auth_flow="none", login=None, secret="")
    first, second = CCPAsyncHook(conn), CCPAsyncHook(conn)
    await first.__aenter__()
    await second.__aenter__()
    pool = first._pool
    assert pool is not None
    assert second._pool is pool
    await first.aclose()
    assert not pool.clients.is_closed
    assert (await second.get_job("j1")).job_id == "j1"
    await second.aclose()
    assert pool.clients.is_closed
    async with CCPAsyncHook(conn) as third:
        assert third._pool is not pool
        assert (await third.get_job("j1")).job_id == "j1"


async def test_many_triggers_starting_together_look_the_connection_up_once(make_conn, httpserver, mocker):
    from airflow.providers.common.compat import connection

    lookups = mocker.spy(connection, "get_async_connection")
    serve_job(httpserver)
    conn = make_conn(auth_flow="none", login=None, secret="")
    hooks = [CCPAsyncHook(conn) for _ in range(50)]
    await asyncio.gather(*(hook.__aenter__() for hook in hooks))
    try:
        assert len({id(hook._pool) for hook in hooks}) == 1
        await asyncio.gather(*(hook.get_job("j1") for hook in hooks))
    finally:
        await asyncio.gather(*(hook.aclose() for hook in hooks))
    assert lookups.call_count == 1
    assert len(ccp_requests(httpserver)) == 50


async def test_other_connections_and_other_loops_get_their_own_pools(make_conn, httpserver):
    serve_job(httpserver)
    conn = make_conn(auth_flow="none", login=None, secret="")
    other_conn = make_conn("ccp_other", auth_flow="none", login=None, secret="")

    async def pool_on_this_loop() -> tuple[int, bool]:
        async with CCPAsyncHook(conn) as hook:
            await hook.get_job("j1")
            pool = hook._pool
        assert pool is not None
        return id(pool), pool.clients.is_closed

    async with CCPAsyncHook(conn) as hook, CCPAsyncHook(other_conn) as other:
        assert hook._pool is not other._pool
        other_loop_pool, closed = await asyncio.to_thread(asyncio.run, pool_on_this_loop())
        assert other_loop_pool != id(hook._pool)
        assert closed
        assert not hook._pool.clients.is_closed
        assert (await hook.get_job("j1")).job_id == "j1"


async def test_a_failed_connection_lookup_is_tried_afresh_by_the_next_trigger(make_conn, httpserver):
    serve_job(httpserver)
    with pytest.raises(CCPConfigError, match=r"^Connection 'ccp_later' \(ccp_conn_id\) is not defined"):
        async with CCPAsyncHook("ccp_later"):
            pass
    make_conn("ccp_later", auth_flow="none", login=None, secret="")
    async with CCPAsyncHook("ccp_later") as hook:
        assert (await hook.get_job("j1")).job_id == "j1"


async def keep_alive_server(connections: list[int], delay: float) -> asyncio.Server:
    """A loopback HTTP/1.1 server that keeps connections open and counts them (werkzeug's closes each)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(delay)
                body = json.dumps(status_body("j1")).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_the_pool_is_bounded_by_the_connection(make_conn, monkeypatch):
    connections: list[int] = []
    server = await keep_alive_server(connections, delay=0.02)
    conn = make_conn(auth_flow="none", login=None, secret="", max_connections=2)
    variable = f"AIRFLOW_CONN_{conn.upper()}"
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv(variable, json.dumps(json.loads(os.environ[variable]) | {"host": f"http://127.0.0.1:{port}"}))
    async with server, CCPAsyncHook(conn) as hook:
        results = await asyncio.gather(*(hook.get_job("j1") for _ in range(20)))
        more = await asyncio.gather(*(hook.get_job("j1") for _ in range(20)))
    assert len(results + more) == 40
    assert len(connections) == 2


@pytest.mark.parametrize("value", ["0", "many", -3, 2.5])
async def test_a_bad_pool_size_is_one_clear_error(make_conn, value):
    conn = make_conn(auth_flow="none", login=None, secret="", max_connections=value)
    with pytest.raises(CCPConfigError, match=r"Connection extra .max_connections. is .*; expected a whole number"):
        async with CCPAsyncHook(conn):
            pass


async def test_an_async_hook_given_ready_settings_reads_no_connection(httpserver):
    settings = CCPConnectionSettings.from_fields(
        host=httpserver.url_for("/"), login=None, password=None, extra={"auth_flow": "none"}
    )
    serve_job(httpserver)
    async with CCPAsyncHook("ccp_nowhere", settings=settings) as hook:
        assert (await hook.get_job("j1")).status == "running"
        assert await hook.get_settings() is settings


# ---------------------------------------------------------------------- proxies, the retired [ccp] async_http_client


async def test_proxies_come_from_the_environment(make_conn, monkeypatch, httpserver):
    # The proxy is the loopback test server: it receives the request for the unresolvable CCP host.
    import json
    import os

    conn = make_conn(auth_flow="none", login=None, secret="")
    document = json.loads(os.environ[f"AIRFLOW_CONN_{conn.upper()}"]) | {"host": "http://ccp.example.invalid"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn.upper()}", json.dumps(document))
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", httpserver.url_for("/").rstrip("/"))
    serve_job(httpserver)
    async with CCPAsyncHook(conn, retry_limit=0) as hook:
        assert (await hook.get_job("j1")).status == "running"
    assert [request.headers.get("Host") for request in httpserver.log[0][:1]] == ["ccp.example.invalid"]


@pytest.mark.parametrize("setting", ["httpx", "aiohttp", "auto", None])
async def test_the_retired_client_setting_is_said_gone_once(make_conn, monkeypatch, httpserver, caplog, setting):
    # Whatever it names, aiohttp answers; a deployment that still sets it is told once per process.
    if setting is not None:
        monkeypatch.setenv("AIRFLOW__CCP__ASYNC_HTTP_CLIENT", setting)
    monkeypatch.setattr(_pool, "warn_retired_setting", functools.cache(_pool.warn_retired_setting.__wrapped__))
    serve_job(httpserver)
    conn = make_conn(auth_flow="none", login=None, secret="")
    for _ in range(2):
        async with CCPAsyncHook(conn) as hook:
            assert (await hook.get_job("j1")).status == "running"
            assert isinstance(hook._pool.clients, _pool.Session)
    said = [record for record in caplog.records if "async_http_client" in record.getMessage()]
    assert len(said) == (0 if setting is None else 1)
    if said:
        assert said[0].levelno == logging.WARNING
        assert "always uses aiohttp" in said[0].getMessage()
