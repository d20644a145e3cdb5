"""Retry timing: exponential backoff with jitter, and the server's ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable


def backoff_delay(
    attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before retry number ``attempt`` (1-based): ``base·2^(attempt-1)``, capped, with
    "equal jitter" (between half and all of it) so that many clients do not retry in step.

    >>> backoff_delay(1, 0.5, 300, rand=lambda: 1.0)
    0.5
    >>> backoff_delay(20, 0.5, 300, rand=lambda: 0.0)
    150.0
    """
    delay = min(cap, base * (2 ** min(attempt - 1, 30)))
    return delay / 2 + delay / 2 * rand()


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("garbage") is None
    True
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())
