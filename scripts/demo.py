"""`make demo`: the ccp_quickstart pipeline end to end on a real local Airflow and the CCP sandbox.

Starts ccp-sandbox, prepares an Airflow home in .airflow/ (SQLite, dags_examples/ as DAGs
folder, the sandbox as ccp_default), starts the api-server, scheduler, triggerer and
dag-processor as separate processes, runs ccp_quickstart through deferral, prints a summary
and stops everything it started.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pendulum
from rich.console import Console
from rich.table import Table

from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import LocalAirflow, StackError, interrupt_on_signals, stopped_at_exit

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow"
DAG_ID = "ccp_quickstart"
# Like CCP deploying a container, each sandbox job waits a few seconds before running: time to defer.
LAUNCH_SECONDS = 3
console = Console()


@contextmanager
def step(number: int, total: int, title: str, log_hint: str) -> Iterator[None]:
    started = time.monotonic()
    with console.status(f"[bold][{number}/{total}][/bold] {title}..."):
        try:
            yield
        except Exception as err:
            console.print(f"[red]✗ [{number}/{total}] {title} failed:[/red] {err}")
            console.print(f"  logs: {log_hint}")
            raise SystemExit(1) from None
    console.print(f"[green]✓[/green] [{number}/{total}] {title} ({time.monotonic() - started:.1f} s)")


def _manifest(stack: LocalAirflow, run_id: str) -> tuple[str, dict[str, Any]]:
    """The CCP task is the one whose return value is a manifest with a job id."""
    for ti in stack.task_instances(DAG_ID, run_id):
        try:
            value = stack.xcom(DAG_ID, run_id, ti["task_id"])
        except StackError:
            continue
        if isinstance(value, dict) and value.get("job_id"):
            return str(ti["task_id"]), value
    raise StackError(f"No task of {DAG_ID} returned a CCP manifest")


def _durations(manifest: dict[str, Any]) -> str:
    running = manifest.get("duration_seconds")
    text = f"{running:.1f} s running" if isinstance(running, int | float) else "?"
    if manifest.get("created") and manifest.get("finished"):
        created, finished = pendulum.parse(manifest["created"]), pendulum.parse(manifest["finished"])
        if isinstance(created, pendulum.DateTime) and isinstance(finished, pendulum.DateTime):
            text += f", {(finished - created).total_seconds():.1f} s from submission to the end"
    return text


def _summary(stack: LocalAirflow, run_id: str, deferred: bool) -> None:
    task_id, manifest = _manifest(stack, run_id)
    table = Table(title=f"{DAG_ID}: CCP execution", show_header=False)
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    table.add_row("Method", str(manifest.get("method_id")))
    table.add_row("Task", task_id + ("  (went through DEFERRED: the wait ran in the triggerer)" if deferred else ""))
    table.add_row("Job id", str(manifest.get("job_id")))
    table.add_row("Status", str(manifest.get("status")))
    table.add_row("Duration", _durations(manifest))
    table.add_row("Outputs archive", str(manifest.get("archive")))
    for item in manifest.get("files", []):
        table.add_row("  file", f"{item['path']}  ({item['size']} bytes)")
    console.print(table)
    result = next((f for f in manifest.get("files", []) if f["path"].endswith("result.json")), None)
    if result is not None:
        path = Path(str(result["uri"]).removeprefix("file://"))
        console.print(f"result.json ({path}):")
        console.print_json(json.dumps(json.loads(path.read_text())))


def main() -> int:
    interrupt_on_signals()
    total = 5
    sandbox = SandboxProcess(data_dir=HOME / "sandbox-data", launch_seconds=LAUNCH_SECONDS)
    with stopped_at_exit(console.status("Stopping everything the demo started...")) as started:
        with step(1, total, "Starting the CCP sandbox", str(HOME / "sandbox-data")):
            started.callback(sandbox.stop)
            sandbox.start()
        console.print(f"  sandbox: {sandbox.url}")
        stack = started.enter_context(
            LocalAirflow(
                home=HOME, dags_folder=ROOT / "dags_examples", connections={"ccp_default": sandbox.connection_json()}
            )
        )
        with step(2, total, "Preparing the Airflow home .airflow/ (airflow db migrate)", str(HOME)):
            stack.migrate()
        with step(3, total, "Starting api-server, scheduler, triggerer and dag-processor", str(stack.logs)):
            stack.start()
            stack.wait_healthy()
            stack.wait_for_dag(DAG_ID)
        console.print(f"  Airflow API: {stack.api_url}")
        with step(4, total, f"Running {DAG_ID}", str(stack.logs)):
            run_id = stack.trigger(DAG_ID)
            watch = stack.wait_for_run(
                DAG_ID, run_id, on_change=lambda task, state: console.print(f"  {task}: {state}")
            )
            if watch.run_state != "success":
                raise StackError(f"the run ended {watch.run_state}; task states: {watch.states}")
        deferred = any("deferred" in states for states in watch.states.values())
        with step(5, total, "Reading the result", str(stack.logs)):
            _summary(stack, run_id, deferred)
        return 0


if __name__ == "__main__":
    sys.exit(main())
