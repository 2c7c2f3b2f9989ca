"""Shared fixtures: the CCP sandbox (a real HTTP server on 127.0.0.1) comes from the package itself."""

import os
import tempfile

# Before anything imports Airflow: the suite must never read or write a developer's real AIRFLOW_HOME.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="ccp-tests-airflow-home-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import pytest

from airflow_provider_ccp import auth


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts like a new worker process: no cached token."""
    auth.TOKEN_CACHE.clear()
    yield
    auth.TOKEN_CACHE.clear()
