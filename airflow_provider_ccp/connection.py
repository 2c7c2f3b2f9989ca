"""The ``ccp`` connection: its fields, defaults and validation (docs/connection.md describes them)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_ccp import connection_fields as declared
from airflow_provider_ccp.connection_fields import AuthFlow, ServerKind
from airflow_provider_ccp.exceptions import CCPConfigError
from airflow_provider_ccp.version_compat import AirflowNotFoundException

__all__ = ["CCPConnectionSettings", "known_connection", "ServerKind"]

Choice = TypeVar("Choice", bound=StrEnum)


def _extra(extra: Mapping[str, Any], name: str) -> Any:
    """Read an extra by its bare name or by the ``extra__ccp__`` name older UI forms store."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__ccp__{name}")
    return None if value == "" else value


def _choice(extra: Mapping[str, Any], name: str, kind: type[Choice], default: str) -> Choice:
    value = _extra(extra, name)
    try:
        return kind(str(value or default).strip().lower())
    except ValueError:
        raise CCPConfigError(f"Connection extra {name!r} is {value!r}; expected one of {', '.join(kind)}") from None


def _verify(value: Any) -> bool | str:
    if value is None or isinstance(value, bool):
        return value is not False  # unset: verify
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    if not os.path.exists(os.path.expanduser(text)):
        # Else requests and aiohttp fail at the first call, reported as if CCP could not be reached.
        raise CCPConfigError(
            f"Connection extra 'verify' is {text!r}, which does not exist; expected true, false or the path "
            "of a CA bundle file (or folder) on the machine running the task and the triggerer"
        )
    return os.path.expanduser(text)  # a CA bundle path


def _number(extra: Mapping[str, Any], name: str, default: float, expected: str, *, zero: bool = False) -> float:
    """A finite number above 0 (or 0 too, when ``zero``), ``default`` when the extra is unset."""
    value = _extra(extra, name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise CCPConfigError(f"Connection extra {name!r} is {value!r}; expected {expected}")
    return number


def _pool_size(value: Any) -> int:
    if value is None:
        return declared.POOL_CONNECTIONS
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1 or str(size) != str(value).strip():
        raise CCPConfigError(f"Connection extra 'max_connections' is {value!r}; expected a whole number of at least 1")
    return size


def _extra_document(text: str | None) -> None:
    """Refuse an ``extra`` that is not a JSON object: Airflow would log it and read it as ``{}``,
    and the task would then fail asking for fields that are in fact there."""
    if not text:
        return
    try:
        document = json.loads(text)
    except ValueError as err:  # the message locates the error without quoting the text (it may hold secrets)
        raise CCPConfigError(f"Connection field 'extra' is not valid JSON ({err}); expected a JSON object") from None
    if not isinstance(document, dict):
        raise CCPConfigError(f"Connection field 'extra' is a JSON {type(document).__name__}; expected a JSON object")


@contextlib.contextmanager
def known_connection(conn_id: str) -> Iterator[None]:
    """Around reading the connection ``conn_id``: Airflow's "isn't defined" (which any retry would meet
    again) becomes a ``CCPConfigError`` that names the id."""
    try:
        yield
    except AirflowNotFoundException:
        # Airflow 3.1 also says so of a connection whose ``extra`` it refused to load: the variable tells.
        extra = None
        with contextlib.suppress(ValueError, AttributeError):  # not there, or a URI: nothing more to tell
            extra = json.loads(os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "")).get("extra")
        _extra_document(extra if isinstance(extra, str) else None)
        raise CCPConfigError(
            f"Connection {conn_id!r} (ccp_conn_id) is not defined; expected the id of a ccp connection made in "
            f"Admin > Connections, as AIRFLOW_CONN_{conn_id.upper()} or in a secrets backend"
        ) from None


def _without_credentials(field_name: str, url: str) -> str:
    """Refuse a URL with user info (``https://user:password@host``), never repeating it: the password
    would be in every message naming the URL. The connection has fields for credentials."""
    if "@" in urlsplit(url).netloc:
        raise CCPConfigError(
            f"Connection {field_name} holds a user name or password ('user:password@'); expected the URL "
            "without them: put the user in the connection's login and the password in its password field"
        )
    return url


def _host_error(problem: str, expected: str = "an http:// or https:// URL") -> CCPConfigError:
    return CCPConfigError(f"Connection field 'host' {problem}; expected {expected}, e.g. {declared.DEFAULT_HOST}")


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    host = (host or "").strip().rstrip("/")
    if not host:
        # No default: a CCP the task never named would be called, and its "cannot reach" retried.
        raise _host_error("is empty", "the CCP URL")
    named = host
    if "://" not in host:
        host = f"{schema or 'https'}://{host}"
    parts = urlsplit(_without_credentials("field 'host'", host))
    if not schema and "://" not in named:
        # Guessing https for "ccp.example.org:8080" meets a plain-HTTP port with TLS: an SSL error, retried.
        raise _host_error(f"is {named!r}, without a scheme")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        # Else requests answers "InvalidSchema" at the first call, which reads like a network failure.
        raise _host_error(f"is {host!r}")
    if parts.query or parts.fragment or host.endswith(("?", "#")):
        raise _host_error(f"is {host!r}", "the CCP URL without a query string or fragment")
    if port and parts.port is None:
        # The port belongs to the authority: a host given with a path (https://x.org/ccp) keeps its path.
        host = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
    return host


