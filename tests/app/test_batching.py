"""The batched path of the consume loop and the trash-processor, against real servers: a bad
message never fails or delays its batch, a failing batch is replayed one message at a time,
a crash in the middle of a batch and a redelivered batch still leave exactly one row and one
trash event per deletion, and a message arriving while a pull is open is not held back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from generated.consumers import TRASH_PROCESSOR
from generated.models import FileDeletedEvent
from generated.publishers import PublishFileDeleted
from generated.topology import CONSUMERS
from handwritten.filetrash import ids, reconcile
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.filetrash.trash_processor import TrashProcessor
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.contract import (
    BatchResult,
    Delivery,
    OutgoingMessage,
    PublishResult,
)
from handwritten.runtime.deadletter import REASON_HEADER
from handwritten.runtime.jetstream import JetStreamPublisher, PublishFailed
from tests.app.service_harness import Servers, ServiceProcess, provisioned, wait_until
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

STREAM = "FILE_EVENTS"
DLQ = "FILE_EVENTS_DLQ"
DURABLE = TRASH_PROCESSOR.durable
BATCHED = ConsumeSettings(
    batch_size=32,
    concurrency=2,
    fetch_timeout=1.0,
    linger=0.3,  # long enough that every pre-published deletion lands in the first batch
    nak_delay_base=0.05,
    nak_delay_max=0.2,
    ack_timeout=1.0,
)


@pytest.fixture
async def servers(nats_server: NatsServer, database_url: str) -> AsyncIterator[Servers]:
    async with provisioned(nats_server.url, database_url) as servers:
        # Test timings: a crashed delivery comes back after 2 s rather than the spec's 30 s.
        binding = CONSUMERS[DURABLE]
        config = dataclasses.replace(binding.config, ack_wait=2.0, backoff=None, max_deliver=3)
        await servers.js.add_consumer(binding.stream, config=config)
        yield servers


def deletions(count: int, seed: int) -> list[FileDeletedEvent]:
    simulator = DeletionSimulator(random.Random(seed))
    return [simulator.next_event() for _ in range(count)]


async def publish(servers: Servers, events: Sequence[FileDeletedEvent]) -> None:
    publisher = PublishFileDeleted(servers.publisher)
    for event in events:
        await publisher.publish(event)


async def trash_events(
    servers: Servers, events: Sequence[FileDeletedEvent]
) -> reconcile.EventTally:
    messages = await reconcile.scan(servers.js, stream=STREAM, subject="files.trashed")
    return reconcile.tally(messages, [ids.trash_event_id(e.event_id) for e in events])


async def dead_letters(servers: Servers) -> list[reconcile.StoredMessage]:
    return await reconcile.scan(servers.js, stream=DLQ, subject="dlq.files.>")


async def rows_and_marks(servers: Servers) -> tuple[int, int]:
    row = await servers.pool.fetchrow("SELECT count(*), count(trash_event_seq) FROM trashed_files")
    return int(row[0]), int(row[1])


class FlakyPublish:
    """The real publisher, except that the first publish of each of `fail_once` msg ids gets
    no PubAck (as in a broker hiccup), and it counts what it was asked to send."""

    def __init__(self, inner: JetStreamPublisher, fail_once: set[str]) -> None:
        self.inner = inner
        self.fail_once = set(fail_once)
        self.attempts: dict[str, int] = {}

    def _failing(self, msg_id: str) -> bool:
        self.attempts[msg_id] = self.attempts.get(msg_id, 0) + 1
        if msg_id in self.fail_once:
            self.fail_once.discard(msg_id)
            return True
        return False

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        if self._failing(msg_id):
            raise PublishFailed(f"no PubAck for {msg_id}")
        return await self.inner.publish(subject, payload, msg_id=msg_id, headers=headers)

    async def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[PublishResult | Exception]:
        failing = [self._failing(m.msg_id) for m in messages]
        sent = await self.inner.publish_many(
            [m for m, f in zip(messages, failing, strict=True) if not f]
        )
        answers = iter(sent)
        return [
            PublishFailed(f"no PubAck for {m.msg_id}") if f else next(answers)
            for m, f in zip(messages, failing, strict=True)
        ]


class RecordingTrashProcessor(TrashProcessor):
    """The real trash-processor, remembering the size of every batch it was given and every
    deletion it was given alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[UUID]] = []
        self.singles: list[UUID] = []

    async def handle_batch(self, items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> BatchResult:
        self.batches.append([event.event_id for event, _ in items])
        return await super().handle_batch(items)

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        self.singles.append(event.event_id)
        await super().on_file_deleted_event(event, delivery)


@asynccontextmanager
async def consuming(
    servers: Servers, handler: Any, settings: ConsumeSettings = BATCHED
) -> AsyncIterator[ConsumeStats]:
    nc = await connect_nats(servers.nats_url, name="test-batching")
    stop = asyncio.Event()
    stats = ConsumeStats()
    task = asyncio.create_task(
        run_consumer(nc, TRASH_PROCESSOR, handler, settings=settings, stop=stop, stats=stats)
    )
    try:
        yield stats
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 15)
        finally:
            await nc.close()


