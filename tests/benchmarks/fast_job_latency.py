"""Benchmark: what the defer-race hold (``min_defer_seconds``) adds to a task whose execution ends at once.

Not a pytest module; run it by hand:

    PYTHONPATH=. python tests/benchmarks/fast_job_latency.py [--runs 5] [--hold 5]   # from the repository root

It starts the CCP sandbox and a local Airflow of separate processes (scheduler, triggerer, ...), and
triggers, one run at a time, two one-task DAGs that run the sandbox's ``sleep`` Method with 0 seconds,
deferrable: the baseline with ``min_defer_seconds=0`` and the other with ``--hold`` seconds. A run's
latency is its DagRun's end minus start. It prints the median and the range of both and their
difference: the latency the hold adds (at most the hold minus the time the trigger takes to poll).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
from pathlib import Path

import pendulum

from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import LocalAirflow

DAG_TEMPLATE = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_ccp.operators.ccp import CCPExecuteMethodOperator

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):
    CCPExecuteMethodOperator(
        task_id="fast", method_id="sleep", inputs={{"seconds": "0"}}, deferrable=True,
        poll_interval=1, min_defer_seconds={hold}, extract=False, log_lines=0,
    )
"""


def run_seconds(stack: LocalAirflow, dag_id: str) -> float:
    run_id = stack.trigger(dag_id)
    watch = stack.wait_for_run(dag_id, run_id, timeout=300)
    if watch.run_state != "success":
        raise SystemExit(f"{dag_id} {run_id} ended {watch.run_state}:\n{stack.failure_report(dag_id, run_id)}")
    run = stack.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")
    return float((pendulum.parse(run["end_date"]) - pendulum.parse(run["start_date"])).total_seconds())


def describe(name: str, seconds: list[float]) -> str:
    return f"{name:<28} median {statistics.median(seconds):5.1f} s  (min {min(seconds):.1f}, max {max(seconds):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hold", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccp-latency-") as folder:
        root = Path(folder)
        dags = root / "dags"
        dags.mkdir()
        variants = {"ccp_latency_baseline": 0.0, "ccp_latency_hold": args.hold}
        for dag_id, hold in variants.items():
            (dags / f"{dag_id}.py").write_text(textwrap.dedent(DAG_TEMPLATE.format(dag_id=dag_id, hold=hold)))
        sandbox = SandboxProcess(data_dir=root / "sandbox")
        sandbox.start()
        try:
            stack = LocalAirflow(
                home=root / "airflow", dags_folder=dags, connections={"ccp_default": sandbox.connection_json()}
            )
            stack.migrate()
            with stack:
                stack.start()
                stack.wait_healthy()
                for dag_id in variants:
                    stack.wait_for_dag(dag_id)
                results: dict[str, list[float]] = {dag_id: [] for dag_id in variants}
                for _ in range(args.runs):  # alternated, so that load changes hit both alike
                    for dag_id in variants:
                        results[dag_id].append(run_seconds(stack, dag_id))
        finally:
            sandbox.stop()
    baseline, held = results["ccp_latency_baseline"], results["ccp_latency_hold"]
    print(describe("baseline (min_defer 0 s)", baseline))
    print(describe(f"hold (min_defer {args.hold:g} s)", held))
    print(f"added by the hold: {statistics.median(held) - statistics.median(baseline):+.1f} s (medians)")


if __name__ == "__main__":
    main()
