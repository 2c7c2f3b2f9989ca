"""Shared fixtures: the CCP sandbox (a real HTTP server on 127.0.0.1) comes from the package itself."""

import os
import sys
import tempfile

# Before anything imports Airflow: the suite must never read or write a developer's real AIRFLOW_HOME.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ccp-tests-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from collections.abc import Iterator
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_ccp import auth

#: The tests that start Airflow processes (scheduler, triggerer, api-server, dag.test() runs, fresh venvs).
#: Under pytest-xdist (``--dist loadgroup``, as `make test` runs) they share one group, so one worker runs
#: them one after another: two Airflow stacks at once would starve each other on a small machine, and the
#: module-scoped stacks and builds are set up once. The other workers run the rest of the suite meanwhile.
AIRFLOW_PROCESS_MARKERS = ("e2e", "browser", "dagtest", "packaging")
AIRFLOW_PROCESS_GROUP = "airflow-processes"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in AIRFLOW_PROCESS_MARKERS):
            item.add_marker(pytest.mark.xdist_group(AIRFLOW_PROCESS_GROUP))


#: The fault matrix's figures, from the reports of its cases (tests/integration/test_fault_matrix.py).
FAULT_MATRIX: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "teardown" or not report.user_properties:
        return
    from tests.integration.test_fault_matrix import REPORT_KEY

    FAULT_MATRIX.extend(value for key, value in report.user_properties if key == REPORT_KEY)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not FAULT_MATRIX or hasattr(config, "workerinput"):  # an xdist worker's terminal is not shown
        return
    from tests.integration.test_fault_matrix import Figures, summary_lines

    for line in summary_lines([Figures(**figures) for figures in FAULT_MATRIX]):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    # 127.0.0.1, not "localhost": no IPv6 attempt first, nothing but loopback, and one origin for every
    # suite that shares the session's server (the trust-boundary tests reach it as "localhost" on purpose).
    return ("127.0.0.1", 0)


#: Airflow's secrets maskers (the task SDK's and the core's). Each secret a test masks stays in the masker of
#: the process, and each new one recompiles a regex of them all: over a whole suite that made the tests that
#: mask or redact slower and slower (a test of 0.1 s alone took 10 s late in the suite).
SECRETS_MASKERS = ("airflow.sdk._shared.secrets_masker.secrets_masker", "airflow._shared.secrets_masker.secrets_masker")


def _reset_secrets_maskers() -> None:
    """What Airflow does when it starts a task process; only for maskers already imported (none to import)."""
    for name in SECRETS_MASKERS:
        module = sys.modules.get(name)
        if module is not None:
            module.reset_secrets_masker()


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts like a new worker process: no cached token, no secret masked by an earlier test."""
    auth.TOKEN_CACHE.clear()
    _reset_secrets_maskers()
    yield
    auth.TOKEN_CACHE.clear()


@pytest.fixture
def memory_storage(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryFileSystem]:
    """An object store (fsspec's memory filesystem) reachable as memory:// through ObjectStoragePath."""
    from airflow.sdk.io import fs as airflow_fs

    memory = MemoryFileSystem()
    monkeypatch.setitem(airflow_fs._BUILTIN_SCHEME_TO_FS, "memory", lambda *_: memory)
    airflow_fs._register_filesystems.cache_clear()
    yield memory
    airflow_fs._register_filesystems.cache_clear()
    memory.store.clear()
