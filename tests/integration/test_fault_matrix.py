"""The fault matrix: every fault and abuse case the sandbox can produce, run through the operator.

Each row of ``CASES`` is one case: what to break (a sandbox fault, a hostile ``output.zip``, a bad
argument), what the task must do (succeed, or fail with one clear line naming the problem) and in
which modes (on the worker, or deferred to the trigger). Every run is then checked for the same
figures: executions per try, secrets in the task log / XCom / rendered fields / world-readable
files, files outside the task's own folder, and whether a failure was a clear error or a traceback.
The module prints a one-screen summary of those figures at the end.

A new case is one more row: ``Case(name, group, expect=..., arrange=..., ...)``.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator
from airflow_provider_ccp.outputs import task_output_path
from airflow_provider_ccp.version_compat import AirflowFailException
from ccp_sandbox.testing import SandboxServer
from tests.integration.doubles import HostileFront, dribbled, status_body
from tests.task_helpers import DictStore, make_context, pushed, run_deferrable, task_log

__all__ = ["task_log"]  # a fixture, used by name

WORKER, DEFERRED = "worker", "deferrable"
BOTH = (WORKER, DEFERRED)


# --------------------------------------------------------------------------- hostile archives


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buffer.getvalue()


def traversal_zip() -> bytes:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip(
        [
            ("result.json", b"{}"),
            ("../../../../escaped.txt", b"out"),
            ("/tmp/absolute.txt", b"out"),
            ("..\\windows.txt", b"out"),
            (link, b"/etc/passwd"),
        ]
    )


def bomb_zip() -> bytes:
    """512 MiB of zeros in about half a megabyte."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        chunk = bytes(1024 * 1024)
        for _ in range(512):
            out.write(chunk)
    return buffer.getvalue()


def many_entries_zip(count: int = 100_001) -> bytes:
    return _zip([(f"f/{n}.txt", b"") for n in range(count)], zipfile.ZIP_STORED)


def bad_crc_zip() -> bytes:
    raw = bytearray(_zip([("good.txt", b"fine"), ("stdout.1.txt", bytes(range(256)) * 64)], zipfile.ZIP_STORED))
    middle = len(raw) // 2
    raw[middle : middle + 16] = bytes(16)
    return bytes(raw)


def deep_zip() -> bytes:
    return _zip([("/".join(["d"] * 2100) + "/deep.txt", b"deep")])


def encrypted_zip() -> bytes:
    """Members whose flags say "encrypted": zipfile wants a password for them."""
    raw = bytearray(_zip([("result.json", b"{}"), ("locked.txt", b"secret")], zipfile.ZIP_STORED))
    for signature, flags in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = raw.find(signature)
        while start != -1:
            raw[start + flags] |= 0x1
            start = raw.find(signature, start + 4)
    return bytes(raw)


_ARCHIVES: dict[str, bytes] = {}


def archive(name: str, build: Callable[[], bytes]) -> bytes:
    """Each hostile archive is built once per session: some take seconds."""
    if name not in _ARCHIVES:
        _ARCHIVES[name] = build()
    return _ARCHIVES[name]


def serving(name: str, build: Callable[[], bytes]) -> Callable[[Env], None]:
    """Arrange: the next output.zip download gets this archive instead of the job's."""
    return lambda env: env.sandbox.admin.replace_output(archive(name, build))


def corrupting(mode: str) -> Callable[[Env], None]:
    """Arrange: the next output.zip download is damaged ('truncate' or 'corrupt')."""
    return lambda env: env.sandbox.admin.corrupt_output(mode)


# --------------------------------------------------------------------------- the table


