"""Hooks for D4Science CCP: ``CCPHook`` (requests, for workers) and ``CCPAsyncHook`` (httpx or aiohttp, for triggers).

Both are thin transports: URLs, bodies, status words and error mapping come from
``airflow_provider_ccp.protocol``, token flows and the token cache from ``airflow_provider_ccp.auth``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Any

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from airflow_provider_ccp import auth, exchange, protocol, version_compat
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.auth_flows import AuthFlow
from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.connection import CCPConnectionSettings, ServerKind
from airflow_provider_ccp.descriptions import is_ccp_description
from airflow_provider_ccp.exceptions import (
    CCPDownloadError,
    CCPError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    CCPSubmissionLostError,
    recast,
)
from airflow_provider_ccp.exchange import RetryPolicy
from airflow_provider_ccp.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_ccp.hooks._pool import POOLS, Response, _Pool, open_clients
from airflow_provider_ccp.protocol import DismissResult, StatusInfo, SyncResults
from airflow_provider_ccp.waiting import EventStatus, JobWatch, follow

__all__ = ["CCPHook", "CCPAsyncHook", "DownloadedOutputs", "OutputsKind"]

DOWNLOAD_CHUNK = 1024 * 1024
MAX_PAGES = 1000


class OutputsKind(StrEnum):
    """What ``download_outputs`` saved: CCP's ``output.zip``, or an OGC results document."""

    ZIP = "zip"
    JSON = "json"


class _PageWalk:
    """The paging rule of both hooks: follow ``rel=next`` (``protocol.next_link``), each page once, at most
    ``MAX_PAGES``; only the page URLs are kept, whatever the number of items listed."""

    def __init__(self, url: str) -> None:
        self._next: str | None = url
        self._seen: set[str] = set()

    def next_page(self) -> str | None:
        url = self._next
        if url is None or url in self._seen or len(self._seen) >= MAX_PAGES:
            return None
        self._seen.add(url)
        return url

    def read(self, document: Any, key: str) -> list[Mapping[str, Any]]:
        """The items of the page just fetched; remembers where the next one is."""
        page_url = self._next or ""
        self._next = protocol.next_link(document, page_url) if isinstance(document, Mapping) else None
        return protocol.listed_items(document, key)


@dataclass(frozen=True)
class DownloadedOutputs:
    path: Path
    size: int
    url: str
    kind: OutputsKind


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _reason(response: requests.Response | Response) -> str:
    return str(getattr(response, "reason", None) or getattr(response, "reason_phrase", "") or "")


def _failure(error: Any) -> str:
    """A transport failure in a few words: the class name (its text may quote the request)."""
    return str(error) if isinstance(error, exchange.DeadlineExceeded) else type(error).__name__


def _settle(
    answer: exchange.Answer,
    ok: frozenset[int],
    url: str,
    *,
    method_id: str | None = None,
    job_id: str | None = None,
) -> exchange.Answer:
    """The final answer of an exchange when ``ok``, else the mapped error."""
    if answer.status is None:
        failure = _failure(answer.response)
        raise CCPError(f"Could not reach CCP at {url}: {failure}", url=url, method_id=method_id, job_id=job_id)
    if answer.status not in ok:
        raise protocol.error_from_response(
            answer.status, _reason(answer.response), answer.body, url=url, method_id=method_id, job_id=job_id
        )
    return answer


def _token_answer(answer: exchange.Answer, url: str) -> auth.TokenAnswer:
    if answer.status is None:
        raise CCPError(f"Could not reach the token endpoint {url}: {_failure(answer.response)}") from None
    return auth.TokenAnswer(answer.status, answer.body)


def _verify(verify: bool | str) -> bool | str:
    """The CA setting both hooks use: the ``verify`` extra when it names a bundle or is false, whatever
    the environment says; for true, a bundle named by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, as
    requests reads them, else the default one."""
    if verify is not True:
        return verify
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


