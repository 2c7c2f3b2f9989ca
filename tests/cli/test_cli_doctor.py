"""``ccp-airflow doctor`` against the real sandbox: every step passes, CCP's documented jobStatus is noted,
and broken setups (password, token URL, context, scheme, a proxy's HTML page) stop at the step they break."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from airflow_provider_ccp import auth
from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_airflow import main
from tests.integration.doubles import self_signed

STEP_NAMES = [
    "connection",
    "network",
    "token",
    "context",
    "lifetime",
    "processes",
    "method",
    "submit",
    "jobs",
    "job_status",
]
WRONG_CONTEXT = "/d4science.research-infrastructures.eu/D4OS/Not-My-VRE"
PROXY_PAGE = "<html><head><title>Corporate proxy: please sign in</title></head><body>Sign in</body></html>"


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["doctor", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def doctor_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = doctor(capsys, *argv, "--json")
    return code, json.loads(out)


def outcomes(report: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["outcome"] for step in report["steps"]}


def step(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in report["steps"] if item["name"] == name)


def use(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CCP_DEFAULT", json.dumps(conn))


@pytest.fixture
def a_job(sandbox: Any, sandbox_conn: str) -> str:
    """A finished job in the sandbox's context, so that the job steps have one to look at."""
    hook = CCPHook(sandbox_conn)
    job_id = hook.submit_execution("hello", {"ccpimage": "bash", "name": "doctor"}).job_id
    assert hook.wait_for_job(job_id, poll_interval=0.1, timeout=60).successful
    sandbox.admin.reset()  # the counters start from zero for the doctor
    return job_id


@pytest.fixture
def issued_tokens(mocker: Any) -> Callable[[], list[str]]:
    """Every token the token endpoint issued so far in the test, read where the provider reads them."""
    spy = mocker.spy(auth, "read_grant")
    return lambda: [
        token for grant in spy.spy_return_list for token in (grant.access_token, grant.refresh_token) if token
    ]


def assert_no_secret(texts: list[str], secrets: list[str]) -> None:
    assert secrets, "no secret to look for"
    for secret in secrets:
        for text in texts:
            assert secret not in text


# --------------------------------------------------------------------------- the sandbox as it is


def test_every_step_passes_against_the_sandbox(
    sandbox: Any, a_job: str, capsys: pytest.CaptureFixture[str], issued_tokens: Callable[[], list[str]]
) -> None:
    code, out, err = doctor(capsys)
    assert code == 0, out + err
    for number, title in enumerate(
        ["Connection fields", "DNS, TCP and TLS", "Token flow", "UMA / context", "Token lifetime and refresh",
         "GET /processes and its paging", "A Method's description"],
        start=1,
    ):  # fmt: skip
        assert f"✓ {number}. {title}" in out
    assert "- 8. One execution (--submit)  (skipped)" in out
    assert "✓ 9. GET /jobs and its processID filter" in out
    assert "✓ 10. jobStatus: finished and updated" in out
    assert "✗" not in out
    assert "password grant: HTTP 200, expires_in 300 s" in out
    assert "uma-ticket grant: HTTP 200, expires_in 300 s" in out
    assert "renewal: refresh_token grant: HTTP 200" in out
    assert "limit=2: 2 Method(s), a rel=next link" in out
    assert "Every check passed" in out
    assert sandbox.admin.counters()["executions"] == {}  # nothing submitted
    assert_no_secret([out, err], [sandbox.password, *issued_tokens()])


