"""The CLI against a hostile server on 127.0.0.1: its strings never drive the terminal, its archive
never writes through a link already in the target folder."""

from __future__ import annotations

import io
import json
import os
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.serving import WSGIRequestHandler

from ccp_airflow import main
from ccp_airflow.render import clean
from tests.integration.doubles import RawServer, json_answer, status_body

#: Clear the screen, home the cursor, a fake OSC 8 hyperlink (ST and BEL forms), a C1 CSI colour,
#: a window title, a reset, a right-to-left override, and a rich markup tag.
HOSTILE = (
    "\x1b[2J\x1b[Hcleared"
    " \x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
    " \x1b]8;;https://evil.example/\x07bell link\x1b]8;;\x07"
    " \x9b31mred"
    " \x1b]0;title\x07"
    " \x1bc"
    " \u202etxt.exe"
    " [bold red]markup[/]"
)
SHOWN = "cleared click me bell link red   txt.exe [bold red]markup[/]"
RAW = ("\x1b", "\x9b", "\x07", "\u202e")


def test_clean_removes_sequences_and_keeps_the_words() -> None:
    assert clean(HOSTILE) == SHOWN
    assert clean("tab\tand\nnewline stay, é and 日本 too") == "tab\tand\nnewline stay, é and 日本 too"
    assert clean("\x1b[") == ""  # an unfinished sequence is dropped, not half-shown


