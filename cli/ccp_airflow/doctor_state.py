"""What the doctor's steps share: their outcome, the hook that records what the provider sends, the run's state."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any

from airflow_provider_ccp import auth, exchange
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPError
from ccp_airflow.connect import CLIHook

__all__ = ["Outcome", "Failed", "Step", "GrantRecord", "DoctorHook", "Doctor", "UMA_GRANT"]


UMA_GRANT = "uma-ticket"


class Outcome(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, with a note worth reading: never a reason to exit non-zero
    FAIL = "fail"
    SKIPPED = "skipped"
    NOT_RUN = "not run"


class Failed(Exception):
    """A blocking failure: what was seen, and the one setting that fixes it."""

    def __init__(self, evidence: str, fix: str) -> None:
        super().__init__(evidence)
        self.fix = fix


@dataclass
class Step:
    name: str
    title: str
    outcome: Outcome = Outcome.NOT_RUN
    evidence: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fix: str | None = None


@dataclass(frozen=True)
class GrantRecord:
    """One token request the provider made: its grant and the answer's status, never its tokens."""

    grant: str
    status: int | None
    expires_in: Any = None
    refresh_expires_in: Any = None
    refresh_token: bool = False
    body: str = ""

    def line(self) -> str:
        if self.status is None:
            return f"{self.grant} grant: no answer"
        lifetime = f", expires_in {self.expires_in} s" if self.expires_in is not None else ""
        return f"{self.grant} grant: HTTP {self.status}{lifetime}{self.body}"


def _read_body(body: bytes) -> tuple[dict[str, Any], str]:
    """The token answer's lifetimes (its tokens stay unread), or what it is when it is not JSON."""
    try:
        document = exchange.load_json(body)
    except ValueError:
        title = re.search(rb"<title[^>]*>(.*?)</title>", body, re.I | re.S)
        kind = f"an HTML page titled {title.group(1).decode(errors='replace').strip()!r}" if title else "not JSON"
        return {}, f" ({kind}, {len(body)} bytes: a proxy or login page instead of the token endpoint?)"
    return (document, "") if isinstance(document, dict) else ({}, " (JSON, but not an object)")


class DoctorHook(CLIHook):
    """``CLIHook`` with a token state of its own (the doctor always runs the grants, never a cached
    token) that records each token request and each page it reads."""

    def __init__(self, conn_id: str, settings: CCPConnectionSettings) -> None:
        super().__init__(conn_id, settings)
        self.grants: list[GrantRecord] = []
        self.pages: list[str] = []

    @cached_property
    def _token_state(self) -> auth.TokenState:
        return auth.TokenState()

    def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        try:
            answer = super()._post_token(request)
        except CCPError:
            self.grants.append(GrantRecord(request.grant, None))
            raise
        document, kind = _read_body(answer.body)
        lifetimes = {name: document.get(name) for name in ("expires_in", "refresh_expires_in")}
        self.grants.append(
            GrantRecord(
                request.grant,
                answer.status_code,
                **lifetimes,
                refresh_token=bool(document.get("refresh_token")),
                body=kind,
            )
        )
        return answer

    def _get_json(self, url: str, **kwargs: Any) -> Any:
        self.pages.append(url)
        return super()._get_json(url, **kwargs)


@dataclass
class Doctor:
    args: argparse.Namespace
    settings: CCPConnectionSettings | None = None
    hook: DoctorHook | None = None
    context_error: CCPError | None = None
    method_id: str | None = None
    description: dict[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    landing_type: str = ""

    @property
    def ready(self) -> tuple[CCPConnectionSettings, DoctorHook]:
        # Set by the first step, or it failed and no later step runs.
        assert self.settings is not None
        assert self.hook is not None
        return self.settings, self.hook

    def setting(self, name: str) -> str:
        """How the user reaches a setting: a connection field, or a flag with ``--url``."""
        fields = {
            "host": ("the connection's host", "--url"),
            "login": ("the connection's login", "--user"),
            "password": ("the connection's password", "CCP_PASSWORD (or --password)"),
            "token_url": ("the connection extra 'keycloak_url'", "--token-url"),
            "client_id": ("the connection extra 'client_id'", "--client-id"),
            "client_secret": ("the connection extra 'client_secret'", "CCP_CLIENT_SECRET (or --client-secret)"),
            "context": ("the connection extra 'context'", "--context"),
            "verify": ("the connection extra 'verify'", "the connection extra 'verify' (no flag: use --conn-id)"),
        }
        return fields[name][1 if self.args.url else 0]

    def secrets(self) -> tuple[str, ...]:
        held = self.settings.secrets if self.settings else ()
        return held + (self.hook._token_state.secrets() if self.hook else ())