@dataclass
class Env:
    """One run of one case: the sandbox, where outputs go, and what the case changed."""

    sandbox: SandboxServer
    tmp_path: Path
    mode: str
    monkeypatch: pytest.MonkeyPatch
    #: A loopback server that hostile cases put in front of the sandbox (``hostile``).
    front_server: HTTPServer | None = None
    front: HostileFront | None = None
    started: float = 0.0
    secret: str = field(default_factory=lambda: f"input-secret-{secrets.token_hex(8)}")
    conn_id: str = "ccp_default"
    run_id: str = "manual__2025-01-01T00:00:00+00:00"
    task_id: str = "count"

    @property
    def root(self) -> Path:
        return self.tmp_path / "root"

    @property
    def task_folder(self) -> Path:
        return Path(task_output_path(str(self.root), "ccp_tests", self.run_id, self.task_id, None).path)

    def bad_connection(self, **changes: Any) -> None:
        """Point ``ccp_bad`` at the sandbox with some fields or extras changed."""
        conn = self.sandbox.connection()
        extra = changes.pop("extra", None)
        conn |= changes
        conn["extra"] = extra if extra is not None else conn["extra"]
        self.monkeypatch.setenv("AIRFLOW_CONN_CCP_BAD", json.dumps(conn))
        self.conn_id = "ccp_bad"


@dataclass(frozen=True)
class Case:
    name: str
    group: str
    #: None: the task succeeds; else a regex the (one-line) error message must match.
    expect: str | None = None
    #: Breaks something before the run (sandbox faults, a hostile archive, a bad connection ...).
    arrange: Callable[[Env], None] = lambda env: None
    #: Operator arguments on top of the word-count defaults.
    operator: dict[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] = BOTH
    #: Run the task once cleanly first, then break and run again: the first outputs must survive a failure.
    rerun: bool = False
    #: A bad input the Method's description reveals: reading it is allowed, submitting is not.
    reads_description: bool = False
    #: Instead of running the operator: a call that must fail before any request.
    call: Callable[[Env], Any] | None = None
    #: More checks on the result (the manifest, or None) once the common ones passed.
    check: Callable[[Env, dict[str, Any] | None], None] = lambda env, manifest: None


# --------------------------------------------------------------------------- hostile answers (a server in front)

Answer = Callable[[Request, Callable[[], Response]], Response]
JOB_STATUS = r"^/jobs/[^/]+$"
EXECUTION_POST = r"^/processes/[^/]+/execution$"
OUTPUT_ZIP = r"^/executions/[^/]+/outputs/output\.zip$"
TOKEN = r"/protocol/openid-connect/token$"


def hostile(method: str, path: str, answer: Answer, count: int | None = None, **extra: Any) -> Callable[[Env], None]:
    """Arrange: the task's connection goes through a ``HostileFront`` whose rule answers these requests."""

    def arrange(env: Env) -> None:
        assert env.front_server is not None
        env.front = HostileFront(env.front_server, env.sandbox.url)
        env.front.add(method, path, answer, count)
        token_endpoint = env.sandbox.connection()["extra"]["keycloak_url"].replace(env.sandbox.url, env.front.url)
        env.bad_connection(
            host=env.front.url, extra=env.sandbox.connection()["extra"] | extra | {"keycloak_url": token_endpoint}
        )
        env.started = time.monotonic()

    return arrange


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, content_type="application/json")


def _redirect(where: Callable[[Request], str], status: int = 307) -> Answer:
    return lambda request, forward: Response("", status=status, headers={"Location": where(request)})


def _stolen_nothing(env: Env, manifest: dict[str, Any] | None) -> None:
    assert env.front is not None
    assert [request.path for request in env.front.stolen()] == []


def _progress(raw: str) -> Answer:
    """The sandbox's status answer with ``progress`` written as ``raw`` (``NaN``, ``1e400``)."""

    def answer(request: Request, forward: Callable[[], Response]) -> Response:
        document = json.loads(forward().get_data())
        document["progress"] = "__progress__"
        text = json.dumps(document).replace('"__progress__"', raw)
        return Response(text, status=200, content_type="application/json")

    return answer


def _job_of(request: Request) -> str:
    return request.path.rstrip("/").split("/")[-1]


def _huge_stream(request: Request, forward: Callable[[], Response]) -> Response:
    def chunks() -> Iterator[bytes]:
        yield b'{"jobID": "' + _job_of(request).encode() + b'", "status": "running", "message": "'
        for _ in range(50):
            yield b"x" * (1 << 20)
        yield b'"}'

    return Response(chunks(), status=200, content_type="application/json")


LONG_MESSAGE = 7 * (1 << 20)


def _within(seconds: float) -> Callable[[Env, dict[str, Any] | None], None]:
    def check(env: Env, manifest: dict[str, Any] | None) -> None:
        assert time.monotonic() - env.started < seconds

    return check


