"""What each distribution of this repository ships, built for real, and that each works installed alone.

The provider's wheel holds only what runs in a worker or a triggerer; the sandbox is a distribution
of its own (``sandbox/``), installable and runnable without Airflow or the provider, and so is the
command line (``cli/``, ``ccp-airflow``), installed next to the provider.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_sandbox.testing import SandboxProcess

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
#: The Airflow line of the venv running the tests: a fresh venv gets the same one.
AIRFLOW = f"apache-airflow=={__import__('airflow').__version__}"


def build(source: Path, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "--quiet", "--wheel", "--out-dir", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def provider_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT, tmp_path_factory.mktemp("provider-dist"))


@pytest.fixture(scope="module")
def sandbox_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "sandbox", tmp_path_factory.mktemp("sandbox-dist"))


@pytest.fixture(scope="module")
def cli_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "cli", tmp_path_factory.mktemp("cli-dist"))


def members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(name).decode())
    return [req for req in metadata.get_all("Requires-Dist") or [] if "extra ==" not in req]


def requirement_names(wheel: Path) -> set[str]:
    return {re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower() for req in requirements(wheel)}


def entry_points(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        return zf.read(names[0]).decode() if names else ""


def new_venv(path: Path, *packages: str | Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(python), *map(str, packages)],
        check=True,
        timeout=600,
    )
    return python


def test_the_provider_wheel_holds_only_runtime_code(provider_wheel: Path) -> None:
    files = members(provider_wheel)
    code = [name for name in files if name.endswith(".py")]
    assert code, files
    assert all(name.startswith("airflow_provider_ccp/") for name in code), code
    assert not [name for name in files if re.search(r"sandbox|devstack|(^|/)tests?/|conftest|(^|/)cli/", name)]
    # No command line: neither its code, nor its console script, nor an import of it or of its rich tables.
    assert "ccp-airflow" not in entry_points(provider_wheel)
    anywhere = re.compile(rb"^\s*(import|from) (pytest|ccp_sandbox|ccp_airflow|rich)\b", re.M)
    with zipfile.ZipFile(provider_wheel) as zf:
        assert [name for name in code if anywhere.search(zf.read(name))] == []


@pytest.mark.parametrize("dist", ["provider_wheel", "sandbox_wheel", "cli_wheel"])
def test_each_wheel_ships_the_apache_license_its_metadata_names(dist: str, request: pytest.FixtureRequest) -> None:
    wheel = request.getfixturevalue(dist)
    with zipfile.ZipFile(wheel) as zf:
        (metadata,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(zf.read(metadata).decode())
        licenses = [n for n in zf.namelist() if re.search(r"\.dist-info/licenses/LICENSE$", n)]
        assert licenses, zf.namelist()
        text = zf.read(licenses[0]).decode()
    assert fields["License-Expression"] == "Apache-2.0"
    assert fields.get_all("License-File") == ["LICENSE"]
    assert "Apache License\n                        Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_provider_needs_nothing_its_runtime_does_not_import(provider_wheel: Path) -> None:
    names = requirement_names(provider_wheel)
    assert names.isdisjoint({"fastapi", "uvicorn", "pyjwt", "pytest", "ccp-sandbox", "ccp-airflow", "rich"}), names


def test_the_sandbox_is_its_own_distribution_with_a_command_and_a_pytest_plugin(sandbox_wheel: Path) -> None:
    declared = entry_points(sandbox_wheel)
    assert "ccp-sandbox = ccp_sandbox.__main__:main" in declared
    assert "[pytest11]\nccp_sandbox = ccp_sandbox.pytest_plugin" in declared
    assert "ccp_sandbox/methods/word-count.json" in members(sandbox_wheel)  # its Methods travel with it
    assert not [req for req in requirements(sandbox_wheel) if "airflow" in req.lower()]


def test_the_command_line_is_its_own_distribution_on_top_of_the_provider(cli_wheel: Path) -> None:
    files = members(cli_wheel)
    assert [name for name in files if name.endswith(".py")], files
    assert all(name.startswith(("ccp_airflow/", "ccp_airflow-")) for name in files), files
    assert "[console_scripts]\nccp-airflow = ccp_airflow:main" in entry_points(cli_wheel)
    assert requirement_names(cli_wheel) == {"airflow-provider-ccp", "rich"}


@pytest.fixture
def running_sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    sandbox = SandboxProcess(data_dir=tmp_path / "sandbox-data")
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_the_provider_installed_alone_with_airflow_calls_ccp(
    provider_wheel: Path, tmp_path: Path, running_sandbox: SandboxProcess
) -> None:
    """No sandbox, no test tooling in that venv: only the wheel, Airflow and what the wheel asks for."""
    python = new_venv(tmp_path / "venv", provider_wheel, AIRFLOW)
    code = (
        "import json, importlib.util\n"
        "from airflow_provider_ccp.hooks.ccp import CCPHook\n"
        "hook = CCPHook()\n"
        "ids = sorted(m['id'] for m in hook.list_methods())\n"
        "print(json.dumps({'methods': ids, 'sandbox': importlib.util.find_spec('ccp_sandbox') is not None,"
        " 'pytest': importlib.util.find_spec('pytest') is not None,"
        " 'cli': importlib.util.find_spec('ccp_airflow') is not None}))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW_CONN_CCP_DEFAULT": running_sandbox.connection_json()}
    done = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "word-count" in result["methods"]
    assert (result["sandbox"], result["pytest"], result["cli"]) == (False, False, False)
    assert not (python.parent / "ccp-airflow").exists()


def test_the_command_line_installed_with_the_provider_lists_methods(
    provider_wheel: Path, cli_wheel: Path, tmp_path: Path, running_sandbox: SandboxProcess
) -> None:
    """Both wheels and Airflow, nothing else: the console script talks to CCP through an Airflow connection."""
    python = new_venv(tmp_path / "venv", provider_wheel, cli_wheel, AIRFLOW)
    script = str(python.parent / "ccp-airflow")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env |= {"AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW_CONN_CCP_DEFAULT": running_sandbox.connection_json()}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *argv], env=env, capture_output=True, text=True, timeout=300)

    listed = run("methods", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-4000:]
    assert "word-count" in {method["id"] for method in json.loads(listed.stdout)}
    # The sandbox is not in that venv: the command says which package it needs instead of failing to import.
    sandbox = run("sandbox")
    assert (sandbox.returncode, sandbox.stdout) == (1, ""), sandbox.stderr[-4000:]
    assert "needs the ccp-sandbox package" in sandbox.stderr


def test_the_sandbox_installed_alone_runs_a_method(
    sandbox_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its venv has no Airflow and no provider; the provider's hook, here, is the client."""
    python = new_venv(tmp_path / "venv", sandbox_wheel)
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            str(python.parent / "ccp-sandbox"),
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--ready-file",
            str(ready),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "sandbox.log").open("wb"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        log = (tmp_path / "sandbox.log").read_text(errors="replace")[-3000:]
        assert ready.exists(), f"ccp-sandbox did not start (exit code {process.poll()}):\n{log}"
        monkeypatch.setenv("AIRFLOW_CONN_CCP_DEFAULT", json.dumps(json.loads(ready.read_text())["connection"]))
        hook = CCPHook()
        job = hook.submit_execution("hello", {"ccpimage": "bash", "name": "packaging"})
        assert hook.wait_for_job(job.job_id, poll_interval=0.1, timeout=60).successful
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
