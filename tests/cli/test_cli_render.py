"""Every command prints through ``render.emit``: ``--json`` or a table decided in one place, strings never markup."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_airflow import main, render


@pytest.fixture
def job_id(sandbox_conn: str) -> str:
    hook = CCPHook(sandbox_conn)
    job = hook.submit_execution("hello", {"ccpimage": "bash", "name": "render"}).job_id
    assert hook.wait_for_job(job, poll_interval=0.1, timeout=60).successful
    return job


@pytest.mark.parametrize("as_json", [False, True])
def test_each_listing_command_prints_once_through_emit(
    as_json: bool, job_id: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    emit = render.emit

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs)
        emit(*args, **kwargs)

    monkeypatch.setattr(render, "emit", spy)
    flag = ["--json"] if as_json else []
    commands = [
        ["methods", "list"],
        ["methods", "describe", "hello"],
        ["jobs", "status", job_id],
        ["jobs", "list"],
        ["executions", "list"],
    ]
    for argv in commands:
        calls.clear()
        assert main([*argv, *flag]) == 0
        out = capsys.readouterr().out
        assert [call.get("as_json") for call in calls] == [as_json], argv
        assert out.strip(), argv
        if as_json:
            assert json.loads(out) == json.loads(json.dumps(calls[0]["data"], default=str)), argv
        else:
            assert not out.lstrip().startswith(("{", "[")), argv


def test_a_string_is_printed_as_written_never_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    render.emit("job [bold]x[/bold] failed: [red]")
    assert capsys.readouterr().out == "job [bold]x[/bold] failed: [red]\n"


def test_json_goes_to_stdout_alone_and_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    render.emit("for people", data={"message": "\x1b[2Jgone"}, as_json=True)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"message": "\x1b[2Jgone"}
    assert "\x1b" not in captured.out
    assert captured.err == ""
