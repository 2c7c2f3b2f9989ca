"""Shared fixtures: the CCP sandbox (a real HTTP server on 127.0.0.1) comes from the package itself."""

import os
import sys
import tempfile

# Before anything imports Airflow: the suite must never read or write a developer's real AIRFLOW_HOME.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ccp-tests-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from collections.abc import Iterator

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_ccp import auth


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
