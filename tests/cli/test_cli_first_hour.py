"""What a new user of ccp-airflow trips over first: option order, ids, refused connections, --set, wording."""

from __future__ import annotations

import ast
import json
import socket
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_airflow import build_parser, main
from ccp_airflow.dag_template import DagOptions, DagTemplateError, render_dag, retry_note
from tests.cli.test_cli_commands import finished_job, run, url_flags
from tests.cli.test_cli_dag_template import method, module_values, options, string_input


@pytest.mark.parametrize(
    "argv",
    [
        ["--conn-id", "x", "-v", "--json", "methods", "list"],
        ["methods", "list", "--conn-id", "x", "-v", "--json"],
        ["-v", "methods", "list", "--json", "--conn-id", "x"],
    ],
)
def test_global_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.conn_id, args.verbose, args.json) == ("x", True, True)


def test_an_option_given_before_the_command_is_not_reset_by_it() -> None:
    args = build_parser().parse_args(["--url", "http://127.0.0.1:1", "jobs", "status", "j"])
    assert args.url == "http://127.0.0.1:1"
    assert args.conn_id == CCPHook.default_conn_name


def test_help_has_no_rest_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_jobs_list_shows_whole_ids(sandbox_conn: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal
    job_id = finished_job(sandbox_conn, "hello", {"name": "x"})
    code, out, _ = run(capsys, "jobs", "list")
    assert code == 0
    assert job_id in out


def test_a_refused_connection_fails_at_once_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        started = time.monotonic()
        code, _, err = run(capsys, "methods", "list", "--url", f"http://127.0.0.1:{port}", "--auth-flow", "none")
        elapsed = time.monotonic() - started
    assert code == 1
    assert f"connection refused by 127.0.0.1:{port}" in err
    assert "ConnectionError" not in err
    assert elapsed < 5, f"{elapsed:.1f} s: the retries a task would make are not for an interactive command"


def test_url_mode_errors_name_flags(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.delenv("CCP_PASSWORD", raising=False)
    code, _, err = run(capsys, "--url", "http://127.0.0.1:9", "methods", "list")
    assert code == 1
    assert "--client-id" in err
    assert "--context" in err
    assert "--user" in err
    assert "CCP_PASSWORD" in err
    assert "extra 'client_id'" not in err
    assert "login" not in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--url", "127.0.0.1:9"], "--url is '127.0.0.1:9', without a scheme; expected an http:// or https:// URL"),
        (["--url", "http://127.0.0.1:9", "--token-url", "https://u:p@accounts.example.org/t"], "--token-url holds"),
        (["--url", "http://127.0.0.1:9", "--context", "vre"], "--context is 'vre'; expected a VRE path"),
    ],
)
def test_url_mode_names_the_flag_of_a_wrong_value(
    capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    # The flags and the words for them come from the one declaration of the connection's fields.
    code, _, err = run(capsys, *flags, "--auth-flow", "none", "methods", "list")
    assert code == 1
    assert named in err
    assert "Connection" not in err


def test_describe_without_outputs_prints_no_empty_table(
    sandbox_conn: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from ccp_airflow import render

    described = CCPHook(sandbox_conn).get_method("hello")
    monkeypatch.setattr(CCPHook, "get_method", lambda self, method_id: {**described, "outputs": {}})
    code, out, _ = run(capsys, "methods", "describe", "hello")
    assert code == 0
    assert "Outputs: none declared" in out
    assert "media type" not in out
    assert render  # the table renderer is still what describes Methods that declare outputs


def test_jobs_outputs_json(sandbox_conn: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    job_id = finished_job(sandbox_conn, "make-files", {"count": "2", "size": "100"})
    capsys.readouterr()  # the hook's log lines while the job ran
    code, out, err = run(capsys, "jobs", "outputs", job_id, "--to", str(tmp_path), "--extract", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["kind"] == "zip"
    assert summary["files"]
    assert summary["refused"] == []
    assert "Saved" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [("bogus", "is not one of"), ("", "should be non-empty")],
)
def test_set_values_are_checked_against_the_method(value: str, message: str) -> None:
    description = method(mode=string_input(default="words", enum=["words", "lines"]), text=string_input())
    name = "mode" if value else "text"
    with pytest.raises(DagTemplateError, match=message) as raised:
        render_dag(description, options(defaults={name: value}))
    assert f"--set {name}=" in str(raised.value)


def test_set_values_that_fit_are_written() -> None:
    description = method(mode=string_input(default="words", enum=["words", "lines"]))
    source = render_dag(description, options(defaults={"mode": "lines"}))
    assert ast.literal_eval(module_values(source, "params").values[0].args[0]) == "lines"


def test_an_optional_input_with_a_default_is_not_required_in_the_form() -> None:
    description = method(level=string_input(default="1", minOccurs=0))
    source = render_dag(description, options())
    call = module_values(source, "params").values[0]
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert keywords["type"] == ["null", "string"]
    assert ast.literal_eval(call.args[0]) == "1"


@pytest.mark.parametrize(
    ("version", "expected"),
    [("3.3.2", "reattaches"), ("3.1.7", "submits a new execution"), ("4.0.0", "reattaches")],
)
def test_the_generated_comment_says_what_a_retry_does_on_that_airflow(version: str, expected: str) -> None:
    assert expected in retry_note(version)
    source = render_dag(method(), DagOptions("ccp_t", "ccp_default", None, date(2025, 1, 1), {}, version))
    assert expected in source


def test_the_installed_airflow_decides_by_default() -> None:
    import airflow

    assert options().airflow_version == airflow.__version__


def test_url_flags_work_after_the_command(sandbox: Any, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.setenv("CCP_PASSWORD", sandbox.password)
    code, out, err = run(capsys, "methods", "list", "--json", *url_flags(sandbox))
    assert code == 0, err
    assert "word-count" in {item["id"] for item in json.loads(out)}
