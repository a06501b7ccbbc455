"""Running one service as a process (`filetrash run NAME`): connect, consume, stop cleanly on
SIGTERM. PostgreSQL is connected only for a service that declares a database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from nats.aio.client import Client

from handwritten.runtime.connect import connect_db, connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.headroom import HeadroomMonitor, interval, warn_at
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.migrate import pending_migrations
from handwritten.runtime.registry import ServiceResources, service
from handwritten.runtime.roles import ADMIN, RefusalWatch
from handwritten.runtime.servers import ServerUrls, redact
from handwritten.runtime.shutdown import install_shutdown, uninstall_shutdown

METRICS_HOST_ENV = "FILETRASH_METRICS_HOST"
"""Where the metrics port listens (default 127.0.0.1; 0.0.0.0 for a scraper on another host)."""


class DatabaseNotMigrated(Exception):
    """The database lacks migrations the service needs: it would fail on every message."""


async def require_migrated(pool: asyncpg.Pool, migrations: Path) -> None:
    pending = await pending_migrations(pool, migrations)
    if pending:
        raise DatabaseNotMigrated(
            f"the database lacks migration(s) {', '.join(pending)}: run `filetrash provision`"
        )


@asynccontextmanager
async def connected(
    urls: ServerUrls,
    *,
    name: str,
    database: bool = True,
    role: str = ADMIN,
    watch: RefusalWatch | None = None,
) -> AsyncIterator[tuple[Client, asyncpg.Pool | None]]:
    """A NATS connection as `role` (drained on the way out) and, if asked, a database pool.
    What fails inside after the server refused something to the role (a request that then
    timed out) is reported as that refusal (`PermissionRefused`), once."""
    database_url = urls.database() if database else None
    watch = RefusalWatch() if watch is None else watch
    nc = await connect_nats(urls.nats_url, name=name, login=urls.login(role), on_refused=watch)
    try:
        pool = await connect_db(database_url) if database_url is not None else None
        try:
            yield nc, pool
        except Exception:
            watch.raise_if_refused()
            raise
        finally:
            if pool is not None:
                await pool.close()
        watch.raise_if_refused()
    finally:
        try:
            await nc.drain()
        except Exception:
            await nc.close()


GC_YOUNG_THRESHOLD = 10_000
"""Allocations (less deallocations) of tracked objects between two collections of the youngest
generation; Python's default is 700."""


def settle_garbage_collector() -> None:
    """Tune the cyclic garbage collector for a consumer's steady state, once it is set up.

    A busy consumer holds a few hundred messages in flight, each with its event, delivery and
    headers: with Python's default threshold the collector runs every 700 allocations, finds
    them all still alive, and promotes them generation by generation until full collections
    traverse them again with everything the imports made (pydantic's schemas, nats-py,
    asyncpg). Its work is acyclic and freed by reference counting, so the collector finds
    nothing; it cost 5 µs per event, an eighth of the notification-service's CPU
    (`python -m tests.bench --service notification-service`). Everything alive now moves to
    the permanent generation (`gc.freeze`: never traversed again), and the youngest generation
    is collected every `GC_YOUNG_THRESHOLD` allocations instead: 2,100 collections per
    100,000 events become 28, and the collector's time 0.48 s to 0.05 s. The cost: a frozen
    object that later ends up in a reference cycle is never collected (say, a connection's
    state replaced on a reconnect) — bounded by what set-up made, once."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def run_service(
    name: str,
    urls: ServerUrls,
    *,
    options: Mapping[str, object] | None = None,
    settings: ConsumeSettings | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    metrics_port: int | None = None,
    steady_gc: bool = False,
) -> ConsumeStats:
    """Serve the consumer `name` until SIGTERM/SIGINT (or `stop`); returns its counters.
    `options` reach the handler as `ServiceResources.options` (an app's `run_options`); with
    `metrics_port`, /metrics, /healthz and /readyz are served on it (runtime/metrics.py).
    `steady_gc`: the process is this service's alone (`filetrash run`): once it is set up,
    `settle_garbage_collector`."""
    definition = service(name)
    log = logging.getLogger(name)
    stop = asyncio.Event() if stop is None else stop
    # A refused publish, pull or ack is not retried: the service stops and reports it once.
    watch = RefusalWatch(lambda _refusal: stop.set())
    if handle_signals:
        install_shutdown(stop)
    try:
        log.info("🚀 %s starting...", definition.title)
        login = urls.login(definition.endpoint.durable)
        as_role = f" as role {login.role}" if login is not None else ""
        log.info("📡 Connecting to NATS at %s%s", redact(urls.nats_url), as_role)
        if definition.uses_database:
            log.info("🗄️  Connecting to PostgreSQL at %s", redact(urls.database()))
        async with connected(
            urls,
            name=f"filetrash {name}",
            database=definition.uses_database,
            role=definition.endpoint.durable,
            watch=watch,
        ) as (nc, pool):
            if pool is not None and definition.migrations is not None:
                await require_migrated(pool, definition.migrations)
            resources = ServiceResources(
                js=JetStreamPublisher(nc.jetstream()),
                database=pool,
                options=dict(options or {}),
                service=name,
            )
            handler = definition.make_handler(resources)
            stats = ConsumeStats()
            monitor = HeadroomMonitor(
                nc.jetstream(),
                [definition.endpoint.stream],
                every=interval(),
                threshold=warn_at(),
                # Under a role a service may read its own durable's info only: it warns of its
                # own headroom and its stream's limits; without one, of every durable's.
                durables=[definition.endpoint.durable] if login is not None else None,
            )
            watching = asyncio.create_task(monitor.run(stop))
            if steady_gc:
                settle_garbage_collector()
            try:
                async with _metrics(
                    name, definition.endpoint.stream, stats, nc, pool, metrics_port
                ):
                    await run_consumer(
                        nc,
                        definition.endpoint,
                        handler,
                        settings=settings if settings is not None else ConsumeSettings(),
                        stop=stop,
                        stats=stats,
                    )
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
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


@asynccontextmanager
async def _metrics(
    durable: str,
    stream: str,
    stats: ConsumeStats,
    nc: Client,
    pool: asyncpg.Pool | None,
    port: int | None,
) -> AsyncIterator[None]:
    """The metrics and health endpoints while the service runs, when a port is given."""
    if port is None:
        yield
        return
    from handwritten.runtime.metrics import ServiceMetrics

    async def database_ready() -> bool:
        assert pool is not None
        try:
            async with asyncio.timeout(2):
                return bool(await pool.fetchval("SELECT 1") == 1)
        except Exception:
            return False

    metrics = ServiceMetrics(
        durable, stream, stats, nc, database_ready=database_ready if pool is not None else None
    )
    server = await metrics.serve(port, host=os.environ.get(METRICS_HOST_ENV, "127.0.0.1"))
    refresh = asyncio.create_task(metrics.refresh())
    try:
        yield
    finally:
        refresh.cancel()
        server.close()
        with contextlib.suppress(asyncio.CancelledError):
            await refresh
