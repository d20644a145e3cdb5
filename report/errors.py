"""What can go wrong while making a report, translated into messages that say what to do.

::

    ReportError
    ├── PrometheusError        Prometheus unreachable, slow, or answering garbage
    │   └── AnswerTooLarge     an answer over the byte or series cap (names the cap)
    ├── QueryError             Prometheus refused a query (names the query)
    └── OutputError            the output directory cannot be written
"""

from __future__ import annotations


class ReportError(Exception):
    """Base class: ``loglog report`` prints the message and exits 1."""


class PrometheusError(ReportError):
    """Prometheus could not be asked (down, slow, not Prometheus)."""


class AnswerTooLarge(PrometheusError):
    """An answer over ``--max-answer-mb`` or ``--max-series``: the message names the cap."""


class QueryError(ReportError):
    """Prometheus answered a query with an error."""


class OutputError(ReportError):
    """The report could not be written."""
