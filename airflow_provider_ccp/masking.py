"""Keeping secrets out of sight: registering them with Airflow's masker, and hiding them in a server's words.

Passwords, client secrets, tokens and secret inputs are registered (``mask``, ``amask``) as soon as
the provider holds them, so that no log line or rendered field shows them; text a server sent back,
which may echo what it was sent, is ``redact``-ed before it reaches an event, an exception or a log.
The Airflow-version difference of registering is ``version_compat``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from airflow_provider_ccp import version_compat

__all__ = ["mask", "amask", "redact"]


def mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker, so no log line or rendered field shows them."""
    for secret in secrets:
        if secret:
            with contextlib.suppress(Exception):  # masking must never break a call
                version_compat.mask_secret(secret)


async def amask(*secrets: str | None) -> None:
    """``mask`` for the event loop: the sync supervisor call would block the triggerer."""
    for secret in secrets:
        if secret:
            with contextlib.suppress(Exception):
                await version_compat.amask_secret(secret)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (a server may echo what it was sent)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
