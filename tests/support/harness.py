"""Running any spec's services against the fixtures' servers: the spec's topology provisioned,
connections open, waits with deadlines. Generic: it knows the runtime and `generated/`, not an
app (the scaffolded tests use it; tests/app/service_harness.py adds the filetrash app's parts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from generated.topology import CONSUMERS, STREAMS
from handwritten.runtime.connect import connect_db, connect_nats
from handwritten.runtime.consume import ConsumeSettings
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.migrate import migrate
from handwritten.runtime.provision import provision
from tests.support.processes import REPO_ROOT as REPO_ROOT  # re-exported for the tests

FAST = ConsumeSettings(batch_size=8, fetch_timeout=0.5, nak_delay_base=0.05, nak_delay_max=0.2)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 20.0,
    what: str,
    state: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Poll `condition` until true; fail with `what` (and `state`, if given) after `timeout`."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            seen = f"; last seen: {await state()}" if state is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")
        await asyncio.sleep(0.05)


@dataclass
class Provisioned:
    """Connections to servers that hold the spec's streams and consumers; `pool` only when a
    database was asked for."""

    nats_url: str
    nc: Client
    js: JetStreamContext
    database_url: str | None = None
    pool: asyncpg.Pool | None = None

    @property
    def publisher(self) -> JetStreamPublisher:
        return JetStreamPublisher(self.js)


@asynccontextmanager
async def provisioned(
    nats_url: str, database_url: str | None = None, *, migrations: Path | None = None
) -> AsyncIterator[Provisioned]:
    """The spec's streams and consumers, and with `database_url` a pool (and `migrations`
    applied)."""
    nc = await connect_nats(nats_url, name="test")
    pool = None
    try:
        if database_url is not None:
            pool = await connect_db(database_url, min_size=1, max_size=8)
            if migrations is not None:
                await migrate(pool, migrations)
        js = nc.jetstream()
        await provision(js, STREAMS, CONSUMERS, apply=True)
        yield Provisioned(nats_url, nc, js, database_url, pool)
    finally:
        if pool is not None:
            await pool.close()
        await nc.close()
