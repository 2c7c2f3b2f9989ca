"""Hooks for D4Science CCP: ``CCPHook`` (requests, for workers) and ``CCPAsyncHook`` (httpx, for triggers).

Both are thin transports: URLs, bodies, status words and error mapping come from
``airflow_provider_ccp.protocol``, token flows and the token cache from ``airflow_provider_ccp.auth``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import requests
import tenacity
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from airflow_provider_ccp import auth, protocol
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import (
    CCPDownloadError,
    CCPError,
    CCPJobTimeoutError,
    CCPNotFoundError,
)
from airflow_provider_ccp.protocol import DismissResult, StatusInfo
from airflow_provider_ccp.waiting import JobWatch

#: Bounds for retrying idempotent calls: attempts, backoff and the longest Retry-After we honour.
RETRY_ATTEMPTS = 5
RETRY_BACKOFF = 0.5
RETRY_BACKOFF_MAX = 20.0
RETRY_AFTER_CAP = 60.0
RETRY_TOTAL_SECONDS = 180.0
DOWNLOAD_CHUNK = 1024 * 1024
MAX_PAGES = 1000


@dataclass(frozen=True)
class DownloadedOutputs:
    path: Path
    size: int
    url: str
    kind: str  # "zip" (CCP's output.zip) or "json" (an OGC results document)


class _CappedRetry(Retry):
    """urllib3's Retry, but a server's Retry-After cannot park a worker for an hour."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, RETRY_AFTER_CAP)


