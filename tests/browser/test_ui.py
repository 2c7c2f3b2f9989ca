"""The Airflow UI as a DAG author meets it, in headless Chromium against `make airflow`'s stack.

`python -m scripts.airflow_local` (what `make airflow` runs) is started as a process of its own; the test then
does what a new user does: finds `ccp_default` in Admin -> Connections, adds a CCP connection through
the form and presses Test, reaches the stack from "another shell" with `.airflow/env.sh`, writes a DAG
with `ccp-airflow dag` where the config says DAGs live, triggers `ccp_quickstart` and finds the
"CCP execution" link while the task is deferred, and triggers the generated DAG through its form: with
the optional fields cleared (CCP gets the Method's defaults, nothing empty) and with a wrong type (refused,
no run).

Chromium comes from Debian's packages (scripts/chromium.sh, run by `make test`); Playwright only drives
it, no browser is downloaded. Screenshots of every step land in the test's tmp folder when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests

from airflow_provider_ccp.get_provider_info import TEST_BUTTON_NEEDS_A_PORT
from airflow_provider_ccp.get_provider_info import _installed_airflow as installed_airflow
from tests.make_airflow import ROOT, Stack, make_airflow, new_shell_env, shell

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "admin", "admin"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/chromium.sh (make test does)")
    base = tmp_path_factory.mktemp("make-airflow")
    dags = base / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags_examples" / "ccp_quickstart.py", dags)
    with make_airflow(base / "home", dags, "--sandbox-admin") as running:
        yield running


def another_shell(stack: Stack, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A new shell that knows nothing of the stack but what `source .airflow/env.sh` tells it."""
    return shell(f"source {stack.env_file}\n{command}", cwd, new_shell_env(), timeout=180)


@pytest.fixture(scope="module")
def signed_in(stack: Stack) -> Iterator[tuple[object, object]]:
    """One Chromium for the module, and the storage state of a user who signed in through the login page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{stack.url}/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/" not in url)  # signed in and sent back to the UI
        state = page.context.storage_state()
        page.context.close()
        yield browser, state
        browser.close()


@pytest.fixture
def page(signed_in: tuple[object, object], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh, signed-in browser context per test."""
    browser, state = signed_in
    context = browser.new_context(viewport={"width": 1400, "height": 1200}, storage_state=state)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.shots = []
    yield page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    else:
        for shot in page.shots:
            Path(shot).unlink(missing_ok=True)
    context.close()


def shot(page: object, tmp_path: Path, name: str) -> None:
    """Every step's screenshot; kept only when the test fails."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    page.shots.append(path)  # type: ignore[attr-defined]


def api_token(stack: Stack) -> dict[str, str]:
    answer = requests.post(f"{stack.url}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30)
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def wait_for(what: str, check: object, timeout: float = 180) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()  # type: ignore[operator]
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def word_count_dag(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`ccp-airflow dag`, written where the config says DAGs live, from another shell; parsed once per module."""
    written = another_shell(
        stack,
        'ccp-airflow dag word-count -o "$(airflow config get-value core dags_folder)/ccp_word_count.py"',
        tmp_path_factory.mktemp("word-count-dag"),
    )
    assert written.returncode == 0, written.stderr[-2000:]
    headers = api_token(stack)
    wait_for("ccp_word_count to be parsed", lambda: requests.get(
        f"{stack.url}/api/v2/dags/ccp_word_count", headers=headers, timeout=30).status_code == 200)  # fmt: skip
    return "ccp_word_count"


def open_trigger_form(stack: Stack, page: object, dag_id: str) -> object:
    """The DAG's Trigger dialog, once its Run Parameters are drawn."""
    page.goto(f"{stack.url}/dags/{dag_id}")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Trigger").first.click()  # type: ignore[attr-defined]
    form = page.get_by_role("dialog")  # type: ignore[attr-defined]
    form.get_by_text("Run Parameters").wait_for()
    return form


# ------------------------------------------------------------------------------------------- the tests


def test_the_local_stack_is_reachable_from_another_shell(stack, tmp_path):
    """Item 1: ccp_default in the metadata DB, one truthful DAGs folder, an env file for other shells."""
    folder = another_shell(stack, "airflow config get-value core dags_folder", tmp_path)
    assert folder.stdout.strip() == str(stack.dags_folder), folder.stderr[-2000:]
    assert (stack.env_file.parent / "airflow.cfg").read_text().count(f"dags_folder = {stack.dags_folder}") == 1

    methods = another_shell(stack, "ccp-airflow --conn-id ccp_default methods list --json", tmp_path)
    assert methods.returncode == 0, methods.stderr[-2000:]
    assert "word-count" in methods.stdout

    tested = another_shell(stack, "airflow connections test ccp_default", tmp_path)
    assert "Connection success!" in tested.stdout, (tested.stdout + tested.stderr)[-2000:]

    # Issue 10: no log server (or anything else the stack started) listens beyond loopback.
    stack_pids = {stack.process.pid, *(child.pid for child in psutil.Process(stack.process.pid).children(True))}
    exposed = [
        (conn.laddr.ip, conn.laddr.port)
        for conn in psutil.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.pid in stack_pids and conn.laddr.ip not in ("127.0.0.1", "::1")
    ]
    assert exposed == []