async def test_a_poison_message_and_a_transient_failure_do_not_hold_back_their_batch(
    servers: Servers,
) -> None:
    events = deletions(10, seed=21)
    flaky = events[3]
    await publish(servers, events[:5])
    poison = await servers.js.publish(
        "files.deleted", b'{"eventType": "FileDeletedEvent", "oops"', headers={"Nats-Msg-Id": "p"}
    )
    await publish(servers, events[5:])
    publisher = FlakyPublish(
        JetStreamPublisher(servers.js), fail_once={str(ids.trash_event_id(flaky.event_id))}
    )
    processor = RecordingTrashProcessor(servers.pool, publisher)

    async with consuming(servers, processor) as stats:

        async def settled() -> bool:
            return stats.acked == 10 and stats.dead_lettered == 1

        await wait_until(settled, what="10 acks and 1 dead letter", state=lambda: _state(stats))

    # One batch of the ten valid deletions (the poison was set aside, not in it), then the
    # flaky one again on its own, redelivered after its nak.
    assert processor.batches[0] == [e.event_id for e in events]
    assert processor.batches[1:] == [[flaky.event_id]]
    assert processor.singles == [], "no fallback: the batch itself never failed"
    assert (stats.batch_fallbacks, stats.naked, stats.handler_errors) == (0, 1, 1)
    assert publisher.attempts[str(ids.trash_event_id(flaky.event_id))] == 2
    assert await rows_and_marks(servers) == (10, 10)
    tally = await trash_events(servers, events)
    assert (tally.distinct, tally.copies) == (10, 10)
    [letter] = await dead_letters(servers)
    assert letter.headers[REASON_HEADER] == "invalid-json"
    assert letter.headers["Filetrash-Dlq-Sequence"] == str(poison.seq)
    assert processor.stored == 10 and processor.published == 10


async def test_a_batch_that_fails_as_a_whole_is_replayed_one_by_one_to_isolate_the_culprit(
    servers: Servers,
) -> None:
    """One row the database refuses (a trigger stands in for any row-level failure) makes
    the batch's single INSERT fail; replayed alone, the others succeed and the culprit is
    retried until max_deliver and then dead-lettered."""
    events = deletions(8, seed=22)
    culprit = events[5]
    await servers.pool.execute(
        f"""
        CREATE FUNCTION refuse_culprit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.original_event_id = '{culprit.event_id}' THEN
            RAISE EXCEPTION 'row refused for the test';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_culprit BEFORE INSERT ON trashed_files
          FOR EACH ROW EXECUTE FUNCTION refuse_culprit();
        """
    )
    await publish(servers, events)
    processor = RecordingTrashProcessor(servers.pool, JetStreamPublisher(servers.js))

    async with consuming(servers, processor) as stats:

        async def settled() -> bool:
            return stats.acked == 7 and stats.dead_lettered == 1

        await wait_until(settled, what="7 acks and 1 dead letter", state=lambda: _state(stats))

    assert processor.batches[0] == [e.event_id for e in events]
    assert stats.batch_fallbacks == 1
    assert sorted(processor.singles[:8]) == sorted(e.event_id for e in events)
    assert await rows_and_marks(servers) == (7, 7)
    others = [e for e in events if e is not culprit]
    tally = await trash_events(servers, others)
    assert (tally.distinct, tally.copies, tally.unexpected) == (7, 7, 0)
    [letter] = await dead_letters(servers)
    assert letter.headers[REASON_HEADER] == "max-deliver"
    assert "row refused for the test" in letter.headers["Filetrash-Dlq-Detail"]


