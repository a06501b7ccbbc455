"""The app's tests share one way to reach the servers: the spec's topology provisioned, the
app's tables migrated, connections open (tests/app/service_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.app.service_harness import Servers, provisioned
from tests.support.servers import NatsServer


@pytest.fixture
async def servers(nats_server: NatsServer, database_url: str) -> AsyncIterator[Servers]:
    async with provisioned(nats_server.url, database_url) as servers:
        yield servers
