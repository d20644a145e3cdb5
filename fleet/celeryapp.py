"""The Celery application on RabbitMQ, with the settings long GPU segments need.

Each setting answers a failure documented in the Celery and RabbitMQ trackers:

* ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a segment is acknowledged only
  after its results are written, and a worker holds one unacknowledged segment at a time
  — so a killed worker's segment goes back to the queue, and one worker cannot hoard
  long tasks while others idle (the default prefetch of 4 does exactly that).
* ``task_reject_on_worker_lost``: the same for a pool child that dies.
* Pool ``solo`` (set by the worker command): CUDA does not survive the fork of a prefork
  pool; run one worker process per GPU instead.
* Durable queue, persistent messages, publisher confirms (``confirm_publish``): a segment
  the broker confirmed survives a broker restart.
* ``broker_connection_max_retries=None``: workers wait out a broker outage instead of
  exiting after 100 tries.
* RabbitMQ's ``consumer_timeout`` (30 min by default since 3.8.15) cancels a consumer whose
  delivery stays unacknowledged too long; segments are seconds to minutes long, far below
  it (see :func:`fleet.model.split`), and ``loglog up`` sets it explicitly.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from loglog.redact import redact_url

from .errors import FleetConfigError

#: The task name a segment is published under.
SEGMENT_TASK = "fleet.segment"
DEFAULT_QUEUE = "loglog.segments"
#: Priorities 0–9 (RabbitMQ priority queue; higher runs first).
MAX_PRIORITY = 9


def segment_queue(name: str = DEFAULT_QUEUE) -> Queue:
    """The durable priority queue segments go through."""
    return Queue(
        name,
        Exchange(name, type="direct", durable=True),
        routing_key=name,
        durable=True,
        queue_arguments={"x-max-priority": MAX_PRIORITY},
    )


def settings(queue: str = DEFAULT_QUEUE) -> dict[str, Any]:
    """The Celery settings (a function so tests can read them)."""
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 5.0,
        "broker_heartbeat": 10,
        "broker_transport_options": {"confirm_publish": True},
        "task_queues": [segment_queue(queue)],
        "task_default_queue": queue,
        "task_default_delivery_mode": "persistent",
        "task_queue_max_priority": MAX_PRIORITY,
        "task_default_priority": 0,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # No pidbox/gossip fan-out queues: workers are found through heartbeats in the store.
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
    }


def check_broker_url(broker_url: str) -> str:
    """``broker_url`` when it is an AMQP URL (``amqp://user:pass@host:5672/vhost``); any
    other scheme is a :class:`FleetConfigError` at start-up — not a worker that never
    consumes, nor jobs that are never published. The message never shows the password."""
    if not broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        raise FleetConfigError(
            f"--broker {redact_url(broker_url)!r}: give an AMQP URL, e.g. "
            "amqp://guest:guest@127.0.0.1:5672// (the fleet runs on RabbitMQ)"
        )
    return broker_url


def make_app(broker_url: str, queue: str = DEFAULT_QUEUE) -> Celery:
    """A Celery app on ``broker_url`` (checked by :func:`check_broker_url`)."""
    check_broker_url(broker_url)
    app = Celery("loglog-fleet", broker=broker_url, set_as_current=False)
    app.conf.update(settings(queue))
    return app