def test_json_has_every_step_and_no_secret(
    sandbox: Any, a_job: str, capsys: pytest.CaptureFixture[str], issued_tokens: Callable[[], list[str]]
) -> None:
    code, out, err = doctor(capsys, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["ok"] is True
    assert list(outcomes(report)) == STEP_NAMES
    assert outcomes(report) == dict.fromkeys(STEP_NAMES, "ok") | {"submit": "skipped"}
    assert a_job in step(report, "job_status")["evidence"][0]
    assert "finished 20" in step(report, "job_status")["evidence"][0]  # the OGC statusInfo carries it
    assert sandbox.admin.counters()["executions"] == {}
    assert_no_secret([out, err], [sandbox.password, *issued_tokens()])


def test_a_service_account_shows_no_client_secret(
    sandbox: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    issued_tokens: Callable[[], list[str]],
) -> None:
    use(monkeypatch, sandbox.connection("client_credentials"))
    code, human, err = doctor(capsys)
    json_code, report = doctor_json(capsys)
    assert (code, json_code) == (0, 0), human + err
    assert "uma-ticket grant: HTTP 200" in human
    assert_no_secret([human, err, json.dumps(report)], [sandbox.client_secret, *issued_tokens()])


def test_submit_runs_exactly_one_execution_to_its_end(
    sandbox: Any, sandbox_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = doctor_json(capsys, "--submit", "hello")
    assert code == 0, report
    assert sandbox.admin.executions_submitted("hello") == 1
    assert sum(sandbox.admin.counters()["executions"].values()) == 1
    submitted = step(report, "submit")["evidence"][0]
    job_id = submitted.split()[1].rstrip(":")
    assert submitted.startswith(f"job {job_id}: successful")
    assert step(report, "jobs")["outcome"] == "ok"  # the listing after it has a job of hello to filter by
    assert job_id in step(report, "job_status")["evidence"][0]


def test_submit_names_a_method_that_needs_inputs(
    sandbox: Any, sandbox_conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = doctor_json(capsys, "--submit", "word-count")
    assert code == 1
    assert step(report, "submit")["outcome"] == "fail"
    assert "missing required input 'text'" in step(report, "submit")["evidence"][-1]
    assert sandbox.admin.counters()["executions"] == {}


# --------------------------------------------------------------------------- CCP's documented jobStatus


def test_ccp_job_status_is_a_note_not_a_failure(sandbox: Any, a_job: str, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox.admin.set_job_status("ccp")
    code, report = doctor_json(capsys)
    assert code == 0
    job_status = step(report, "job_status")
    assert job_status["outcome"] == "warn"
    assert "finished absent" in job_status["evidence"][0]
    assert any("no `finished`" in note for note in job_status["notes"])
    assert any("`updated` moved" in note for note in job_status["notes"])
    assert any("no processID" in note for note in step(report, "jobs")["notes"])


def test_ogc_job_status_has_no_note(sandbox: Any, a_job: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The note above comes from the server's style, not from the doctor always saying it."""
    code, report = doctor_json(capsys)
    assert code == 0
    assert step(report, "job_status")["notes"] == []


# --------------------------------------------------------------------------- broken setups


def assert_stopped_at(report: dict[str, Any], name: str) -> dict[str, Any]:
    names = list(outcomes(report))
    at = names.index(name)
    assert report["ok"] is False
    assert [outcomes(report)[n] for n in names[:at]] == ["ok"] * at
    assert outcomes(report)[name] == "fail"
    assert set(list(outcomes(report).values())[at + 1 :]) == {"not run"}
    return step(report, name)


def test_wrong_password_names_the_token_step_and_the_password(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-password-42"
    use(monkeypatch, sandbox.connection() | {"password": wrong})
    code, out, err = doctor(capsys)
    assert code == 1
    assert "✗ 3. Token flow" in out
    assert "password grant: HTTP 401" in out
    assert "fix: the connection's login and the connection's password (user 'demo'" in out
    assert "· 4. UMA / context  (not run)" in out
    json_code, report = doctor_json(capsys)
    assert json_code == 1
    token = assert_stopped_at(report, "token")
    assert "invalid_grant" in token["evidence"][-1]
    assert_no_secret([out, err, json.dumps(report)], [wrong, sandbox.password])


def test_wrong_password_with_url_flags_names_the_flag(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CCP_PASSWORD", "not-the-password-42")
    extra = sandbox.connection()["extra"]
    flags = ["--url", sandbox.url, "--user", sandbox.user, "--token-url", extra["keycloak_url"],
             "--client-id", extra["client_id"], "--context", extra["context"]]  # fmt: skip
    code, report = doctor_json(capsys, *flags)
    assert code == 1
    assert assert_stopped_at(report, "token")["fix"].startswith("--user and CCP_PASSWORD (or --password)")


def stopped_with_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandbox: Any, at: str, **extra: str
) -> dict[str, Any]:
    """The step the doctor stopped at with these extras, plus the token step's evidence."""
    conn = sandbox.connection()
    conn["extra"] |= extra
    use(monkeypatch, conn)
    code, report = doctor_json(capsys)
    assert code == 1
    return assert_stopped_at(report, at) | {"token_evidence": step(report, "token")["evidence"]}


def test_wrong_token_url(sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = sandbox.url + "/auth/realms/nowhere/protocol/openid-connect/token"
    token = stopped_with_extra(monkeypatch, capsys, sandbox, "token", keycloak_url=wrong)
    assert "password grant: HTTP 404" in token["evidence"]
    assert token["fix"].startswith("the connection extra 'keycloak_url': ")


def test_wrong_context(sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    context = stopped_with_extra(monkeypatch, capsys, sandbox, "context", context=WRONG_CONTEXT)
    assert "uma-ticket grant: HTTP 403" in context["evidence"]
    assert context["fix"].startswith("the connection extra 'context'")
    assert "password grant: HTTP 200, expires_in 300 s" in context["token_evidence"]


def test_https_to_a_plain_http_server(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = sandbox.url.replace("http://", "https://")
    assert_wrong_scheme(monkeypatch, capsys, sandbox, host, "does not speak TLS", "http:// instead of https://")


def assert_wrong_scheme(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sandbox: Any, host: str, says: str, fix: str
) -> None:
    use(monkeypatch, sandbox.connection() | {"host": host})
    code, report = doctor_json(capsys)
    assert code == 1
    network = assert_stopped_at(report, "network")
    assert says in network["evidence"][-1]
    assert network["fix"] == f"the connection's host: {fix}"


@pytest.fixture
def tls_httpserver(tmp_path: Path) -> Iterator[HTTPServer]:
    context, _ = self_signed(tmp_path)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request(re.compile(".*")).respond_with_json({"links": []})
    server.start()
    yield server
    server.clear()
    server.stop()


def test_plain_http_to_a_tls_server(
    sandbox: Any, tls_httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"http://127.0.0.1:{tls_httpserver.port}"
    assert_wrong_scheme(monkeypatch, capsys, sandbox, host, "speaks TLS", "https:// instead of http://")


@pytest.fixture
def proxy(httpserver: HTTPServer) -> HTTPServer:
    """A proxy or single-sign-on page that answers every request with its HTML."""
    httpserver.expect_request(re.compile(".*")).respond_with_data(PROXY_PAGE, content_type="text/html")
    return httpserver


def test_a_proxy_page_instead_of_ccp(
    sandbox: Any, proxy: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(monkeypatch, sandbox.connection() | {"host": proxy.url_for("/").rstrip("/")})
    code, out, _ = doctor(capsys)
    assert code == 1
    assert "✗ 6. GET /processes and its paging" in out
    assert "answers an HTML page, not CCP's JSON API" in out


def test_a_proxy_page_instead_of_the_token_endpoint(
    sandbox: Any, proxy: HTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sandbox.connection()
    conn["extra"]["keycloak_url"] = proxy.url_for("/auth/token")
    use(monkeypatch, conn)
    code, report = doctor_json(capsys)
    assert code == 1
    token = assert_stopped_at(report, "token")
    assert "an HTML page titled 'Corporate proxy: please sign in'" in token["evidence"][0]
    assert token["fix"].startswith("the connection extra 'keycloak_url'")


def test_an_unknown_connection_is_the_first_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = doctor_json(capsys, "--conn-id", "no_such_connection")
    assert code == 1
    connection = assert_stopped_at(report, "connection")
    assert "No Airflow connection 'no_such_connection'" in connection["evidence"][-1]