def _retry(methods: frozenset[str]) -> Retry:
    return _CappedRetry(
        total=RETRY_ATTEMPTS,
        connect=RETRY_ATTEMPTS,
        read=RETRY_ATTEMPTS,
        status=RETRY_ATTEMPTS,
        other=0,
        backoff_factor=RETRY_BACKOFF,
        backoff_max=RETRY_BACKOFF_MAX,
        backoff_jitter=RETRY_BACKOFF,
        status_forcelist=protocol.RETRYABLE_STATUSES,
        allowed_methods=methods,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _reason(response: requests.Response | httpx.Response) -> str:
    return str(getattr(response, "reason", None) or getattr(response, "reason_phrase", "") or "")


class _CCPHookBase(BaseHook):
    conn_name_attr = "ccp_conn_id"
    default_conn_name = "ccp_default"
    conn_type = "ccp"
    hook_name = "D4Science CCP"

    def __init__(self, ccp_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ccp_conn_id = ccp_conn_id


class CCPHook(_CCPHookBase):
    """Calls CCP (or any OGC API - Processes 1.0 server) with a D4Science token that it gets by itself.

    :param ccp_conn_id: an Airflow connection of type ``ccp`` (see docs/connection.md).
    """

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form on Airflow 3.1 (3.2+ reads ``conn-fields`` from the provider info)."""
        from airflow_provider_ccp import ui_field_behaviour

        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form on Airflow 3.1, where wtforms is installed."""
        from airflow_provider_ccp import connection_form_widgets

        return connection_form_widgets()

    @cached_property
    def settings(self) -> CCPConnectionSettings:
        settings = CCPConnectionSettings.from_connection(self.get_connection(self.ccp_conn_id))
        auth.mask(*settings.secrets)
        return settings

    def _new_session(self, retried_methods: frozenset[str]) -> requests.Session:
        session = requests.Session()
        session.verify = self.settings.verify
        session.headers["User-Agent"] = "airflow-provider-ccp"
        for scheme in ("http://", "https://"):
            session.mount(scheme, HTTPAdapter(max_retries=_retry(retried_methods)))
        return session

    @cached_property
    def session(self) -> requests.Session:
        """CCP calls: GET and DELETE are retried, the execution POST never is once it may have been sent."""
        return self._new_session(frozenset({"GET", "DELETE", "HEAD"}))

    @cached_property
    def token_session(self) -> requests.Session:
        """Token requests: a grant is safe to repeat, so POST is retried here (and only here)."""
        return self._new_session(frozenset({"POST"}))

    def get_conn(self) -> requests.Session:
        return self.session

    # ------------------------------------------------------------------ tokens

    def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        try:
            response = self.token_session.post(
                request.url,
                data=dict(request.data),
                headers=dict(request.headers),
                timeout=self.settings.timeout,
            )
        except requests.RequestException as err:
            raise CCPError(f"Could not reach the token endpoint {request.url}: {type(err).__name__}") from None
        return auth.TokenAnswer(response.status_code, response.content)

    def get_token(self) -> str | None:
        """A context-bound access token (cached per process), or None for ``auth_flow=none``."""
        settings = self.settings
        if settings.auth_flow == "none":
            return None
        state = auth.TOKEN_CACHE.state(settings)
        token = state.usable_token(time.monotonic())
        if token:
            return token
        with state.lock:
            grant = auth.drive(auth.acquire(settings, state, time.monotonic()), self._post_token)
            held = state.secrets()
        auth.mask(*held)
        return grant.access_token

    # ------------------------------------------------------------------ the one request path

    def _request(
        self,
        method: str,
        url: str,
        *,
        ok: frozenset[int] = frozenset({200}),
        method_id: str | None = None,
        job_id: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send with a token; on 401 renew the token once and resend; map non-``ok`` answers to errors."""
        headers = dict(kwargs.pop("headers", None) or protocol.JSON_HEADERS)
        kwargs.setdefault("timeout", self.settings.timeout)
        for attempt in (1, 2):
            token = self.get_token()
            try:
                response = self.session.request(method, url, headers=headers | _bearer(token), **kwargs)
            except requests.RequestException as err:
                raise CCPError(
                    f"Could not reach CCP at {url}: {type(err).__name__}",
                    url=url,
                    method_id=method_id,
                    job_id=job_id,
                ) from None
            if response.status_code == 401 and token and attempt == 1:
                response.close()
                auth.TOKEN_CACHE.state(self.settings).reject(token)
                self.log.info("CCP answered 401 to %s %s: renewing the token and trying once more", method, url)
                continue
            break
        if response.status_code not in ok:
            body = response.content
            raise protocol.error_from_response(
                response.status_code, _reason(response), body, url=url, method_id=method_id, job_id=job_id
            )
        return response

    def _get_json(self, url: str, **kwargs: Any) -> Any:
        response = self._request("GET", url, **kwargs)
        return protocol.decode_json(response.content, url=url)

    def _pages(self, url: str, key: str, params: Mapping[str, Any] | None = None) -> Iterator[Mapping[str, Any]]:
        seen: set[str] = set()
        next_url: str | None = url
        while next_url and next_url not in seen and len(seen) < MAX_PAGES:
            seen.add(next_url)
            document = self._get_json(next_url, params=params if next_url == url else None)
            yield from protocol.listed_items(document, key)
            next_url = protocol.next_link(document, next_url) if isinstance(document, Mapping) else None

    # ------------------------------------------------------------------ Methods

    def list_methods(self, limit: int = 100) -> list[dict[str, Any]]:
        """Every Method (process summary) the connection's context can see, across all pages."""
        url = protocol.processes_url(self.settings.base_url)
        return [dict(item) for item in self._pages(url, "processes", {"limit": limit})]

    def get_method(self, method_id: str) -> dict[str, Any]:
        """The Method's description (CCP's method.json: inputs, outputs, scripts, ...)."""
        url = protocol.process_url(self.settings.base_url, method_id)
        description = self._get_json(url, method_id=method_id)
        if not isinstance(description, dict):
            raise CCPError(f"The description of Method {method_id!r} at {url} is not a JSON object", url=url)
        return description

    # ------------------------------------------------------------------ executions and jobs

    def submit_execution(
        self,
        method_id: str,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any] | None = None,
        response: str = "raw",
    ) -> dict[str, Any]:
        """Start an execution; returns its statusInfo with ``jobID`` always set.

        The POST is never retried once it may have reached the server: a duplicate execution
        costs the user real compute. Only connection failures before sending are retried.
        """
        url = protocol.execution_request_url(self.settings.base_url, method_id)
        body = protocol.execute_body(inputs, outputs, response)
        answer = self._request(
            "POST",
            url,
            ok=protocol.SUBMIT_OK_STATUSES,
            method_id=method_id,
            json=body,
            headers=protocol.SUBMIT_HEADERS,
        )
        try:
            document = answer.json()
        except ValueError:
            document = {}
        status = dict(document) if isinstance(document, Mapping) else {}
        status["jobID"] = protocol.job_id_from_submission(status, answer.headers.get("Location"))
        status.setdefault("status", "accepted")
        return status

    def get_job(self, job_id: str) -> StatusInfo:
        url = protocol.job_url(self.settings.base_url, job_id)
        return StatusInfo.from_json(self._get_json(url, job_id=job_id))

    def list_jobs(self, status: str | None = None, method_id: str | None = None, limit: int = 100) -> list[StatusInfo]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if method_id:
            params["processID"] = method_id
        url = protocol.jobs_url(self.settings.base_url)
        return [StatusInfo.from_json(item) for item in self._pages(url, "jobs", params)]

    def wait_for_job(self, job_id: str, poll_interval: float = 30.0, timeout: float | None = None) -> StatusInfo:
        """Poll until the job is terminal, riding out transient errors like the trigger does.

        Raises ``CCPJobTimeoutError`` after ``timeout`` seconds, and the last error when polling gives up.
        """
        watch = JobWatch(job_id, poll_interval, None if timeout is None else time.time() + timeout, self.log)
        while True:
            try:
                status = self.get_job(job_id)
            except CCPError as err:
                event = watch.on_error(err)
                if event is not None and event["status"] == "error":
                    raise
            else:
                event = watch.on_status(status)
                if status.terminal:
                    return status
            if event is not None:
                raise CCPJobTimeoutError(event["message"], job_id=job_id)
            time.sleep(watch.next_delay())

    def dismiss_job(self, job_id: str) -> DismissResult:
        """Ask the server to cancel (OGC dismiss); 404/405/501 mean it cannot, and are reported so."""
        url = protocol.job_url(self.settings.base_url, job_id)
        response = self._request("DELETE", url, ok=protocol.DISMISS_ANSWERS, job_id=job_id)
        return protocol.dismiss_outcome(job_id, response.status_code, response.content)

    def list_executions(self) -> list[dict[str, Any]]:
        document = self._get_json(protocol.executions_url(self.settings.base_url))
        return [dict(item) for item in protocol.listed_items(document, "executions")]

    def find_execution(self, marker: str) -> str | None:
        """The job id of the execution whose request carries ``marker`` in its ``ccpnote``, or None.

        Reads CCP's execution records (``GET /executions``, every page) and stops at the first match:
        a marker is unique. Raises ``CCPError`` when the list cannot be read.
        """
        url = protocol.executions_url(self.settings.base_url)
        for record in self._pages(url, "executions", {"limit": 100}):
            if protocol.record_carries_marker(record, marker):
                return protocol.record_job_id(record)
        return None

    def get_execution(self, job_id: str) -> dict[str, Any]:
        """CCP's execution record (``/executions/{id}``): request, Method, status, timestamps."""
        url = protocol.execution_url(self.settings.base_url, job_id)
        record = self._get_json(url, job_id=job_id)
        return dict(record) if isinstance(record, Mapping) else {"record": record}

    # ------------------------------------------------------------------ outputs

    def download_outputs(
        self,
        job_id: str,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> DownloadedOutputs:
        """Stream the job's outputs to ``destination`` (a file, or a folder to put ``output.zip`` in).

        CCP serves ``/executions/{id}/outputs/output.zip``; a plain OGC server only has
        ``/jobs/{id}/results``, saved as ``results.json``. Memory use is one chunk whatever the size,
        the byte count is checked against Content-Length, and the file appears only when complete.
        """
        base = self.settings.base_url
        target = Path(destination)
        zip_url = protocol.output_zip_url(base, job_id)
        try:
            response = self._request("GET", zip_url, job_id=job_id, stream=True, headers=protocol.OUTPUT_ZIP_HEADERS)
            kind = "zip"
        except CCPNotFoundError:
            results_url = protocol.job_results_url(base, job_id)
            response = self._request("GET", results_url, job_id=job_id, stream=True, headers=protocol.RESULTS_HEADERS)
            zip_url, kind = results_url, "json"
        if target.is_dir():
            target = target / ("output.zip" if kind == "zip" else "results.json")
        with response:
            size = _stream_to_file(response, target, zip_url, job_id, progress)
        return DownloadedOutputs(path=target, size=size, url=zip_url, kind=kind)

    # ------------------------------------------------------------------ Airflow UI

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: get a token and list one Method."""
        try:
            settings = self.settings
            self.get_token()
            url = protocol.processes_url(settings.base_url)
            self._get_json(url, params={"limit": 1})
        except CCPError as err:
            return False, str(err)
        context = f" in context {settings.context}" if settings.context else ""
        return True, f"Connected to CCP at {settings.base_url}{context} (auth_flow={settings.auth_flow})"


def _stream_to_file(
    response: requests.Response,
    target: Path,
    url: str,
    job_id: str,
    progress: Callable[[int, int | None], None] | None,
) -> int:
    expected = response.headers.get("Content-Length")
    total = int(expected) if expected and expected.isdigit() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_content(DOWNLOAD_CHUNK):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, total)
            out.flush()
            os.fsync(out.fileno())  # the rename below must never publish a file whose bytes are not on disk
        # Content-Length counts the bytes on the wire: compare it with those, not with decoded bytes.
        received = response.raw.tell() if response.raw is not None else written
        if total is not None and received != total:
            raise CCPDownloadError(
                f"The download of {url} ended after {received} of {total} bytes", url=url, job_id=job_id
            )
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; the outputs are meant to be read by others
        os.replace(temp_name, target)
    except requests.RequestException as err:
        Path(temp_name).unlink(missing_ok=True)
        raise CCPDownloadError(
            f"The download of {url} broke after {written} bytes: {type(err).__name__}", url=url, job_id=job_id
        ) from None
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return written


class _RetryableAnswer(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _RetryableAnswer | httpx.TransportError)


def _wait(retry_state: tenacity.RetryCallState) -> float:
    """Honour Retry-After when the server sent one, else exponential backoff with jitter."""
    error = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(error, _RetryableAnswer):
        seconds = protocol.retry_after_seconds(error.response.headers.get("Retry-After"), RETRY_AFTER_CAP)
        if seconds is not None:
            return seconds
    backoff = tenacity.wait_exponential_jitter(initial=RETRY_BACKOFF, max=RETRY_BACKOFF_MAX, jitter=RETRY_BACKOFF)
    return float(backoff(retry_state))


@functools.lru_cache(maxsize=8)
def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """One SSL context per ``verify`` setting and process, shared by every async client.

    httpx otherwise builds a context per client, reading the whole CA bundle: about 30 ms of
    blocking work each time, which a triggerer running many CCP triggers would pay on its event loop.
    """
    if isinstance(verify, str):
        # A CA bundle file or a c_rehash'ed folder; httpx deprecates taking the path itself.
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


class CCPAsyncHook(_CCPHookBase):
    """The async twin of ``CCPHook`` for triggers: no blocking call ever runs on the event loop.

    Use it as ``async with CCPAsyncHook(conn_id) as hook:`` (one HTTP client per trigger run).
    Tokens come from the same per-process cache as the sync hook.
    """

    def __init__(self, ccp_conn_id: str = _CCPHookBase.default_conn_name, **kwargs: Any) -> None:
        super().__init__(ccp_conn_id, **kwargs)
        self._settings: CCPConnectionSettings | None = None
        self._client: httpx.AsyncClient | None = None

    async def get_settings(self) -> CCPConnectionSettings:
        if self._settings is None:
            from airflow.providers.common.compat.connection import (
                get_async_connection,
                get_async_extra_dejson,
            )

            conn = await get_async_connection(self.ccp_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            self._settings = CCPConnectionSettings.from_connection(conn, extra)
            await auth.amask(*self._settings.secrets)
        return self._settings

    async def __aenter__(self) -> CCPAsyncHook:
        await self._get_client()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            settings = await self.get_settings()
            verify = await asyncio.to_thread(_ssl_context, settings.verify)
            self._client = httpx.AsyncClient(
                verify=verify,
                timeout=settings.timeout,
                headers={"User-Agent": "airflow-provider-ccp"},
            )
        return self._client

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One exchange, retried with tenacity: the async hook only sends GET, DELETE and token grants."""
        client = await self._get_client()
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=_wait,
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS + 1) | tenacity.stop_after_delay(RETRY_TOTAL_SECONDS),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await client.request(method, url, **kwargs)
                    if response.status_code in protocol.RETRYABLE_STATUSES:
                        raise _RetryableAnswer(response)
        except _RetryableAnswer as exhausted:
            return exhausted.response
        return response

    async def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        try:
            response = await self._send("POST", request.url, data=dict(request.data), headers=dict(request.headers))
        except httpx.HTTPError as err:
            raise CCPError(f"Could not reach the token endpoint {request.url}: {type(err).__name__}") from None
        return auth.TokenAnswer(response.status_code, response.content)

    async def get_token(self) -> str | None:
        settings = await self.get_settings()
        if settings.auth_flow == "none":
            return None
        state = auth.TOKEN_CACHE.state(settings)
        token = state.usable_token(time.monotonic())
        if token:
            return token
        async with state.async_lock():
            grant = await auth.adrive(auth.acquire(settings, state, time.monotonic()), self._post_token)
            held = state.secrets()
        await auth.amask(*held)
        return grant.access_token

    async def _request(
        self, method: str, url: str, *, ok: frozenset[int] = frozenset({200}), job_id: str | None = None
    ) -> httpx.Response:
        settings = await self.get_settings()
        for attempt in (1, 2):
            token = await self.get_token()
            try:
                response = await self._send(method, url, headers=dict(protocol.JSON_HEADERS) | _bearer(token))
            except httpx.HTTPError as err:
                raise CCPError(f"Could not reach CCP at {url}: {type(err).__name__}", url=url, job_id=job_id) from None
            if response.status_code == 401 and token and attempt == 1:
                auth.TOKEN_CACHE.state(settings).reject(token)
                self.log.info("CCP answered 401 to %s %s: renewing the token and trying once more", method, url)
                continue
            break
        if response.status_code not in ok:
            raise protocol.error_from_response(
                response.status_code, _reason(response), response.content, url=url, job_id=job_id
            )
        return response

    async def get_job(self, job_id: str) -> StatusInfo:
        url = protocol.job_url((await self.get_settings()).base_url, job_id)
        response = await self._request("GET", url, job_id=job_id)
        return StatusInfo.from_json(protocol.decode_json(response.content, url=url))

    async def dismiss_job(self, job_id: str) -> DismissResult:
        url = protocol.job_url((await self.get_settings()).base_url, job_id)
        response = await self._request("DELETE", url, ok=protocol.DISMISS_ANSWERS, job_id=job_id)
        return protocol.dismiss_outcome(job_id, response.status_code, response.content)
