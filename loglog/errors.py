"""Exceptions raised by loglog. Log calls never raise; only set-up does.

::

    LoglogError
    ├── ConfigError        bad option or environment variable, raised by configure()
    │   └── MissingExtra   a feature's packages are not installed (also an ImportError)
    └── SinkStalled        a sink gave up on part of a batch (raised to the sink runner)
"""

from __future__ import annotations

from .types import DropReason


class LoglogError(Exception):
    """Base of every exception loglog raises."""


class ConfigError(LoglogError, ValueError):
    """A configuration value is wrong; the message names the option and how to fix it.
    ``option`` is that option's name when one option is to blame."""

    def __init__(self, message: str, option: str = "") -> None:
        super().__init__(message)
        self.option = option


class MissingExtra(ConfigError, ImportError):
    """``what`` needs packages that are not installed; one line names the extra to install:
    ``loglog.metrics needs the 'prometheus' extra: in loglog's checkout, pip install
    '.[prometheus]'``.

    ``pip install .`` (in the checkout) is the logger alone; the rest of the distribution
    (its metrics, the OTLP sink, the inference server, the CLI's subcommands) comes with
    extras.
    ``extra`` is the extra's name (``"serve,agent"`` when several), ``name`` the missing
    module (as on any ImportError).
    """

    def __init__(
        self, extra: str, what: str, module: str | None = None, *, option: str = ""
    ) -> None:
        plural = "s" if "," in extra else ""
        # From the checkout: "loglog" on PyPI is another project's name.
        message = (
            f"{what} needs the '{extra}' extra{plural}: "
            f"in loglog's checkout, pip install '.[{extra}]'"
        )
        super().__init__(message, option)
        self.msg = message  # ImportError's attributes, which its __init__ would have set
        self.name = module
        self.extra = extra


class SinkStalled(LoglogError):
    """Raised by a sink that gave up on part of a batch; the first ``delivered`` records
    went out, the rest are counted as dropped with ``reason`` (``sink_timeout``, or
    ``disk_full``/``disk_error`` when a file write failed)."""

    def __init__(
        self, message: str, delivered: int, reason: DropReason | str = DropReason.SINK_TIMEOUT
    ) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.reason = _known(reason)


def _known(reason: DropReason | str) -> DropReason | str:
    """A reason loglog knows as its :class:`DropReason` (equal to the text, same hash); a
    user sink's own text as it is."""
    try:
        return DropReason(reason)
    except ValueError:
        return reason
