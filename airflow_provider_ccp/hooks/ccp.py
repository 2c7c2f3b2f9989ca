"""Hooks for D4Science CCP: ``CCPHook`` (requests, for workers) and ``CCPAsyncHook`` (aiohttp, for triggers).

Both only perform what ``operations``, ``protocol``, ``exchange`` and ``auth`` decide; what they share is in
``hooks/_base.py``, their sockets in ``hooks/_requests.py`` and ``hooks/_pool.py``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import requests

from airflow_provider_ccp import auth, exchange, execution_records, links, masking, operations, protocol, version_compat
from airflow_provider_ccp.arguments import check_number, check_poll_interval
from airflow_provider_ccp.connection import CCPConnectionSettings, known_connection
from airflow_provider_ccp.connection_fields import AuthFlow
from airflow_provider_ccp.exceptions import (
    CCPError,
    CCPJobTimeoutError,
    CCPNotFoundError,
    CCPSubmissionLostError,
    recast,
)
from airflow_provider_ccp.hooks._base import CCPHookBase, bearer, settle, token_answer, verify_setting
from airflow_provider_ccp.hooks._pool import POOLS, _Pool, open_session
from airflow_provider_ccp.hooks._requests import new_session, send, stream_to_file
from airflow_provider_ccp.protocol import StatusInfo, SyncResults
from airflow_provider_ccp.waiting import EventStatus, JobWatch, follow

__all__ = ["CCPHook", "CCPAsyncHook", "DownloadedOutputs", "OutputsKind"]

T = TypeVar("T")


class OutputsKind(StrEnum):
    """What ``download_outputs`` saved: CCP's ``output.zip``, or an OGC results document."""

    ZIP = "zip"
    JSON = "json"


@dataclass(frozen=True)
class DownloadedOutputs:
    path: Path
    size: int
    url: str
    kind: OutputsKind


