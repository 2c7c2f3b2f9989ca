"""Every ccp-airflow subcommand, run in-process against the CCP sandbox (and once as a real console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook, DownloadedOutputs
from ccp_airflow import main

BUILTIN_METHODS = {"hello", "word-count", "sleep", "fail", "make-files"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finished_job(conn_id: str, method_id: str, inputs: dict[str, str]) -> str:
    hook = CCPHook(conn_id)
    job_id = hook.submit_execution(method_id, {"ccpimage": "bash", **inputs}).job_id
    assert hook.wait_for_job(job_id, poll_interval=0.1, timeout=60).successful
    return job_id


def url_flags(sandbox: Any, auth_flow: str = "password_uma") -> list[str]:
    extra = sandbox.connection()["extra"]
    return [
        "--url", sandbox.url, "--user", sandbox.user, "--token-url", extra["keycloak_url"],
        "--client-id", extra["client_id"], "--context", extra["context"], "--auth-flow", auth_flow,
    ]  # fmt: skip


# --------------------------------------------------------------------------- methods


def test_methods_list_table_shows_every_builtin_method(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "methods", "list")
    assert code == 0, err
    for method_id in BUILTIN_METHODS:
        assert method_id in out
    assert "Word count" in out
    assert "1.0.0" in out


def test_methods_list_search_and_json(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "methods", "list", "--search", "WORD", "--json")
    assert code == 0
    assert [method["id"] for method in json.loads(out)] == ["word-count"]


def test_methods_describe_shows_inputs_and_outputs(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "methods", "describe", "word-count")
    assert code == 0
    for text in (
        "text",
        "mode",
        "words, lines, chars",
        '"words"',
        "optional, read-only",
        "required",
        "result",
        "application/json",
    ):
        assert text in out


def test_methods_describe_json_is_the_description(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "methods", "describe", "hello", "--json")
    assert code == 0
    description = json.loads(out)
    assert description["inputs"]["api_key"]["schema"]["format"] == "secret"


# --------------------------------------------------------------------------- jobs


def test_jobs_status_and_list(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = finished_job(sandbox_conn, "hello", {"name": "cli"})
    code, out, _ = run(capsys, "jobs", "status", job_id)
    assert code == 0
    assert job_id in out
    assert "successful" in out
    code, out, _ = run(capsys, "jobs", "status", job_id, "--json")
    assert json.loads(out)["status"] == "successful"
    code, out, _ = run(capsys, "jobs", "list", "--status", "successful", "--method", "hello", "--json")
    listed = json.loads(out)
    assert job_id in {job["job_id"] for job in listed}
    assert {job["status"] for job in listed} == {"successful"}
    code, out, _ = run(capsys, "jobs", "list")
    assert code == 0
    assert job_id in out


def test_executions_list_newest_first_and_by_method(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    older = finished_job(sandbox_conn, "hello", {"name": "first"})
    other = finished_job(sandbox_conn, "word-count", {"text": "a b", "mode": "words"})
    newer = finished_job(sandbox_conn, "hello", {"name": "second"})
    capsys.readouterr()  # the waits' own log lines

    code, out, err = run(capsys, "executions", "list", "--method", "hello", "--json")
    assert code == 0, err
    listed = json.loads(out)
    ids = [item["job_id"] for item in listed]
    assert ids.index(newer) < ids.index(older)
    assert other not in ids
    assert {item["process_id"] for item in listed} == {"hello"}
    assert {item["status"] for item in listed if item["job_id"] in (older, newer)} == {"successful"}
    assert all(item["created"] for item in listed)

    code, out, _ = run(capsys, "executions", "list")
    assert code == 0
    assert "CCP executions" in out
    for job_id in (older, other, newer):
        assert job_id in out
    assert out.index(newer) < out.index(other) < out.index(older)


def test_jobs_dismiss_cancels_a_waiting_job(
    sandbox_conn: str, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.admin.hold_jobs("sleep")
    hook = CCPHook(sandbox_conn)
    job_id = hook.submit_execution("sleep", {"ccpimage": "bash", "seconds": "30"}).job_id
    code, out, _ = run(capsys, "jobs", "dismiss", job_id)
    assert code == 0
    assert "dismissed" in out
    assert hook.get_job(job_id).status == "dismissed"


def test_jobs_outputs_downloads_and_extracts(
    sandbox_conn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = finished_job(sandbox_conn, "make-files", {"count": "2", "size": "5000"})
    code, out, err = run(capsys, "jobs", "outputs", job_id, "--to", str(tmp_path), "--extract")
    assert code == 0, err
    assert (tmp_path / "output.zip").is_file()
    extracted = sorted(p.relative_to(tmp_path / "output").as_posix() for p in (tmp_path / "output").rglob("*.bin"))
    assert len(extracted) == 2
    assert all(p.startswith("files/") for p in extracted)
    assert "Extracted" in out


def test_jobs_outputs_refuses_entries_escaping_the_folder(
    sandbox_conn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], mocker: Any
) -> None:
    def hostile_zip(self: CCPHook, job_id: str, destination: Path, **kwargs: Any) -> DownloadedOutputs:
        archive = Path(destination) / "output.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("fine.txt", "ok")
            zf.writestr("../../escaped.txt", "evil")
        return DownloadedOutputs(path=archive, size=archive.stat().st_size, url="http://x/output.zip", kind="zip")

    mocker.patch.object(CCPHook, "download_outputs", hostile_zip)
    target = tmp_path / "a" / "b"
    code, _, err = run(capsys, "jobs", "outputs", "job-1", "--to", str(target), "--extract")
    assert code == 1
    assert "../../escaped.txt" in err
    assert (target / "output" / "fine.txt").read_text() == "ok"
    assert not list(tmp_path.rglob("escaped.txt"))


# --------------------------------------------------------------------------- errors and verbose


def test_unknown_job_is_one_line_with_a_hint(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "jobs", "status", "no-such-job")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "404" in lines[0]
    assert "jobs list" in lines[0]
    assert "Traceback" not in err


def test_wrong_password_names_the_flow_and_token_url(
    sandbox: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCP_PASSWORD", "not-the-password")
    code, _, err = run(capsys, *url_flags(sandbox), "methods", "list")
    assert code == 1
    line = err.strip()
    assert "\n" not in line
    assert "Traceback" not in line
    assert "auth_flow=password_uma" in line
    assert sandbox.connection()["extra"]["keycloak_url"] in line
    assert "not-the-password" not in err


def test_missing_connection_says_how_to_define_it(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CCP_NOWHERE", raising=False)
    code, _, err = run(capsys, "--conn-id", "ccp_nowhere", "methods", "list")
    assert code == 1
    assert "ccp_nowhere" in err
    assert "AIRFLOW_CONN_CCP_NOWHERE" in err
    assert "--url" in err


def test_url_flags_need_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--user", "demo", "methods", "list"])
    assert exit_info.value.code == 2
    assert "--user" in capsys.readouterr().err


def test_verbose_shows_the_exchange_without_secrets(
    sandbox: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCP_PASSWORD", sandbox.password)
    code, out, err = run(capsys, "--verbose", *url_flags(sandbox), "methods", "list", "--json")
    assert code == 0
    assert {method["id"] for method in json.loads(out)} == BUILTIN_METHODS  # logs stay off stdout
    assert "> POST " in err
    assert "grant_type=password" in err
    assert "> GET " in err
    assert "/processes" in err
    # The same settings in this process share the token cache, so this is the very token the CLI sent.
    monkeypatch.setenv("AIRFLOW_CONN_CCP_VERBOSE", sandbox.connection_json())
    token = CCPHook("ccp_verbose").get_token()
    assert token
    assert len(token) > 20
    assert token not in err
    assert token not in out
    assert sandbox.password not in err
    assert sandbox.password not in out


def test_verbose_error_shows_the_traceback(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--verbose", "methods", "describe", "no-such-method")
    assert code == 1
    assert "CCPNotFoundError" in err
    assert "methods list" in err


# --------------------------------------------------------------------------- dag and sandbox


def test_dag_to_stdout_and_refusing_to_overwrite(
    sandbox_conn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "dag", "hello")
    assert code == 0
    assert "CCPExecuteMethodOperator(" in out
    assert 'dag_id="ccp_hello"' in out
    target = tmp_path / "hello.py"
    target.write_text("keep me")
    code, _, err = run(capsys, "dag", "hello", "-o", str(target))
    assert code == 1
    assert "--force" in err
    assert target.read_text() == "keep me"
    code, _, _ = run(capsys, "dag", "hello", "-o", str(target), "--force", "--dag-id", "greeter")
    assert code == 0
    assert 'dag_id="greeter"' in target.read_text()


def test_dag_scheduled_needs_defaults(sandbox_conn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "dag", "word-count", "--schedule", "@daily")
    assert code == 1
    assert "--set text=VALUE" in err
    code, out, _ = run(capsys, "dag", "word-count", "--schedule", "@daily", "--set", "text=every day")
    assert code == 0
    assert '"every day"' in out
    assert 'schedule="@daily"' in out


def test_sandbox_subcommand_delegates_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sandbox", "--help"])
    assert exit_info.value.code == 0
    assert "ccp-sandbox" in capsys.readouterr().out


def _console_script() -> str:
    script = shutil.which("ccp-airflow", path=str(Path(sys.executable).parent))
    assert script, "the ccp-airflow console script is not installed next to this Python"
    return script


def test_console_script_prints_clean_json(sandbox: Any) -> None:
    env = {**os.environ, "AIRFLOW_CONN_CCP_DEFAULT": sandbox.connection_json()}
    done = subprocess.run(
        [_console_script(), "methods", "list", "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert {method["id"] for method in json.loads(done.stdout)} == BUILTIN_METHODS


def test_console_script_unreachable_url_fails_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [_console_script(), "--url", "http://127.0.0.1:9", "--auth-flow", "none", "jobs", "status", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0
    assert "http://127.0.0.1:9" in done.stderr
    assert "is CCP running" in done.stderr
