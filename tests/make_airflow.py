"""`make airflow`'s stack for the tests that meet it as a user does (the browser suite, the README's commands).

``python -m scripts.airflow_local`` is started as a process of its own, in its own group, and read until
it prints its banner; SIGTERM (Ctrl-C for the script) stops every component and the sandbox it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


@dataclass
class Stack:
    url: str
    sandbox_url: str
    env_file: Path
    dags_folder: Path
    process: subprocess.Popen[str]


def _read_banner(process: subprocess.Popen[str], log: Path, timeout: float) -> dict[str, str]:
    """The lines `make airflow` prints once the stack is up: "Airflow UI: <url> ...", ..."""
    banner: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    with log.open("w") as copy:
        while time.monotonic() < deadline and "Press Ctrl-C to stop." not in banner:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"make airflow exited with {process.wait()}; output in {log}")
            copy.write(line)
            copy.flush()
            key, sep, value = line.partition(": ")
            banner[key.strip() if sep else line.strip()] = value.strip()
    assert "Press Ctrl-C to stop." in banner, f"make airflow did not come up; output in {log}"
    return banner


def new_shell_env(**extra: str) -> dict[str, str]:
    """The environment of a new terminal: no Airflow settings, and this venv neither activated nor on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != VENV_BIN)
    return env | extra


@contextmanager
def make_airflow(home: Path, dags_folder: Path, *options: str, timeout: float = 400) -> Iterator[Stack]:
    """`make airflow` with AIRFLOW_HOME ``home``, until the block ends."""
    command = [sys.executable, "-m", "scripts.airflow_local", "--home", str(home), "--dags-folder", str(dags_folder)]
    command += ["--port", str(free_port()), *options]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=new_shell_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        banner = _read_banner(process, home.parent / f"{home.name}-make-airflow.log", timeout)
        yield Stack(
            url=banner["Airflow UI"].split()[0],
            sandbox_url=banner["CCP sandbox"].split()[0],
            env_file=Path(banner["From another shell"].removeprefix("source ")),
            dags_folder=Path(banner["DAGs folder"]),
            process=process,
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def shell(script: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``script`` in a new bash that stops at the first failing command."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
