"""Benchmark: how long a deferrable CCP task takes around its execution, next to a PythonOperator floor.

Not a pytest module; run it by hand (``make bench`` runs it without the optional parts):

    PYTHONPATH=. python tests/benchmarks/task_latency.py [--runs 2] [--long] [--slots]

It starts the CCP sandbox on 127.0.0.1 and, in a fresh SQLite Airflow home, runs ``airflow dags test``
(as a new user would, every setting at its default) of one-task DAGs, alternated so that load changes
hit both alike: a deferrable ``CCPExecuteMethodOperator`` running the sandbox's ``sleep`` Method for
0 s and 5 s (``--long``: also 60 s), and a ``PythonOperator`` sleeping as long. For each it prints the
medians of:

- task: from the first "Task started" to "[DAG TEST] end task" in the command's log: the task's whole
  life, resume included (``dag.test()`` sets the task instance's ``start_date`` before it spends seconds
  setting up its in-process API, so that column would time Airflow's harness, not the task);
- command: the whole ``airflow dags test`` command, start-up and DAG parsing included;
- end->done: the task's end minus the end of the work (the CCP execution's ``finished`` time, or the
  moment the Python callable's sleep ended): the time spent noticing the end and handing over;
- CCP requests per execution (all routes but the token endpoint) and, of them, status polls.

``--slots``: also start a real scheduler, triggerer and LocalExecutor (``scripts/devstack.py``), trigger
each DAG once per run and count the seconds its task instance was ``running``, sampled every 0.2 s:
the seconds a worker process held the task (a deferred task holds none); and the end of the work to
the task's end there, where the ``min_defer_seconds`` hold applies, and the CCP requests per execution
there. With it comes a third task, the CCP task started from the triggerer (``start_from_trigger=True``),
measured there only: ``airflow dags test`` does not start tasks from the triggerer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pendulum

from ccp_sandbox.config import TOKEN_PATH
from ccp_sandbox.testing import SandboxAdmin, SandboxProcess
from scripts.devstack import LocalAirflow

DAGS = """
import time

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def nap(seconds):
    time.sleep(seconds)
    return time.time()  # when the work ended


for seconds in {seconds!r}:
    with DAG(f"latency_ccp_{{seconds}}", schedule=None, start_date=START, catchup=False) as dag:
        CCPExecuteMethodOperator(
            task_id="work", method_id="sleep", inputs={{"seconds": str(seconds)}}, deferrable=True
        )
    globals()[dag.dag_id] = dag
    with DAG(f"latency_start_{{seconds}}", schedule=None, start_date=START, catchup=False) as dag:
        CCPExecuteMethodOperator(
            task_id="work", method_id="sleep", inputs={{"seconds": str(seconds)}}, start_from_trigger=True
        )
    globals()[dag.dag_id] = dag
    with DAG(f"latency_python_{{seconds}}", schedule=None, start_date=START, catchup=False) as dag:
        PythonOperator(task_id="work", python_callable=nap, op_args=[seconds])
    globals()[dag.dag_id] = dag
"""

LOGGED = re.compile(r"^(?P<at>\S+Z) \[\w+\s*\] (?P<what>Task started|\[DAG TEST\] end task)")
KINDS = (("python", "PythonOperator"), ("ccp", "CCP deferrable"), ("start", "CCP from triggerer"))
#: How often ``--slots`` samples the task instance's state.
SAMPLE_SECONDS = 0.2
TOKEN_ROUTE = TOKEN_PATH


@dataclass
class Figures:
    task: list[float] = field(default_factory=list)
    command: list[float] = field(default_factory=list)
    end_to_done: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    slot_seconds: list[float] = field(default_factory=list)
    #: On the real scheduler (``--slots``): the end of the work to the task instance's end.
    stack_end_to_done: list[float] = field(default_factory=list)
    #: On the real scheduler: CCP requests per execution, token endpoint aside.
    stack_requests: list[int] = field(default_factory=list)


def _utc(value: str | float) -> float:
    if isinstance(value, float | int):
        return float(value)
    return float(pendulum.parse(str(value), tz="UTC").timestamp())  # type: ignore[union-attr]


def last_run(home: Path, dag_id: str) -> tuple[float, object]:
    """The task's end and its return_value, as the last run of ``dag_id`` left them."""
    with closing(sqlite3.connect(home / "airflow.db")) as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        (end,) = db.execute(
            "SELECT end_date FROM task_instance WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ).fetchone()
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'", (dag_id, run_id)
        ).fetchone()
    value = json.loads(row[0]) if row and isinstance(row[0], str | bytes) else (row[0] if row else None)
    return _utc(end), value


def logged_task_seconds(output: str) -> float | None:
    """From the first "Task started" to "[DAG TEST] end task" in an ``airflow dags test`` log."""
    moments: dict[str, float] = {}
    for line in output.splitlines():
        found = LOGGED.match(line)
        if found and found["what"] not in moments:
            moments[found["what"]] = _utc(found["at"])
    if len(moments) < 2:  # both moments
        return None
    return moments["[DAG TEST] end task"] - moments["Task started"]


def work_end(value: object) -> float:
    """When the work ended: the CCP manifest's ``finished``, or the Python callable's return value."""
    if isinstance(value, dict):
        return _utc(value["finished"])
    return float(value)  # type: ignore[arg-type]


def ccp_requests(admin: SandboxAdmin) -> tuple[int, int]:
    counts = admin.counters()["requests"]
    total = sum(count for route, count in counts.items() if not route.split(" ", 1)[1].startswith(TOKEN_ROUTE))
    return total, counts.get("GET /jobs/{job_id}", 0)


