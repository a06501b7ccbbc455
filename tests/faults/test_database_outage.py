"""Scenario 3 — database outage: PostgreSQL stops for about ten seconds while deletions keep
coming. The services neither crash nor spin: they back off (their CPU time and the number of
handler attempts during the outage stay small), nothing is dead-lettered for it, and they
resume by themselves when the database is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    Fleet,
    deliveries,
    fault_servers,
    published_ids,
    reconcile_run,
    wait_processed,
    wait_ready,
)
from tests.faults.table import RecordResult
from tests.support.servers import NatsServer, PostgresServer

pytestmark = pytest.mark.faults

COUNT = 2000
RATE = 200.0
"""Publishing ends during the outage: the recovery is then the time to work off its backlog."""
SEED = 3003
OUTAGE = 10.0
MAX_CPU_SHARE = 0.25
"""Most CPU a service may use during the outage, as a share of the outage's wall time."""
MAX_DELIVERIES = 300
"""Most deliveries to both durables during the outage. Messages keep arriving at RATE: a
consumer that goes on fetching and failing them takes each one several times (thousands in
all); one that backs off takes a few batches and then waits."""


async def test_services_back_off_while_the_database_is_down_and_resume_after(
    nats_server: NatsServer,
    database_url: str,
    restartable_pg_server: PostgresServer,
    fault_dir: Path,
    record_result: RecordResult,
) -> None:
    async with fault_servers(nats_server.url, database_url) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [fleet.service("trash-processor"), fleet.service("audit-logger")]
            await wait_ready(*services)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)
            await asyncio.sleep(3.0)
            await asyncio.to_thread(restartable_pg_server.stop)
            outage_started = time.monotonic()
            cpu_before = [p.cpu_seconds() for p in services]
            delivered_before = await deliveries(servers.js)
            await asyncio.sleep(OUTAGE)
            delivered_during = await deliveries(servers.js) - delivered_before
            cpu_during = [
                p.cpu_seconds() - before for p, before in zip(services, cpu_before, strict=True)
            ]
            for process in services:
                assert process.alive, f"{process.label} died in the outage:\n{process.tail()}"
            assert await publisher.wait(timeout=60) == 0, publisher.tail()
            deletions = published_ids(publisher)
            assert len(deletions) == COUNT
            await asyncio.to_thread(restartable_pg_server.start)
            outage = time.monotonic() - outage_started
            recovery = await wait_processed(servers, deletions, timeout=120)
            for process in services:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    record_result(
        "3 database outage",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        outage_s=round(outage, 1),
        cpu_s_during_outage={
            p.label: round(c, 2) for p, c in zip(services, cpu_during, strict=True)
        },
        deliveries_during_outage=delivered_during,
    )
    outcome.assert_exact()
    assert delivered_during <= MAX_DELIVERIES, f"{delivered_during} deliveries: no back-off"
    for process, cpu in zip(services, cpu_during, strict=True):
        assert cpu < MAX_CPU_SHARE * OUTAGE, f"{process.label} spun: {cpu:.1f}s CPU in the outage"
