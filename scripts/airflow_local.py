"""`make airflow`: the CCP sandbox and a local Airflow on 127.0.0.1, to look at the DAGs in the UI.

The components run as separate processes (api-server, scheduler, triggerer, dag-processor), like
`make demo`, rather than `airflow standalone`, whose scheduler and triggerer serve logs on every
interface. The stack is discoverable from another shell: `ccp_default` lives in the metadata DB (so
Admin -> Connections shows it and its Test button works), `airflow.cfg` names the DAGs folder the
stack reads, and `.airflow/env.sh` exports the environment the stack runs with. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import LocalAirflow, StackError, free_port, interrupt_on_signals, stopped_at_exit

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "admin"
CONN_ID = "ccp_default"
LAUNCH_SECONDS = 3
console = Console(soft_wrap=True)  # whole lines: another program may read the URLs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / ".airflow", help="AIRFLOW_HOME (default: .airflow)")
    parser.add_argument("--dags-folder", type=Path, default=ROOT / "dags_examples")
    parser.add_argument("--port", type=int, help="the UI's port (default: 8080 when free)")
    parser.add_argument("--sandbox-admin", action="store_true", help="turn on the sandbox's fault-injection API")
    args = parser.parse_args(argv)
    interrupt_on_signals()
    home = args.home.resolve()
    sandbox = SandboxProcess(data_dir=home / "sandbox-data", launch_seconds=LAUNCH_SECONDS, admin=args.sandbox_admin)
    passwords = home / "simple_auth_manager_passwords.json"
    port = args.port or (8080 if _port_is_free(8080) else free_port())
    try:
        with stopped_at_exit(console.status("Stopping Airflow and the sandbox...")) as started:
            started.callback(sandbox.stop)
            sandbox.start()
            stack = started.enter_context(
                LocalAirflow(
                    home=home,
                    dags_folder=args.dags_folder.resolve(),
                    api_port=port,
                    extra_env={
                        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                    },
                )
            )
            with console.status(f"Preparing {home} (airflow db migrate)..."):
                stack.migrate()
                passwords.write_text(json.dumps({USER: PASSWORD}))
                set_dags_folder(home / "airflow.cfg", stack.dags_folder)
                store_connection(stack, CONN_ID, for_test_button(sandbox.connection()))
                env_file = write_env_file(stack.env(), home / "env.sh")
            stack.start()
            with console.status("Starting the Airflow components..."):
                stack.wait_healthy(timeout=180)
            console.print(f"[bold]Airflow UI[/bold]: {stack.api_url}   login: {USER} / {PASSWORD}")
            console.print(f"[bold]CCP sandbox[/bold]: {sandbox.url}  (connection {CONN_ID}, in Admin -> Connections)")
            console.print(f"[bold]DAGs folder[/bold]: {stack.dags_folder}")
            console.print(f"[bold]From another shell[/bold]: source {env_file}")
            console.print(
                f"  then e.g. ccp-airflow methods list; airflow connections test {CONN_ID}; airflow dags list"
            )
            console.print("Press Ctrl-C to stop.")
            sys.stdout.flush()
            while True:
                signal.pause()
    except KeyboardInterrupt:
        pass
    except StackError as error:
        console.print(f"[red]Error[/red]: {error}")
        return 1
    return 0


def for_test_button(connection: Mapping[str, object]) -> dict[str, object]:
    """Port 0, not null: Airflow 3.3.1 and 3.3.2's Test button sends 0 for an empty port and refuses a mismatch."""
    return {**connection, "port": 0}


#: Replaces a connection in the metadata DB, read from stdin (its password stays out of `ps`). Not through
#: `airflow connections add`, whose JSON reader drops a port of 0.
STORE_CONNECTION = """
import json, sys
from airflow.models import Connection
from airflow.utils.session import create_session

document = json.load(sys.stdin)
extra = document.pop("extra", None)
with create_session() as session:
    session.query(Connection).filter_by(conn_id=document["conn_id"]).delete()
    session.add(Connection(**document, extra=json.dumps(extra) if extra is not None else None))
"""


def store_connection(stack: LocalAirflow, conn_id: str, connection: Mapping[str, object]) -> None:
    """Into the metadata DB, replacing the previous run's (the sandbox's port changes every run)."""
    result = subprocess.run(
        [sys.executable, "-c", STORE_CONNECTION],
        input=json.dumps({**connection, "conn_id": conn_id}),
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"Could not store the connection {conn_id}: {result.stderr[-500:]}")


def set_dags_folder(config: Path, dags_folder: Path) -> None:
    """`airflow config get-value core dags_folder` then names the folder the stack reads."""
    text = config.read_text(encoding="utf-8")
    line = f"dags_folder = {dags_folder}"
    updated, count = re.subn(r"(?m)^dags_folder\s*=.*$", lambda _: line, text, count=1)
    if count == 0:
        updated = re.sub(r"(?m)^\[core\]\s*$", lambda _: f"[core]\n{line}", text, count=1)
    config.write_text(updated, encoding="utf-8")


def write_env_file(env: Mapping[str, str], path: Path) -> Path:
    """The Airflow settings the stack runs with, as `export` lines a shell can source.

    The venv's bin folder goes first on PATH: `airflow` and `ccp-airflow` are the stack's own, whether or
    not the venv is activated in that shell.
    """
    lines = [
        "# Written by `make airflow`: `source` it to reach the running stack from another shell.",
        *(f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items()) if key.startswith("AIRFLOW")),
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    sys.exit(main())