def _polls(env: Env, kind: str = "status", **fault: Any) -> None:
    env.sandbox.admin.add_fault(kind=kind, path=r"^/jobs/[^/]+$", method="GET", **fault)


def _revoke_after_first_token(env: Env) -> None:
    CCPHook().get_token()  # the task starts with this token cached, then it dies
    env.sandbox.admin.revoke_tokens()


def _to_other_origin(request: Request, status: int) -> Response:
    """A redirect to the same front under another host name: what reaches it there was carried away."""
    other = request.host_url.replace("127.0.0.1", "localhost").rstrip("/")
    return Response("", status=status, headers={"Location": f"{other}/steal{request.path}"})


def redirected_elsewhere(what: str, method: str, path: str, status: int, expect: str) -> Case:
    """A case whose ``method`` requests to ``path`` are redirected to another origin: refused, nothing sent."""
    return Case(
        f"{what} redirected elsewhere ({status})",
        "hostile answer",
        expect=expect,
        arrange=hostile(method, path, lambda request, forward: _to_other_origin(request, status)),
        check=_stolen_nothing,
    )


def _files_refused(env: Env, manifest: dict[str, Any] | None) -> None:
    assert manifest is not None
    assert sorted(manifest["refused"]) == sorted(
        ["../../../../escaped.txt", "/tmp/absolute.txt", "..\\windows.txt", "link"]
    )
    assert [item["path"] for item in manifest["files"]] == ["result.json"]


def _small_xcom_full_manifest(env: Env, manifest: dict[str, Any] | None) -> None:
    assert manifest is not None
    assert manifest["file_count"] == 100_001
    assert len(json.dumps(manifest)) < 64 * 1024
    listing = json.loads((env.task_folder / "manifest.json").read_text())
    assert len(listing["files"]) == 100_001


def _old_outputs_kept(env: Env, manifest: dict[str, Any] | None) -> None:
    result = env.task_folder / "output" / "result.json"
    assert json.loads(result.read_text()) == {"words": 3, "mode": "words"}
    assert sorted(p.name for p in env.task_folder.parent.iterdir()) == [env.task_folder.name]


def _nothing_extracted(env: Env, manifest: dict[str, Any] | None) -> None:
    assert not env.root.exists() or not [p for p in env.root.rglob("*") if p.is_file()]


def _input_files_withheld(env: Env, manifest: dict[str, Any] | None) -> None:
    assert manifest is not None
    assert sorted(manifest["withheld"]) == ["ccp-entrypoint.sh", "ccpenv"]
    assert not (env.task_folder / "output" / "ccpenv").exists()


def _hostile_ids(env: Env) -> None:
    env.run_id, env.task_id = "..", ".."


def _call_with_hook(action: Callable[[CCPHook], Any]) -> Callable[[Env], Any]:
    return lambda env: action(CCPHook(ccp_conn_id=env.conn_id))


DOWNLOAD_BROKE = r"^The download of .*output\.zip (ended|broke) after \d+"
REFUSED_REDIRECT = r"Refused the redirect \(HTTP 30\d\) of {} .* to http://localhost:\d+: only GET requests"

