"""Fleet fixtures: a private key prefix in a real Redis per test.

The local Redis on 6379 when it runs; otherwise a private ``redis-server`` on a free port
for the session (CI without a Redis service still runs these tests for real).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.errors import StoreUnavailable
from fleet.store import JobStore
from tests.fleet.harness import Fleet, private_redis_server
from tests.fleet.rabbit import PrivateRabbit, available

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A reachable Redis: the local one, or a private one started here."""
    try:
        JobStore.connect(LOCAL_REDIS, timeout=1.0)
        yield LOCAL_REDIS
        return
    except StoreUnavailable:
        pass
    if shutil.which("redis-server") is None:
        pytest.skip("no Redis on 6379 and no redis-server to start (make deps installs it)")
    with private_redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or engineer) uses."""
    return f"loglog-test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[JobStore]:
    """A JobStore on a real Redis under a private prefix, emptied afterwards."""
    store = JobStore.connect(redis_url, prefix=prefix)
    yield store
    keys = list(store.client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    """A private RabbitMQ node for the module (tests may stop or kill it)."""
    if not available():
        pytest.skip("rabbitmq-server is not installed (make deps)")
    node = PrivateRabbit(tmp_path_factory.mktemp("rabbit"))
    node.start()
    yield node
    node.close()


@pytest.fixture
def fleet(rabbit: PrivateRabbit, store: JobStore, tmp_path: Path) -> Iterator[Fleet]:
    """A fleet on the module's node (started again if a test stopped it)."""
    if rabbit.proc is None or rabbit.proc.poll() is not None:
        rabbit.start()
    fleet = Fleet(rabbit.url, store, tmp_path)
    yield fleet
    fleet.close()
