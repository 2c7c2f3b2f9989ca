"""A small client for the sandbox's /_sandbox admin API (stdlib only, usable outside pytest)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

from ccp_sandbox.config import TOKEN_PATH


class SandboxAdminError(RuntimeError):
    """The admin API refused a call (e.g. an invalid fault, or a sandbox started without --admin)."""


class SandboxAdmin:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    # -- faults -------------------------------------------------------------------------------

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        """Any fault the admin API knows, e.g. ``add_fault(kind="status", path="/jobs/", status=502)``."""
        return self._call("POST", "/faults", {key: value for key, value in spec.items() if value is not None})

    def fail_next(
        self,
        path: str,
        status: int,
        count: int = 1,
        *,
        method: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path matches the regex ``path`` with ``status``.
        ``body``: "ogc" (default), "empty", "html" or any literal text."""
        self.add_fault(
            kind="status", path=path, status=status, count=count, method=method, retry_after=retry_after, body=body
        )

    def add_latency(self, path: str, seconds: float, count: int = 1, *, method: str | None = None) -> None:
        self.add_fault(kind="latency", path=path, seconds=seconds, count=count, method=method)

    def drop_connection(self, path: str, count: int = 1, *, method: str | None = None) -> None:
        """Hang up on the next matching requests without sending a single byte."""
        self.add_fault(kind="drop", path=path, count=count, method=method)

    def revoke_tokens(self) -> None:
        self._call("POST", "/faults", {"kind": "revoke_tokens"})

    def fail_token_endpoint(self, status: int = 503, count: int = 1) -> None:
        self.fail_next(re.escape(TOKEN_PATH) + "$", status, count, method="POST")

    def hold_jobs(self, method_id: str | None = None, count: int | None = None) -> None:
        """Keep new executions (of ``method_id``, or of any Method) in 'accepted'; ``count=None`` = forever."""
        self.add_fault(kind="hold", method_id=method_id, count=count)

    def corrupt_output(self, mode: str = "truncate", job_id: str | None = None, count: int = 1) -> None:
        """Damage the next output.zip downloads: 'truncate' (short body, then hang-up) or 'corrupt' (garbage)."""
        self.add_fault(kind="corrupt_output", mode=mode, job_id=job_id, count=count)

    def lose_submission_answer(
        self, mode: str = "status", *, status: int = 502, method_id: str | None = None, count: int = 1
    ) -> None:
        """Create the next executions (of ``method_id``, or of any Method), then lose the answer:
        ``mode="status"`` answers ``status`` (a proxy's 502), ``mode="drop"`` hangs up."""
        self.add_fault(kind="lose_answer", mode=mode, status=status, method_id=method_id, count=count)

    def replace_output(self, archive: bytes, job_id: str | None = None, count: int = 1) -> None:
        """Serve ``archive`` (any bytes: a hostile zip, an HTML page) as the next output.zip downloads."""
        encoded = base64.b64encode(archive).decode("ascii")
        self.add_fault(kind="corrupt_output", mode="replace", archive_base64=encoded, job_id=job_id, count=count)

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self._call("GET", "/faults")["faults"]
        return faults

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_job_status(self, style: str) -> None:
        """Answer job statuses as OGC's statusInfo (``"ogc"``) or CCP's documented jobStatus (``"ccp"``)."""
        self._call("PUT", "/job-status", {"style": style})

    def ignore_process_id(self, ignore: bool = True) -> None:
        """Make ``GET /jobs`` list every Method's jobs whatever its ``processID`` filter asks (a server that
        does not filter), or honour the filter again."""
        self._call("PUT", "/ignore-process-id", {"ignore": ignore})

    def reset(self) -> None:
        """Clear faults and counters, restore the configured job-status style and honour ``processID``
        again (tokens and jobs stay)."""
        self._call("POST", "/reset")

    # -- counters -----------------------------------------------------------------------------

    def counters(self) -> dict[str, dict[str, int]]:
        counters: dict[str, dict[str, int]] = self._call("GET", "/counters")
        return counters

    def requests_to(self, method: str, route: str) -> int:
        """Requests seen for a route template, e.g. ``requests_to("GET", "/jobs/{job_id}")``."""
        return self.counters()["requests"].get(f"{method.upper()} {route}", 0)

    def token_grants(self, grant: str) -> int:
        """Tokens issued per grant: "password", "uma-ticket", "client_credentials", "refresh_token"."""
        return self.counters()["token_grants"].get(grant, 0)

    def executions_submitted(self, method_id: str) -> int:
        return self.counters()["executions"].get(method_id, 0)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - always the sandbox's own http:// URL
            f"{self.base_url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise SandboxAdminError(
                f"{method} /_sandbox{path} -> {error.code}: {error.read().decode(errors='replace')}"
            ) from None