CASES: list[Case] = [
    # polling and token faults the sandbox injects: survived, one execution
    Case("503 + Retry-After on 3 polls", "polling/token", arrange=lambda env: _polls(env, retry_after=1, count=3)),
    Case(
        "502 HTML page on 2 polls", "polling/token", arrange=lambda env: _polls(env, status=502, body="html", count=2)
    ),
    Case("connection dropped on a poll", "polling/token", arrange=lambda env: _polls(env, kind="drop")),
    Case("2 s latency on a poll", "polling/token", arrange=lambda env: _polls(env, kind="latency", seconds=2)),
    Case("token revoked mid-task", "polling/token", arrange=_revoke_after_first_token),
    Case(
        "token endpoint 503 once",
        "polling/token",
        arrange=lambda env: env.sandbox.admin.fail_token_endpoint(503),
    ),
    # hostile or damaged outputs
    Case(
        "output.zip truncated",
        "hostile output",
        expect=DOWNLOAD_BROKE,
        arrange=corrupting("truncate"),
        check=_nothing_extracted,
    ),
    Case(
        "re-run download breaks",
        "hostile output",
        expect=DOWNLOAD_BROKE,
        arrange=corrupting("truncate"),
        rerun=True,
        check=_old_outputs_kept,
    ),
    Case(
        "output.zip garbage",
        "hostile output",
        expect=r"^The outputs archive output\.zip is not a valid zip file",
        arrange=corrupting("corrupt"),
        check=_nothing_extracted,
    ),
    Case(
        "entries escaping the folder",
        "hostile output",
        arrange=serving("traversal", traversal_zip),
        check=_files_refused,
    ),
    Case(
        "zip bomb (512 MiB of zeros)",
        "hostile output",
        expect=r"^The outputs archive output\.zip expands \d+ times .*raise the operator's max_compression_ratio",
        arrange=serving("bomb", bomb_zip),
        check=_nothing_extracted,
    ),
    Case(
        "100,001 entries, extracted",
        "hostile output",
        expect=r"^The outputs archive output\.zip has 100001 entries.*raise the operator's max_extract_entries",
        arrange=serving("many", many_entries_zip),
        modes=(WORKER,),
        check=_nothing_extracted,
    ),
    Case(
        "100,001 entries, listed",
        "hostile output",
        arrange=serving("many", many_entries_zip),
        operator={"extract": False},
        modes=(WORKER,),
        check=_small_xcom_full_manifest,
    ),
    Case(
        "re-run gets a bad CRC member",
        "hostile output",
        expect=r"^The outputs archive output\.zip could not be read",
        arrange=serving("crc", bad_crc_zip),
        rerun=True,
        check=_old_outputs_kept,
    ),
    Case(
        "re-run gets an HTML page",
        "hostile output",
        expect=r"^The outputs archive output\.zip is not a valid zip file",
        arrange=serving("html", lambda: b"<html>502 Bad Gateway</html>"),
        rerun=True,
        check=_old_outputs_kept,
    ),
    Case("run id and task id '..'", "hostile output", arrange=_hostile_ids),
    # answers that are not what they claim, and what a server must not get (a server in front of the sandbox)
    Case(
        "secret input echoed in the failure message",
        "hostile answer",
        expect=r"^The CCP execution failed: exit code 3: \*\*\* \(Method 'fail', job ",
        operator={
            "method_id": "fail",
            "inputs": {"message": "{{ params.key }}"},
            "secret_inputs": ["message"],
            "log_lines": 0,
        },
    ),
    Case(
        "status names another job",
        "hostile answer",
        expect=r"Asked .*/jobs/[^ ]+ for job '[^']+' and the answer is the status of job 'someone-elses'",
        arrange=hostile("GET", JOB_STATUS, lambda request, forward: _json(status_body("someone-elses", "successful"))),
    ),
    Case("progress NaN", "hostile answer", arrange=hostile("GET", JOB_STATUS, _progress("NaN"))),
    Case("progress 1e400", "hostile answer", arrange=hostile("GET", JOB_STATUS, _progress("1e400"))),
    Case(
        "sync 200 that is an HTML login page",
        "hostile answer",
        expect=r"^The execution POST was answered HTTP 200 with \d+ bytes of text/html: neither a job",
        arrange=hostile(
            "POST",
            EXECUTION_POST,
            lambda request, forward: Response("<html><form>Sign in</form></html>", content_type="text/html"),
        ),
    ),
    Case(
        "sync 200 with an empty body",
        "hostile answer",
        expect=r"^The execution POST was answered HTTP 200 with an empty body",
        arrange=hostile(
            "POST", EXECUTION_POST, lambda request, forward: Response(b"", content_type="application/json")
        ),
    ),
    Case(
        "status nested 100,000 levels",
        "hostile answer",
        expect=r"Expected JSON from .*/jobs/[^ ]+, got something else: the JSON is nested too deeply to read",
        arrange=hostile(
            "GET", JOB_STATUS, lambda request, forward: Response("[" * 100_000 + "]" * 100_000, status=200)
        ),
    ),
    Case(
        "50 MB status answer",
        "hostile answer",
        expect=r"The answer from .*/jobs/[^ ]+ is larger than 8388608 bytes, the most the provider reads$",
        arrange=hostile("GET", JOB_STATUS, _huge_stream),
    ),
    Case(
        "failure message of 7 MiB",
        "hostile answer",
        expect=r"^The CCP execution failed: x{500}\.\.\. \[\d+ more characters\] \(Method 'word-count', job \S+: ",
        arrange=hostile(
            "GET",
            JOB_STATUS,
            lambda request, forward: _json(status_body(_job_of(request), "failed", message="x" * LONG_MESSAGE)),
        ),
    ),
    Case(
        "slow-loris status answer (2 bytes/s)",
        "hostile answer",
        arrange=hostile("GET", JOB_STATUS, lambda request, forward: dribbled(b" " * 60, 0.5), count=1, timeout=1),
        check=_within(20),
    ),
    Case(
        "re-run gets output.zip dripped (2 bytes/s)",
        "hostile output",
        expect=r"^The download of .*output\.zip was slower than the connection's min_download_rate of 1000 bytes/s: ",
        arrange=hostile(
            "GET", OUTPUT_ZIP, lambda request, forward: dribbled(b"z" * 20, 0.5), timeout=1, min_download_rate=1000
        ),
        rerun=True,
        check=_old_outputs_kept,
    ),
    redirected_elsewhere("execution POST", "POST", EXECUTION_POST, 307, REFUSED_REDIRECT.format("POST")),
    redirected_elsewhere("token endpoint", "POST", TOKEN, 308, REFUSED_REDIRECT.format("POST")),
    redirected_elsewhere(
        "output.zip",
        "GET",
        OUTPUT_ZIP,
        302,
        r"Refused the redirect \(HTTP 302\) of GET .*output\.zip to http://localhost:\d+: only GET "
        r"requests are redirected, and only on http://127\.0\.0\.1:\d+",
    ),
    Case(
        "output.zip redirected on its own origin (302)",
        "hostile answer",
        arrange=hostile(
            "GET",
            OUTPUT_ZIP,
            lambda request, forward: Response("", status=302, headers={"Location": request.path + "?again=1"}),
            count=1,
        ),
    ),
    Case(
        "secret input, CCP's input files",
        "hostile output",
        operator={"method_id": "hello", "inputs": {"name": "ada", "api_key": "{{ params.key }}"}},
        check=_input_files_withheld,
    ),
    # bad input: one clear line, nothing sent
    Case("Method id '..'", "bad input", expect=r"^Method id '\.\.' is not usable", operator={"method_id": ".."}),
    Case("Method id ''", "bad input", expect=r"^Method id '' is not usable", operator={"method_id": ""}),
    Case(
        "dismiss job '..'",
        "bad input",
        expect=r"^Job id '\.\.' is not usable",
        call=_call_with_hook(lambda hook: hook.dismiss_job("..")),
        modes=(WORKER,),
    ),
    Case(
        "job status of '.'",
        "bad input",
        expect=r"^Job id '\.' is not usable",
        call=_call_with_hook(lambda hook: hook.get_job(".")),
        modes=(WORKER,),
    ),
    Case("inputs as a string", "bad input", expect=r"must be a mapping", operator={"inputs": "text=hello"}),
    Case("inputs as a list", "bad input", expect=r"must be a mapping", operator={"inputs": ["text", "hello"]}),
    Case(
        "unknown input",
        "bad input",
        expect=r"^Invalid inputs for Method 'word-count': unknown input 'txt'",
        operator={"inputs": {"txt": "x"}},
        reads_description=True,
    ),
    Case(
        "a list for a single-valued input",
        "bad input",
        expect=r"^Invalid inputs for Method 'word-count': text: a list of 2 values, but the Method's input takes one",
        operator={"inputs": {"text": ["one two", "three"], "mode": "words"}},
        reads_description=True,
    ),
    Case(
        "extra is not JSON",
        "bad input",
        # Airflow 3.1 refuses to load such a connection at all ("isn't defined"); the provider names the
        # field on every line all the same.
        expect=r"^Connection field 'extra' is not valid JSON \(Expecting .*\); expected a JSON object$",
        arrange=lambda env: env.bad_connection(extra='{"client_id": "x",'),
    ),
    Case(
        "no host",
        "bad input",
        expect=r"^Connection field 'host' is empty; expected the CCP URL",
        arrange=lambda env: env.bad_connection(host=""),
    ),
    Case(
        "host without a scheme",
        "bad input",
        expect=r"^Connection field 'host' is '127\.0\.0\.1:\d+', without a scheme; expected an http:// or https://",
        arrange=lambda env: env.bad_connection(host=env.sandbox.url.removeprefix("http://")),
    ),
    Case(
        "unknown conn_id",
        "bad input",
        expect=r"^Connection 'ccp_nowhere' \(ccp_conn_id\) is not defined; expected the id of a ccp connection",
        operator={"ccp_conn_id": "ccp_nowhere"},
    ),
    Case(
        "max_connections many",
        "bad input",
        # Read by the triggerer's pool only, yet checked with the rest: a deferrable task refuses it before submitting.
        expect=r"^Connection extra 'max_connections' is 'many'; expected a whole number of at least 1$",
        arrange=lambda env: env.bad_connection(extra=env.sandbox.connection()["extra"] | {"max_connections": "many"}),
    ),
    Case(
        "timeout nan",
        "bad input",
        expect=r"^Connection extra 'timeout' is 'nan'",
        arrange=lambda env: env.bad_connection(extra=env.sandbox.connection()["extra"] | {"timeout": "nan"}),
    ),
    Case(
        "timeout -1",
        "bad input",
        expect=r"^Connection extra 'timeout' is -1",
        arrange=lambda env: env.bad_connection(extra=env.sandbox.connection()["extra"] | {"timeout": -1}),
    ),
    Case(
        "verify path missing",
        "bad input",
        expect=r"^Connection extra 'verify' is '/nonexistent/ca\.pem', which does not exist",
        arrange=lambda env: env.bad_connection(
            extra=env.sandbox.connection()["extra"] | {"verify": "/nonexistent/ca.pem"}
        ),
    ),
    Case(
        "host with user:password",
        "bad input",
        expect=r"^Connection field 'host' holds a user name or password \('user:password@'\); expected the URL",
        arrange=lambda env: env.bad_connection(
            host=env.sandbox.url.replace("://", f"://{env.sandbox.user}:{env.sandbox.password}@")
        ),
    ),
    Case(
        "host with a query string",
        "bad input",
        expect=r"^Connection field 'host' is .*without a query string or fragment",
        arrange=lambda env: env.bad_connection(host=env.sandbox.url + "/?x=1"),
    ),
    # issue 19, archives and config mistakes: a failure with nothing half-written, a mistake failed at once
    Case(
        "re-run gets an entry 2,100 folders deep",
        "hostile output",
        expect=r"^The outputs archive output\.zip cannot be extracted: its entry 'd/d/.*' lies 2100 folders deep",
        arrange=serving("deep", deep_zip),
        rerun=True,
        check=_old_outputs_kept,
    ),
    Case(
        "re-run gets an encrypted member",
        "hostile output",
        expect=r"^The outputs archive output\.zip cannot be extracted: its entry 'result\.json' is encrypted",
        arrange=serving("encrypted", encrypted_zip),
        rerun=True,
        check=_old_outputs_kept,
    ),
    Case(
        "wrong password",
        "bad input",
        expect=r"^The password token request to .* was refused \(HTTP 401, invalid_grant: Invalid user credentials\)",
        arrange=lambda env: env.bad_connection(password="not-the-password"),
        reads_description=True,  # only the token endpoint can tell: its one request is allowed
    ),
    Case(
        "unknown auth_flow",
        "bad input",
        expect=r"^Connection extra 'auth_flow' is 'kerberos'; expected one of ",
        arrange=lambda env: env.bad_connection(extra=env.sandbox.connection()["extra"] | {"auth_flow": "kerberos"}),
    ),
    Case(
        "host not http(s)",
        "bad input",
        expect=r"^Connection field 'host' is 'ftp://.*'; expected an http:// or https:// URL",
        arrange=lambda env: env.bad_connection(host=env.sandbox.url.replace("http://", "ftp://")),
    ),
]


