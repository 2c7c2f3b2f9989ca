"""Where the CLI's CCP connection comes from: an Airflow connection id, or ``--url`` and flags."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.sdk import BaseHook

from airflow_provider_ccp import auth
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.hooks.ccp import CCPHook

PASSWORD_ENV = "CCP_PASSWORD"
CLIENT_SECRET_ENV = "CCP_CLIENT_SECRET"
#: Flows whose "password" field holds a secret the user can be prompted for.
PROMPTED_FLOWS = frozenset({"password_uma", "password_scope", "context_header", "refresh_token", "token"})
URL_FLAGS = ("user", "password", "token_url", "client_id", "client_secret", "context", "auth_flow")


class ConnectionNotFoundError(CCPError):
    """No Airflow connection has the id given with ``--conn-id``."""


class CLIHook(CCPHook):
    """``CCPHook`` with its settings resolved by the CLI (lazily, so errors surface inside a command)."""

    def __init__(self, conn_id: str, resolve: Callable[[], CCPConnectionSettings]) -> None:
        super().__init__(ccp_conn_id=conn_id)
        self._resolve = resolve
        #: The settings once resolved, for error hints (None when resolving them is what failed).
        self.resolved: CCPConnectionSettings | None = None

    @cached_property
    def settings(self) -> CCPConnectionSettings:
        settings = self._resolve()
        auth.mask(*settings.secrets)
        self.resolved = settings
        return settings


def find_connection(conn_id: str) -> Any:
    """The connection as a task would see it (env vars, secrets backend), else from the metadata DB."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    # Outside a task the SDK never reads the metadata DB, but a connection made in the UI lives there,
    # and `airflow connections get` finds it: so does this CLI, when the DB is configured.
    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id)
    except Exception:
        raise ConnectionNotFoundError(f"No Airflow connection {conn_id!r}") from None


def _secret(value: str | None, env: str, prompt: str, ask: bool) -> str | None:
    if value:
        return value
    if os.environ.get(env):
        return os.environ[env]
    if ask and sys.stdin.isatty():
        return getpass.getpass(prompt)
    return None


def settings_from_flags(args: argparse.Namespace) -> CCPConnectionSettings:
    extra = {name: getattr(args, name) for name in ("token_url", "client_id", "context", "auth_flow")}
    flow = args.auth_flow or "password_uma"
    extra["client_secret"] = _secret(
        args.client_secret, CLIENT_SECRET_ENV, "Client secret: ", ask=flow == "client_credentials"
    )
    password = _secret(args.password, PASSWORD_ENV, f"Password for {args.user or 'CCP'}: ", ask=flow in PROMPTED_FLOWS)
    return CCPConnectionSettings.from_fields(
        host=args.url,
        login=args.user,
        password=password,
        extra={name: value for name, value in extra.items() if value is not None},
    )


def make_hook(args: argparse.Namespace) -> CLIHook:
    if args.url:
        return CLIHook(args.conn_id, lambda: settings_from_flags(args))
    return CLIHook(args.conn_id, lambda: CCPConnectionSettings.from_connection(find_connection(args.conn_id)))


def flags_without_url(args: argparse.Namespace) -> list[str]:
    """Connection flags given without ``--url``: they would be silently ignored, so they are refused."""
    return [f"--{name.replace('_', '-')}" for name in URL_FLAGS if getattr(args, name) is not None and not args.url]
