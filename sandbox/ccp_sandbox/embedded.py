"""Starting a sandbox from Python: in a thread of this process, or as a separate ``ccp-sandbox`` process."""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ccp_sandbox.admin_client import SandboxAdmin
from ccp_sandbox.airflow_connection import airflow_connection
from ccp_sandbox.config import (
    DEFAULT_CLIENTS,
    DEFAULT_CONTEXT,
    DEFAULT_PUBLIC_CLIENT,
    DEFAULT_TOKEN_TTL,
    DEFAULT_USERS,
    TOKEN_PATH,
    SandboxConfig,
)
from ccp_sandbox.server import BoundSandbox, bind_sandbox

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class _Sandbox(ABC):
    """What both ways of running a sandbox share: its settings, credentials and connection helpers."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        port: int = 0,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        users: Mapping[str, str] | None = None,
        clients: Mapping[str, str] | None = None,
        contexts: Sequence[str] | None = None,
        methods_dirs: Sequence[str | Path] = (),
        admin: bool = False,
        launch_seconds: float = 0.0,
        job_status: str = "ogc",
    ) -> None:
        self._own_data_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="ccp-sandbox-"))
        self.config = SandboxConfig(
            data_dir=self.data_dir,
            port=port,
            token_ttl=token_ttl,
            users=dict(users or DEFAULT_USERS),
            clients=dict(clients or DEFAULT_CLIENTS),
            contexts=tuple(contexts or (DEFAULT_CONTEXT,)),
            methods_dirs=tuple(Path(folder) for folder in methods_dirs),
            admin=admin,
            launch_seconds=launch_seconds,
            job_status=job_status,
        )
        self.user, self.password = next(iter(self.config.users.items()))
        self.client_id, self.client_secret = next(iter(self.config.clients.items()))
        self.public_client_id = DEFAULT_PUBLIC_CLIENT
        self.context = self.config.contexts[0]
        self.url = ""

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.url)

    def connection(self, auth_flow: str = "password_uma", **extra: Any) -> dict[str, Any]:
        """An Airflow connection dict for this sandbox; for 'token'/'refresh_token' set ``password`` yourself."""
        return airflow_connection(
            self.url,
            user=self.user,
            password=self.password,
            public_client_id=self.public_client_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            context=self.context,
            auth_flow=auth_flow,
            **extra,
        )

    def connection_json(self, auth_flow: str = "password_uma", **extra: Any) -> str:
        return json.dumps(self.connection(auth_flow, **extra))

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def _remove_own_data_dir(self) -> None:
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class SandboxServer(_Sandbox):
    """uvicorn in a background thread of this process; ``stop()`` also kills every Method process group."""

    _bound: BoundSandbox | None = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        started = threading.Event()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._bound = bind_sandbox(self.config, started.set)
        self.url = self._bound.url
        self._thread = threading.Thread(target=self._bound.serve, name=f"ccp-sandbox {self.url}", daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the CCP sandbox at {self.url} did not start within {START_TIMEOUT} s")

    def stop(self) -> None:
        if self._bound is None or self._thread is None:
            return
        self._bound.server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        self._bound.state.runner.kill_all()
        self._bound = self._thread = None
        self._remove_own_data_dir()


class SandboxProcess(_Sandbox):
    """``python -m ccp_sandbox`` as a child process, stopped by its PID."""

    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "sandbox.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ready_file = self.data_dir / "ready.json"
        ready_file.unlink(missing_ok=True)
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(self._command(ready_file), stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        deadline = time.monotonic() + START_TIMEOUT
        while not ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the CCP sandbox process did not start:\n{self.log_file.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        self.url = json.loads(ready_file.read_text(encoding="utf-8"))["url"]

    def stop(self) -> None:
        """SIGTERM (the sandbox then kills its Methods), SIGKILL if it does not exit in time."""
        atexit.unregister(self.stop)
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._remove_own_data_dir()

    def _command(self, ready_file: Path) -> list[str]:
        config = self.config
        command = [
            sys.executable,
            "-m",
            "ccp_sandbox",
            "--port",
            str(config.port),
            "--ready-file",
            str(ready_file),
            "--data-dir",
            str(self.data_dir),
            "--token-ttl",
            str(config.token_ttl),
            "--users",
            ",".join(f"{k}:{v}" for k, v in config.users.items()),
            "--clients",
            ",".join(f"{k}:{v}" for k, v in config.clients.items()),
            "--contexts",
            ",".join(config.contexts),
            "--launch-seconds",
            str(config.launch_seconds),
            "--job-status",
            config.job_status,
        ]
        for folder in config.methods_dirs:
            command += ["--methods", str(folder)]
        return command + (["--admin"] if config.admin else [])
