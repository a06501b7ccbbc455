"""Scenario 7 — graceful shutdown under load: SIGTERM to the publisher and every service while
hundreds of deletions are in flight (the database is slowed down so that they pile up). Each
process exits 0 after settling what it holds; restarted, the services finish the rest; nothing
is lost or duplicated, and nothing is left waiting out an ack wait in a dead process's hands."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    DELETION_CONSUMERS,
    Fleet,
    consumer_infos,
    fault_servers,
    published_ids,
    reconcile_run,
    slow_down_inserts,
    wait_processed,
    wait_ready,
    wait_until,
)
from tests.faults.table import RecordResult
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

COUNT = 3000
RATE = 500.0
SEED = 7007
IN_FLIGHT = 200
"""Unacknowledged deliveries each durable must hold when SIGTERM comes."""
BATCH = "300"


async def test_sigterm_under_load_exits_0_and_loses_nothing(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    async with fault_servers(nats_server.url, database_url) as servers:
        # A batch's rows are inserted one after the other: slow, but not 300 times as slow.
        await slow_down_inserts(servers.pool, 0.03, tables=["trashed_files"])
        await slow_down_inserts(servers.pool, 0.05, tables=["audit_log"])
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [
                fleet.service("trash-processor", "--batch-size", BATCH, label="trash-processor-1"),
                fleet.service("trash-processor", "--batch-size", BATCH, label="trash-processor-2"),
                fleet.service("audit-logger", "--batch-size", BATCH),
            ]
            await wait_ready(*services)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)

            async def loaded() -> bool:
                if len(published_ids(publisher)) < COUNT // 2:
                    return False
                infos = await consumer_infos(servers.js)
                return all((info.num_ack_pending or 0) >= IN_FLIGHT for info in infos.values())

            async def state() -> object:
                infos = await consumer_infos(servers.js)
                return {d: (i.num_pending, i.num_ack_pending) for d, i in infos.items()}

            await wait_until(
                loaded, timeout=60, what=f"{IN_FLIGHT} in flight for each durable", state=state
            )
            in_flight = {
                d: i.num_ack_pending for d, i in (await consumer_infos(servers.js)).items()
            }
            assert publisher.alive, "SIGTERM must reach the publisher mid-run"
            sigterm_at = time.monotonic()
            statuses = await asyncio.gather(
                *(process.terminate(timeout=60) for process in (publisher, *services))
            )
            shutdown_s = time.monotonic() - sigterm_at
            for process, status in zip((publisher, *services), statuses, strict=True):
                assert status == 0, f"{process.label} exited {status}:\n{process.tail()}"
            deletions = published_ids(publisher)
            assert 0 < len(deletions) < COUNT, "the publisher stopped early, cleanly"
            after = await consumer_infos(servers.js)
            left_in_flight = {d: i.num_ack_pending for d, i in after.items()}

            restarted = [fleet.restart(process) for process in services]
            restarted_at = time.monotonic()
            await wait_ready(*restarted)
            await wait_processed(servers, deletions, timeout=120)
            recovery = time.monotonic() - restarted_at
            for process in restarted:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
        stored = await servers.js.stream_info("FILE_EVENTS", subjects_filter="files.deleted")
    deleted_in_stream = (stored.state.subjects or {}).get("files.deleted", 0)
    record_result(
        "7 graceful shutdown",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        in_flight_at_sigterm=in_flight,
        shutdown_s=round(shutdown_s, 1),
        unacked_after_exit=left_in_flight,
    )
    outcome.assert_exact()
    assert deleted_in_stream == len(deletions), "every stored deletion was acknowledged"
    assert left_in_flight == dict.fromkeys(DELETION_CONSUMERS, 0), "nothing left in dead hands"
