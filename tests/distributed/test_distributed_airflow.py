"""The provider where production Airflow runs, with parts of it killed on purpose.

PostgreSQL as metadata DB, the CeleryExecutor on Redis with two workers, two triggerers, a
scheduler, a dag-processor and an api-server, outputs on S3 (moto's server) through ``[ccp]
output_path``, and the CCP sandbox whose jobs stay ``accepted`` for a while, as CCP does while it
deploys a container. Fifty mapped deferrable CCP tasks run, then one task reads every
``result.json`` back through its ``s3://`` URI. While tasks submit, one Celery worker is killed
(SIGKILL to it and to every task process it started, like a lost machine); while tasks are
deferred, the triggerer holding the most triggers is killed. Everything binds to 127.0.0.1 and
every process is stopped by its PID.

``make test-distributed`` runs it (not part of ``make test``'s normal run).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_sandbox.testing import SandboxProcess
from scripts.devstack import CELERY_WORKER, LocalAirflow, MotoS3, Postgres, Redis

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(1200)]

HERE = Path(__file__).resolve().parent
DAG_ID = "ccp_distributed"
MAPPED = 50
TEXTS = [" ".join(["word"] * (i + 1)) for i in range(MAPPED)]  # as in dags/ccp_distributed.py
# Long enough that the first tasks are still deferred when the killed triggerer's triggers move.
LAUNCH_SECONDS = 45
BUCKET = "ccp-outputs"
SECOND_TRIGGERER = "triggerer.2"
WORKERS = (CELERY_WORKER, f"{CELERY_WORKER}.2")
RUN_TIMEOUT = 900


@dataclass
class Cluster:
    stack: LocalAirflow
    sandbox: SandboxProcess
    s3: MotoS3
    triggerer_jobs: dict[int, str]  # TriggererJob id -> process name


def _alive_triggerer_jobs(stack: LocalAirflow) -> set[int]:
    jobs = stack.api("GET", "jobs", params={"job_type": "TriggererJob", "is_alive": True, "limit": 100})["jobs"]
    return {int(job["id"]) for job in jobs}


def _start_triggerer(stack: LocalAirflow, name: str, known: set[int]) -> int:
    """Start one triggerer and return its job id: the trigger table names triggerers by job id."""
    stack.start(name)
    found: set[int] = set()

    def registered() -> bool:
        found.update(_alive_triggerer_jobs(stack) - known)
        return bool(found)

    stack.wait_until(f"{name} to register", registered, timeout=120)
    (job_id,) = found
    return job_id


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("ccp-distributed")
    with contextlib.ExitStack() as resources:
        # Not under pytest's folder: that one is private to root, and PostgreSQL does not run as root.
        postgres_folder = Path(tempfile.mkdtemp(prefix="ccp-distributed-postgres-"))
        resources.callback(shutil.rmtree, postgres_folder, ignore_errors=True)
        postgres = resources.enter_context(Postgres(postgres_folder))
        redis = resources.enter_context(Redis(folder / "redis"))
        s3 = resources.enter_context(MotoS3(folder / "s3"))
        sandbox = SandboxProcess(data_dir=folder / "sandbox", launch_seconds=LAUNCH_SECONDS, admin=True)
        sandbox.start()
        resources.callback(sandbox.stop)
        boto3.client(
            "s3", endpoint_url=s3.url, aws_access_key_id="moto", aws_secret_access_key="moto-secret"
        ).create_bucket(Bucket=BUCKET)
        dags = folder / "dags"
        dags.mkdir()
        shutil.copy(HERE / "dags" / "ccp_distributed.py", dags)
        stack = LocalAirflow(
            home=folder / "airflow-home",
            dags_folder=dags,
            connections={"ccp_default": sandbox.connection_json(), "aws_default": s3.connection_json()},
            db_url=postgres.url,
            executor="CeleryExecutor",
            replicas={"triggerer": 2, CELERY_WORKER: 2},
            extra_env={
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
                "AIRFLOW__CORE__PARALLELISM": "16",
                "AIRFLOW__CCP__OUTPUT_PATH": f"s3://aws_default@{BUCKET}/runs",
                # A lost worker's tasks are failed (then retried) after 30 s without a heartbeat, not 5 min.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                # Messages the lost worker had taken but not started come back after this long.
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "15",
            },
        )
        stack.migrate()
        resources.enter_context(stack)
        stack.start(*[n for c in stack.components() for n in stack.names(c) if n != SECOND_TRIGGERER])
        stack.wait_healthy(timeout=300)
        first = _alive_triggerer_jobs(stack)
        assert len(first) == 1, f"expected one live triggerer job, found {first}"
        second = _start_triggerer(stack, SECOND_TRIGGERER, first)
        stack.wait_for_dag(DAG_ID, timeout=300)
        yield Cluster(stack, sandbox, s3, {first.pop(): "triggerer", second: SECOND_TRIGGERER})


@dataclass
class Kill:
    """One process killed during the run and what it held."""

    name: str
    at: float
    held: dict[str, int]  # task instance label -> its try number when killed
    recovered_at: float | None = None
    taken_over: set[str] = field(default_factory=set)

    def recovery(self) -> str:
        return "never" if self.recovered_at is None else f"{self.recovered_at - self.at:.1f} s"


@dataclass
class Observer:
    """Polls the run's task instances, keeping every state, try and triggerer each was seen with."""

    stack: LocalAirflow
    run_id: str
    current: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, list[str]] = field(default_factory=dict)
    triggerers: dict[str, list[int]] = field(default_factory=dict)

    @staticmethod
    def label(ti: dict[str, Any]) -> str:
        index = ti.get("map_index", -1)
        return f"{ti['task_id']}[{index}]" if index not in (-1, None) else str(ti["task_id"])

    def poll(self) -> None:
        self.current = self.stack.task_instances(DAG_ID, self.run_id)
        for ti in self.current:
            label = self.label(ti)
            seen = self.states.setdefault(label, [])
            if ti["state"] and (not seen or seen[-1] != ti["state"]):
                seen.append(ti["state"])
            triggerer = (ti.get("trigger") or {}).get("triggerer_id")
            held = self.triggerers.setdefault(label, [])
            if triggerer is not None and (not held or held[-1] != triggerer):
                held.append(int(triggerer))

    def submitting(self) -> dict[str, dict[str, Any]]:
        """Mapped task instances running their first try and not yet deferred: submitting to CCP."""
        return {
            self.label(ti): ti
            for ti in self.current
            if ti["task_id"] == "count"
            and ti["state"] == "running"
            and ti["try_number"] == 1
            and "deferred" not in self.states[self.label(ti)]
            and ti.get("pid")
        }

    def deferred_on(self) -> dict[int, dict[str, int]]:
        """Triggerer job id -> the deferred task instances whose trigger it runs (label -> try)."""
        held: dict[int, dict[str, int]] = {}
        for ti in self.current:
            triggerer = (ti.get("trigger") or {}).get("triggerer_id")
            if ti["state"] == "deferred" and triggerer is not None:
                held.setdefault(int(triggerer), {})[self.label(ti)] = ti["try_number"]
        return held

    def by_label(self) -> dict[str, dict[str, Any]]:
        return {self.label(ti): ti for ti in self.current}


