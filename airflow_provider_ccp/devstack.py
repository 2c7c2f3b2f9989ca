"""A local Airflow made of real, separate processes, wired to a CCP connection.

``make demo``, ``make airflow`` and the end-to-end tests use it: an SQLite metadata DB, the
LocalExecutor, and the api-server, scheduler, triggerer and dag-processor each started as
its own process group, so each can be stopped (or killed, to test a restart) by its PID.
Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

COMPONENTS = ("api-server", "scheduler", "triggerer", "dag-processor")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# Their log servers would listen on every interface; the api-server reads the log files directly.
SKIP_SERVE_LOGS = {"scheduler": ("--skip-serve-logs",), "triggerer": ("--skip-serve-logs",)}
#: Every component and task process writes to the one SQLite file: under load (dozens of tasks at
#: once) a writer waits for the lock up to this long instead of failing after sqlite's default 5 s.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def interrupt_on_signals() -> None:
    """SIGTERM like Ctrl-C: a script's ``finally`` then stops every process it started, whatever step runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


class StackError(RuntimeError):
    """A step of the local stack failed; the message names the step and where its log is."""


@dataclass
class LocalAirflow:
    """An Airflow home under ``home`` whose components run as separate processes."""

    home: Path
    dags_folder: Path
    connections: Mapping[str, str] = field(default_factory=dict)  # conn id -> JSON value
    api_port: int = field(default_factory=free_port)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def logs(self) -> Path:
        return self.home / "component-logs"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env |= {
            # `airflow standalone` starts its components as `airflow ...` from PATH: this venv's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": f"{__name__}.SQLITE_CONNECT_ARGS",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            # The local stack has no users to manage: everyone who reaches 127.0.0.1 is admin.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # A killed triggerer's triggers move to a live one after this long without a heartbeat.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # The point of the local stack: CCP tasks wait in the triggerer, not in a worker slot.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        }
        env |= {f"AIRFLOW_CONN_{conn_id.upper()}": value for conn_id, value in self.connections.items()}
        env |= dict(self.extra_env)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command of this home, to completion."""
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def migrate(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        result = self.airflow("db", "migrate")
        if result.returncode != 0:
            log = self.home / "db-migrate.log"
            log.write_text(result.stdout + result.stderr)
            raise StackError(f"'airflow db migrate' failed; its output is in {log}")
        # Write-ahead logging: readers (the API, the UI) no longer block the scheduler's writes.
        with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
            db.execute("PRAGMA journal_mode=WAL")

    def start(self, *components: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for component in components or COMPONENTS:
            with (self.logs / f"{component}.log").open("ab") as log:
                self.processes[component] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", component, *SKIP_SERVE_LOGS.get(component, ())],
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: its workers and task processes stop with it
                )

    def pid(self, component: str) -> int:
        return self.processes[component].pid

    def kill(self, component: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop(self, component: str, grace: float = 15.0) -> None:
        """SIGTERM the component's process group, then SIGKILL what is left after ``grace`` seconds."""
        process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for component in list(self.processes):
            self.stop(component)

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    # ------------------------------------------------------------------ waiting

    def _check_alive(self) -> None:
        for component, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(
                    f"airflow {component} exited with code {process.returncode}; see {self.logs / (component + '.log')}"
                )

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(requests.RequestException):
                if ready():
                    return
            time.sleep(interval)
        raise StackError(f"Timed out after {timeout:.0f} s waiting for {what}; component logs are in {self.logs}")

    def wait_healthy(self, timeout: float = 120) -> None:
        wanted = {"api-server": None, "scheduler": "scheduler", "triggerer": "triggerer"}
        wanted["dag-processor"] = "dag_processor"

        def healthy() -> bool:
            status = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            return all(
                key is None or status.get(key, {}).get("status") == "healthy"
                for component, key in wanted.items()
                if component in self.processes
            )

        self.wait_until("the Airflow components to report healthy", healthy, timeout)

    # ------------------------------------------------------------------ REST API

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.api_url}/api/v2/{path.lstrip('/')}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise StackError(f"{method} {path} answered HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        def parsed() -> bool:
            return requests.get(f"{self.api_url}/api/v2/dags/{dag_id}", timeout=5).status_code == 200

        self.wait_until(f"the DAG {dag_id} to be parsed", parsed, timeout)

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        document = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(document["task_instances"])

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = 300,
        on_change: Callable[[str, str | None], None] | None = None,
    ) -> RunWatch:
        """Poll the run until it ends, recording every state each task instance was seen in."""
        watch = RunWatch()

        def finished() -> bool:
            for ti in self.task_instances(dag_id, run_id):
                if watch.see(ti) and on_change is not None:
                    on_change(watch.label(ti), ti.get("state"))
            watch.run_state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            return watch.run_state in TERMINAL_RUN_STATES

        self.wait_until(f"the run {run_id} of {dag_id} to finish", finished, timeout, interval=0.3)
        return watch

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, params={"map_index": map_index, "deserialize": True})["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        document = self.api("GET", path, params={"map_index": map_index, "full_content": True})
        content = document.get("content", "")
        if isinstance(content, list):
            return "\n".join(str(line.get("event", line)) if isinstance(line, dict) else str(line) for line in content)
        return str(content)

    def extra_links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, str | None]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links"
        return dict(self.api("GET", path, params={"map_index": map_index})["extra_links"])

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """The states of a run's task instances and the logs of the ones that failed, for an error message."""
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"{ti['task_id']}[{ti.get('map_index', -1)}]: {ti.get('state')}")
            if ti.get("state") == "failed":
                log = self.task_log(dag_id, run_id, ti["task_id"], ti.get("try_number") or 1, ti.get("map_index", -1))
                lines.append(log[-4000:])
        return "\n".join(lines)

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        self.api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": state})


@dataclass
class RunWatch:
    """Every state each task instance of a run was seen in, in order."""

    states: dict[str, list[str]] = field(default_factory=dict)
    run_state: str | None = None

    @staticmethod
    def label(ti: Mapping[str, Any]) -> str:
        index = ti.get("map_index", -1)
        return f"{ti['task_id']}[{index}]" if index not in (-1, None) else str(ti["task_id"])

    def see(self, ti: Mapping[str, Any]) -> bool:
        seen = self.states.setdefault(self.label(ti), [])
        state = ti.get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
            return True
        return False

    def went_through(self, task_label: str, state: str) -> bool:
        return state in self.states.get(task_label, [])

    def tasks(self, prefix: str) -> Iterable[str]:
        return [label for label in self.states if label == prefix or label.startswith(prefix + "[")]
