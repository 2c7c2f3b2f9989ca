"""The execute request as CCP's users send it, checked end to end against the sandbox: stdout/stderr
captured by default, ``outputs=`` as the override, extra request members (``subscribers``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_ccp.exceptions import CCPInputError, CCPJobFailedError
from airflow_provider_ccp.hooks.ccp import CCPHook
from ccp_sandbox.testing import SandboxServer
from tests.integration.operators.test_ccp import operator
from tests.task_helpers import make_context, run_deferrable, task_log

__all__ = ["task_log"]  # a fixture, used by name

#: CCP's archiving hook, as a production batch submitter passes it.
ARCHIVE = {"subscribers": [{"successUri": "http://registry:8080/executions/outputs/archive-to-folder"}]}
VALUE = {"transmissionMode": "value"}


def execution(job_id: str) -> dict[str, Any]:
    return CCPHook().get_execution(job_id)


def archive_names(manifest: dict[str, Any]) -> set[str]:
    """What output.zip held: the task extracts it all."""
    return {item["path"] for item in manifest["files"]}


# --------------------------------------------------------------------------- stdout and stderr


@pytest.mark.usefixtures("sandbox_conn")
def test_by_default_stdout_and_stderr_are_requested_and_come_back(sandbox, tmp_path):
    manifest = run_deferrable(operator(tmp_path), make_context())

    request = execution(manifest["job_id"])["request"]
    assert request["outputs"] == {"result": VALUE, "stdout": VALUE, "stderr": VALUE}
    assert {"stdout.1.txt", "stderr.1.txt", "result.json"} <= archive_names(manifest)


@pytest.mark.usefixtures("sandbox_conn")
def test_outputs_override_what_is_requested_and_the_sandbox_leaves_the_logs_out(sandbox, tmp_path):
    manifest = run_deferrable(operator(tmp_path, outputs={"result": VALUE}), make_context())

    assert execution(manifest["job_id"])["request"]["outputs"] == {"result": VALUE}
    names = archive_names(manifest)
    assert "result.json" in names
    assert not {"stdout.1.txt", "stderr.1.txt"} & names


@pytest.fixture
def sandbox_with_reporting_failure(tmp_path, monkeypatch) -> Iterator[SandboxServer]:
    """A Method that declares only its file, writes to stdout and stderr, then fails."""
    methods = tmp_path / "methods"
    methods.mkdir()
    script = ["echo partial > report.txt", "echo 'step 1 done'", "echo 'disk quota exceeded' >&2", "exit 3"]
    method = {
        "id": "report",
        "inputs": {"ccpimage": {"schema": {"type": "string", "default": "bash"}}},
        "outputs": {"report": {"schema": {"type": "string", "contentMediaType": "text/plain"}}},
        "additionalParameters": {"parameters": [{"name": "execute-script", "value": script}]},
    }
    (methods / "report.json").write_text(json.dumps(method))
    with SandboxServer(tmp_path / "data", methods_dirs=[methods]) as server:
        monkeypatch.setenv("AIRFLOW_CONN_CCP_DEFAULT", server.connection_json())
        yield server


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_a_failure_logs_the_tails_of_a_method_that_declares_only_its_files(
    sandbox_with_reporting_failure, tmp_path, task_log, deferrable
):
    task = operator(tmp_path, method_id="report", inputs={}, deferrable=deferrable)

    with pytest.raises(CCPJobFailedError):
        run_deferrable(task, make_context())

    log = task_log()
    assert "disk quota exceeded" in log
    assert "step 1 done" in log


# --------------------------------------------------------------------------- extra request members


@pytest.mark.usefixtures("sandbox_conn")
def test_request_members_reach_ccp_templated(sandbox, tmp_path):
    members = {"subscribers": [{"successUri": "{{ params.archive }}"}]}
    task = operator(tmp_path, request_members=members, wait_for_completion=False)
    context = make_context() | {"params": {"archive": ARCHIVE["subscribers"][0]["successUri"]}}

    task.render_template_fields(context)
    job_id = task.execute(context)

    request = execution(job_id)["request"]
    assert request["subscribers"] == ARCHIVE["subscribers"]
    assert set(request) == {"inputs", "outputs", "response", "subscribers"}


@pytest.mark.usefixtures("sandbox_conn")
def test_the_hook_sends_request_members_too(sandbox):
    submitted = CCPHook().submit_execution(
        "hello", {"ccpimage": "bash", "name": "archive"}, request_members=ARCHIVE | {"ccpnote": "top level"}
    )

    request = execution(submitted.job_id)["request"]
    assert request["subscribers"] == ARCHIVE["subscribers"]
    assert request["ccpnote"] == "top level"


@pytest.mark.usefixtures("sandbox_conn")
@pytest.mark.parametrize("member", ["inputs", "outputs", "response"])
def test_a_member_the_provider_sets_is_refused_in_one_line_and_nothing_is_sent(sandbox, tmp_path, member):
    task = operator(tmp_path, request_members={member: {}, **ARCHIVE})

    with pytest.raises(CCPInputError) as raised:
        task.execute(make_context())

    message = str(raised.value)
    assert "\n" not in message
    assert repr(member) in message
    assert "request_members" in message
    assert sandbox.admin.executions_submitted("word-count") == 0


@pytest.mark.usefixtures("sandbox_conn")
def test_request_members_that_are_not_a_mapping_are_refused(sandbox, tmp_path):
    with pytest.raises(CCPInputError, match="request_members must be a mapping"):
        operator(tmp_path, request_members=[ARCHIVE]).execute(make_context())
    assert sandbox.admin.executions_submitted("word-count") == 0