# --------------------------------------------------------------------------- figures and summary


@dataclass
class Figures:
    name: str
    group: str
    mode: str
    outcome: str = ""
    executions: int = 0
    tries: int = 0
    secrets_leaked: list[str] = field(default_factory=list)
    files_outside: list[str] = field(default_factory=list)
    traceback: bool = False
    #: Failed without retry (AirflowFailException), what a mistake no retry can mend must do; None when
    #: the case is a direct hook call rather than a task.
    final: bool | None = None
    #: Requests a bad input still caused (reading the Method's description, when that finds the mistake).
    requests_sent: int = 0
    #: Requests a hostile server's redirect or link carried to another origin (with a token, a body...).
    carried_away: int = 0


RESULTS: list[Figures] = []


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not RESULTS:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():  # on the terminal, not in a captured section
        for line in summary_lines(RESULTS):
            reporter.write_line(line)


def summary_lines(results: list[Figures]) -> list[str]:
    faults = [r for r in results if r.group != "bad input"]
    bad_inputs = [r for r in results if r.group == "bad input"]
    survived = [r for r in faults if r.outcome in ("succeeded", "clear error")]
    clear = [r for r in bad_inputs if r.outcome == "clear error" and r.executions == 0]
    tasks = [r for r in clear if r.final is not None]
    final = [r for r in tasks if r.final]
    duplicates = [r for r in results if r.executions > r.tries]
    lines = [
        "",
        "=" * 30 + " fault matrix " + "=" * 30,
        f"faults and abuse cases tried: {len(faults)}   survived or failed clearly: {len(survived)}",
        f"duplicate executions (more than one per try): {len(duplicates)}   "
        f"most executions per try: {max((r.executions / max(r.tries, 1) for r in results), default=0):g}",
        f"secrets found in logs/XCom/rendered fields/world-readable files: "
        f"{sum(len(r.secrets_leaked) for r in results)}",
        f"files outside the task folder: {sum(len(r.files_outside) for r in results)}   "
        f"requests carried to another origin: {sum(r.carried_away for r in results)}",
        f"bad inputs: {len(bad_inputs)}   clear error, nothing submitted: {len(clear)}   "
        f"tasks failed at once (no retry): {len(final)} of {len(tasks)}   "
        f"answered by a traceback: {sum(r.traceback for r in bad_inputs)}",
    ]
    failed = [
        r
        for r in results
        if r.outcome not in ("succeeded", "clear error") or r.secrets_leaked or r.files_outside or r.carried_away
    ]
    lines += [f"  NOT OK: {r.name} [{r.mode}]: {r.outcome} {r.secrets_leaked} {r.files_outside}" for r in failed]
    return [*lines, "=" * 74]


