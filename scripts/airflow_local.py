"""`make airflow`: the CCP sandbox and `airflow standalone` on 127.0.0.1, to look at the DAGs in the UI.

The connection `ccp_default` points at the sandbox; Ctrl-C stops both.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from rich.console import Console

from airflow_provider_ccp.devstack import LocalAirflow, free_port, interrupt_on_signals
from airflow_provider_ccp.sandbox.testing import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow"
USER, PASSWORD = "admin", "admin"
LAUNCH_SECONDS = 3
console = Console()


def main() -> int:
    interrupt_on_signals()
    sandbox = SandboxProcess(data_dir=HOME / "sandbox-data", launch_seconds=LAUNCH_SECONDS)
    passwords = HOME / "simple_auth_manager_passwords.json"
    port = 8080 if _port_is_free(8080) else free_port()
    stack: LocalAirflow | None = None
    try:
        sandbox.start()
        stack = LocalAirflow(
            home=HOME,
            dags_folder=ROOT / "dags_examples",
            connections={"ccp_default": sandbox.connection_json()},
            api_port=port,
            extra_env={
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            },
        )
        with console.status("Preparing .airflow/ (airflow db migrate)..."):
            stack.migrate()
            passwords.write_text(json.dumps({USER: PASSWORD}))
        stack.start("standalone")
        with console.status("Starting airflow standalone..."):
            stack.wait_until("the Airflow UI", lambda: not _port_is_free(port), timeout=180)
        console.print(f"[bold]Airflow UI[/bold]: {stack.api_url}   login: {USER} / {PASSWORD}")
        console.print(f"[bold]CCP sandbox[/bold]: {sandbox.url}  (connection ccp_default)")
        console.print("Press Ctrl-C to stop.")
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("Stopping airflow standalone and the sandbox..."):
            if stack is not None:
                stack.stop_all()
            sandbox.stop()
    return 0


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    sys.exit(main())
