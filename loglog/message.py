"""The message of a log call with %-style arguments, kept unformatted until the worker.

Its own module because both sides need it and neither may import the other: the caller's
side (:mod:`loglog.core`) builds it, the crash spool (:mod:`loglog.spool`) and the worker
read it.
"""

from __future__ import annotations

from typing import Any


class Fmt:
    """A message with %-style arguments, formatted lazily on the worker thread."""

    __slots__ = ("args", "msg")

    def __init__(self, msg: object, args: tuple[Any, ...]) -> None:
        self.msg = msg
        self.args = args

    def __str__(self) -> str:
        try:
            return str(self.msg) % self.args
        except Exception:
            pass
        try:
            return f"{self.msg} {self.args!r}"
        except Exception:  # an argument over the int digit limit, a raising __repr__
            return f"{self.msg} <unrepresentable arguments>"
