"""Fixtures of the integration suite: the loopback doubles of doubles.py (Keycloak, CCP), connections, clocks."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from tests.integration.doubles import CLIENT_ID, CONTEXT, USER, FakeKeycloak, ShiftedClock


@pytest.fixture
def keycloak(httpserver: HTTPServer) -> FakeKeycloak:
    return FakeKeycloak(httpserver)


@pytest.fixture
def password() -> str:
    return f"pw-{secrets.token_hex(8)}"


@pytest.fixture
def client_secret() -> str:
    return f"cs-{secrets.token_hex(8)}"


@pytest.fixture
def make_conn(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer, keycloak: FakeKeycloak, password: str):
    """Put a ``ccp`` connection in the environment, pointing at the loopback server; returns its id."""

    def make(
        conn_id: str = "ccp_unit",
        *,
        auth_flow: str = "password_uma",
        login: str | None = USER,
        secret: str | None = None,
        **extra: Any,
    ) -> str:
        extra = {
            "keycloak_url": keycloak.url,
            "client_id": CLIENT_ID,
            "context": CONTEXT,
            "auth_flow": auth_flow,
            **extra,
        }
        document = {
            "conn_type": "ccp",
            "host": httpserver.url_for("/").rstrip("/"),
            "login": login,
            "password": secret if secret is not None else password,
            "extra": {k: v for k, v in extra.items() if v is not None},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))
        return conn_id

    return make


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()
