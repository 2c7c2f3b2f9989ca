"""Keeping secrets out of sight: registered with Airflow's masker (``mask``, ``amask``) as soon as the provider
holds them, hidden in a server's words (``redact``), and forgotten once nothing uses them.

A triggerer runs for weeks, and Airflow's masker keeps every value for the life of the process, in one regular
expression rebuilt at each new value and run over every redacted string. ``HELD`` counts the holders of each value
and takes it back from the masker at its last (docs/deployment.md, "Secrets in a long-lived triggerer")."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable

from airflow_provider_ccp import version_compat

__all__ = ["mask", "amask", "redact", "HeldSecrets", "HELD"]


def mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker, so no log line or rendered field shows them."""
    for secret in filter(None, secrets):
        with contextlib.suppress(Exception):  # masking must never break a call
            version_compat.mask_secret(secret)


async def amask(*secrets: str | None) -> None:
    """``mask`` for the event loop: the sync supervisor call would block the triggerer."""
    for secret in filter(None, secrets):
        with contextlib.suppress(Exception):
            await version_compat.amask_secret(secret)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by ``***`` (a server may echo what it was sent)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class HeldSecrets:
    """Counts the holders of each secret value in this process; not thread-safe (one event loop's)."""

    def __init__(self) -> None:
        self._holders: Counter[str] = Counter()
        #: Values this registry added to the masker. A value the masker had already (Airflow masked it
        #: as a connection's password or a Variable, say) is never taken back from it.
        self._added: set[str] = set()
        #: Released values not forgotten yet: the masker rebuilds its expression at each change, so the
        #: values the triggers ending in one turn of the event loop released are forgotten in one rebuild.
        self._forgetting: set[str] = set()

    def __len__(self) -> int:
        return len(self._holders)

    async def hold(self, secrets: Iterable[str]) -> None:
        for secret in filter(None, secrets):
            first = not self._holders[secret]
            self._holders[secret] += 1  # before the await: a release meanwhile must see this holder
            if not first:
                continue
            if secret in self._forgetting:  # released, held again before it was forgotten: still masked
                self._forgetting.discard(secret)
                continue
            with contextlib.suppress(Exception):  # masking must never break a call
                if not version_compat.is_masked(secret):
                    self._added.add(secret)
                # Also a value the masker had: Airflow 3.3's supervisor must learn it all the same.
                await version_compat.amask_secret(secret)

    def release(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if not self._holders[secret]:
                continue
            self._holders[secret] -= 1
            if self._holders[secret]:
                continue
            del self._holders[secret]
            if secret in self._added:
                self._forget_soon(secret)

    def _forget_soon(self, secret: str) -> None:
        first = not self._forgetting
        self._forgetting.add(secret)
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._forget)
            except RuntimeError:  # no event loop: now
                self._forget()

    def _forget(self) -> None:
        forgotten, self._forgetting = self._forgetting, set()
        self._added.difference_update(forgotten)
        with contextlib.suppress(Exception):  # masking must never break a call
            version_compat.forget_secrets(forgotten)

    @contextlib.asynccontextmanager
    async def holding(self, secrets: Iterable[str]) -> AsyncIterator[None]:
        held = tuple(secrets)
        await self.hold(held)
        try:
            yield
        finally:
            self.release(held)

    async def replace(self, before: Iterable[str], after: Iterable[str]) -> None:
        """Hold ``after`` instead of ``before``: a token state's tokens once it renewed some."""
        kept = set(after)
        await self.hold(kept.difference(before))
        self.release(set(before).difference(kept))


#: The triggerer's registry (one per process): ``CCPJobTrigger`` holds its secret inputs while it runs,
#: ``CCPAsyncHook`` the tokens each token state holds now.
HELD = HeldSecrets()
