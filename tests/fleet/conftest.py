"""Fleet fixtures: a private key prefix in the real Redis per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet.store import JobStore

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test (or engineer) uses."""
    return f"loglog-test:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(prefix: str) -> Iterator[JobStore]:
    """A JobStore on the real Redis under a private prefix, emptied afterwards."""
    store = JobStore.connect(REDIS_URL, prefix=prefix)
    yield store
    keys = list(store.client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        store.client.delete(*keys)
