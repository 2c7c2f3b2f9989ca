"""Secrets held in Airflow's masker only while something uses them (a triggerer lives for weeks)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator

import pytest
from airflow.sdk._shared.secrets_masker import _secrets_masker, redact

from airflow_provider_ccp.masking import HeldSecrets


@pytest.fixture
def masker() -> Iterator[object]:
    masker = _secrets_masker()
    before = set(masker.patterns)
    yield masker
    assert set(masker.patterns) == before  # each test gives back what it registered


def value() -> str:
    return f"secret-{secrets.token_hex(8)}"


async def test_a_value_is_masked_while_held_and_forgotten_after_its_last_holder(masker):
    held, key = HeldSecrets(), value()

    await held.hold([key])
    await held.hold([key])  # a second trigger of the same task input
    held.release([key])
    assert redact(f"echo {key}") == "echo ***"  # one holder left

    held.release([key])
    await asyncio.sleep(0)  # forgotten in the next turn of the loop, with whatever else ended in this one
    assert redact(f"echo {key}") == f"echo {key}"
    assert len(held) == 0


async def test_a_value_held_again_before_it_was_forgotten_stays_masked(masker):
    held, key = HeldSecrets(), value()
    await held.hold([key])
    held.release([key])
    await held.hold([key])
    await asyncio.sleep(0)

    assert redact(key) == "***"
    held.release([key])
    await asyncio.sleep(0)


async def test_a_value_the_masker_had_is_never_taken_back(masker):
    # Airflow masked it first (a connection's password, a Variable): it stays, whatever the provider held.
    already, held = value(), HeldSecrets()
    masker.add_mask(already)
    try:
        async with held.holding([already]):
            pass
        assert redact(already) == "***"
    finally:
        masker.patterns.discard(re.escape(already))
        masker.replacer = None


async def test_renewed_tokens_replace_the_old_ones(masker):
    held = HeldSecrets()
    first, second = [value(), value()], [value(), value()]
    await held.replace((), first)
    await held.replace(first, [first[1], second[0]])  # the refresh token kept, a new access token

    await asyncio.sleep(0)

    assert [redact(token) for token in first] == [first[0], "***"]
    assert redact(second[0]) == "***"
    held.release([first[1], second[0]])
    await asyncio.sleep(0)


async def test_many_lifecycles_leave_the_masker_as_they_found_it(masker):
    held = HeldSecrets()
    for _ in range(2000):
        async with held.holding([value(), value()]):
            await asyncio.sleep(0)  # a trigger's wait
    await asyncio.sleep(0)
    assert len(held) == 0


def test_without_an_event_loop_a_value_is_forgotten_at_once(masker):
    held, key = HeldSecrets(), value()
    asyncio.run(held.hold([key]))
    held.release([key])
    assert redact(key) == key