async def test_a_redelivered_batch_after_its_commit_adds_nothing(servers: Servers) -> None:
    events = deletions(6, seed=23)
    repeat = events[2].model_copy(deep=True)  # the same deletion, published twice
    processor = TrashProcessor(
        servers.pool, JetStreamPublisher(servers.js), retention=timedelta(days=7)
    )
    items = [
        (e, Delivery("files.deleted", STREAM, i + 1, DURABLE, 1)) for i, e in enumerate(events)
    ]
    items.append((repeat, Delivery("files.deleted", STREAM, 7, DURABLE, 1)))

    first = await processor.handle_batch(items)
    assert first.failures == {}
    assert (processor.stored, processor.published) == (6, 6)
    assert await rows_and_marks(servers) == (6, 6)

    # Redelivered after the commit (the acks were lost): nothing new is stored or sent.
    redelivered = [(e, d._replace(num_delivered=2)) for e, d in items]
    again = await processor.handle_batch(redelivered)
    assert again.failures == {}
    assert (processor.stored, processor.published) == (6, 6)

    # Redelivered after the commit and the publishes, before the sequences were recorded: the
    # same events go out again, identical, and JetStream drops them as duplicates.
    await servers.pool.execute("UPDATE trashed_files SET trash_event_seq = NULL")
    once_more = await processor.handle_batch(redelivered)
    assert once_more.failures == {}
    assert (processor.stored, processor.published) == (6, 6)
    assert await rows_and_marks(servers) == (6, 6)
    tally = await trash_events(servers, events)
    assert (tally.distinct, tally.copies) == (6, 6)
    stored = await reconcile.scan(servers.js, stream=STREAM, subject="files.trashed")
    for message in stored:
        original = json.loads(message.data)["data"]["originalEventId"]
        row = await servers.pool.fetchrow(
            "SELECT trash_event_seq FROM trashed_files WHERE original_event_id = $1",
            UUID(original),
        )
        assert row["trash_event_seq"] == message.seq


@pytest.mark.parametrize("fault", ["after-insert", "after-publish"])
async def test_a_crash_in_the_middle_of_a_batch_is_recovered_effectively_once(
    servers: Servers, tmp_path: Path, fault: str
) -> None:
    events = deletions(30, seed=24)
    await publish(servers, events)
    crashing = ServiceProcess(
        "trash-processor", servers.env(FILETRASH_FAULT=fault), tmp_path / "crash.log"
    )
    try:
        assert await crashing.wait_exit(timeout=30) == 137, crashing.output()
    finally:
        crashing.kill()
    assert f"fault injected at {fault}" in crashing.output()
    rows, marked = await rows_and_marks(servers)
    before = await trash_events(servers, events)
    assert rows > 1 and marked == 0, "a whole batch was committed, none recorded as sent"
    if fault == "after-insert":
        assert before.copies == 0, "the crash came before any trash event was published"
    else:
        # The batch that reached the fault had all its events acknowledged; a second batch
        # (two are in flight at once) may have committed its rows and not published yet.
        assert 0 < before.copies <= rows and before.distinct == before.copies, before

    recovering = ServiceProcess("trash-processor", servers.env(), tmp_path / "recover.log")
    try:

        async def recovered() -> bool:
            return await rows_and_marks(servers) == (30, 30)

        await wait_until(recovered, timeout=30, what="every deletion to complete")
    finally:
        assert await recovering.terminate() == 0, recovering.output()
    tally = await trash_events(servers, events)
    assert (tally.distinct, tally.copies, tally.unexpected) == (30, 30, 0)
    lines = [json.loads(line) for line in recovering.output().splitlines() if line.startswith("{")]
    found = sum(line.get("count", 1) for line in lines if line.get("step") == "found")
    assert found == rows, "every row of the crashed batch was found, not stored again"
    if fault == "after-publish":
        duplicates = [
            line for line in lines if line.get("step") == "published" and line["duplicate"]
        ]
        assert len(duplicates) == before.copies  # sent again, dropped by JetStream


