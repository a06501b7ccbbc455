"""Running the filetrash app's services against the fixtures' servers, in-process or as
processes: its tables migrated, its simulated deletions, its counts.

Shared by the tests of tests/app/ and by tests/faults/. Every wait has a deadline; nothing
sleeps to synchronise. The generic parts (FAST, wait_until) live in tests/support/harness.py.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from nats.aio.client import Client
from nats.js import JetStreamContext

from generated.topology import CONSUMERS, STREAMS
from handwritten.filetrash import ids
from handwritten.filetrash.db import MIGRATIONS
from handwritten.filetrash.db.queries import RunCounts, count_run
from handwritten.filetrash.faults import NO_FAULTS
from handwritten.filetrash.publisher import DeletionSimulator, PublishedDeletion, publish_deletions
from handwritten.filetrash.trash_processor import FAULTS_OPTION
from handwritten.runtime.connect import connect_db, connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.migrate import migrate
from handwritten.runtime.provision import provision
from handwritten.runtime.registry import ServiceResources, service
from tests.support.harness import FAST as FAST  # re-exported for the tests
from tests.support.harness import wait_until as wait_until
from tests.support.processes import REPO_ROOT as REPO_ROOT
from tests.support.processes import CliProcess


@dataclass
class Servers:
    nats_url: str
    database_url: str
    nc: Client
    js: JetStreamContext
    pool: asyncpg.Pool

    @property
    def publisher(self) -> JetStreamPublisher:
        return JetStreamPublisher(self.js)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a `filetrash` child process using these servers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILETRASH_")}
        env.update(NATS_URL=self.nats_url, DATABASE_URL=self.database_url, **extra)
        return env

    async def counts(self, deletion_ids: list[UUID]) -> RunCounts:
        return await count_run(
            self.pool, deletion_ids, [ids.trash_event_id(i) for i in deletion_ids]
        )

    async def publish(
        self, count: int, *, seed: int = 1, rate: float = 0
    ) -> list[PublishedDeletion]:
        return await publish_deletions(
            self.publisher,
            DeletionSimulator(random.Random(seed)),
            count=count,
            rate=rate,
            on_published=lambda event, result: None,
        )


@asynccontextmanager
async def provisioned(nats_url: str, database_url: str) -> AsyncIterator[Servers]:
    """The spec's streams and consumers, the migrations, and connections to both servers."""
    nc = await connect_nats(nats_url, name="test")
    pool = await connect_db(database_url, min_size=1, max_size=8)
    try:
        js = nc.jetstream()
        await provision(js, STREAMS, CONSUMERS, apply=True)
        await migrate(pool, MIGRATIONS)
        yield Servers(nats_url, database_url, nc, js, pool)
    finally:
        await pool.close()
        await nc.close()


class RunningService:
    """One instance of a service in this process: its own NATS connection, like a process."""

    def __init__(self, name: str, servers: Servers, **resources: Any) -> None:
        self.name = name
        self.servers = servers
        self.resources = resources
        self.stop_event = asyncio.Event()
        self.stats = ConsumeStats()
        self.handler: Any = None
        self._task: asyncio.Task[ConsumeStats] | None = None
        self._nc: Client | None = None

    async def start(self, settings: ConsumeSettings = FAST) -> RunningService:
        definition = service(self.name)
        self._nc = await connect_nats(self.servers.nats_url, name=f"test {self.name}")
        resources = ServiceResources(
            js=JetStreamPublisher(self._nc.jetstream()),
            database=self.servers.pool,
            options={FAULTS_OPTION: NO_FAULTS, **self.resources},
            service=self.name,
        )
        self.handler = definition.make_handler(resources)
        self._task = asyncio.ensure_future(
            run_consumer(
                self._nc,
                definition.endpoint,
                self.handler,
                settings=settings,
                stop=self.stop_event,
                stats=self.stats,
            )
        )
        return self

    async def stop(self, timeout: float = 15.0) -> ConsumeStats:
        assert self._task is not None and self._nc is not None
        self.stop_event.set()
        try:
            stats = await asyncio.wait_for(self._task, timeout)
        finally:
            await self._nc.close()
        return stats


@asynccontextmanager
async def running(
    servers: Servers, *names: str, **resources: Any
) -> AsyncIterator[list[RunningService]]:
    started = [await RunningService(name, servers, **resources).start() for name in names]
    try:
        yield started
    finally:
        for each in started:
            await each.stop()


class ServiceProcess(CliProcess):
    """`filetrash run NAME` as a real process, logging JSON lines to a file."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(name, ["run", name, "--log-format", "json"], env, log_path)
        self.name = name

    async def wait_exit(self, timeout: float = 20.0) -> int:
        return await self.wait(timeout)