def test_a_ccp_connection_made_in_the_form_tests_green(stack, page, tmp_path):
    """Items 1, 2, 3, 5: the listed ccp_default, the form, the Test button."""
    page.goto(f"{stack.url}/connections")
    page.get_by_role("row").filter(has_text="ccp_default").wait_for()
    shot(page, tmp_path, "1-connections")

    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill("ccp_browser")
    dialog.get_by_role("combobox").first.click()
    page.get_by_role("option", name="D4Science CCP").click()
    dialog.locator("input[name=host]").fill(stack.sandbox_url)
    dialog.locator("input[name=login]").fill("demo")
    dialog.locator("input[name=password]").fill("demo-password")
    # Port is hidden (CCP's URL carries it) unless this Airflow's Test button needs one stored: then the
    # form asks for 0 and says why, and a user who does what it says gets a green test.
    if installed_airflow() in TEST_BUTTON_NEEDS_A_PORT:
        assert "Port: enter 0" in dialog.inner_text()
        dialog.locator("input[name=port]").fill("0")
    else:
        assert dialog.locator("input[name=port]").count() == 0
    dialog.get_by_text("Extra Fields", exact=True).click()
    # The auth flow is preselected by name, and the list offers no "null".
    assert dialog.locator("input[name=element_auth_flow]").input_value() == "password_uma"
    dialog.get_by_role("combobox").nth(1).click()
    offered = [option.inner_text() for option in page.get_by_role("option").all()]
    assert "password_uma" in offered
    assert "client_credentials" in offered
    assert not [text for text in offered if text.strip().lower() in ("null", "none selected", "")], offered
    page.get_by_role("option", name="password_uma").click()
    # Suggestions instead of empty boxes; help that makes sense outside the source tree.
    assert dialog.locator("#element_context").get_attribute("placeholder")
    assert dialog.locator("datalist#list_context option").count() >= 1
    assert "https://" in dialog.inner_text()
    dialog.locator("#element_keycloak_url").fill(
        f"{stack.sandbox_url}/auth/realms/d4science/protocol/openid-connect/token"
    )
    dialog.locator("#element_client_id").fill("ccp-sandbox")
    dialog.locator("#element_context").fill("/d4science.research-infrastructures.eu/D4OS/CCP-Sandbox")
    shot(page, tmp_path, "2-form")
    dialog.get_by_role("button", name="Save").click()
    row = page.get_by_role("row").filter(has_text="ccp_browser")
    row.wait_for()

    from playwright.sync_api import expect

    for conn_id in ("ccp_default", "ccp_browser"):
        page.mouse.move(0, 0)  # the previous button's tooltip would cover the next row's button
        expect(page.get_by_role("tooltip")).to_have_count(0)
        with page.expect_response("**/api/v2/connections/test") as tested:
            page.get_by_role("row").filter(has_text=conn_id).get_by_role("button", name="Test Connection").click()
        answer = tested.value
        assert answer.status == 200, f"{conn_id}: {answer.text()}"
        assert answer.json()["status"] is True, answer.json()
        shot(page, tmp_path, f"3-tested-{conn_id}")

    # The token endpoint is not a secret: the API shows it as stored.
    stored = requests.get(f"{stack.url}/api/v2/connections/ccp_browser", headers=api_token(stack), timeout=30).json()
    assert "/openid-connect/token" in stored["extra"]


def test_a_deferred_task_shows_its_ccp_execution_link(stack, page, tmp_path):
    from ccp_sandbox.admin_client import SandboxAdmin

    headers = api_token(stack)
    wait_for("ccp_quickstart to be parsed", lambda: requests.get(
        f"{stack.url}/api/v2/dags/ccp_quickstart", headers=headers, timeout=30).status_code == 200)  # fmt: skip
    SandboxAdmin(stack.sandbox_url).hold_jobs("word-count", count=1)  # keep the execution running
    page.goto(f"{stack.url}/dags/ccp_quickstart")
    page.get_by_role("button", name="Trigger").first.click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").last.click()
    shot(page, tmp_path, "1-triggered")

    def deferred_run() -> str | None:
        runs = requests.get(f"{stack.url}/api/v2/dags/ccp_quickstart/dagRuns", headers=headers, timeout=30).json()
        for run in runs["dag_runs"]:
            tis = requests.get(
                f"{stack.url}/api/v2/dags/ccp_quickstart/dagRuns/{run['dag_run_id']}/taskInstances/count_words",
                headers=headers,
                timeout=30,
            )
            if tis.status_code == 200 and tis.json().get("state") == "deferred":
                return str(run["dag_run_id"])
        return None

    run_id = wait_for("count_words to defer", deferred_run)
    page.goto(f"{stack.url}/dags/ccp_quickstart/runs/{run_id}/tasks/count_words")
    page.get_by_text("Deferred", exact=True).first.wait_for()
    page.get_by_text("Details", exact=True).click()  # the task's extra links are listed there
    link = page.get_by_role("link", name="CCP execution")
    link.wait_for()
    shot(page, tmp_path, "2-deferred")
    assert link.get_attribute("href").startswith(f"{stack.sandbox_url}/ui/executions/")


