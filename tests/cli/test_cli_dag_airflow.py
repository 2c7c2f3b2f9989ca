"""Generated DAGs against real Airflow: ruff-clean, import in a DagBag, and run with dag.test()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_airflow import main

BUILTIN_METHODS = ("hello", "word-count", "sleep", "fail", "make-files")
BIN = Path(sys.executable).parent


def generate(method_id: str, folder: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    target = folder / f"{method_id.replace('-', '_')}.py"
    assert main(["dag", method_id, "-o", str(target), *extra]) == 0, capsys.readouterr().err
    return target


def dag_bag() -> type:
    """DagBag moved to airflow.dag_processing in Airflow 3.2; the floor 3.1 has it in airflow.models."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag


@pytest.mark.parametrize("method_id", BUILTIN_METHODS)
def test_generated_dag_is_ruff_clean_and_imports(
    method_id: str, sandbox_conn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = generate(method_id, tmp_path, capsys)
    # Linted where DAG files live (outside this repo), where the provider is a third-party import.
    lint = subprocess.run(
        [BIN / "ruff", "check", "--isolated", target.name], cwd=tmp_path, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout
    bag = dag_bag()(str(tmp_path))
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    assert {task.task_id for task in dag.tasks} == {"run_method", "list_outputs"}
    description = CCPHook(sandbox_conn).get_method(method_id)
    editable = {
        name
        for name, spec in description["inputs"].items()
        if not spec["schema"].get("readOnly") and spec["schema"].get("format") != "secret"
    }
    assert set(dag.params.keys()) == editable
    assert dag.get_task("run_method").inputs["ccpimage"] == "bash"  # read-only: fixed, not a param


def test_scheduled_dag_with_set_defaults_imports(
    sandbox_conn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate("word-count", tmp_path, capsys, "--schedule", "0 6 * * *", "--set", "text=good morning")
    bag = dag_bag()(str(tmp_path))
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    assert dag.params["text"] == "good morning"


RUN_DAG = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import ParamValidationError

    bag = DagBag(sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(sys.argv[2])
    try:
        run = dag.test(run_conf=json.loads(sys.argv[3]))
    except ParamValidationError as refused:  # what the Trigger form and the API answer, before any run
        print("REFUSED=" + str(refused).replace(chr(10), " "))
    else:
        print("DAGRUN_STATE=" + str(run.state))
    """
)


def _airflow_env(home: Path, dags: Path, connection: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CCP_DEFAULT": connection,
    }


def generated_dag(
    ccp_sandbox: Any, folder: Path, method_id: str, dag_id: str
) -> Callable[[dict[str, Any], dict[str, str] | None], str]:
    """Runs the DAG ``ccp-airflow dag`` writes for ``method_id`` with a run conf, in an Airflow of its own."""
    dags = folder / "dags"
    dags.mkdir()
    env = _airflow_env(folder / "home", dags, ccp_sandbox.connection_json())
    target = dags / f"{dag_id}.py"
    written = subprocess.run(
        [BIN / "ccp-airflow", "dag", method_id, "--dag-id", dag_id, "-o", str(target)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert written.returncode == 0, written.stderr[-2000:]
    migrate = subprocess.run([BIN / "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stderr[-2000:]

    def run(conf: dict[str, Any], more_env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-c", RUN_DAG, str(dags), dag_id, json.dumps(conf)],
            env=env | (more_env or {}),
            capture_output=True,
            text=True,
            timeout=500,
        )
        return done.stdout + done.stderr

    return run


@pytest.fixture(scope="module")
def word_count_dag(ccp_sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    return generated_dag(ccp_sandbox, tmp_path_factory.mktemp("word-count-dag"), "word-count", "ccp_word_count")


def new_request(hook: CCPHook, before: set[str], method_id: str = "word-count") -> dict[str, Any]:
    """The inputs of the one execution of ``method_id`` created since ``before``."""
    (job_id,) = word_count_jobs(hook, method_id) - before
    sent = hook.get_execution(job_id)["request"]["inputs"]
    # ccpnote carries the submission's marker, by which a lost answer is looked up (docs/operators.md).
    assert sent.pop("ccpnote").startswith("[airflow-submission:")
    return dict(sent)


def word_count_jobs(hook: CCPHook, method_id: str = "word-count") -> set[str]:
    return {job.job_id for job in hook.list_jobs(method_id=method_id)}


@pytest.mark.dagtest
@pytest.mark.timeout(600)
def test_generated_dag_runs_with_non_default_params(sandbox_conn: str, word_count_dag: Any) -> None:
    hook = CCPHook(sandbox_conn)
    before = word_count_jobs(hook)
    conf = {"text": "alpha beta gamma", "mode": "chars", "ccpreplicas": 2}
    output = word_count_dag(conf)
    assert "DAGRUN_STATE=success" in output, output[-4000:]
    assert new_request(hook, before) == {"ccpimage": "bash", **conf, "ccpreplicas": "2"}


@pytest.mark.dagtest
@pytest.mark.timeout(600)
def test_generated_dag_optional_fields_left_empty_are_not_given(sandbox_conn: str, word_count_dag: Any) -> None:
    hook = CCPHook(sandbox_conn)
    before = word_count_jobs(hook)
    # What the Trigger form sends for a cleared field: null (a string, an enum and CCP's replica count).
    output = word_count_dag({"text": "alpha beta", "mode": None, "ccpreplicas": None})
    assert "DAGRUN_STATE=success" in output, output[-4000:]
    assert new_request(hook, before) == {"ccpimage": "bash", "text": "alpha beta", "mode": "words", "ccpreplicas": "1"}

    # A wrong type never becomes a run: the Param's schema is the Method's.
    before = word_count_jobs(hook)
    output = word_count_dag({"text": "alpha", "ccpreplicas": "two"})
    assert "REFUSED=" in output, output[-4000:]
    assert "ccpreplicas" in output.split("REFUSED=")[1]
    assert word_count_jobs(hook) == before


@pytest.mark.dagtest
@pytest.mark.timeout(600)
def test_generated_dag_leaves_an_optional_secret_out_while_its_variable_is_unset(
    ccp_sandbox: Any, sandbox_conn: str, tmp_path: Path
) -> None:
    # hello's api_key is an optional secret: the DAG reads it from a Variable, "" when the Variable is unset.
    hello_dag = generated_dag(ccp_sandbox, tmp_path, "hello", "ccp_hello")
    hook = CCPHook(sandbox_conn)
    before = word_count_jobs(hook, "hello")
    output = hello_dag({"name": "ada"})
    assert "DAGRUN_STATE=success" in output, output[-4000:]
    # Not sent at all: CCP would get an empty key, which a Method may take for a real (wrong) one.
    assert new_request(hook, before, "hello") == {"ccpimage": "bash", "ccpreplicas": "1", "name": "ada"}

    before = word_count_jobs(hook, "hello")
    output = hello_dag({"name": "ada"}, {"AIRFLOW_VAR_CCP_HELLO_API_KEY_SECRET": "key-from-a-variable"})
    assert "DAGRUN_STATE=success" in output, output[-4000:]
    assert new_request(hook, before, "hello")["api_key"] == "key-from-a-variable"
    assert "key-from-a-variable" not in output  # masked in the task log