def _kill_a_submitting_worker(cluster: Cluster, observer: Observer) -> Kill | None:
    """SIGKILL the worker running the most first tries that have not deferred yet, then start a new one."""
    submitting = observer.submitting()
    on_worker = {
        name: {label for label, ti in submitting.items() if ti["pid"] in cluster.stack.descendants(name)}
        for name in WORKERS
    }
    name = max(on_worker, key=lambda worker: len(on_worker[worker]))
    if len(on_worker[name]) < 2:
        return None
    cluster.stack.kill(name)
    kill = Kill(name, time.monotonic(), {label: submitting[label]["try_number"] for label in on_worker[name]})
    cluster.stack.start(name)  # what a process supervisor does; the lost tasks are the scheduler's to retry
    return kill


def _kill_the_busiest_triggerer(cluster: Cluster, observer: Observer) -> Kill | None:
    """SIGKILL the triggerer running the most triggers, once at least ten tasks are deferred."""
    held = observer.deferred_on()
    if sum(len(tis) for tis in held.values()) < 10:
        return None
    job_id = max(held, key=lambda job: len(held[job]))
    cluster.stack.kill(cluster.triggerer_jobs[job_id])
    return Kill(f"{cluster.triggerer_jobs[job_id]} (job {job_id})", time.monotonic(), held[job_id])