def dags_test(stack: LocalAirflow, admin: SandboxAdmin, dag_id: str, figures: Figures) -> None:
    admin.reset()
    began = time.monotonic()
    result = stack.airflow("dags", "test", dag_id, timeout=600)
    figures.command.append(time.monotonic() - began)
    end, value = last_run(stack.home, dag_id)
    task_seconds = logged_task_seconds(result.stdout + result.stderr)
    if result.returncode != 0 or value is None or task_seconds is None:
        raise SystemExit(f"airflow dags test {dag_id} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    figures.task.append(task_seconds)
    figures.end_to_done.append(end - work_end(value))
    if dag_id.startswith("latency_ccp"):
        total, polls = ccp_requests(admin)
        figures.requests.append(total)
        figures.polls.append(polls)


def on_the_stack(stack: LocalAirflow, admin: SandboxAdmin, dag_id: str, figures: Figures) -> None:
    """Trigger ``dag_id`` on the running stack: the seconds its task instance was seen ``running``, the
    end of the work to the task's end, and the CCP requests it made."""
    admin.reset()
    run_id = stack.trigger(dag_id)
    path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/work"
    running, last = 0.0, time.monotonic()
    while True:
        ti = stack.api("GET", path)
        now = time.monotonic()
        if ti.get("state") == "running":
            running += now - last
        last = now
        if ti.get("state") in ("success", "failed", "upstream_failed", "skipped"):
            break
        time.sleep(SAMPLE_SECONDS)
    if ti["state"] != "success":
        raise SystemExit(f"{dag_id} {run_id} ended {ti['state']}:\n{stack.failure_report(dag_id, run_id)}")
    figures.slot_seconds.append(running)
    figures.stack_requests.append(ccp_requests(admin)[0])
    figures.stack_end_to_done.append(_utc(ti["end_date"]) - work_end(stack.xcom(dag_id, run_id, "work")))


def median(values: list[float] | list[int]) -> str:
    return f"{statistics.median(values):6.1f}" if values else "     -"


def report(seconds: list[int], figures: dict[str, Figures], slots: bool) -> None:
    print(f"load average at the end: {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f}, {os.getloadavg()[2]:.2f}")
    header = f"{'execution':>9}  {'task':<18} {'task s':>6} {'command s':>9} {'end->done s':>11} {'requests':>8}"
    header += f" {'polls':>6}"
    print(header + (f" {'worker s':>8} {'stack end->done s':>17} {'stack requests':>14}" if slots else ""))
    for second in seconds:
        for kind, label in KINDS:
            f = figures.get(f"latency_{kind}_{second}")
            if f is None:
                continue
            line = f"{second:>8}s  {label:<18} {median(f.task)} {median(f.command):>9} {median(f.end_to_done):>11} "
            line += f"{median(f.requests):>8} {median(f.polls):>6}"
            stack = f" {median(f.slot_seconds):>8} {median(f.stack_end_to_done):>17} {median(f.stack_requests):>14}"
            print(line + (stack if slots else ""))
        ccp, python = figures[f"latency_ccp_{second}"], figures[f"latency_python_{second}"]
        gap = statistics.median(ccp.task) - statistics.median(python.task)
        print(f"{'':>11}CCP task minus PythonOperator task (medians): {gap:+.1f} s")


def each_run(runs: int, dag_ids: list[str], measure: Callable[[str], None]) -> None:
    for _ in range(runs):  # alternated, so that load changes hit every variant alike
        for dag_id in dag_ids:
            measure(dag_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--long", action="store_true", help="also a 60 s execution")
    parser.add_argument("--slots", action="store_true", help="also worker-slot seconds on a real scheduler")
    args = parser.parse_args()
    seconds = [0, 5, 60] if args.long else [0, 5]
    dag_ids = [f"latency_{kind}_{second}" for second in seconds for kind in ("python", "ccp")]
    stack_dag_ids = [f"latency_{kind}_{second}" for second in seconds for kind, _ in KINDS]
    figures = {dag_id: Figures() for dag_id in (stack_dag_ids if args.slots else dag_ids)}
    with tempfile.TemporaryDirectory(prefix="ccp-task-latency-") as folder:
        root = Path(folder)
        dags = root / "dags"
        dags.mkdir()
        (dags / "latency.py").write_text(textwrap.dedent(DAGS.format(seconds=seconds)))
        with SandboxProcess(data_dir=root / "sandbox", admin=True) as sandbox:
            stack = LocalAirflow(
                home=root / "airflow",
                dags_folder=dags,
                connections={"ccp_default": sandbox.connection_json()},
                # What a new user has: no default_deferrable (the DAG asks for it).
                extra_env={"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False"},
            )
            stack.migrate()
            each_run(args.runs, dag_ids, lambda dag_id: dags_test(stack, sandbox.admin, dag_id, figures[dag_id]))
            if args.slots:
                with stack:
                    stack.start()
                    stack.wait_healthy()
                    for dag_id in stack_dag_ids:
                        stack.wait_for_dag(dag_id)

                    measure = lambda dag_id: on_the_stack(stack, sandbox.admin, dag_id, figures[dag_id])  # noqa: E731
                    each_run(args.runs, stack_dag_ids, measure)
    subprocess.run(["uptime"], check=False)
    report(seconds, figures, args.slots)


if __name__ == "__main__":
    main()