# --------------------------------------------------------------------------- running a case


def _operator(env: Env, case: Case) -> CCPExecuteMethodOperator:
    arguments: dict[str, Any] = {
        "task_id": env.task_id,
        "method_id": "word-count",
        "inputs": {"text": "one two three", "mode": "words"},
        "poll_interval": 0.05,
        "output_path": str(env.root),
        "ccp_conn_id": env.conn_id,
        "deferrable": env.mode == DEFERRED,
        # The retry policy's shape, not its default patience, is what the matrix checks; and there is
        # no scheduler here to race with (the defer-race hold has tests of its own).
        "ccp_retry_delay": 0.01,
        "min_defer_seconds": 0,
    }
    op = CCPExecuteMethodOperator(**(arguments | case.operator))
    op.render_template_fields({"params": {"key": env.secret}})
    return op


def _run_task(env: Env, case: Case) -> tuple[CCPExecuteMethodOperator, dict[str, Any], Any]:
    op = _operator(env, case)
    context = make_context(DictStore(), task_id=env.task_id)
    context["ti"].run_id = env.run_id
    result = run_deferrable(op, context) if env.mode == DEFERRED else op.execute(context)
    return op, context, result


def _leaks(env: Env, texts: dict[str, str]) -> list[str]:
    secrets_ = [env.secret, env.sandbox.password, env.sandbox.client_secret]
    return [f"{secret[:6]}... in {where}" for where, text in texts.items() for secret in secrets_ if secret in text]