def _update_worker_recovery(kill: Kill, observer: Observer) -> None:
    """Recovered once every task the worker ran is back on a later try (or done)."""
    tis = observer.by_label()
    if kill.recovered_at is None and all(
        tis[label]["state"] == "success"
        or (tis[label]["try_number"] > tried and tis[label]["state"] in ("running", "deferred"))
        for label, tried in kill.held.items()
    ):
        kill.recovered_at = time.monotonic()


def _update_triggerer_recovery(kill: Kill, killed_job: int, observer: Observer) -> None:
    """Recovered once no deferred task waits on the killed triggerer any more."""
    for label in kill.held:
        seen = observer.triggerers[label]
        if seen[seen.index(killed_job) + 1 :]:
            kill.taken_over.add(label)
    if kill.recovered_at is None and killed_job not in observer.deferred_on():
        kill.recovered_at = time.monotonic()


def _executions_per_text(cluster: Cluster) -> Counter[str]:
    hook = CCPHook(ccp_conn_id="ccp_distributed_check")
    records = [r for r in hook.list_executions() if r["method"]["id"] == "word-count"]
    return Counter(r["request"]["inputs"]["text"] for r in records)


def _summary(
    observer: Observer, kills: list[Kill], executions: Counter[str], admin_counts: dict[str, int], elapsed: float
) -> str:
    mapped = [ti for ti in observer.current if ti["task_id"] == "count"]
    states = Counter(ti["state"] for ti in observer.current)
    duplicates = {text.count("word"): n for text, n in executions.items() if n > 1}
    retried = sorted(Observer.label(ti) for ti in mapped if ti["try_number"] > 1)
    lines = [
        f"distributed run of {DAG_ID}: {elapsed:.0f} s",
        f"  task instances: {len(observer.current)} ({len(mapped)} mapped CCP tasks), states {dict(states)}",
        f"  retried: {len(retried)} {retried}",
        f"  CCP executions: {sum(executions.values())} for {len(executions)} texts; "
        f"submitted {admin_counts['submitted']}, dismissed {admin_counts['dismissed']}",
        f"  duplicates (words -> executions): {duplicates or 'none'}",
    ]
    for kill in kills:
        lines.append(
            f"  killed {kill.name}: held {len(kill.held)} task(s), recovered after {kill.recovery()}"
            + (f", {len(kill.taken_over)} taken over by the other triggerer" if "triggerer" in kill.name else "")
        )
    return "\n".join(lines)