async def test_a_message_is_handed_over_as_it_arrives_not_when_the_pull_is_full(
    servers: Servers,
) -> None:
    """A pull for 64 messages that stays open for 10 s: a single deletion published into it
    is processed at once, not when 63 more have come or the pull expired."""
    settings = dataclasses.replace(BATCHED, batch_size=64, fetch_timeout=10.0, linger=0.002)
    processor = TrashProcessor(servers.pool, JetStreamPublisher(servers.js))
    async with consuming(servers, processor, settings) as stats:
        await asyncio.sleep(0.5)  # the loop's first pull is open by now
        [event] = deletions(1, seed=25)
        started = time.monotonic()
        await publish(servers, [event])

        async def acked() -> bool:
            return stats.acked == 1

        await wait_until(acked, timeout=5, what="the deletion acked")
        took = time.monotonic() - started
    assert took < 2.0, f"held back {took:.2f}s"
    assert await rows_and_marks(servers) == (1, 1)


async def _state(stats: ConsumeStats) -> ConsumeStats:
    return stats


def test_nonsense_batch_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ConsumeSettings(concurrency=0)
    with pytest.raises(ValueError):
        ConsumeSettings(linger=-1)


async def test_publish_many_answers_each_message_on_its_own(servers: Servers) -> None:
    """One call, several outcomes: stored, dropped as a duplicate (same Nats-Msg-Id), and
    refused at once because no stream captures the subject (no retrying for 30 s)."""
    publisher = JetStreamPublisher(servers.js, timeout=1.0)
    messages = [
        OutgoingMessage("files.trashed", b'{"n": 1}', "m-1"),
        OutgoingMessage("files.trashed", b'{"n": 2}', "m-2"),
        OutgoingMessage("nowhere.at.all", b"{}", "m-3"),
    ]
    started = time.monotonic()
    first = await publisher.publish_many(messages)
    assert time.monotonic() - started < 10
    assert [type(r).__name__ for r in first] == [
        "PublishResult",
        "PublishResult",
        "NoStreamCaptures",
    ]
    again = await publisher.publish_many(messages[:2])
    assert [(r.seq, r.duplicate) for r in again] == [(r.seq, True) for r in first[:2]]  # type: ignore[union-attr]


class SlowBatches:
    """A batch handler that takes `seconds` over every batch and adds each delivery to
    `deliveries` (shared between instances)."""

    def __init__(self, seconds: float, deliveries: list[tuple[UUID, int]]) -> None:
        self.seconds = seconds
        self.deliveries = deliveries

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        self.deliveries.append((event.event_id, delivery.num_delivered))
        await asyncio.sleep(self.seconds)

    async def handle_batch(self, items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> BatchResult:
        self.deliveries.extend((event.event_id, d.num_delivered) for event, d in items)
        await asyncio.sleep(self.seconds)
        return BatchResult()


async def test_messages_waiting_for_a_free_batch_slot_are_kept_in_progress(
    servers: Servers,
) -> None:
    """With its batch slot busy on a slow batch, what an instance's open pull still brings
    waits in its hands; past the ack wait (2 s here) JetStream would hand it to another
    instance that is pulling: duplicate work."""
    deliveries: list[tuple[UUID, int]] = []
    slow = dataclasses.replace(BATCHED, concurrency=1, linger=0.0, fetch_timeout=5.0)
    events = deletions(40, seed=26)
    async with consuming(servers, SlowBatches(3.0, deliveries), slow) as first:
        await asyncio.sleep(0.3)  # its first pull is open
        for event in events[:20]:  # a trickle: its first batch starts with one message
            await publish(servers, [event])
            await asyncio.sleep(0.02)
        async with consuming(servers, SlowBatches(0.0, deliveries)) as second:
            await publish(servers, events[20:])

            async def all_acked() -> bool:
                return first.acked + second.acked >= len(events)

            await wait_until(all_acked, timeout=60, what="every deletion acked")
    redelivered = [(event_id, n) for event_id, n in deliveries if n > 1]
    assert redelivered == [], f"{len(redelivered)} redelivered while waiting for a slot"
    assert sorted(event_id for event_id, _ in deliveries) == sorted(e.event_id for e in events)
