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

    Anything malformed (unicode digits, an impossible date, a date without a time zone,
    a number too large for a float) is None: the caller then backs off on its own.
    """
    try:
        if not value or not isinstance(value, str) or len(value) > 100:
            return None
        text = value.strip()
        if text.isascii() and text.isdigit():
            return float(min(int(text), 10**9))
        when = email.utils.parsedate_to_datetime(text)
        delay = when.timestamp() - now()
    except Exception:  # a server's garbage must never end the sender
        return None
    return max(0.0, delay) if delay == delay else None
