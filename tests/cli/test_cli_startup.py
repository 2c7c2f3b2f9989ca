"""``ccp-airflow`` answers help, ``--version`` and argument errors without importing Airflow.

Each case runs in a fresh interpreter (this test process has imported Airflow long ago) and reports
whether any ``airflow`` module was loaded by the time ``main`` returned. The time this saves is
measured by tests/benchmarks/cli_startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from ccp_airflow import main
code = None
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "airflow": sorted(m for m in sys.modules if m.split(".")[0] == "airflow")[:5]}))
"""


def run(*argv: str) -> tuple[dict[str, object], str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["--help"], 0, "usage: ccp-airflow"),
        (["methods", "list", "--help"], 0, "--search"),
        (["--version"], 0, "ccp-airflow "),
        (["methods"], 2, "the following arguments are required"),
        (["jobs", "status"], 2, "JOB_ID"),
        (["methods", "list", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["--user", "me", "methods", "list"], 2, "--user only apply with --url"),
        (["--auth-flow", "nope", "methods", "list"], 2, "invalid choice"),
    ],
)
def test_help_version_and_argument_errors_do_not_import_airflow(argv: list[str], code: int, says: str) -> None:
    report, output = run(*argv)
    assert report["code"] == code, output
    assert says in output
    assert report["airflow"] == [], output


def test_a_command_that_needs_a_connection_imports_airflow() -> None:
    """The probe itself can see Airflow being imported (else the test above could never fail)."""
    report, output = run("--url", "http://127.0.0.1:9", "--auth-flow", "none", "methods", "list")
    assert report["code"] == 1, output
    assert report["airflow"] != [], output