class _Deadline:
    """The connections one request uses, shut down when its deadline passes.

    requests' timeout bounds each socket read, not the request: an answer dribbled a byte at a time
    never trips it. Shutting the socket down ends whatever read is waiting, headers or body.
    """

    current = threading.local()

    def __init__(self) -> None:
        self.connections: list[HTTPConnection] = []
        #: The sockets answers are read from: a connection forgets its socket when the answer ends with it.
        self.sockets: list[socket.socket] = []
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        sockets = [connection.sock for connection in list(self.connections)] + list(self.sockets)
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @classmethod
    @contextlib.contextmanager
    def watching(cls, seconds: float) -> Iterator[_Deadline]:
        deadline = cls()
        cls.current.deadline = deadline
        timer = threading.Timer(seconds, deadline.expire)
        timer.daemon = True
        timer.start()
        try:
            yield deadline
        finally:
            timer.cancel()
            cls.current.deadline = None


class _WatchedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_Deadline.current, "deadline", None)
        if deadline is not None:
            deadline.connections.append(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        deadline = getattr(_Deadline.current, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.sockets.append(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections a ``_Deadline`` can shut down (direct or through a proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def _read_capped(chunks: Iterator[bytes], url: str) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > exchange.MAX_ANSWER_BYTES:
            raise exchange.too_large(url)
    return bytes(body)


def _send(
    session: requests.Session,
    method: str,
    url: str,
    settings: CCPConnectionSettings,
    *,
    streamed: bool = False,
    **kwargs: Any,
) -> exchange.Answer:
    """One request, never redirected by requests, done within the connection's timeout as a whole.

    The answer is read here (at most ``MAX_ANSWER_BYTES``), except a streamed download's 200, whose
    body the caller streams to disk.
    """
    with _Deadline.watching(settings.timeout) as deadline:
        try:
            response = session.request(
                method,
                url,
                allow_redirects=False,
                stream=True,
                timeout=settings.timeout,
                verify=_verify(settings.verify),
                **kwargs,
            )
            keep_open = streamed and response.status_code == 200
            try:
                body = b"" if keep_open else _read_capped(response.iter_content(DOWNLOAD_CHUNK), url)
            finally:
                if not keep_open:
                    response.close()
        except requests.RequestException as err:
            if deadline.expired:
                return exchange.Answer(None, sent=True, response=exchange.DeadlineExceeded(settings.timeout))
            if exchange.certificate_failure(err):
                raise exchange.certificate_error(url, settings.verify) from None
            return exchange.Answer(None, sent=not _before_sending(err), response=err)
    headers = response.headers
    return exchange.Answer(
        response.status_code, headers.get("Retry-After"), response=response, body=body, location=headers.get("Location")
    )


def _before_sending(error: requests.RequestException) -> bool:
    """The connection failed before the request could leave (refused, unresolvable, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(error, requests.ConnectionError) and isinstance(reason, ConnectTimeoutError)


class _CCPHookBase(BaseHook):
    conn_name_attr = "ccp_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ccp"
    hook_name = "D4Science CCP"

    def __init__(
        self,
        ccp_conn_id: str = default_conn_name,
        retry_limit: int = exchange.DEFAULT_RETRY.limit,
        retry_delay: float = exchange.DEFAULT_RETRY.delay,
        settings: CCPConnectionSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ccp_conn_id = ccp_conn_id
        self.retry = RetryPolicy(limit=retry_limit, delay=retry_delay)
        #: Settings made by the caller (a tool with its own flags): then no Airflow connection is read.
        self._given_settings = settings
        self.clock = clock

    def _exchange(self, method: str, url: str, *, token_request: bool = False) -> exchange.Exchange:
        return exchange.exchange(
            self.retry, method, url, self.clock.monotonic, authenticated=not token_request, idempotent=token_request
        )

    def _renew(self, state: auth.TokenState, step: exchange.Renew, method: str, url: str) -> None:
        state.reject(step.token)
        self.log.info("CCP answered 401 to %s %s: renewing the token and trying once more", method, url)


class CCPHook(_CCPHookBase):
    """Calls CCP (or any OGC API - Processes 1.0 server) with a D4Science token that it gets by itself.

    :param ccp_conn_id: an Airflow connection of type ``ccp`` (see docs/connection.md).
    :param retry_limit: retries of an idempotent request (``RetryPolicy``).
    :param retry_delay: seconds before the first retry, doubled for each next one.
    :param settings: ready ``CCPConnectionSettings`` to use instead of reading the connection
        ``ccp_conn_id`` (which then only names it).
    """

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form on Airflow 3.1 (3.2+ reads ``conn-fields`` from the provider info)."""
        from airflow_provider_ccp.get_provider_info import ui_field_behaviour

        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form on Airflow 3.1, where wtforms is installed."""
        from airflow_provider_ccp.get_provider_info import connection_form_widgets

        return connection_form_widgets()

    @cached_property
    def settings(self) -> CCPConnectionSettings:
        settings = self._given_settings or CCPConnectionSettings.from_connection(self.get_connection(self.ccp_conn_id))
        auth.mask(*settings.secrets)
        return settings

    def _new_session(self) -> requests.Session:
        # No urllib3 retries: the hook's RetryPolicy decides, the same way for both hooks.
        session = requests.Session()
        session.verify = self.settings.verify
        adapter = _DeadlineAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers["User-Agent"] = "airflow-provider-ccp"
        return session

    @cached_property
    def session(self) -> requests.Session:
        return self._new_session()

    @cached_property
    def token_session(self) -> requests.Session:
        """Token requests: their own connections, to the token endpoint's host."""
        return self._new_session()

    def get_conn(self) -> requests.Session:
        return self.session

    @cached_property
    def _token_state(self) -> auth.TokenState:
        return auth.TOKEN_CACHE.state(self.settings)

    # ------------------------------------------------------------------ the one request path

    def _drive(
        self, flow: exchange.Exchange, session: requests.Session, method: str, url: str, **kwargs: Any
    ) -> exchange.Answer:
        """Perform an exchange's steps with requests (``exchange.exchange`` decides, this only does)."""
        headers = dict(kwargs.pop("headers", None) or protocol.JSON_HEADERS)
        settings = self.settings

        def perform(step: exchange.Step) -> Any:
            if isinstance(step, exchange.Send):
                return _send(session, method, step.url, settings, headers=headers | _bearer(step.token), **kwargs)
            if isinstance(step, exchange.NeedToken):
                return self.get_token()
            if step.discarded.response is not None and hasattr(step.discarded.response, "close"):
                step.discarded.response.close()
            if isinstance(step, exchange.Renew):
                self._renew(self._token_state, step, method, url)
            else:
                self.clock.sleep(step.seconds)
            return None

        return exchange.drive(flow, perform)

    def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        answer = self._drive(
            self._exchange("POST", request.url, token_request=True),
            self.token_session,
            "POST",
            request.url,
            data=dict(request.data),
            headers=dict(request.headers),
        )
        return _token_answer(answer, request.url)

    def get_token(self) -> str | None:
        """A context-bound access token (cached per process), or None for ``auth_flow=none``."""
        settings = self.settings
        if settings.auth_flow == AuthFlow.NONE:
            return None
        state = self._token_state
        token = state.usable_token(self.clock.monotonic())
        if token:
            return token
        with state.lock:
            grant = exchange.drive(auth.acquire(settings, state, self.clock.monotonic()), self._post_token)
            held = state.secrets()
        auth.mask(*held)
        return grant.access_token

    def _request(
        self,
        method: str,
        url: str,
        *,
        ok: frozenset[int] = frozenset({200}),
        method_id: str | None = None,
        job_id: str | None = None,
        **kwargs: Any,
    ) -> exchange.Answer:
        """Send with a token, retried by the policy; on 401 renew the token once; map non-``ok`` answers."""
        answer = self._drive(self._exchange(method, url), self.session, method, url, **kwargs)
        return _settle(answer, ok, url, method_id=method_id, job_id=job_id)

    def _get_json(self, url: str, **kwargs: Any) -> Any:
        answer = self._request("GET", url, **kwargs)
        return protocol.decode_json(answer.body, url=url)

    def _pages(self, url: str, key: str, params: Mapping[str, Any] | None = None) -> Iterator[Mapping[str, Any]]:
        walk = _PageWalk(url)
        while (page_url := walk.next_page()) is not None:
            document = self._get_json(page_url, params=params if page_url == url else None)
            yield from walk.read(document, key)

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
        *,
        request_members: Mapping[str, Any] | None = None,
        description: Mapping[str, Any] | None = None,
    ) -> StatusInfo | SyncResults:
        """Start an execution; returns the new job's statusInfo, as ``get_job`` does.

        The job id comes from the ``Location`` header or the statusInfo's ``jobID`` only. A server that
        runs the execution synchronously answers 200 with its results and no job: that answer comes
        back as ``SyncResults``. ``status`` is empty when the answer held none.

        :param request_members: top-level members added to the execute request (e.g. ``subscribers``);
            ``inputs``, ``outputs`` and ``response`` are refused there.
        :param description: the Method's description when the caller has it: on a server that is
            not CCP it gives the types the inputs are sent as (read with ``get_method`` otherwise).

        The POST is never retried once it may have reached the server: a duplicate execution
        costs the user real compute. Only connection failures before sending are retried.
        Bad inputs or request members raise ``CCPInputError`` before anything is sent; a POST that
        may have created an execution although its answer was lost raises ``CCPSubmissionLostError``.
        """
        url = protocol.execution_request_url(self.settings.base_url, method_id)
        typed_by = self.typing_description(method_id, inputs, description)
        body = protocol.execute_body(inputs, outputs, response, typed_by=typed_by, members=request_members)
        try:
            answer = self._request(
                "POST",
                url,
                ok=protocol.SUBMIT_OK_STATUSES,
                method_id=method_id,
                json=body,
                headers=protocol.SUBMIT_HEADERS,
            )
        except CCPError as err:
            if protocol.submission_may_have_landed(err, url):
                raise recast(err, CCPSubmissionLostError) from err.__cause__
            raise
        headers = answer.response.headers
        return protocol.read_submission(
            answer.status or 0, answer.body, headers.get("Location"), headers.get("Content-Type")
        )

    def typing_description(
        self, method_id: str, inputs: Mapping[str, Any], description: Mapping[str, Any] | None = None
    ) -> Mapping[str, Any] | None:
        """The description whose schemas type the inputs, or None when they go as strings (CCP).

        Extra ``server``: ``ccp`` and ``ogc`` decide; ``auto`` takes CCP when the inputs name a CCP
        input (``ccpimage``, ``ccpnote``, ...) or the Method declares ``ccpimage`` (docs/connection.md).
        """
        kind = self.settings.server
        if kind == ServerKind.CCP or not inputs or (kind == ServerKind.AUTO and protocol.names_ccp_input(inputs)):
            return None
        if description is None:
            description = self.get_method(method_id)
        if kind == ServerKind.AUTO and is_ccp_description(description):
            return None
        return description

    def get_job(self, job_id: str) -> StatusInfo:
        url = protocol.job_url(self.settings.base_url, job_id)
        return protocol.read_status(self._request("GET", url, job_id=job_id).body, url=url, job_id=job_id)

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
        check_poll_interval(poll_interval)
        check_number("timeout", timeout, minimum=0, exclusive=True, seconds=True, none_means="wait forever")
        end_time = None if timeout is None else self.clock.time() + timeout
        watch = JobWatch(job_id, poll_interval, end_time, self.log, clock=self.clock)
        event = follow(functools.partial(self.get_job, job_id), watch)
        if event["status"] == EventStatus.TIMEOUT:
            raise CCPJobTimeoutError(event["message"], job_id=job_id)
        if watch.latest is None or not watch.latest.terminal:
            raise watch.error or CCPError(event["message"], job_id=job_id)
        return watch.latest

    def dismiss_job(self, job_id: str) -> DismissResult:
        """Ask the server to cancel (OGC dismiss); 404/405/501 mean it cannot, and are reported so."""
        url = protocol.job_url(self.settings.base_url, job_id)
        answer = self._request("DELETE", url, ok=protocol.DISMISS_ANSWERS, job_id=job_id)
        return protocol.dismiss_outcome(job_id, answer.status or 0, answer.body)

    def list_executions(self, method_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """CCP's execution records (``GET /executions``, every page), newest first, of ``method_id`` only if given.

        Works where ``GET /jobs`` is missing: CCP's own clients list executions this way.
        """
        url = protocol.executions_url(self.settings.base_url)
        records = [dict(item) for item in self._pages(url, "executions", {"limit": limit})]
        if method_id is not None:
            records = [record for record in records if protocol.record_method_id(record) == method_id]
        return protocol.newest_first(records)

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
            answer = self._request("GET", zip_url, job_id=job_id, streamed=True, headers=protocol.OUTPUT_ZIP_HEADERS)
            kind = OutputsKind.ZIP
        except CCPNotFoundError:
            results_url = protocol.job_results_url(base, job_id)
            answer = self._request("GET", results_url, job_id=job_id, streamed=True, headers=protocol.RESULTS_HEADERS)
            zip_url, kind = results_url, OutputsKind.JSON
        response: requests.Response = answer.response
        if target.is_dir():
            target = target / ("output.zip" if kind == OutputsKind.ZIP else "results.json")
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


class CCPAsyncHook(_CCPHookBase):
    """The async twin of ``CCPHook`` for triggers: no blocking call ever runs on the event loop.

    Use it as ``async with CCPAsyncHook(conn_id) as hook:``: every hook of the same connection on the
    same event loop shares one HTTP client (a bounded connection pool, extra ``max_connections``),
    closed when the last of them exits. Tokens come from the same per-process cache as the sync hook.
    """

    def __init__(self, ccp_conn_id: str = _CCPHookBase.default_conn_name, **kwargs: Any) -> None:
        super().__init__(ccp_conn_id, **kwargs)
        self._settings: CCPConnectionSettings | None = None
        # Hooks share a pool by connection id; hooks given their own settings share it only with their twins.
        given = self._given_settings
        self._pool_key = ccp_conn_id if given is None else f"{ccp_conn_id}\x00{hash(given)}"
        self._extra: Mapping[str, Any] = {}
        self._pool: _Pool | None = None
        self._shared = False
        #: The last statusInfo read and its bytes: a trigger's polls mostly get the same answer, parsed once.
        self._last_status: tuple[tuple[str, bytes], StatusInfo] | None = None

    async def get_settings(self) -> CCPConnectionSettings:
        if self._settings is None and self._given_settings is not None:
            self._settings = self._given_settings
            await auth.amask(*self._settings.secrets)
        if self._settings is None:
            conn, self._extra = await version_compat.read_async_connection(self.ccp_conn_id, self)
            self._settings = CCPConnectionSettings.from_connection(conn, self._extra)
            await auth.amask(*self._settings.secrets)
        return self._settings

    async def __aenter__(self) -> CCPAsyncHook:
        if self._pool is None:
            self._pool = await POOLS.acquire(self._pool_key, self._open_pool)
            self._settings = self._pool.settings
            self._shared = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if self._shared:
            self._shared = False
            await POOLS.release(self._pool_key)
        elif pool is not None:
            await pool.clients.aclose()

    async def _open_pool(self) -> _Pool:
        settings = await self.get_settings()
        clients = await open_clients(settings, self._extra, _verify(settings.verify))
        return _Pool(settings, clients, auth.TOKEN_CACHE.state(settings))

    async def _get_pool(self) -> _Pool:
        """Outside ``async with``: clients of this hook's own, closed by ``aclose()``."""
        if self._pool is None:
            self._pool = await self._open_pool()
        return self._pool

    async def _drive(
        self,
        flow: exchange.Exchange,
        method: str,
        url: str,
        *,
        data: Any = None,
        headers: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> exchange.Answer:
        """Perform an exchange's steps with the pool's transport (``exchange.exchange`` decides, this only does)."""
        pool = await self._get_pool()
        headers = dict(headers or protocol.JSON_HEADERS)

        async def perform(step: exchange.Step) -> Any:
            if isinstance(step, exchange.Send):
                sending = headers | _bearer(step.token)
                return await pool.clients.send(method, step.url, sending, data=data, params=params)
            if isinstance(step, exchange.NeedToken):
                return await self.get_token()
            if isinstance(step, exchange.Renew):
                self._renew(pool.token_state, step, method, url)
            else:
                await self.clock.asleep(step.seconds)
            return None

        return await exchange.adrive(flow, perform)

    async def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        flow = self._exchange("POST", request.url, token_request=True)
        answer = await self._drive(flow, "POST", request.url, data=dict(request.data), headers=dict(request.headers))
        return _token_answer(answer, request.url)

    async def get_token(self) -> str | None:
        settings = await self.get_settings()
        if settings.auth_flow == AuthFlow.NONE:
            return None
        state = (await self._get_pool()).token_state
        token = state.usable_token(self.clock.monotonic())
        if token:
            return token
        async with state.async_lock(), auth.holding(state.lock):
            grant = await exchange.adrive(auth.acquire(settings, state, self.clock.monotonic()), self._post_token)
            held = state.secrets()
        await auth.amask(*held)
        return grant.access_token

    async def _request(
        self,
        method: str,
        url: str,
        *,
        ok: frozenset[int] = frozenset({200}),
        job_id: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> exchange.Answer:
        answer = await self._drive(self._exchange(method, url), method, url, params=params)
        return _settle(answer, ok, url, job_id=job_id)

    async def _pages(
        self, url: str, key: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Mapping[str, Any]]:
        """The items of a paged list, one page in memory at a time."""
        walk = _PageWalk(url)
        while (page_url := walk.next_page()) is not None:
            answer = await self._request("GET", page_url, params=params if page_url == url else None)
            for item in walk.read(protocol.decode_json(answer.body, url=page_url), key):
                yield item

    async def iter_jobs(self, method_id: str | None = None, limit: int = 100) -> AsyncIterator[StatusInfo]:
        """Every job (``GET /jobs``, every page) the context can see, of ``method_id`` only if given.

        The server is asked to filter by Method (``processID``); a job naming another Method is left out
        here too, in case it does not.
        """
        params: dict[str, Any] = {"limit": limit}
        if method_id:
            params["processID"] = method_id
        async for item in self._pages(protocol.jobs_url((await self.get_settings()).base_url), "jobs", params):
            job = StatusInfo.from_json(item)
            if method_id is None or job.process_id in (None, method_id):
                yield job

    async def execution_link(self, job_id: str) -> str:
        """Where a person looks at the execution: CCP's UI when the connection names one, else the job's URL."""
        settings = await self.get_settings()
        return protocol.ui_execution_url(settings.ui_url, job_id) or protocol.job_url(settings.base_url, job_id)

    async def get_job(self, job_id: str) -> StatusInfo:
        url = protocol.job_url((await self.get_settings()).base_url, job_id)
        body = (await self._request("GET", url, job_id=job_id)).body
        last = self._last_status
        if last is not None and last[0] == (job_id, body):  # a job that did not change since the last poll
            return last[1]
        info = protocol.read_status(body, url=url, job_id=job_id)
        self._last_status = ((job_id, body), info)
        return info

    async def dismiss_job(self, job_id: str) -> DismissResult:
        url = protocol.job_url((await self.get_settings()).base_url, job_id)
        answer = await self._request("DELETE", url, ok=protocol.DISMISS_ANSWERS, job_id=job_id)
        return protocol.dismiss_outcome(job_id, answer.status or 0, answer.body)
