"""Running one service as a process (`filetrash run NAME`), the publisher (`filetrash publish`)
and the purge job (`filetrash purge`): connect, do the work, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg
from nats.aio.client import Client

from handwritten.db.migrate import pending_migrations
from handwritten.runtime.connect import connect_db, connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.servers import ServerUrls, redact
from handwritten.runtime.shutdown import install_shutdown, uninstall_shutdown
from handwritten.services.faults import FaultInjector
from handwritten.services.publisher import DeletionSimulator, PublishedDeletion, publish_deletions
from handwritten.services.purge import DEFAULT_BATCH_SIZE, PurgeReport, purge_expired
from handwritten.services.registry import ServiceResources, service
from handwritten.services.trash_processor import DEFAULT_RETENTION


class DatabaseNotMigrated(Exception):
    """The database lacks migrations the services need: they would fail on every message."""


async def require_migrated(pool: asyncpg.Pool) -> None:
    pending = await pending_migrations(pool)
    if pending:
        raise DatabaseNotMigrated(
            f"the database lacks migration(s) {', '.join(pending)}: run `filetrash provision`"
        )


@asynccontextmanager
async def connected(
    urls: ServerUrls, *, name: str, database: bool = True
) -> AsyncIterator[tuple[Client, asyncpg.Pool | None]]:
    """A NATS connection (drained on the way out) and, if asked, a database pool."""
    nc = await connect_nats(urls.nats_url, name=name)
    try:
        pool = await connect_db(urls.database_url) if database else None
        try:
            yield nc, pool
        finally:
            if pool is not None:
                await pool.close()
    finally:
        try:
            await nc.drain()
        except Exception:
            await nc.close()


async def run_service(
    name: str,
    urls: ServerUrls,
    *,
    retention: timedelta = DEFAULT_RETENTION,
    faults: FaultInjector | None = None,
    settings: ConsumeSettings | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> ConsumeStats:
    """Serve the consumer `name` until SIGTERM/SIGINT (or `stop`); returns its counters."""
    definition = service(name)
    log = logging.getLogger(name)
    stop = asyncio.Event() if stop is None else stop
    if handle_signals:
        install_shutdown(stop)
    try:
        log.info("🚀 %s starting...", definition.title)
        log.info("📡 Connecting to NATS at %s", redact(urls.nats_url))
        log.info("🗄️  Connecting to PostgreSQL at %s", redact(urls.database_url))
        async with connected(urls, name=f"filetrash {name}") as (nc, pool):
            assert pool is not None
            await require_migrated(pool)
            resources = ServiceResources(
                pool=pool,
                js=JetStreamPublisher(nc.jetstream()),
                retention=retention,
                faults=faults if faults is not None else FaultInjector.from_env(),
            )
            handler = definition.make_handler(resources)
            stats = await run_consumer(
                nc,
                definition.endpoint,
                handler,
                settings=settings if settings is not None else ConsumeSettings(),
                stop=stop,
            )
    finally:
        if handle_signals:
            uninstall_shutdown()
    log.info(
        "👋 %s stopped: %d handled, %d acked, %d retried, %d dead-lettered",
        name,
        stats.handled,
        stats.acked,
        stats.naked,
        stats.dead_lettered,
        extra={
            "step": "stopped",
            "handled": stats.handled,
            "acked": stats.acked,
            "retried": stats.naked,
            "dead_lettered": stats.dead_lettered,
        },
    )
    return stats


async def run_publisher(
    urls: ServerUrls, *, count: int | None, rate: float, seed: int | None
) -> list[PublishedDeletion]:
    """`filetrash publish`: simulated deletions until `count` or SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_shutdown(stop)
    try:
        return await _publish(urls, count=count, rate=rate, seed=seed, stop=stop)
    finally:
        uninstall_shutdown()


async def _publish(
    urls: ServerUrls, *, count: int | None, rate: float, seed: int | None, stop: asyncio.Event
) -> list[PublishedDeletion]:
    log = logging.getLogger("publisher")
    seed = random.SystemRandom().randrange(2**32) if seed is None else seed
    pace = "as fast as possible" if rate == 0 else f"{rate:g}/s"
    log.info(
        "🚀 Publisher starting: %s deletions, %s, seed %d",
        "unlimited" if count is None else count,
        pace,
        seed,
    )
    async with connected(urls, name="filetrash publisher", database=False) as (nc, _):
        return await publish_deletions(
            JetStreamPublisher(nc.jetstream()),
            DeletionSimulator(random.Random(seed)),
            count=count,
            rate=rate,
            stop=stop,
        )


async def run_purge(
    urls: ServerUrls, *, now: datetime | None, batch_size: int = DEFAULT_BATCH_SIZE
) -> PurgeReport:
    """`filetrash purge`: remove expired trash entries, one FilePurgedEvent each."""
    log = logging.getLogger("purge")
    async with connected(urls, name="filetrash purge") as (nc, pool):
        assert pool is not None
        await require_migrated(pool)
        report = await purge_expired(
            pool, JetStreamPublisher(nc.jetstream()), now=now, batch_size=batch_size
        )
    log.info(
        "✅ Purge done: %d entries purged in %d batch(es), %d events published, %d duplicates",
        report.purged,
        report.batches,
        report.events_published,
        report.events_duplicate,
        extra={"step": "done", "purged": report.purged},
    )
    return report
