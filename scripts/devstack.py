"""A local Airflow made of real, separate processes, wired to a CCP connection.

``make demo``, ``make airflow`` and the end-to-end tests use it: an SQLite metadata DB, the
LocalExecutor, and the api-server, scheduler, triggerer and dag-processor each started as
its own process group, so each can be stopped (or killed, to test a restart) by its PID.
The distributed test gives it a PostgreSQL URL, the CeleryExecutor and several triggerers and
Celery workers (``replicas``); ``Postgres``, ``Redis`` and ``MotoS3`` start the throwaway servers
such a stack needs. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import requests

COMPONENTS = ("api-server", "scheduler", "triggerer", "dag-processor")
CELERY_WORKER = "celery-worker"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
# Their log servers would listen on every interface; the api-server reads the log files directly.
SKIP_SERVE_LOGS = {
    "scheduler": ("--skip-serve-logs",),
    "triggerer": ("--skip-serve-logs",),
    CELERY_WORKER: ("--skip-serve-logs",),
}
COMMANDS = {CELERY_WORKER: ("celery", "worker")}
#: Every component and task process writes to the one SQLite file: under load (dozens of tasks at
#: once) a writer waits for the lock up to this long instead of failing after sqlite's default 5 s.
SQLITE_LOCK_TIMEOUT = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_groups(pid: int) -> set[int]:
    """The process groups of ``pid`` and of every process it started, while they run."""
    groups = {pid}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(child.pid))
    return groups


def _signal_groups(groups: Iterable[int], sig: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)


def terminate(processes: Iterable[subprocess.Popen[bytes]], sig: int, grace: float) -> None:
    """``sig`` to each process's group; after ``grace`` seconds, SIGKILL to whatever is left of them.

    The groups of their children are noted first: Airflow >= 3.3 runs each task in its own group.
    """
    processes = list(processes)
    groups: set[int] = set()
    for process in processes:
        groups |= _process_groups(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    _signal_groups(groups, signal.SIGKILL)
    for process in processes:
        process.wait(timeout=30)


def _logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def interrupt_on_signals() -> None:
    """SIGTERM like Ctrl-C: a script's ``finally`` then stops every process it started, whatever step runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)


@contextlib.contextmanager
def stopped_at_exit(announce: contextlib.AbstractContextManager[object]) -> Iterator[contextlib.ExitStack]:
    """What a script starts, stopped when the block ends, however it ends (an error, Ctrl-C, SIGTERM).

    The block registers each thing before starting it (``callback(sandbox.stop)``,
    ``enter_context(stack)``), so a half-started one is stopped too; they stop last-started first,
    inside ``announce`` (a status line such as ``console.status("Stopping...")``).
    """
    started = contextlib.ExitStack()
    try:
        yield started
    finally:
        with announce:
            started.close()


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
    #: None: SQLite in ``home``; else a SQLAlchemy URL (``postgresql+psycopg2://...``).
    db_url: str | None = None
    executor: str = "LocalExecutor"
    #: How many processes of a component ``start()`` starts, e.g. ``{"triggerer": 2, "celery-worker": 2}``;
    #: the second and later are named ``triggerer.2``, ``celery-worker.2``...
    replicas: Mapping[str, int] = field(default_factory=dict)
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
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url or self.sqlite_url,
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
        if self.db_url is None:
            # Write-ahead logging: readers (the API, the UI) no longer block the scheduler's writes.
            with contextlib.closing(sqlite3.connect(self.home / "airflow.db")) as db:
                db.execute("PRAGMA journal_mode=WAL")

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{self.home / 'airflow.db'}?timeout={SQLITE_LOCK_TIMEOUT}"

    def components(self) -> tuple[str, ...]:
        celery = (CELERY_WORKER,) if self.executor.rsplit(".", 1)[-1] == "CeleryExecutor" else ()
        return (*COMPONENTS, *celery)

    def names(self, component: str) -> list[str]:
        """The process names of a component: ``triggerer``, ``triggerer.2``, ..."""
        count = self.replicas.get(component, 1)
        return [component if i == 1 else f"{component}.{i}" for i in range(1, count + 1)]

    def start(self, *names: str) -> None:
        """Start the named processes (``triggerer``, ``triggerer.2``, ``standalone``...); none: the whole stack."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for name in names or [name for component in self.components() for name in self.names(component)]:
            with (self.logs / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *self._command(name)],
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: its workers and task processes stop with it
                )

    def _command(self, name: str) -> list[str]:
        component = name.split(".", 1)[0]
        command = [*COMMANDS.get(component, (component,)), *SKIP_SERVE_LOGS.get(component, ())]
        if component == CELERY_WORKER:
            # Two workers on one host need two Celery node names and two PID files.
            command += ["--celery-hostname", f"{name}@%h", "--pid", str(self.home / f"{name}.pid")]
        return command

    def pid(self, component: str) -> int:
        return self.processes[component].pid

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the process, its group and every process it started, like a machine that is lost.

        Airflow >= 3.3 runs each task in a process group of its own: signalling the worker's group
        alone would leave the task processes running as orphans.
        """
        process = self.processes.pop(name)
        _signal_groups(_process_groups(process.pid), sig)
        process.wait(timeout=30)

    def descendants(self, name: str) -> set[int]:
        """The PIDs of every process the named one started (its task processes, for a worker)."""
        with contextlib.suppress(psutil.Error, KeyError):
            return {child.pid for child in psutil.Process(self.processes[name].pid).children(recursive=True)}
        return set()

    def stop(self, name: str, grace: float = 15.0) -> None:
        """SIGTERM the process's group, then SIGKILL what is left of it and its children after ``grace`` s."""
        terminate([self.processes.pop(name)], signal.SIGTERM, grace)

    def stop_all(self, grace: float = 15.0) -> None:
        """Stop every process at once: they shut down in parallel, within one ``grace``."""
        processes = list(self.processes.values())
        self.processes.clear()
        terminate(processes, signal.SIGTERM, grace)

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    # ------------------------------------------------------------------ waiting

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"airflow {name} exited with code {process.returncode}; see {self.log_of(name)}")

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

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
        for name in self.processes:
            if name.split(".", 1)[0] == CELERY_WORKER:
                # Celery has no health endpoint in Airflow's API: a worker says so when it consumes.
                self.wait_until(f"{name} to be ready", partial(_logged, self.log_of(name), " ready."), timeout)

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

    def run_and_watch(self, dag_id: str, runs: int, timeout: float, interval: float) -> dict[str, RunWatch]:
        """Trigger ``runs`` runs of the DAG at once and wait for all to end, seeing every state each task
        instance went through."""
        self.wait_for_dag(dag_id)
        watches = {self.trigger(dag_id): RunWatch() for _ in range(runs)}

        def all_finished() -> bool:
            for run_id, watch in watches.items():
                for ti in self.task_instances(dag_id, run_id):
                    watch.see(ti)
                watch.run_state = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"]
            return all(watch.run_state in ("success", "failed") for watch in watches.values())

        self.wait_until(f"{runs} runs of {dag_id} to finish", all_finished, timeout, interval)
        return watches

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:  # the API answers a page at a time (at most [api] maximum_page_limit, 100 by default)
            params = {"limit": 100, "offset": len(found)}
            document = self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", params=params)
            found += document["task_instances"]
            if not document["task_instances"] or len(found) >= document["total_entries"]:
                return found

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