class CCPHook(CCPHookBase):
    """Calls CCP (or any OGC API - Processes 1.0 server) with a D4Science token that it gets by itself.

    :param ccp_conn_id: an Airflow connection of type ``ccp`` (see docs/connection.md).
    :param retry_limit: retries of an idempotent request (``RetryPolicy``).
    :param retry_delay: seconds before the first retry, doubled for each next one.
    :param retry: a ready ``RetryPolicy``, instead of ``retry_limit`` and ``retry_delay``.
    :param settings: ready ``CCPConnectionSettings`` to use instead of reading the connection
        ``ccp_conn_id`` (which then only names it).
    """

    @cached_property
    def settings(self) -> CCPConnectionSettings:
        settings = self._given_settings
        if settings is None:
            with known_connection(self.ccp_conn_id):
                settings = CCPConnectionSettings.from_connection(self.get_connection(self.ccp_conn_id))
        masking.mask(*settings.secrets)
        return settings

    def _new_session(self) -> requests.Session:
        return new_session(self.settings.verify)

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

    def _drive(
        self, session: requests.Session, method: str, url: str, *, token_request: bool = False, **kwargs: Any
    ) -> exchange.Answer:
        headers = dict(kwargs.pop("headers", None) or protocol.JSON_HEADERS)
        settings = self.settings

        def perform(step: exchange.Step) -> Any:
            if isinstance(step, exchange.Send):
                return send(session, method, step.url, settings, headers=headers | bearer(step.token), **kwargs)
            if isinstance(step, exchange.NeedToken):
                return self.get_token()
            if isinstance(step, exchange.Renew):
                self._renew(self._token_state, step, method, url)
            else:
                self.clock.sleep(step.seconds)
            return None

        return exchange.drive(self._exchange(method, url, token_request=token_request), perform)

    def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        data, headers = dict(request.data), dict(request.headers)
        answer = self._drive(self.token_session, "POST", request.url, token_request=True, data=data, headers=headers)
        return token_answer(answer, request.url)

    def get_token(self) -> str | None:
        """A context-bound access token (cached per process), or None for ``auth_flow=none``."""
        settings = self.settings
        if settings.auth_flow == AuthFlow.NONE:
            return None
        state = self._token_state
        if token := state.usable_token(self.clock.monotonic()):
            return token
        with state.lock:
            grant = exchange.drive(auth.acquire(settings, state, self.clock.monotonic()), self._post_token)
            held = state.secrets()
        masking.mask(*held)
        return grant.access_token

    def _request(
        self, method: str, url: str, *, ok: frozenset[int] = frozenset({200}), **kwargs: Any
    ) -> exchange.Answer:
        """Send with a token, retried by the policy; on 401 renew the token once; map non-``ok`` answers
        (naming the ``method_id``/``job_id`` given)."""
        ids = {key: kwargs.pop(key, None) for key in ("method_id", "job_id")}
        return settle(self._drive(self.session, method, url, **kwargs), ok, url, **ids)

    def _get_json(self, url: str, **kwargs: Any) -> Any:
        return protocol.decode_json(self._request("GET", url, **kwargs).body, url=url)

    def _call(self, call: operations.Call[T]) -> T:
        kwargs = {"params": call.params, "headers": call.headers, "json": call.body}
        return call.read(self._request(call.method, call.url, ok=call.ok, **kwargs, **call.ids))

    def _listing(self, listing: operations.Listing[T]) -> Iterator[T]:
        while (page := listing.next_page()) is not None:
            yield from self._picks(listing, self._get_json(page, params=listing.params_of(page)))

    def list_methods(self, limit: int = 100) -> list[dict[str, Any]]:
        """Every Method (process summary) the connection's context can see, across all pages."""
        return list(self._listing(operations.methods(self.settings.base_url, limit)))

    def get_method(self, method_id: str) -> dict[str, Any]:
        """The Method's description (CCP's method.json: inputs, outputs, scripts, ...)."""
        return self._call(operations.get_method(self.settings.base_url, method_id))

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
        """Start an execution; returns the new job's statusInfo (``status`` empty when the answer held none),
        or ``SyncResults`` from a server that ran it before answering. The POST is never resent once it may
        have left (a duplicate costs real compute): bad inputs raise ``CCPInputError`` before anything is sent,
        a POST whose answer was lost after it may have created an execution ``CCPSubmissionLostError``.

        :param request_members: top-level members added to the execute request (e.g. ``subscribers``);
            ``inputs``, ``outputs`` and ``response`` are refused there.
        :param description: the Method's description when the caller has it: on a server that is
            not CCP it gives the types the inputs are sent as (read with ``get_method`` otherwise).
        """
        describe = functools.partial(self.get_method, method_id)
        typed_by = operations.typing_description(self.settings.server, inputs, description, describe)
        body = operations.execute_body(inputs, outputs, response, typed_by=typed_by, members=request_members)
        call = operations.submit(self.settings.base_url, method_id, body)
        try:
            return self._call(call)
        except CCPError as err:
            if operations.submission_may_have_landed(err, call.url):
                raise recast(err, CCPSubmissionLostError) from err.__cause__
            raise

    def execution_link(self, job_id: str) -> str:
        """Where a person looks at the execution: CCP's UI when the connection names one, else the job's URL."""
        return links.execution_link(self.settings, job_id)

    def get_job(self, job_id: str) -> StatusInfo:
        return self._call(operations.get_job(self.settings.base_url, job_id))

    def list_jobs(self, status: str | None = None, method_id: str | None = None, limit: int = 100) -> list[StatusInfo]:
        """Every job (``GET /jobs``, every page) the context can see, of ``method_id`` and ``status`` only if
        given (``operations.jobs``: another Method's job is left out even when the server does not filter)."""
        return list(self._listing(operations.jobs(self.settings.base_url, method_id, status, limit)))

    def wait_for_job(self, job_id: str, poll_interval: float = 30.0, timeout: float | None = None) -> StatusInfo:
        """Poll until the job is terminal, riding out transient errors like the trigger does; raises
        ``CCPJobTimeoutError`` after ``timeout`` seconds, and the last error when polling gives up."""
        check_poll_interval(poll_interval)
        check_number("timeout", timeout, minimum=0, exclusive=True, seconds=True, none_means="wait forever")
        end_time = None if timeout is None else self.clock.time() + timeout
        watch = JobWatch(job_id, poll_interval, end_time, self.log, clock=self.clock, policy=self.retry)
        event = follow(functools.partial(self.get_job, job_id), watch)
        if event["status"] == EventStatus.TIMEOUT:
            raise CCPJobTimeoutError(event["message"], job_id=job_id)
        if watch.latest is None or not watch.latest.terminal:
            raise watch.error or CCPError(event["message"], job_id=job_id)
        return watch.latest

    def dismiss_job(self, job_id: str) -> operations.DismissResult:
        """Ask the server to cancel (OGC dismiss); 404/405/501 mean it cannot, and are reported so."""
        return self._call(operations.dismiss_job(self.settings.base_url, job_id))

    def list_executions(self, method_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """CCP's execution records (``GET /executions``, every page), newest first, of ``method_id`` only if given.
        Works where ``GET /jobs`` is missing: CCP's own clients list executions this way."""
        records = list(self._listing(operations.executions(self.settings.base_url, method_id, limit)))
        return execution_records.newest_first(records)

    def find_execution(self, marker: str) -> str | None:
        """The job id of the execution whose request carries ``marker`` in its ``ccpnote``, or None: reads CCP's
        execution records until the first match (a marker is unique); ``CCPError`` when they cannot be read."""
        return next(self._listing(operations.execution_marked(self.settings.base_url, marker)), None)

    def get_execution(self, job_id: str) -> dict[str, Any]:
        """CCP's execution record (``/executions/{id}``): request, Method, status, timestamps."""
        return self._call(operations.get_execution(self.settings.base_url, job_id))

    def download_outputs(
        self,
        job_id: str,
        destination: str | os.PathLike[str],
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> DownloadedOutputs:
        """Stream the job's outputs to ``destination`` (a file, or a folder to put ``output.zip`` in): CCP's
        ``/executions/{id}/outputs/output.zip``, else a plain OGC server's ``/jobs/{id}/results`` as ``results.json``.
        One chunk in memory whatever the size; the file appears only when complete, its size checked against
        Content-Length. Below the connection's ``min_download_rate`` over a ``timeout`` window: ``CCPDownloadError``."""
        base = self.settings.base_url
        try:
            url, kind = protocol.output_zip_url(base, job_id), OutputsKind.ZIP
            answer = self._request("GET", url, job_id=job_id, streamed=True, headers=protocol.OUTPUT_ZIP_HEADERS)
        except CCPNotFoundError:
            url, kind = protocol.job_results_url(base, job_id), OutputsKind.JSON
            answer = self._request("GET", url, job_id=job_id, streamed=True, headers=protocol.RESULTS_HEADERS)
        target = Path(destination)
        if target.is_dir():
            target = target / ("output.zip" if kind == OutputsKind.ZIP else "results.json")
        with answer.response as response:
            size = stream_to_file(response, target, url, job_id, progress, self.settings)
        return DownloadedOutputs(path=target, size=size, url=url, kind=kind)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: get a token and list one Method."""
        try:
            settings = self.settings
            self.get_token()
            self._get_json(protocol.processes_url(settings.base_url), params={"limit": 1})
        except CCPError as err:
            return False, str(err)
        context = f" in context {settings.context}" if settings.context else ""
        return True, f"Connected to CCP at {settings.base_url}{context} (auth_flow={settings.auth_flow})"


class CCPAsyncHook(CCPHookBase):
    """The async twin of ``CCPHook`` for triggers: no blocking call ever runs on the event loop. Use it as
    ``async with CCPAsyncHook(conn_id) as hook:``: the hooks of one connection on one event loop share a bounded
    HTTP client (extra ``max_connections``), closed when the last exits; tokens come from the sync hook's cache.
    """

    def __init__(self, ccp_conn_id: str = CCPHookBase.default_conn_name, **kwargs: Any) -> None:
        super().__init__(ccp_conn_id, **kwargs)
        self._settings: CCPConnectionSettings | None = None
        # Hooks share a pool by connection id; hooks given their own settings share it only with their twins.
        given = self._given_settings
        self._pool_key = ccp_conn_id if given is None else f"{ccp_conn_id}\x00{hash(given)}"
        self._pool: _Pool | None = None
        self._shared = False
        #: The last statusInfo read and its bytes: a trigger's polls mostly get the same answer, parsed once.
        self._last_status: tuple[tuple[str, bytes], StatusInfo] | None = None

    async def get_settings(self) -> CCPConnectionSettings:
        if self._settings is None:
            settings = self._given_settings
            if settings is None:
                with known_connection(self.ccp_conn_id):
                    conn, extra = await version_compat.read_async_connection(self.ccp_conn_id, self)
                settings = CCPConnectionSettings.from_connection(conn, extra)
            await masking.amask(*settings.secrets)
            self._settings = settings
        return self._settings

    async def __aenter__(self) -> CCPAsyncHook:
        if self._pool is None:
            self._pool = await POOLS.acquire(self._pool_key, self._open_pool)
            self._settings = self._pool.settings
            self._shared = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
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
        clients = await open_session(settings, verify_setting(settings.verify))
        return _Pool(settings, clients, auth.TOKEN_CACHE.state(settings))

    async def _get_pool(self) -> _Pool:
        """Outside ``async with``: clients of this hook's own, closed by ``aclose()``."""
        if self._pool is None:
            self._pool = await self._open_pool()
        return self._pool

    async def _drive(self, method: str, url: str, *, token_request: bool = False, **sent: Any) -> exchange.Answer:
        pool = await self._get_pool()
        headers = dict(sent.pop("headers", None) or protocol.JSON_HEADERS)

        async def perform(step: exchange.Step) -> Any:
            if isinstance(step, exchange.Send):
                return await pool.clients.send(method, step.url, headers | bearer(step.token), **sent)
            if isinstance(step, exchange.NeedToken):
                return await self.get_token()
            if isinstance(step, exchange.Renew):
                self._renew(pool.token_state, step, method, url)
            else:
                await self.clock.asleep(step.seconds)
            return None

        return await exchange.adrive(self._exchange(method, url, token_request=token_request), perform)

    async def _post_token(self, request: auth.TokenRequest) -> auth.TokenAnswer:
        data, headers = dict(request.data), dict(request.headers)
        answer = await self._drive("POST", request.url, token_request=True, data=data, headers=headers)
        return token_answer(answer, request.url)

    async def get_token(self) -> str | None:
        settings = await self.get_settings()
        if settings.auth_flow == AuthFlow.NONE:
            return None
        state = (await self._get_pool()).token_state
        if token := state.usable_token(self.clock.monotonic()):
            return token
        async with state.async_lock(), auth.holding(state.lock):
            grant = await exchange.adrive(auth.acquire(settings, state, self.clock.monotonic()), self._post_token)
            before, state.masked = state.masked, state.secrets()
        # Renewed tokens replace the old ones in the masker: a triggerer renews for weeks.
        await masking.HELD.replace(before, state.masked)
        return grant.access_token

    async def _answer(self, call: operations.Call[Any]) -> exchange.Answer:
        return settle(await self._drive(call.method, call.url, params=call.params), call.ok, call.url, **call.ids)

    async def iter_jobs(
        self, method_id: str | None = None, limit: int = 100, status: str | None = None
    ) -> AsyncIterator[StatusInfo]:
        """``CCPHook.list_jobs``, one page in memory at a time."""
        listing = operations.jobs((await self.get_settings()).base_url, method_id, status, limit)
        while (page := listing.next_page()) is not None:
            answer = settle(await self._drive("GET", page, params=listing.params_of(page)), frozenset({200}), page)
            for job in self._picks(listing, protocol.decode_json(answer.body, url=page)):
                yield job

    async def execution_link(self, job_id: str) -> str:
        """``CCPHook.execution_link``: where a person looks at the execution."""
        return links.execution_link(await self.get_settings(), job_id)

    async def get_job(self, job_id: str) -> StatusInfo:
        call = operations.get_job((await self.get_settings()).base_url, job_id)
        answer = await self._answer(call)
        last = self._last_status
        if last is not None and last[0] == (job_id, answer.body):  # a job that did not change since the last poll
            return last[1]
        info = call.read(answer)
        self._last_status = ((job_id, answer.body), info)
        return info

    async def dismiss_job(self, job_id: str) -> operations.DismissResult:
        call = operations.dismiss_job((await self.get_settings()).base_url, job_id)
        return call.read(await self._answer(call))