@dataclass(frozen=True)
class CCPConnectionSettings:
    """Everything a transport needs from an Airflow connection, validated once."""

    base_url: str
    token_url: str
    auth_flow: AuthFlow
    client_id: str | None
    context: str | None
    user: str | None
    secret: str | None = field(repr=False)  # password, refresh token or bearer token, by auth_flow
    client_secret: str | None = field(repr=False)
    verify: bool | str = True
    timeout: float = declared.DEFAULT_TIMEOUT
    min_download_rate: float = declared.DEFAULT_MIN_DOWNLOAD_RATE
    ui_url: str | None = None
    #: ``ccp`` sends every input value as a string; ``ogc`` as its schema's type; ``auto`` decides per Method.
    server: ServerKind = ServerKind.AUTO
    #: The triggerer's pool size for this connection: checked with the rest, before a task sends anything.
    max_connections: int = declared.POOL_CONNECTIONS

    @classmethod
    def from_fields(
        cls,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any],
        schema: str | None = None,
        port: int | None = None,
    ) -> CCPConnectionSettings:
        token_url = _extra(extra, declared.TOKEN_ENDPOINT_FIELD) or _extra(extra, declared.LEGACY_TOKEN_ENDPOINT_FIELD)
        ui_url = _extra(extra, "ui_url")
        settings = cls(
            base_url=_base_url(host, schema, port),
            token_url=_without_credentials(
                f"extra {declared.TOKEN_ENDPOINT_FIELD!r}", str(token_url or declared.DEFAULT_TOKEN_URL)
            ),
            auth_flow=_choice(extra, "auth_flow", AuthFlow, declared.DEFAULT_AUTH_FLOW),
            client_id=_extra(extra, "client_id"),
            context=_extra(extra, "context"),
            user=login or None,
            secret=password or None,
            client_secret=_extra(extra, "client_secret"),
            verify=_verify(_extra(extra, "verify")),
            timeout=_number(extra, "timeout", declared.DEFAULT_TIMEOUT, "a positive number of seconds"),
            min_download_rate=_number(
                extra,
                "min_download_rate",
                declared.DEFAULT_MIN_DOWNLOAD_RATE,
                "a number of bytes per second, 0 or more (0: any byte within each timeout will do)",
                zero=True,
            ),
            ui_url=_without_credentials("extra 'ui_url'", str(ui_url).rstrip("/")) if ui_url else None,
            server=_choice(extra, "server", ServerKind, ServerKind.AUTO),
            max_connections=_pool_size(_extra(extra, "max_connections")),
        )
        settings.check()
        return settings

    @classmethod
    def from_connection(cls, conn: Any, extra: Mapping[str, Any] | None = None) -> CCPConnectionSettings:
        """From an ``airflow.sdk.Connection``; pass ``extra`` when it was read asynchronously."""
        _extra_document(conn.extra if isinstance(conn.extra, str) else None)
        return cls.from_fields(
            host=conn.host,
            login=conn.login,
            password=conn.password,
            extra=extra if extra is not None else conn.extra_dejson,
            schema=conn.schema,
            port=conn.port,
        )

    def check(self) -> None:
        """Fail early, naming the missing field, instead of at the first token request."""
        needs = declared.AUTH_FLOW_NEEDS[self.auth_flow]
        labels = {spec.setting: spec.needed_as for spec in declared.FIELDS if spec.setting and spec.needed_as}
        if needs.password:
            labels["secret"] += f" ({needs.password})"
        missing = [labels[name] for name in needs.fields if not getattr(self, name)]
        if missing:
            raise CCPConfigError(f"The CCP connection (auth_flow={self.auth_flow}) needs: {'; '.join(missing)}")
        if self.context is not None and not self.context.startswith("/"):
            raise CCPConfigError(
                f"Connection extra 'context' is {self.context!r}; expected a VRE path starting with '/', "
                f"e.g. {declared.CONTEXT_EXAMPLE}"
            )

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.secret, self.client_secret) if s)

    @property
    def cache_key(self) -> str:
        """Identifies one set of credentials: a changed password or context gets a fresh token cache."""
        parts = (
            self.token_url,
            self.auth_flow,
            self.client_id,
            self.user,
            self.context,
            self.secret,
            self.client_secret,
        )
        return hashlib.sha256("\x00".join(part or "" for part in parts).encode()).hexdigest()
