"""pytest plugin of ``ccp-sandbox``: registered through the ``pytest11`` entry point, so installing
the package is enough to have these fixtures.

Fixtures:
    ccp_sandbox   session scope: one SandboxServer (admin on, own data folder, token TTL 300 s)
    sandbox       function scope: ``ccp_sandbox`` with faults and counters reset
    sandbox_conn  function scope: AIRFLOW_CONN_CCP_DEFAULT points at the sandbox; returns "ccp_default"
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ccp_sandbox.testing import SandboxServer


@pytest.fixture(scope="session")
def ccp_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path_factory.mktemp("ccp-sandbox"), token_ttl=300, admin=True) as server:
        yield server


@pytest.fixture
def sandbox(ccp_sandbox: SandboxServer) -> SandboxServer:
    ccp_sandbox.admin.reset()
    return ccp_sandbox


@pytest.fixture
def sandbox_conn(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_CCP_DEFAULT", sandbox.connection_json())
    return "ccp_default"
