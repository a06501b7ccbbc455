"""Scenario 1 — consumer crash: trash-processors are killed with SIGKILL at random moments
while they work, and instances crash on purpose between the INSERT and the publish
(`FILETRASH_FAULT=after-insert`) and between the publish and the ack (`after-publish`);
each is restarted. Every deletion still ends with one row, one trash event, one audit row."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from handwritten.filetrash.faults import CRASH_STATUS
from tests.faults.harness import (
    DELETION_CONSUMERS,
    Fleet,
    deliveries,
    fault_servers,
    published_ids,
    reconcile_run,
    wait_processed,
    wait_ready,
)
from tests.faults.table import RecordResult
from tests.support.processes import CliProcess
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

COUNT = 3000
RATE = 200.0
SEED = 1001
SCHEDULE = (
    "kill",
    "after-insert",
    "kill",
    "after-publish",
    "kill",
    "after-insert",
    "kill",
    "after-publish",
    "kill",
    "after-insert",
)
"""The faults, in order, about a second apart while the publisher runs."""


async def crash_while_publishing(
    crasher: CliProcess, publisher: CliProcess, grace: float = 5.0
) -> int | None:
    """The crasher's exit status; None when publishing ended and the crasher, `grace` seconds
    later, still had no message of its own to crash on (it is killed: the schedule ends)."""
    deadline = time.monotonic() + 60
    publishing_ended: float | None = None
    while crasher.alive:
        now = time.monotonic()
        if publishing_ended is None and not publisher.alive:
            publishing_ended = now
        if publishing_ended is not None and now > publishing_ended + grace:
            crasher.kill()
            return None
        assert now < deadline, f"{crasher.label} did not crash within 60s:\n{crasher.tail()}"
        await asyncio.sleep(0.05)
    return await crasher.wait(timeout=1)


async def test_killed_and_crashing_trash_processors_lose_and_duplicate_nothing(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    rng = random.Random(SEED)
    async with fault_servers(nats_server.url, database_url) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            processors = [
                fleet.service("trash-processor", label=f"trash-processor-{n}") for n in (1, 2)
            ]
            audit = fleet.service("audit-logger")
            await wait_ready(*processors, audit)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)
            injected: dict[str, int] = {"kill": 0, "after-insert": 0, "after-publish": 0}
            last_fault = time.monotonic()
            for fault in SCHEDULE:
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                # A crasher waits for a message of its own: with little publishing left (a
                # loaded machine takes over a second to start a process) it may get none.
                if not publisher.alive or len(published_ids(publisher)) > COUNT - 3 * RATE:
                    break
                if fault == "kill":
                    index = rng.randrange(len(processors))
                    processors[index].kill()
                    processors[index] = fleet.restart(processors[index])
                else:
                    crasher = fleet.service(
                        "trash-processor", label=f"crasher-{fault}", FILETRASH_FAULT=fault
                    )
                    status = await crash_while_publishing(crasher, publisher)
                    if status is None:
                        break
                    assert status == CRASH_STATUS, crasher.tail()
                    assert f"fault injected at {fault}" in crasher.output()
                injected[fault] += 1
                last_fault = time.monotonic()
            assert await publisher.wait(timeout=120) == 0, publisher.tail()
            deletions = published_ids(publisher)
            assert len(deletions) == COUNT
            assert injected["kill"] >= 3 and injected["after-insert"] >= 2, injected
            assert injected["after-publish"] >= 1, injected

            await wait_processed(servers, deletions, timeout=90)
            recovery = time.monotonic() - last_fault
            delivered = await deliveries(servers.js)
            for process in (*processors, audit):
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    redelivered = delivered - len(deletions) * len(DELETION_CONSUMERS)
    record_result(
        "1 consumer crash",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        kills=injected["kill"],
        crashes_after_insert=injected["after-insert"],
        crashes_after_publish=injected["after-publish"],
        redeliveries=redelivered,
    )
    outcome.assert_exact()
    assert redelivered > 0, "the faults hit messages in flight"
