"""Scenario 2 — broker restart: nats-server (file storage) is stopped and started again while
the publisher publishes and the services consume, once cleanly (SIGTERM) and once as a crash
(SIGKILL). The publisher retries with the same Nats-Msg-Id; the services reconnect and resume
by themselves, without being restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    Fleet,
    fault_servers,
    published_ids,
    reconcile_run,
    wait_processed,
    wait_ready,
)
from tests.faults.table import RecordResult
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

COUNT = 2500
RATE = 250.0
SEED = 2002
DOWN_FOR = 2.0
"""Seconds the server stays down each time: several pull expiries and publish timeouts."""


def crash_and_stay_down(server: NatsServer) -> None:
    server.kill()
    time.sleep(DOWN_FOR)
    server.start()


def stop_and_stay_down(server: NatsServer) -> None:
    server.stop()
    time.sleep(DOWN_FOR)
    server.start()


async def test_a_restarted_broker_loses_and_duplicates_nothing(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    async with fault_servers(nats_server.url, database_url) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [
                fleet.service("trash-processor", label="trash-processor-1"),
                fleet.service("trash-processor", label="trash-processor-2"),
                fleet.service("audit-logger"),
            ]
            await wait_ready(*services)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)
            outages = []
            for outage in (stop_and_stay_down, crash_and_stay_down):
                await asyncio.sleep(3.0)
                assert publisher.alive, "the outage must land while publishing"
                started = time.monotonic()
                await asyncio.to_thread(outage, nats_server)
                outages.append(round(time.monotonic() - started, 1))
            restarted_at = time.monotonic()
            assert await publisher.wait(timeout=120) == 0, publisher.tail()
            deletions = published_ids(publisher)
            assert len(deletions) == COUNT, "every deletion was acknowledged in the end"
            recovery = restarted_at + await wait_processed(servers, deletions, timeout=90)
            recovery -= restarted_at
            for process in services:
                assert process.alive, f"{process.label} died:\n{process.tail()}"
            for process in services:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    publish_retries = sum(
        1 for line in publisher.log_lines() if "got no PubAck" in line.get("message", "")
    )
    duplicates_answered = sum(
        1 for line in publisher.log_lines() if line.get("step") == "published" and line["duplicate"]
    )
    record_result(
        "2 broker restart",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        outages_s=outages,
        publish_retries=publish_retries,
        publish_duplicates_answered=duplicates_answered,
    )
    outcome.assert_exact()
    assert publish_retries > 0, "the publisher met the outages"