def _world_readable_text(root: Path) -> str:
    if not root.exists():
        return ""
    readable = [p for p in root.rglob("*") if p.is_file() and p.stat().st_mode & stat.S_IROTH]
    texts = []
    for path in readable:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:  # the archive's members are world-readable too
                texts += [zf.read(info).decode(errors="replace") for info in zf.infolist() if info.file_size < 1 << 20]
        elif path.stat().st_size < 1 << 20:
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def _files_outside(env: Env) -> list[str]:
    task_folder = env.task_folder.resolve()
    return [
        str(p.relative_to(env.tmp_path))
        for p in env.tmp_path.rglob("*")
        if p.is_file() and not p.resolve().is_relative_to(task_folder)
    ]


DESCRIPTION_READ = ("POST /auth/realms/d4science/protocol/openid-connect/token", "GET /processes/{process_id}")


def _requests_sent(env: Env, case: Case) -> int:
    """Requests so far; a case that ``reads_description`` does not count the token and description reads."""
    counted = env.sandbox.admin.counters()["requests"]
    return sum(n for route, n in counted.items() if not (case.reads_description and route in DESCRIPTION_READ))


def _params() -> list[Any]:
    """Each case in each of its modes."""
    return [pytest.param(case, mode, id=f"{case.name}-{mode}") for case in CASES for mode in case.modes]


