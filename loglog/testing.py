"""Helpers for testing code that logs through loglog (public API).

>>> from loglog.testing import capture
>>> import loglog
>>> with capture() as records:
...     loglog.get_logger("t").info("hello", n=1)
>>> records[0].message, records[0].fields
('hello', {'n': 1})
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .types import Record


class ListSink:
    """A local sink that appends every record to a list."""

    local = True
    name = "list"

    def __init__(self, records: list[Record] | None = None) -> None:
        self.records: list[Record] = [] if records is None else records

    def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


@contextmanager
def capture(level: str | int = "debug", **options: Any) -> Iterator[list[Record]]:
    """Configure loglog to deliver only into a list for the duration of the block.

    On exit everything is flushed into the list and loglog is shut down.
    """
    from . import configure, shutdown

    records: list[Record] = []
    options.setdefault("console", None)
    configure(level=level, sinks=[ListSink(records)], registry=None, **options)
    try:
        yield records
    finally:
        shutdown(timeout=5.0)
