"""Logging for the CLI: quiet by default, the HTTP exchange with ``--verbose``, secrets never.

Log lines go to stderr through Airflow's own logging setup, so its secrets masker (fed by the hook
with the password, client secret and every token it obtains) redacts them; on top of that the
exchange lines below are built without header values or request bodies that could carry one.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from urllib.parse import parse_qsl

import requests

from ccp_airflow.render import clean

__all__ = ["configure_logging", "log_exchange", "trace", "SHOWN_FORM_FIELDS", "SHOWN_HEADERS"]

log = logging.getLogger("airflow_provider_ccp.cli")

#: Token-request form fields whose values help debugging and are not credentials.
SHOWN_FORM_FIELDS = frozenset({"grant_type", "client_id", "scope", "audience", "username"})
#: Request headers worth showing (their values hold nothing secret).
SHOWN_HEADERS = ("Accept", "Content-Type", "Prefer", "X-D4Science-Context")


def configure_logging(verbose: bool) -> None:
    """Errors only (the CLI reports failures itself, in one line), or everything; always on stderr."""
    from airflow.sdk.log import configure_logging as airflow_configure_logging

    # Airflow logs to stdout by default, which would corrupt `--json` output piped to another program.
    airflow_configure_logging(
        log_level="DEBUG" if verbose else "ERROR", output=sys.stderr, colored_console_log=sys.stderr.isatty()
    )


def _form_summary(body: str) -> str:
    fields = parse_qsl(body, keep_blank_values=True)
    return " ".join(f"{name}={value if name in SHOWN_FORM_FIELDS else '***'}" for name, value in fields)


def _body_summary(request: requests.PreparedRequest) -> str:
    body = request.body
    if not body:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return " (streamed body)"
    if request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        return f" form: {_form_summary(body)}"
    # An execution request carries input values, secret ones included: only its size is shown.
    return f" ({len(body)} bytes of {request.headers.get('Content-Type', 'data')})"


def _headers_summary(request: requests.PreparedRequest) -> str:
    shown = [f"{name}: {request.headers[name]}" for name in SHOWN_HEADERS if name in request.headers]
    if "Authorization" in request.headers:
        scheme = str(request.headers["Authorization"]).split(" ", 1)[0]
        shown.append(f"Authorization: {scheme} ***")
    return f" [{'; '.join(shown)}]" if shown else ""


def log_exchange(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A requests response hook: one line for the request, one for the answer."""
    request = response.request
    log.info("> %s %s%s%s", request.method, request.url, _headers_summary(request), _body_summary(request))
    length = response.headers.get("Content-Length", "?")
    kind = response.headers.get("Content-Type", "no content type")
    seconds = response.elapsed.total_seconds()
    # The reason phrase and the content type are the server's words: cleaned like everything the CLI shows.
    reason, length, kind = clean(response.reason), clean(length), clean(kind)
    log.info("< %s %s (%s bytes, %s, %.3f s)", response.status_code, reason, length, kind, seconds)


def trace(session: requests.Session) -> None:
    session.hooks.setdefault("response", []).append(log_exchange)
