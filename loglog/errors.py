"""Exceptions raised by loglog. Log calls never raise; only set-up does.

::

    LoglogError
    ├── ConfigError        bad option or environment variable, raised by configure()
    └── SinkStalled        a sink gave up on part of a batch (raised to the sink runner)
"""

from __future__ import annotations


class LoglogError(Exception):
    """Base of every exception loglog raises."""


class ConfigError(LoglogError, ValueError):
    """A configuration value is wrong; the message names the option and how to fix it.
    ``option`` is that option's name when one option is to blame."""

    def __init__(self, message: str, option: str = "") -> None:
        super().__init__(message)
        self.option = option


class SinkStalled(LoglogError):
    """Raised by a sink that gave up on part of a batch; the first ``delivered`` records
    went out, the rest are counted as dropped with ``reason`` (``sink_timeout``, or
    ``disk_full``/``disk_error`` when a file write failed)."""

    def __init__(self, message: str, delivered: int, reason: str = "sink_timeout") -> None:
        super().__init__(message)
        self.delivered = delivered
        self.reason = reason
