"""The one check of the numbers the operator, the sensor, the trigger and the hook take, when the task is
built: a NaN compares false with everything (``poll_interval <= 0`` lets it through, and the task fails once it
has submitted), and a poll interval of a millisecond hammers CCP.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeVar

__all__ = ["MIN_POLL_INTERVAL", "check_number", "check_poll_interval"]

#: The shortest wait between two status polls, in seconds: at most 20 polls a second per task.
#: Meant for a sandbox on the same machine; against D4Science's CCP, 10 s or more is plenty.
MIN_POLL_INTERVAL = 0.05

T = TypeVar("T")


def check_number(
    name: str,
    value: T,
    *,
    minimum: float,
    exclusive: bool = False,
    whole: bool = False,
    seconds: bool = False,
    none_means: str | None = None,
) -> T:
    """``value`` when it is a finite number (an integer when ``whole``) of at least ``minimum`` (more
    than it when ``exclusive``), or None when ``none_means`` says what None does; else ValueError."""
    if value is None and none_means is not None:
        return value
    kind = "a whole number" if whole else "a number"
    wanted = f"{kind}{' of seconds' if seconds else ''} {'more than' if exclusive else 'of at least'} {minimum:g}" + (
        f", or None ({none_means})" if none_means else ""
    )
    exact = isinstance(value, numbers.Integral if whole else numbers.Real) and not isinstance(value, bool)
    try:
        number = float(value) if exact else math.nan  # type: ignore[arg-type]
    except OverflowError:  # an int past float's range
        number = math.inf
    if not math.isfinite(number) or number < minimum or (exclusive and number == minimum):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def check_poll_interval(value: float, name: str = "poll_interval") -> float:
    """The wait between polls: finite and at least ``MIN_POLL_INTERVAL`` seconds."""
    return float(check_number(name, value, minimum=MIN_POLL_INTERVAL, seconds=True))