# ---------------------------------------------------------------------- the servers of a distributed stack


def _wait_for_port(port: int, what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode}; see {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise StackError(f"Timed out after {timeout:.0f} s waiting for {what} on port {port}; see {log}")


@dataclass
class Server:
    """A throwaway server in its own process group on 127.0.0.1, stopped by its PID."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    name = "server"
    stop_signal = signal.SIGTERM

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """What must exist before the server starts."""

    def popen_kwargs(self) -> dict[str, Any]:
        return {}

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self.popen_kwargs()
            )
        _wait_for_port(self.port, self.name, self.process, self.log)

    def stop(self, grace: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            terminate([process], self.stop_signal, grace)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL's binaries (initdb, postgres, createdb are not on root's PATH there)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise StackError("PostgreSQL is not installed: run scripts/distributed-packages.sh (Debian's postgresql)")


@dataclass
class Postgres(Server):
    """A throwaway PostgreSQL cluster (initdb) with a database ``airflow``, trust auth on 127.0.0.1 only.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user (Debian's
    package creates it), else to ``nobody``, who must be able to reach ``folder`` (pytest's temporary
    folders are private to root: use ``tempfile.mkdtemp()``). fsync is off: the cluster is thrown away.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for every client to disconnect

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        for user in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pwd.getpwnam(user)
                return user
        raise StackError("PostgreSQL refuses to run as root and there is no 'postgres' or 'nobody' user")

    def popen_kwargs(self) -> dict[str, Any]:
        user = self._user()
        return {"user": user, "group": pwd.getpwnam(user).pw_gid} if user else {}

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def prepare(self) -> None:
        user = self._user()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            reachable = subprocess.run(["test", "-w", str(self.folder)], check=False, **self.popen_kwargs())
            if reachable.returncode != 0:
                raise StackError(f"PostgreSQL runs as {user!r}, who cannot write to {self.folder}")
        initdb = [str(postgres_bin() / "initdb"), "-D", str(self.data), "-U", "airflow", "-A", "trust", "-E", "UTF8"]
        result = subprocess.run(
            [*initdb, "--no-sync"], capture_output=True, text=True, check=False, **self.popen_kwargs()
        )
        if result.returncode != 0:
            self.log.write_text(result.stdout + result.stderr)
            raise StackError(f"initdb failed; its output is in {self.log}")

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            # Scheduler, dag-processor, triggerers, api-server and Celery workers each keep a pool.
            "max_connections": "300",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(postgres_bin() / "postgres"), "-D", str(self.data), *options]

    def start(self) -> None:
        super().start()
        createdb = [str(postgres_bin() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow"]
        deadline = time.monotonic() + 60
        while True:  # the port opens a moment before the server accepts logins
            result = subprocess.run([*createdb, "airflow"], capture_output=True, text=True, check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise StackError(f"createdb failed: {result.stderr.strip()}")
            time.sleep(0.3)


@dataclass
class Redis(Server):
    """A throwaway Redis (the Celery broker), in memory only."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        redis = shutil.which("redis-server")
        if redis is None:
            raise StackError(
                "redis-server is not installed: run scripts/distributed-packages.sh (Debian's redis-server)"
            )
        return [redis, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]


@dataclass
class MotoS3(Server):
    """moto's S3-compatible server (``moto[server]``) as the object store of task outputs."""

    name = "moto-s3"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def connection_json(self) -> str:
        """An Airflow ``aws`` connection to this store (moto accepts any key)."""
        extra = {"endpoint_url": self.url, "region_name": "us-east-1"}
        return json.dumps({"conn_type": "aws", "login": "moto", "password": "moto-secret", "extra": extra})
