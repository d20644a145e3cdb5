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
    """A configuration value is wrong; the message names the option and how to fix it."""


class SinkStalled(LoglogError):
    """Raised by a sink that gave up on part of a batch; the first ``delivered`` records
    went out, the rest are counted as dropped with reason ``sink_timeout``."""

    def __init__(self, message: str, delivered: int) -> None:
        super().__init__(message)
        self.delivered = delivered
