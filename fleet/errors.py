"""Errors of the fleet package, translated at its boundaries (broker, store, sources).

::

    FleetError
    ├── FleetConfigError      a bad option at start-up (URL, segment length, port)
    ├── JobNotFound           no job with this id in the store
    ├── JobConflict           a job with this id exists already with another source
    ├── SourceUnreadable      the job's video cannot be opened or decoded
    ├── StoreUnavailable      Redis cannot be reached
    └── BrokerUnavailable     RabbitMQ cannot be reached or did not confirm a publish
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error this package raises on purpose."""


class FleetConfigError(FleetError):
    """A configuration value is invalid; raised at start-up."""


class JobNotFound(FleetError):
    """No job with this id."""


class JobConflict(FleetError):
    """A job with this id exists already with another source."""


class SourceUnreadable(FleetError):
    """The job's source cannot be opened or decoded."""


class StoreUnavailable(FleetError):
    """The job store (Redis) cannot be reached."""


class BrokerUnavailable(FleetError):
    """The broker (RabbitMQ) cannot be reached or did not confirm a publish."""
