"""``Clock``: the provider's time, one object tests can replace instead of patching modules."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Clock", "SYSTEM_CLOCK"]


class Clock:
    """Wall-clock time (deadlines that cross processes), monotonic time (token lifetimes, retry budgets)
    and the waits, sync and async: everything in the provider reads time only here."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
    # Bound straight to asyncio.sleep: no coroutine of its own per wait on the triggerer's hot path.
    asleep = staticmethod(asyncio.sleep)
    time = staticmethod(time.time)  # last: from here on the class body's ``time`` is this one


SYSTEM_CLOCK = Clock()