@pytest.fixture(scope="module")
def front_server() -> Iterator[HTTPServer]:
    """Threaded: a slow answer to one request must not hold up the others."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.mark.usefixtures("sandbox_conn")
@pytest.mark.parametrize(("case", "mode"), _params())
def test_fault(
    case: Case,
    mode: str,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch,
    task_log,
    front_server: HTTPServer,
) -> None:
    front_server.clear()
    env = Env(sandbox, tmp_path, mode, monkeypatch, front_server)
    figures = Figures(case.name, case.group, mode)
    RESULTS.append(figures)
    if case.rerun:
        _run_task(env, Case(case.name, case.group, operator=case.operator))
        figures.tries += 1
    case.arrange(env)
    before = _requests_sent(env, case)
    op: CCPExecuteMethodOperator | None = None
    context: dict[str, Any] = {}
    manifest: dict[str, Any] | None = None
    error: BaseException | None = None
    figures.tries += 1
    try:
        if case.call is not None:
            case.call(env)
        else:
            op, context, manifest = _run_task(env, case)
    except AirflowException as raised:  # CCPError, or one of Airflow's own one-line errors
        error = raised
    except Exception as raised:  # anything else is a traceback for the user
        error = raised
        figures.traceback = True

    figures.requests_sent = _requests_sent(env, case) - before
    method_id = (case.operator.get("method_id") or "word-count") if case.call is None else ""
    figures.executions = sandbox.admin.executions_submitted(method_id) if method_id else 0
    figures.outcome = "succeeded" if error is None else ("traceback" if figures.traceback else "clear error")
    figures.final = isinstance(error, AirflowFailException) if case.call is None else None
    rendered = ""
    if op is not None:
        from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

        rendered = json.dumps(_serialize_rendered_fields(op))
    figures.secrets_leaked = _leaks(
        env,
        {
            "task log": task_log(),
            "XCom": json.dumps([pushed(context) if context else {}, manifest], default=str),
            "rendered fields": rendered,
            "error": str(error or ""),
            "world-readable file": _world_readable_text(env.root),
        },
    )
    figures.files_outside = _files_outside(env)
    figures.carried_away = len(env.front.stolen()) if env.front is not None else 0

    assert not figures.traceback, repr(error)
    if case.expect is None:
        assert error is None, f"{type(error).__name__}: {error}"
    else:
        assert error is not None, "expected a clear error, the task succeeded"
        assert re.search(case.expect, str(error)), str(error)
        # One line (task logs and the UI's failure summary show only the first), the reason first.
        lines = str(error).strip().splitlines()
        assert len(lines) == 1, str(error)
        assert len(lines[0]) <= 800, lines[0][:200]
    if case.group == "bad input":
        assert figures.requests_sent == 0
        assert figures.executions == 0
        if figures.final is not None:  # a task's mistake: no retry mends it
            assert figures.final, f"{type(error).__name__} would be retried: {error}"
    assert figures.executions <= figures.tries
    assert figures.secrets_leaked == []
    assert figures.files_outside == []
    assert figures.carried_away == 0
    case.check(env, manifest)
