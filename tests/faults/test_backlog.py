"""Scenarios 8 — a backlog that outgrows the stream (issue 11).

FILE_EVENTS keeps a message until every consumer whose filter matches it has acknowledged it
(interest retention) and refuses what does not fit (`discard: new`, per subject). Here its
limit is test-sized (`max_msgs_per_subject` CAP instead of the spec's 3,600,000); everything
else is the spec's.

a. The trash-processor is down while more deletions are published than the stream holds:
   the publisher is refused at the limit (exit 2, one line), nothing acknowledged is dropped,
   the running services warn of the trash-processor's headroom before it is spent; once it is
   back every acknowledged deletion becomes a row, and publishing goes on.
b. The same with the audit-logger and the analytics-service down (fan-out): the
   trash-processor keeps working, the stream keeps what the two still need.
c. A consumer down past max_age: its messages are removed unread. Not silent: the running
   services warn as the oldest message it needs nears max_age, and report the removal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    EVENTS_STREAM,
    Fleet,
    fault_servers,
    published_ids,
    reconcile_run,
    wait_processed,
    wait_ready,
    wait_until,
)
from tests.faults.table import RecordResult
from tests.support.processes import CliProcess
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

CAP = 500
"""Test-sized max_msgs_per_subject of FILE_EVENTS: the deletions it can hold."""
OVERFLOW = 300
"""Deletions published beyond CAP while a consumer is down: each must be refused."""
AFTER = 400
"""Deletions published once the consumer is back: all accepted."""
WATCH = {"FILETRASH_HEADROOM_INTERVAL": "0.5"}
"""The services check headroom every half second (the default is a minute)."""
EVERY_SERVICE = (
    "trash-processor",
    "audit-logger",
    "analytics-service",
    "cleanup-service",
    "notification-service",
)


def headroom_lines(fleet: Fleet, durable: str, step: str = "headroom") -> list[dict[str, Any]]:
    """Headroom log lines about `durable`, from every running service."""
    return [
        line
        for p in fleet.processes
        for line in p.log_lines()
        if line.get("step") == step and line.get("durable") == durable
    ]


async def overflow(fleet: Fleet, *, seed: int) -> tuple[CliProcess, list[Any]]:
    """Publish CAP + OVERFLOW at once: JetStream takes CAP and refuses the next one; the
    publisher stops there with exit 2 and one line saying the stream is full."""
    publisher = fleet.publisher(CAP + OVERFLOW, rate=0, seed=seed)
    started = time.monotonic()
    assert await publisher.wait(timeout=120) == 2, publisher.tail()
    refused_after = time.monotonic() - started
    accepted = published_ids(publisher)
    assert len(accepted) == CAP, f"{len(accepted)} acknowledged, expected {CAP}"
    errors = [line for line in publisher.tail().splitlines() if "filetrash: error:" in line]
    assert len(errors) == 1, publisher.tail()
    assert f"stream {EVENTS_STREAM} is full: max_msgs_per_subject reached" in errors[0]
    assert refused_after < 30, f"the refusal took {refused_after:.1f}s: retried, not refused"
    return publisher, accepted


async def backlog_scenario(
    nats_server: NatsServer,
    database_url: str,
    fault_dir: Path,
    record_result: RecordResult,
    *,
    down: tuple[str, ...],
    row: str,
    seed: int,
) -> None:
    async with fault_servers(
        nats_server.url, database_url, stream_limits={"max_msgs_per_subject": CAP}
    ) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            running = [fleet.service(s, **WATCH) for s in EVERY_SERVICE if s not in down]
            await wait_ready(*running)
            _, first = await overflow(fleet, seed=seed)
            for durable in down:

                async def warned(durable: str = durable) -> bool:
                    return bool(headroom_lines(fleet, durable))

                await wait_until(warned, timeout=30, what=f"a headroom warning for {durable}")
            state = await servers.js.stream_info(EVENTS_STREAM, subjects_filter="files.deleted")
            assert (state.state.subjects or {}).get("files.deleted") == CAP
            back = time.monotonic()
            restarted = [fleet.service(s, **WATCH) for s in down]
            await wait_ready(*restarted)
            await wait_processed(servers, first, timeout=120, what="the backlog")
            recovery = time.monotonic() - back
            second = fleet.publisher(AFTER, rate=200, seed=seed + 1, label="publisher-after")
            assert await second.wait(timeout=120) == 0, second.tail()
            deletions = [*first, *published_ids(second)]
            await wait_processed(servers, deletions, timeout=120)

            async def drained() -> bool:
                info = await servers.js.stream_info(EVENTS_STREAM)
                return info.state.messages == 0

            await wait_until(drained, timeout=60, what="FILE_EVENTS emptied by the acks")
            for process in [*running, *restarted]:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions, consumed=True)
    record_result(
        row,
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        stream_cap=CAP,
        down=list(down),
        notes=(
            f"FILE_EVENTS max_msgs_per_subject {CAP}; {', '.join(down)} down; "
            f"{CAP + OVERFLOW} deletions published at once: {CAP} acknowledged, then the "
            "publisher was refused (exit 2, stream full) and stopped; "
            f"after the restart {AFTER} more at 200/s, all accepted"
        ),
    )
    outcome.assert_exact()


async def test_trash_processor_down_past_the_stream_limit(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    await backlog_scenario(
        nats_server,
        database_url,
        fault_dir,
        record_result,
        down=("trash-processor",),
        row="8a backlog past the limit",
        seed=8001,
    )


async def test_fan_out_consumers_down_past_the_stream_limit(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    await backlog_scenario(
        nats_server,
        database_url,
        fault_dir,
        record_result,
        down=("audit-logger", "analytics-service"),
        row="8b fan-out consumers down",
        seed=8101,
    )


MAX_AGE = 8.0
COUNT_AGED = 200


async def test_consumer_down_past_max_age_is_reported(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    limits = {"max_age": MAX_AGE, "duplicate_window": 2.0}
    async with fault_servers(nats_server.url, database_url, stream_limits=limits) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            running = [fleet.service(s, **WATCH) for s in EVERY_SERVICE if s != "trash-processor"]
            await wait_ready(*running)
            publisher = fleet.publisher(COUNT_AGED, rate=0, seed=8201)
            assert await publisher.wait(timeout=60) == 0, publisher.tail()
            deletions = published_ids(publisher)
            published_at = time.monotonic()

            async def warned() -> bool:
                return any(
                    line.get("limit") == "max_age"
                    for line in headroom_lines(fleet, "trash-processor")
                )

            await wait_until(warned, timeout=30, what="a max_age warning for trash-processor")
            warned_after = time.monotonic() - published_at

            async def reported() -> bool:
                return bool(headroom_lines(fleet, "trash-processor", "headroom-lost"))

            await wait_until(reported, timeout=30, what="the removal reported")
            reported_after = time.monotonic() - published_at

            async def all_expired() -> bool:
                info = await servers.js.consumer_info(EVENTS_STREAM, "trash-processor")
                return info.num_pending == 0

            await wait_until(all_expired, timeout=30, what="every deletion expired")
            late = fleet.service("trash-processor", **WATCH)
            await wait_ready(late)
            info = await servers.js.consumer_info(EVENTS_STREAM, "trash-processor")
            assert info.num_pending == 0 and info.num_ack_pending == 0
            for process in [*running, late]:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    record_result(
        "8c consumer down past max_age",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=None,
        warned_after_s=round(warned_after, 1),
        reported_after_s=round(reported_after, 1),
        notes=(
            f"max_age {MAX_AGE:g}s; trash-processor down; {COUNT_AGED} deletions: warned "
            f"(>= 80% of max_age) {warned_after:.1f}s after publishing, removal reported "
            f"{reported_after:.1f}s after; the loss is the documented cost of max_age"
        ),
    )
    assert outcome.processed == 0
    assert outcome.lost == len(deletions) == COUNT_AGED


async def test_trash_events_full_holds_the_deletions_without_spending_deliveries(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    """d. Only the notification-service is down: the deletions are done by everyone else,
    the trash events pile up to their subject's budget, and then the trash-processor's own
    publishes are refused. It holds those deletions (no nak, no delivery spent, nothing
    dead-lettered), deletions pile up behind them until the publisher is refused too; when
    the notification-service is back everything drains."""
    async with fault_servers(
        nats_server.url, database_url, stream_limits={"max_msgs_per_subject": CAP}
    ) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            running = [
                fleet.service(s, **WATCH) for s in EVERY_SERVICE if s != "notification-service"
            ]
            await wait_ready(*running)
            # At 200/s every consumer keeps up: the trash events fill their budget, and the
            # deletions after the CAP-th wait in the trash-processor.
            steady = fleet.publisher(CAP + 100, rate=200, seed=8301, label="publisher-steady")
            assert await steady.wait(timeout=120) == 0, steady.tail()

            async def held() -> bool:
                return any(
                    line.get("step") == "held-stream-full" for line in fleet.logs("trash-processor")
                )

            await wait_until(held, timeout=30, what="the trash-processor holding deletions")
            # Then the deletions pile up behind the held ones until the publisher is refused.
            burst = fleet.publisher(2 * CAP, rate=0, seed=8302, label="publisher-burst")
            assert await burst.wait(timeout=120) == 2, burst.tail()
            assert "is full: max_msgs_per_subject reached" in burst.tail()
            first = [*published_ids(steady), *published_ids(burst)]
            info = await servers.js.consumer_info(EVENTS_STREAM, "trash-processor")
            assert info.num_redelivered == 0, "a held message is not redelivered"
            back = time.monotonic()
            late = fleet.service("notification-service", **WATCH)
            await wait_ready(late)
            await wait_processed(servers, first, timeout=120, what="the held backlog")
            recovery = time.monotonic() - back
            info = await servers.js.consumer_info(EVENTS_STREAM, "trash-processor")
            redelivered = info.num_redelivered

            async def drained() -> bool:
                return (await servers.js.stream_info(EVENTS_STREAM)).state.messages == 0

            await wait_until(drained, timeout=60, what="FILE_EVENTS emptied by the acks")
            for process in [*running, late]:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, first, consumed=True)
    record_result(
        "8d trash events full (notification down)",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        redelivered=redelivered,
        notes=(
            f"max_msgs_per_subject {CAP}; notification-service down; {CAP + 100} deletions "
            f"at 200/s, then {2 * CAP} at once: {len(first)} acknowledged in all before the "
            "publisher was refused; the "
            "trash-processor held the deletions whose trash events were refused, spending "
            "no delivery"
        ),
    )
    outcome.assert_exact()