@pytest.fixture
def hostile_conn(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> str:
    connection = {"conn_type": "ccp", "host": httpserver.url_for("/").rstrip("/"), "extra": {"auth_flow": "none"}}
    monkeypatch.setenv("AIRFLOW_CONN_HOSTILE", json.dumps(connection))
    # The test server's own request log is not the CLI's output (and its stream may be a closed capture).
    monkeypatch.setattr(WSGIRequestHandler, "log_request", lambda *args, **kwargs: None)
    return "hostile"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--conn-id", "hostile", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_no_raw_sequences(*texts: str) -> None:
    for text in texts:
        assert not [char for char in RAW if char in text], repr(text)


def job(job_id: str = "j1") -> dict[str, Any]:
    return {"jobID": job_id, "status": "running", "message": HOSTILE, "processID": HOSTILE, "type": "process"}


@pytest.mark.usefixtures("hostile_conn")
def test_methods_list_table_shows_server_strings_cleaned(httpserver: HTTPServer, capsys) -> None:
    method = {"id": "m1", "title": HOSTILE, "version": "1.0.0", "keywords": [HOSTILE], "description": HOSTILE}
    httpserver.expect_request("/processes").respond_with_json({"processes": [method], "links": []})

    code, out, err = run(capsys, "methods", "list")

    assert code == 0, err
    assert_no_raw_sequences(out, err)
    assert "click me" in out
    assert "[bold red]markup[/]" in out  # shown as written, not read as markup


@pytest.mark.usefixtures("hostile_conn")
def test_methods_describe_shows_server_strings_cleaned(httpserver: HTTPServer, capsys) -> None:
    method = {
        "id": "m1",
        "title": HOSTILE,
        "description": HOSTILE,
        "inputs": {"x": {"title": HOSTILE, "description": HOSTILE, "schema": {"type": "string", "enum": [HOSTILE]}}},
        "outputs": {"o": {"title": HOSTILE, "description": HOSTILE, "schema": {"contentMediaType": HOSTILE}}},
    }
    httpserver.expect_request("/processes/m1").respond_with_json(method)

    code, out, err = run(capsys, "methods", "describe", "m1")

    assert code == 0, err
    assert_no_raw_sequences(out, err)
    assert "bell link" in out


@pytest.mark.usefixtures("hostile_conn")
@pytest.mark.parametrize("command", [("jobs", "status", "j1"), ("jobs", "list")], ids=["status", "list"])
def test_job_tables_show_server_strings_cleaned_and_json_escapes_them(
    httpserver: HTTPServer, capsys, command: tuple[str, ...]
) -> None:
    httpserver.expect_request("/jobs/j1").respond_with_json(job())
    httpserver.expect_request("/jobs").respond_with_json({"jobs": [job()], "links": []})

    code, out, err = run(capsys, *command)
    assert code == 0, err
    assert_no_raw_sequences(out, err)
    assert "click me" in out

    code, out, err = run(capsys, "--json", *command)
    assert code == 0, err
    assert_no_raw_sequences(out, err)  # escaped as \u001b ...
    document = json.loads(out)
    listed = document if isinstance(document, list) else [document]
    assert listed[0]["message"] == HOSTILE  # ... and read back exactly


@pytest.mark.usefixtures("hostile_conn")
def test_a_server_error_is_one_clean_line(httpserver: HTTPServer, capsys) -> None:
    problem = {"type": "no-such-job", "title": HOSTILE, "detail": HOSTILE}
    httpserver.expect_request("/jobs/j1").respond_with_json(problem, status=404)

    code, out, err = run(capsys, "jobs", "status", "j1")

    assert code == 1
    assert_no_raw_sequences(out, err)
    assert len(err.strip().splitlines()) == 1
    assert "click me" in err


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def serve_outputs(httpserver: HTTPServer, entries: dict[str, bytes]) -> None:
    body = zip_bytes(entries)
    httpserver.expect_request("/executions/j1/outputs/output.zip").respond_with_data(
        body, content_type="application/zip", headers={"Content-Length": str(len(body))}
    )


@pytest.mark.usefixtures("hostile_conn")
def test_refused_entry_names_are_printed_cleaned(httpserver: HTTPServer, tmp_path: Path, capsys) -> None:
    serve_outputs(httpserver, {"fine.txt": b"ok", f"../{HOSTILE}.txt": b"evil"})

    code, out, err = run(capsys, "jobs", "outputs", "j1", "--to", str(tmp_path / "to"), "--extract")

    assert code == 1
    assert_no_raw_sequences(out, err)
    assert "refused 1 archive entry" in err
    assert "click me" in err


@pytest.mark.usefixtures("hostile_conn")
def test_extract_never_writes_through_a_link_in_the_target_folder(
    httpserver: HTTPServer, tmp_path: Path, capsys
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("untouched")
    folder = tmp_path / "to"
    (folder / "output").mkdir(parents=True)
    (folder / "output" / "sub").symlink_to(elsewhere)  # planted before the download
    (folder / "output" / "result.json").symlink_to(elsewhere / "keep.txt")
    serve_outputs(httpserver, {"sub/evil.txt": b"written through the link?", "result.json": b"{}"})

    code, _, err = run(capsys, "jobs", "outputs", "j1", "--to", str(folder), "--extract")

    assert code == 0, err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_text() == "untouched"
    assert not (folder / "output" / "sub").is_symlink()
    assert (folder / "output" / "sub" / "evil.txt").read_bytes() == b"written through the link?"
    assert not (folder / "output" / "result.json").is_symlink()
    assert sorted(os.listdir(folder)) == ["output", "output.zip"]  # no staging folder left


@pytest.mark.usefixtures("hostile_conn")
def test_extract_replaces_an_output_link_and_keeps_its_target(httpserver: HTTPServer, tmp_path: Path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "to"
    folder.mkdir()
    (folder / "output").symlink_to(elsewhere, target_is_directory=True)
    serve_outputs(httpserver, {"a.txt": b"a"})

    code, _, err = run(capsys, "jobs", "outputs", "j1", "--to", str(folder), "--extract")

    assert code == 0, err
    assert list(elsewhere.iterdir()) == []
    assert not (folder / "output").is_symlink()
    assert (folder / "output" / "a.txt").read_bytes() == b"a"
    assert sorted(os.listdir(folder)) == ["output", "output.zip"]


@pytest.mark.usefixtures("hostile_conn")
def test_a_failed_extraction_leaves_the_previous_output_folder(httpserver: HTTPServer, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "to"
    (folder / "output").mkdir(parents=True)
    (folder / "output" / "previous.txt").write_text("kept")
    serve_outputs(httpserver, {"/".join(["d"] * 2100) + "/deep.txt": b"deep"})

    code, _, err = run(capsys, "jobs", "outputs", "j1", "--to", str(folder), "--extract")

    assert code == 1
    assert "lies 2100 folders deep" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (folder / "output").iterdir()) == ["previous.txt"]
    assert sorted(os.listdir(folder)) == ["output", "output.zip"]


def _slow_loris(conn: socket.socket) -> None:
    """A status answer at two bytes a second: every read gets a byte in time, the whole never comes."""
    for byte in json_answer(status_body("j1", "running")):
        time.sleep(0.5)
        conn.sendall(bytes([byte]))


def test_a_slow_loris_answer_ends_at_the_connections_timeout(monkeypatch, capsys) -> None:
    server = RawServer(_slow_loris)
    try:
        connection = {"conn_type": "ccp", "host": server.url, "extra": {"auth_flow": "none", "timeout": 1}}
        monkeypatch.setenv("AIRFLOW_CONN_HOSTILE", json.dumps(connection))
        started = time.monotonic()
        code, _out, err = run(capsys, "jobs", "status", "j1")
    finally:
        server.stop()
    assert code != 0
    assert time.monotonic() - started < 5  # the answer alone would take minutes
    assert "no complete answer within the connection's timeout" in err, err


def _dripped_zip(conn: socket.socket) -> None:
    """output.zip's head at once, then its 1,000 bytes at two a second."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        time.sleep(0.5)
        conn.sendall(b"z")


def test_a_dripped_download_ends_in_one_line_naming_the_setting(monkeypatch, capsys, tmp_path) -> None:
    server = RawServer(_dripped_zip)
    folder = tmp_path / "outputs"
    try:
        extra = {"auth_flow": "none", "timeout": 1, "min_download_rate": 100}
        monkeypatch.setenv("AIRFLOW_CONN_HOSTILE", json.dumps({"conn_type": "ccp", "host": server.url, "extra": extra}))
        started = time.monotonic()
        code, _out, err = run(capsys, "jobs", "outputs", "j1", "--to", str(folder))
    finally:
        server.stop()
    assert code == 1
    assert time.monotonic() - started < 5  # the archive alone would take 500 s
    (line,) = err.strip().splitlines()
    assert line.startswith("Error: The download of "), line
    assert "slower than the connection's min_download_rate of 100 bytes/s" in line, line
    assert list(folder.iterdir()) == []
