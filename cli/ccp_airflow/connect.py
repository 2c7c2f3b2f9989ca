"""Where the CLI's CCP connection comes from: an Airflow connection id, or ``--url`` and flags."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

import requests
from airflow.sdk import BaseHook

from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.connection_fields import AUTH_FLOW_NEEDS, DEFAULT_AUTH_FLOW, FIELDS, AuthFlow
from airflow_provider_ccp.exceptions import CCPError
from airflow_provider_ccp.exchange import Answer
from airflow_provider_ccp.hooks._requests import DeadlineAdapter
from airflow_provider_ccp.hooks.ccp import CCPHook
from airflow_provider_ccp.retries import RetryPolicy
from airflow_provider_ccp.version_compat import AirflowNotFoundException
from ccp_airflow import CONNECTION_FLAGS, flag_dest

__all__ = [
    "ConnectionNotFoundError",
    "CLIHook",
    "PromptRetryPolicy",
    "find_connection",
    "settings_from_flags",
    "resolve_settings",
    "in_flag_words",
    "PASSWORD_ENV",
    "CLIENT_SECRET_ENV",
    "FLAG_NAMES",
    "PASSWORD_SOURCES",
]

PASSWORD_ENV = "CCP_PASSWORD"
CLIENT_SECRET_ENV = "CCP_CLIENT_SECRET"


class ConnectionNotFoundError(CCPError):
    """No Airflow connection has the id given with ``--conn-id``."""


class CLIHook(CCPHook):
    """``CCPHook`` on the settings the CLI resolved, retrying the way a person at the prompt expects."""

    def __init__(self, conn_id: str, settings: CCPConnectionSettings) -> None:
        super().__init__(ccp_conn_id=conn_id, settings=settings)
        self.retry = PromptRetryPolicy(limit=self.retry.limit, delay=self.retry.delay)
        #: The last request that could not reach its server, and why.
        self.transport_error: tuple[str, requests.ConnectionError] | None = None

    def _new_session(self) -> requests.Session:
        session = super()._new_session()
        for scheme in list(session.adapters):
            session.mount(scheme, _RecordingAdapter(self))
        return session


@dataclass(frozen=True)
class PromptRetryPolicy(RetryPolicy):
    """A person waits at the prompt: a server that cannot be reached (refused, unresolvable, timed out) is
    reported at once, not after the seconds of backoff a task would spend on it; answers such as 503
    keep the task's retries."""

    def wait(self, retry: int, elapsed: float, answer: Answer, *, idempotent: bool) -> float | None:
        if answer.status is None:
            return None
        return super().wait(retry, elapsed, answer, idempotent=idempotent)


class _RecordingAdapter(DeadlineAdapter):
    """Keeps the transport error the hook's message reduces to its type name, for the CLI's one line;
    a ``DeadlineAdapter``, so that the connection's timeout bounds each whole request, as in a task."""

    def __init__(self, hook: CLIHook, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hook = hook

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except requests.ConnectionError as error:
            self.hook.transport_error = (str(request.url), error)
            raise


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


#: The extras the command line has flags for.
FLAG_EXTRAS = tuple(spec.key for spec in FIELDS if spec.extra and spec.key in CONNECTION_FLAGS)


def _flag_names() -> tuple[tuple[str, str], ...]:
    """How the validation's names for the fields (``field 'host'``, ``login``, ``extra 'context'``) read as flags;
    the password has sources of its own to name."""
    names: list[tuple[str, str]] = []
    for key, (flag, _) in CONNECTION_FLAGS.items():
        words = f"{flag} (or {CLIENT_SECRET_ENV})" if key == "client_secret" else flag
        if key in FLAG_EXTRAS:
            names += [(f"extra {key!r}", words), (f"Connection extra {key!r}", words)]
        elif key != "password":
            names += [(key, words), (f"Connection field {key!r}", words)]
    return tuple(names)


#: How the connection's field names read on the command line, for errors in ``--url`` mode.
FLAG_NAMES = _flag_names()
PASSWORD_SOURCES = f"{PASSWORD_ENV}, the prompt, or --password"


def in_flag_words(message: str) -> str:
    """A connection error as the ``--url`` user reads it: flags, not the fields of an Airflow connection."""
    head, sep, needs = message.partition(" needs: ")
    items = needs.split("; ") if sep else [message]
    for index, item in enumerate(items):
        if item == "password" or item.startswith("password ("):
            # "password (the bearer token)" -> "the bearer token (CCP_PASSWORD, the prompt, or --password)"
            what = item.removeprefix("password").strip(" ()") or "the password"
            items[index] = f"{what} ({PASSWORD_SOURCES})"
            continue
        for field, flag in FLAG_NAMES:
            if item == field or item.startswith(field + " "):
                items[index] = flag + item[len(field) :]
    return f"{head}{sep}{'; '.join(items)}" if sep else items[0]


def settings_from_flags(args: argparse.Namespace) -> CCPConnectionSettings:
    try:
        return _settings_from_flags(args)
    except CCPError as error:
        raise CCPError(in_flag_words(str(error))) from None


def _settings_from_flags(args: argparse.Namespace) -> CCPConnectionSettings:
    # The extras the command line has flags for; the client secret may come from elsewhere (below).
    extra = {key: getattr(args, flag_dest(CONNECTION_FLAGS[key][0])) for key in FLAG_EXTRAS}
    # Prompt only for what the flow needs (argparse has already refused an unknown flow).
    needed = AUTH_FLOW_NEEDS[AuthFlow(args.auth_flow or DEFAULT_AUTH_FLOW)].fields
    extra["client_secret"] = _secret(
        args.client_secret, CLIENT_SECRET_ENV, "Client secret: ", ask="client_secret" in needed
    )
    password = _secret(args.password, PASSWORD_ENV, f"Password for {args.user or 'CCP'}: ", ask="secret" in needed)
    return CCPConnectionSettings.from_fields(
        host=args.url,
        login=args.user,
        password=password,
        extra={name: value for name, value in extra.items() if value is not None},
    )


def resolve_settings(args: argparse.Namespace) -> CCPConnectionSettings:
    """The settings of ``--url`` and its flags, else of the Airflow connection ``--conn-id``."""
    if args.url:
        return settings_from_flags(args)
    return CCPConnectionSettings.from_connection(find_connection(args.conn_id))