def test_the_trigger_form_of_a_generated_dag(stack, page, tmp_path, word_count_dag):
    form = open_trigger_form(stack, page, word_count_dag)
    shot(page, tmp_path, "1-trigger-form")
    text = form.inner_text()
    for title in ("Replicas", "Text", "Mode"):
        assert title in text, text
    assert "Runtime" not in text  # read-only input: fixed in the DAG, not offered
    # Optional in the Method: not marked required (the form puts "*" after a required field's title).
    assert "Replicas\n*" not in text, text
    assert "Text\n*" in text, text


def test_optional_fields_left_empty_in_the_trigger_form_are_not_given(stack, page, tmp_path, word_count_dag):
    """Issue 20: Replicas and Mode cleared as a user leaves them; CCP gets the Method's defaults, nothing empty."""
    form = open_trigger_form(stack, page, word_count_dag)
    form.locator("input[name=element_text]").fill("one two three")
    form.locator("input[name=element_ccpreplicas]").fill("")
    form.locator("#element_mode [aria-label='Clear selected options']").click()
    shot(page, tmp_path, "1-optional-fields-cleared")
    with page.expect_response(f"**/api/v2/dags/{word_count_dag}/dagRuns") as answer:
        form.get_by_role("button", name="Trigger").last.click()
    assert answer.value.status == 200, answer.value.text()
    # The form sends an empty field as null: the DAG must read that as "not given".
    assert answer.value.request.post_data_json["conf"] == {"ccpreplicas": None, "text": "one two three", "mode": None}
    run_id = answer.value.json()["dag_run_id"]

    headers = api_token(stack)
    run_url = f"{stack.url}/api/v2/dags/{word_count_dag}/dagRuns/{run_id}"

    def ended() -> str | None:
        state = requests.get(run_url, headers=headers, timeout=30).json()["state"]
        return state if state in ("success", "failed") else None

    assert wait_for("the run to end", ended) == "success"
    links = requests.get(f"{run_url}/taskInstances/run_method/links", headers=headers, timeout=30).json()
    # The execution's page in the sandbox shows the request it received.
    page.goto(links["extra_links"]["CCP execution"])
    shot(page, tmp_path, "2-execution")
    inputs = json.loads(page.locator("pre").inner_text())["inputs"]
    assert "" not in inputs.values(), inputs
    assert inputs["mode"] == "words", inputs  # required by CCP: the Method's default is sent
    assert inputs.get("ccpreplicas", "1") == "1", inputs  # optional: the default, or left out
    assert inputs["text"] == "one two three", inputs


def test_a_wrong_type_in_the_trigger_form_creates_no_run(stack, page, tmp_path, word_count_dag):
    """Issue 20: "two" for Replicas (an integer) is refused by the form; the DAG gets no run."""
    from playwright.sync_api import expect

    headers = api_token(stack)
    runs_url = f"{stack.url}/api/v2/dags/{word_count_dag}/dagRuns"
    runs_before = requests.get(runs_url, headers=headers, timeout=30).json()["total_entries"]
    form = open_trigger_form(stack, page, word_count_dag)
    trigger = form.get_by_role("button", name="Trigger").last
    expect(trigger).to_be_disabled()  # Text is required and still empty
    form.locator("input[name=element_text]").fill("one two three")
    expect(trigger).to_be_enabled()
    replicas = form.locator("input[name=element_ccpreplicas]")
    replicas.fill("")
    replicas.press_sequentially("two")
    assert replicas.input_value() == ""  # the number field takes no letters

    # The run's configuration JSON is the one place left to type "two": the trigger is refused, with the reason.
    form.get_by_text("Advanced Options").click()
    form.locator(".monaco-editor").click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Backspace")
    page.keyboard.insert_text('{"ccpreplicas": "two", "text": "one two three", "mode": "words"}')
    with page.expect_response(runs_url) as answer:
        trigger.click()
    shot(page, tmp_path, "1-refused")
    assert answer.value.status == 400, answer.value.text()
    expect(form).to_contain_text("Invalid input for param ccpreplicas: 'two' is not of type")
    assert requests.get(runs_url, headers=headers, timeout=30).json()["total_entries"] == runs_before
