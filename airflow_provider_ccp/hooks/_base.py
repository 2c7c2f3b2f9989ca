"""What both hooks (``hooks/ccp.py``) share: the connection's Airflow names, the retry policy, the CA setting,
the paging rule, and how an exchange's final answer becomes the result or the error."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_ccp import auth, exchange, operations, protocol
from airflow_provider_ccp.clock import SYSTEM_CLOCK, Clock
from airflow_provider_ccp.connection import CCPConnectionSettings
from airflow_provider_ccp.exceptions import CCPError, CCPProtocolError
from airflow_provider_ccp.get_provider_info import DEFAULT_CONN_ID, connection_form_widgets, ui_field_behaviour
from airflow_provider_ccp.retries import DEFAULT_RETRY, RetryPolicy

T = TypeVar("T")


class CCPHookBase(BaseHook):
    conn_name_attr = "ccp_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "ccp"
    hook_name = "D4Science CCP"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form on Airflow 3.1 (3.2+ reads ``conn-fields`` from the provider info)."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form on Airflow 3.1, where wtforms is installed."""
        return connection_form_widgets()

    def __init__(
        self,
        ccp_conn_id: str = default_conn_name,
        retry_limit: int = DEFAULT_RETRY.limit,
        retry_delay: float = DEFAULT_RETRY.delay,
        settings: CCPConnectionSettings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ccp_conn_id = ccp_conn_id
        self.retry = retry or RetryPolicy(limit=retry_limit, delay=retry_delay)
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

    def _picked(self, pick: Callable[[Mapping[str, Any]], T | None], item: Mapping[str, Any], key: str) -> T | None:
        """None for an entry ``pick`` cannot read (a job with no jobID or status), skipped with a warning:
        one malformed entry hides neither the others nor the listing."""
        try:
            return pick(item)
        except CCPProtocolError as err:
            self.log.warning("Skipped an entry of CCP's %s listing that it cannot read: %s", key, err)
            return None

    def _picks(self, listing: operations.Listing[T], document: Any) -> list[T]:
        key, pick = listing.key, listing.pick
        return [picked for item in listing.read(document) if (picked := self._picked(pick, item, key)) is not None]


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def transport_failure(error: Any) -> str:
    """A transport failure in a few words: the class name (its text may quote the request)."""
    return str(error) if isinstance(error, exchange.DeadlineExceeded) else type(error).__name__


def settle(answer: exchange.Answer, ok: frozenset[int], url: str, **ids: Any) -> exchange.Answer:
    """The final answer of an exchange when ``ok``, else the mapped error (naming ``method_id``/``job_id``)."""
    if answer.status is None:
        raise CCPError(f"Could not reach CCP at {url}: {transport_failure(answer.response)}", url=url, **ids)
    if answer.status not in ok:
        raise protocol.error_from_response(answer.status, answer.response.reason or "", answer.body, url=url, **ids)
    return answer


def token_answer(answer: exchange.Answer, url: str) -> auth.TokenAnswer:
    if answer.status is None:
        raise CCPError(f"Could not reach the token endpoint {url}: {transport_failure(answer.response)}") from None
    return auth.TokenAnswer(answer.status, answer.body)


def verify_setting(verify: bool | str) -> bool | str:
    """The CA setting both hooks use: the ``verify`` extra, whatever the environment says, unless it is true;
    then a bundle named by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, as requests reads them, else the default."""
    if verify is not True:
        return verify
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
