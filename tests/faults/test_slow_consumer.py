"""Scenario 6 — slow consumer: for about 2% of the deletions the database takes longer than
the consumers' ack wait (3 s against 2 s) to insert, and while those hold connections the
others queue behind them. +WPI from the consume loop keeps every such message with the
instance working on it: no redelivery storm, no duplicate work, rows or events."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import (
    DELETION_CONSUMERS,
    FAULT_TIMINGS,
    Fleet,
    deliveries,
    fault_servers,
    published_ids,
    reconcile_run,
    slow_down_inserts,
    slowed,
    wait_processed,
    wait_ready,
)
from tests.faults.table import RecordResult
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

COUNT = 2000
RATE = 200.0
SEED = 6006
SLOW_SHARE = 0.02
SLOW_SECONDS = 3.0


async def test_handlers_slower_than_the_ack_wait_are_not_redelivered(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    assert FAULT_TIMINGS["ack_wait"] < SLOW_SECONDS
    async with fault_servers(nats_server.url, database_url) as servers:
        await slow_down_inserts(servers.pool, SLOW_SECONDS, share=SLOW_SHARE)
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [
                fleet.service("trash-processor", label="trash-processor-1"),
                fleet.service("trash-processor", label="trash-processor-2"),
                fleet.service("audit-logger"),
            ]
            await wait_ready(*services)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)
            assert await publisher.wait(timeout=120) == 0, publisher.tail()
            deletions = published_ids(publisher)
            recovery = await wait_processed(servers, deletions, timeout=120)
            delivered = await deliveries(servers.js)
            for process in services:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    slow = slowed(deletions, SLOW_SHARE)
    redelivered = delivered - len(deletions) * len(DELETION_CONSUMERS)
    record_result(
        "6 slow consumer",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        slow_handlers=len(slow),
        slow_s=SLOW_SECONDS,
        ack_wait_s=FAULT_TIMINGS["ack_wait"],
        redeliveries=redelivered,
    )
    outcome.assert_exact()
    assert len(slow) >= 20, "enough slow handlers to matter"
    assert redelivered == 0, f"{redelivered} redeliveries: duplicate work"
