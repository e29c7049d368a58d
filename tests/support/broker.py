"""The pytest side of the test broker: session fixtures over ``ops.testbroker``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from ops.testbroker import (  # noqa: F401 - re-exported for multi-process tests
    BOOTSTRAP_ENV,
    BrokerHandle,
    free_port,
    obtain_broker,
    start_tansu,
    wait_for_broker,
)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole session (never a mock, never a skip)."""
    try:
        bootstrap, handle = obtain_broker()
    except Exception as exc:
        pytest.fail(f"Kafka tests need a broker and none could be started: {exc}",
                    pytrace=False)
    try:
        yield bootstrap
    finally:
        if handle is not None:
            handle.stop()


@pytest.fixture
def kafka_topic(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses (the session's broker is shared)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")
    return f"{name}-{uuid.uuid4().hex[:10]}"
