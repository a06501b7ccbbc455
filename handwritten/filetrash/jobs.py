"""The publisher (`filetrash publish`) and the purge job (`filetrash purge`) as processes:
connect, do the work, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime

from handwritten.filetrash.db import MIGRATIONS
from handwritten.filetrash.publisher import DeletionSimulator, PublishedDeletion, publish_deletions
from handwritten.filetrash.purge import DEFAULT_BATCH_SIZE, PurgeReport, purge_expired
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.run import connected, require_migrated
from handwritten.runtime.servers import ServerUrls
from handwritten.runtime.shutdown import install_shutdown, uninstall_shutdown

PUBLISHER_ROLE = "publishFileDeleted"
"""The NATS roles of the two producers: their send operations in the spec."""
PURGE_ROLE = "publishFilePurged"


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
    async with connected(urls, name="filetrash publisher", database=False, role=PUBLISHER_ROLE) as (
        nc,
        _,
    ):
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
    async with connected(urls, name="filetrash purge", role=PURGE_ROLE) as (nc, pool):
        assert pool is not None
        await require_migrated(pool, MIGRATIONS)
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