def test_kill_a_worker_and_a_triggerer_mid_run(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = cluster.stack
    monkeypatch.setenv("AIRFLOW_CONN_CCP_DISTRIBUTED_CHECK", cluster.sandbox.connection_json())
    cluster.sandbox.admin.reset()
    started = time.monotonic()
    run_id = stack.trigger(DAG_ID)
    observer = Observer(stack, run_id)
    worker_kill: Kill | None = None
    triggerer_kill: Kill | None = None
    killed_job = -1
    run_state = None
    while time.monotonic() - started < RUN_TIMEOUT:
        observer.poll()
        if worker_kill is None:
            worker_kill = _kill_a_submitting_worker(cluster, observer)
        else:
            _update_worker_recovery(worker_kill, observer)
        if triggerer_kill is None and worker_kill is not None:
            triggerer_kill = _kill_the_busiest_triggerer(cluster, observer)
            if triggerer_kill is not None:
                killed_job = int(triggerer_kill.name.split("job ")[1].rstrip(")"))
        elif triggerer_kill is not None:
            _update_triggerer_recovery(triggerer_kill, killed_job, observer)
        run_state = stack.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        if run_state in ("success", "failed"):
            break
        time.sleep(0.5)
    observer.poll()
    elapsed = time.monotonic() - started

    executions = _executions_per_text(cluster)
    admin = cluster.sandbox.admin
    admin_counts = {
        "submitted": admin.executions_submitted("word-count"),
        "dismissed": admin.requests_to("DELETE", "/jobs/{job_id}"),
    }
    kills = [kill for kill in (worker_kill, triggerer_kill) if kill is not None]
    with capsys.disabled():
        print("\n" + _summary(observer, kills, executions, admin_counts, elapsed))

    assert run_state == "success", stack.failure_report(DAG_ID, run_id)
    mapped = [ti for ti in observer.current if ti["task_id"] == "count"]
    assert len(mapped) == MAPPED
    assert all(ti["state"] == "success" for ti in observer.current), observer.states

    # One paid execution per mapped task, however the kills fell; nothing dismissed twice or at all.
    assert executions == Counter(dict.fromkeys(TEXTS, 1)), _duplicate_report(stack, run_id, executions)
    assert admin_counts == {"submitted": MAPPED, "dismissed": 0}

    # The worker was lost while tasks submitted: each of them was retried and finished.
    assert worker_kill is not None, "no moment with two tasks submitting on one worker was seen"
    assert worker_kill.recovered_at is not None
    tis = observer.by_label()
    assert all(tis[label]["try_number"] > tried for label, tried in worker_kill.held.items()), worker_kill.held

    # The surviving triggerer ran the killed one's triggers.
    assert triggerer_kill is not None, "never saw ten deferred tasks at once"
    assert triggerer_kill.recovered_at is not None
    assert triggerer_kill.taken_over, f"no trigger of job {killed_job} was seen on another triggerer"
    survivor = next(job for job in cluster.triggerer_jobs if job != killed_job)
    for label in triggerer_kill.taken_over:
        after = observer.triggerers[label][observer.triggerers[label].index(killed_job) + 1 :]
        assert set(after) == {survivor}, (label, observer.triggerers[label])

    # The downstream task read every result.json back from S3 and added them up.
    total = stack.xcom(DAG_ID, run_id, "total")
    assert total["results"] == MAPPED
    assert total["words"] == sum(range(1, MAPPED + 1))
    assert all(uri.startswith(f"s3://aws_default@{BUCKET}/runs/{DAG_ID}/") for uri in total["uris"])
    stored = boto3.client(
        "s3", endpoint_url=cluster.s3.url, aws_access_key_id="moto", aws_secret_access_key="moto-secret"
    ).list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{DAG_ID}/")
    assert sum(item["Key"].endswith("/result.json") for item in stored.get("Contents", [])) >= MAPPED


def _duplicate_report(stack: LocalAirflow, run_id: str, executions: Counter[str]) -> str:
    """For each text run more than once: the job ids each try of its task logged, to tell when it happened."""
    lines = []
    for index, text in enumerate(TEXTS):
        if executions[text] <= 1:
            continue
        ti = next(t for t in stack.task_instances(DAG_ID, run_id) if t["map_index"] == index)
        lines.append(f"count[{index}]: {executions[text]} executions, {ti['try_number']} tries")
        for attempt in range(1, ti["try_number"] + 1):
            log = stack.task_log(DAG_ID, run_id, "count", attempt, index)
            lines += [f"  try {attempt}: {line.strip()}" for line in log.splitlines() if "CCP job" in line]
    return "\n".join(lines)
