"""The consume loop against a real nats-server: acks, retries, dead letters, shutdown,
restarts of the consumer and of the server, competing instances, and a real service process.

Consumers are created here from the spec's topology with test-friendly timings (short ack
wait, no backoff unless a test is about it); every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, RawStreamMsg

from generated.consumers import TRASH_PROCESSOR
from generated.models import DeletedFile, FileDeletedEvent
from generated.publishers import PublishFileDeleted
from generated.topology import CONSUMERS, STREAMS
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.contract import Delivery, PermanentError
from handwritten.runtime.deadletter import (
    CONSUMER_HEADER,
    DELIVERIES_HEADER,
    DETAIL_HEADER,
    REASON_HEADER,
    SEQUENCE_HEADER,
    STREAM_HEADER,
    SUBJECT_HEADER,
)
from handwritten.runtime.durable import ConsumerMissing
from handwritten.runtime.jetstream import JetStreamPublisher
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
DURABLE = TRASH_PROCESSOR.durable
DLQ_STREAM = "FILE_EVENTS_DLQ"
FAST = ConsumeSettings(
    batch_size=16, fetch_timeout=0.5, nak_delay_base=0.05, nak_delay_max=0.2, ack_timeout=1.0
)
TEST_CONSUMER = {"ack_wait": 5.0, "backoff": None, "max_deliver": 5}


# -- helpers -------------------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def provision(js: JetStreamContext, **consumer_overrides: Any) -> None:
    """The spec's streams and the trash-processor durable, with test timings by default."""
    for config in STREAMS.values():
        await js.add_stream(config=dataclasses.replace(config))
    binding = CONSUMERS[DURABLE]
    overrides = {**TEST_CONSUMER, **consumer_overrides}
    await js.add_consumer(binding.stream, config=dataclasses.replace(binding.config, **overrides))


def make_event(n: int = 0, **data: Any) -> FileDeletedEvent:
    fields: dict[str, Any] = {
        "file_id": uuid.uuid4(),
        "file_name": f"report-{n}.pdf",
        "file_path": f"/files/user-001/report-{n}.pdf",
        "file_size": 1024 + n,
        "mime_type": "application/pdf",
        "user_id": "user-001",
        "deleted_at": datetime.now(UTC),
        **data,
    }
    return FileDeletedEvent(
        event_id=uuid.uuid4(),
        event_type="FileDeletedEvent",
        timestamp=datetime.now(UTC),
        data=DeletedFile(**fields),
    )


async def publish_events(js: JetStreamContext, count: int, start: int = 0) -> list[uuid.UUID]:
    publisher = PublishFileDeleted(JetStreamPublisher(js))
    ids = []
    for n in range(start, start + count):
        event = make_event(n)
        await publisher.publish(event)
        ids.append(event.event_id)
    return ids


async def consumer_info(js: JetStreamContext) -> ConsumerInfo:
    info: ConsumerInfo = await js.consumer_info(TRASH_PROCESSOR.stream, DURABLE)
    return info


async def dead_letters(js: JetStreamContext) -> list[RawStreamMsg]:
    state = (await js.stream_info(DLQ_STREAM)).state
    return [await js.get_msg(DLQ_STREAM, seq) for seq in range(state.first_seq, state.last_seq + 1)]


async def dlq_count(js: JetStreamContext) -> int:
    return (await js.stream_info(DLQ_STREAM)).state.messages


class Recorder:
    """A TrashProcessorHandler that records every call and can be told to misbehave.

    `fail_first` ids raise RuntimeError on their first delivery; `always_fail` ids always;
    `permanent` ids raise PermanentError; `delay` slows every call; `hold` ids wait for
    `release` to be set.
    """

    def __init__(
        self,
        *,
        fail_first: Iterable[uuid.UUID] = (),
        always_fail: Iterable[uuid.UUID] = (),
        permanent: Iterable[uuid.UUID] = (),
        hold: Iterable[uuid.UUID] = (),
        delay: float = 0.0,
        name: str = "",
    ) -> None:
        self.fail_first = set(fail_first)
        self.always_fail = set(always_fail)
        self.permanent = set(permanent)
        self.hold = set(hold)
        self.release = asyncio.Event()
        self.delay = delay
        self.name = name
        self.started: list[uuid.UUID] = []
        self.calls: list[tuple[uuid.UUID, Delivery]] = []
        self.done: list[uuid.UUID] = []

    @property
    def done_set(self) -> set[uuid.UUID]:
        return set(self.done)

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        self.started.append(event.event_id)
        self.calls.append((event.event_id, delivery))
        if self.delay:
            await asyncio.sleep(self.delay)
        if event.event_id in self.hold:
            await self.release.wait()
        if event.event_id in self.permanent:
            raise PermanentError(f"file {event.data.file_name} can never be trashed")
        if event.event_id in self.always_fail:
            raise RuntimeError("database unavailable")
        if event.event_id in self.fail_first:
            self.fail_first.discard(event.event_id)
            raise RuntimeError("transient failure")
        self.done.append(event.event_id)


class Running:
    """A consumer task started by `running()`."""

    def __init__(self, task: asyncio.Task[ConsumeStats], stop: asyncio.Event, stats: ConsumeStats):
        self.task = task
        self.stop = stop
        self.stats = stats

    async def finish(self, timeout: float = 15.0) -> ConsumeStats:
        self.stop.set()
        return await asyncio.wait_for(self.task, timeout)


@asynccontextmanager
async def running(
    nc: Client, handler: Recorder, settings: ConsumeSettings = FAST
) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    stats = ConsumeStats()
    task = asyncio.create_task(
        run_consumer(nc, TRASH_PROCESSOR, handler, settings=settings, stop=stop, stats=stats)
    )
    consumer = Running(task, stop, stats)
    try:
        yield consumer
    finally:
        if not task.done():
            await consumer.finish()
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url, name="test-consume")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


# -- acks, retries, dead letters -------------------------------------------------------------


async def test_acks_each_message_after_its_handler_succeeded(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    ids = await publish_events(js, 20)
    handler = Recorder()
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.acked == 20, what="20 acks")
        info = await consumer_info(js)
    assert handler.done == ids or sorted(handler.done) == sorted(ids)
    assert info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    assert info.delivered is not None and info.ack_floor is not None
    assert info.delivered.consumer_seq == info.ack_floor.consumer_seq == 20
    assert consumer.stats.naked == consumer.stats.dead_lettered == 0
    event_id, delivery = handler.calls[0]
    assert delivery.subject == "files.deleted"
    assert (delivery.stream, delivery.consumer, delivery.num_delivered) == (
        "FILE_EVENTS",
        DURABLE,
        1,
    )
    assert delivery.headers["Nats-Msg-Id"] == str(event_id)
    assert 1 <= delivery.stream_seq <= 20


async def test_handled_messages_leave_no_reference_cycles_behind(
    nc: Client, js: JetStreamContext
) -> None:
    """A message's work is freed by reference counting as soon as it is settled: nothing the
    loop makes per message (or per batch) waits in a reference cycle for the garbage
    collector, which would traverse every in-flight message again and again."""
    await provision(js)
    await publish_events(js, 300)
    handler = Recorder()
    gc.collect()
    gc.disable()
    try:
        async with running(nc, handler) as consumer:
            await wait_for(lambda: consumer.stats.acked == 300, what="300 acks")
            unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < 30, f"{unreachable} objects in reference cycles after 300 messages"


async def test_a_transient_failure_is_nakked_and_redelivered(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    ids = await publish_events(js, 5)
    flaky = ids[2]
    handler = Recorder(fail_first=[flaky])
    async with running(nc, handler) as consumer:
        await wait_for(lambda: handler.done_set == set(ids), what="all handled")
        await wait_for(lambda: consumer.stats.acked == 5, what="5 acks")
        info = await consumer_info(js)
    attempts = [d.num_delivered for event_id, d in handler.calls if event_id == flaky]
    assert attempts == [1, 2]
    assert Counter(handler.done)[flaky] == 1
    assert consumer.stats.naked == 1 and consumer.stats.handler_errors == 1
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
    assert await dlq_count(js) == 0


async def test_invalid_messages_are_dead_lettered_with_the_reason_and_not_redelivered(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    good = make_event(1)
    schema_invalid = good.model_dump(mode="json", by_alias=True)
    schema_invalid["data"]["fileSize"] = -1
    unknown_type = {**good.model_dump(mode="json", by_alias=True), "eventType": "FileRestored"}
    bodies = {
        "invalid-json": b"not json \xff",
        "schema-invalid": json.dumps(schema_invalid).encode(),
        "unknown-event-type": json.dumps(unknown_type).encode(),
    }
    sequences = {}
    for reason, body in bodies.items():
        ack = await js.publish("files.deleted", body, headers={"Nats-Msg-Id": reason})
        sequences[reason] = ack.seq
    await PublishFileDeleted(JetStreamPublisher(js)).publish(good)

    handler = Recorder()
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.dead_lettered == 3, what="3 dead letters")
        await wait_for(lambda: consumer.stats.acked == 1, what="the valid event acked")
        info = await consumer_info(js)
        letters = await dead_letters(js)

    assert handler.done == [good.event_id]
    assert len(letters) == 3
    by_reason = {(letter.headers or {})[REASON_HEADER]: letter for letter in letters}
    assert set(by_reason) == set(bodies)
    for reason, letter in by_reason.items():
        headers = letter.headers or {}
        assert letter.subject == "dlq.files.trash-processor"
        assert letter.data == bodies[reason], "the original bytes, unchanged"
        assert headers[STREAM_HEADER] == "FILE_EVENTS"
        assert headers[SUBJECT_HEADER] == "files.deleted"
        assert headers[SEQUENCE_HEADER] == str(sequences[reason])
        assert headers[CONSUMER_HEADER] == DURABLE
        assert headers[DELIVERIES_HEADER] == "1"
        assert headers["Nats-Msg-Id"] == f"dlq:FILE_EVENTS:{DURABLE}:{sequences[reason]}"
        assert "\n" not in headers[DETAIL_HEADER] and headers[DETAIL_HEADER]
    assert "fileSize" in (by_reason["schema-invalid"].headers or {})[DETAIL_HEADER]
    assert "FileRestored" in (by_reason["unknown-event-type"].headers or {})[DETAIL_HEADER]
    # Terminated: nothing pending, nothing redelivered, the ack floor past all four.
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info.num_pending == 0
    assert info.ack_floor is not None and info.ack_floor.stream_seq == 4


async def test_the_last_failed_delivery_is_dead_lettered_as_max_deliver(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js, max_deliver=3)
    [doomed, fine] = await publish_events(js, 2)
    handler = Recorder(always_fail=[doomed])
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")
        await wait_for(lambda: consumer.stats.acked == 1, what="the other acked")
        info = await consumer_info(js)
        [letter] = await dead_letters(js)
    headers = letter.headers or {}
    assert headers[REASON_HEADER] == "max-deliver"
    assert headers[DELIVERIES_HEADER] == "3"
    assert "handler failed 3 times" in headers[DETAIL_HEADER]
    assert "database unavailable" in headers[DETAIL_HEADER]
    assert [d.num_delivered for i, d in handler.calls if i == doomed] == [1, 2, 3]
    assert handler.done == [fine]
    assert consumer.stats.naked == 2
    assert info.num_ack_pending == 0


async def test_a_permanent_error_is_dead_lettered_at_once(nc: Client, js: JetStreamContext) -> None:
    await provision(js)
    [hopeless, _fine] = await publish_events(js, 2)
    handler = Recorder(permanent=[hopeless])
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="a dead letter")
        await wait_for(lambda: consumer.stats.acked == 1, what="the other acked")
        info = await consumer_info(js)
        [letter] = await dead_letters(js)
    headers = letter.headers or {}
    assert headers[REASON_HEADER] == "permanent-error"
    assert "can never be trashed" in headers[DETAIL_HEADER]
    assert headers[DELIVERIES_HEADER] == "1"
    assert [i for i, _ in handler.calls].count(hopeless) == 1
    assert consumer.stats.naked == 0
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def provision_without_dlq(js: JetStreamContext, **consumer_overrides: Any) -> None:
    await provision(js, **consumer_overrides)
    await js.delete_stream(DLQ_STREAM)


async def add_dlq(js: JetStreamContext) -> None:
    await js.add_stream(config=dataclasses.replace(STREAMS[DLQ_STREAM]))


async def test_when_the_dead_letter_cannot_be_stored_the_message_is_nakked_not_termed(
    nc: Client, js: JetStreamContext
) -> None:
    await provision_without_dlq(js, max_deliver=50)
    await js.publish("files.deleted", b"not json", headers={"Nats-Msg-Id": "bad"})
    async with running(nc, Recorder()) as consumer:
        await wait_for(lambda: consumer.stats.dead_letter_failures >= 2, what="DLQ failures")
        assert consumer.stats.dead_lettered == 0
        assert consumer.stats.naked >= 1
        await add_dlq(js)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
        info = await consumer_info(js)
        [letter] = await dead_letters(js)
    assert letter.data == b"not json"
    headers = letter.headers or {}
    assert headers[REASON_HEADER] == "invalid-json"
    assert int(headers[DELIVERIES_HEADER]) >= 3, "kept and redelivered until the DLQ was back"
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_on_its_last_delivery_a_message_is_held_until_its_dead_letter_is_stored(
    nc: Client, js: JetStreamContext
) -> None:
    """A nak on the last delivery would not bring the message back (max_deliver reached)."""
    await provision_without_dlq(js, max_deliver=1, ack_wait=2.0)
    await js.publish("files.deleted", b"[]", headers={"Nats-Msg-Id": "bad"})
    async with running(nc, Recorder()) as consumer:
        await wait_for(lambda: consumer.stats.dead_letter_failures >= 3, what="DLQ failures")
        assert consumer.stats.naked == 0
        await add_dlq(js)
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
        info = await consumer_info(js)
        [letter] = await dead_letters(js)
    headers = letter.headers or {}
    assert (headers[REASON_HEADER], headers[DELIVERIES_HEADER]) == ("schema-invalid", "1")
    assert consumer.stats.in_progress_sent >= 2, "held with +WPI beyond its 2 s ack wait"
    assert info.num_ack_pending == 0 and info.num_redelivered == 0


async def test_a_missing_consumer_is_reported_and_never_created(
    nc: Client, js: JetStreamContext
) -> None:
    with pytest.raises(ConsumerMissing, match="stream FILE_EVENTS does not exist"):
        await run_consumer(nc, TRASH_PROCESSOR, Recorder(), settings=FAST)
    for config in STREAMS.values():
        await js.add_stream(config=dataclasses.replace(config))
    with pytest.raises(ConsumerMissing, match=r"trash-processor.*filetrash provision"):
        await run_consumer(nc, TRASH_PROCESSOR, Recorder(), settings=FAST)
    assert await js.consumers_info("FILE_EVENTS") == []


async def test_a_consumer_deleted_while_running_stops_the_loop(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    [event_id] = await publish_events(js, 1)
    handler = Recorder()
    stats = ConsumeStats()
    task = asyncio.create_task(
        run_consumer(nc, TRASH_PROCESSOR, handler, settings=FAST, stats=stats)
    )
    await wait_for(lambda: stats.acked == 1, what="consuming")
    await js.delete_consumer("FILE_EVENTS", DURABLE)
    with pytest.raises(ConsumerMissing, match="filetrash provision"):
        await asyncio.wait_for(task, 10)
    assert handler.done == [event_id]


# -- slow handlers, shutdown, restarts --------------------------------------------------------


async def test_a_slow_handler_is_kept_in_progress_and_not_redelivered(
    nc: Client, js: JetStreamContext
) -> None:
    """The spec's consumers have backoff [1s, ...]: JetStream then waits only 1 s for the first
    ack, so a handler that runs longer needs +WPI to keep its message."""
    await provision(js, ack_wait=30.0, backoff=[1.0, 5.0, 15.0, 30.0], max_deliver=5)
    [slow] = await publish_events(js, 1)
    handler = Recorder(delay=2.5)
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.acked == 1, what="the ack")
        info = await consumer_info(js)
    assert [i for i, _ in handler.calls] == [slow], "delivered once"
    assert consumer.stats.in_progress_sent >= 2
    assert info.num_redelivered == 0 and info.num_ack_pending == 0


async def test_one_poison_message_does_not_hold_back_the_others(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    [poison, *others] = await publish_events(js, 10)
    handler = Recorder(hold=[poison])
    async with running(nc, handler) as consumer:
        await wait_for(lambda: consumer.stats.acked == 9, timeout=5, what="the 9 others acked")
        later = await publish_events(js, 5, start=10)
        await wait_for(lambda: consumer.stats.acked == 14, timeout=5, what="later ones acked")
        assert poison not in handler.done, "still stuck while the others went through"
        info = await consumer_info(js)
        assert info.num_ack_pending == 1
        handler.release.set()
        await wait_for(lambda: consumer.stats.acked == 15, what="the poison one acked too")
    assert sorted(handler.done) == sorted([poison, *others, *later])


async def test_a_restarted_consumer_resumes_after_the_last_ack(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    first = await publish_events(js, 10)
    before = Recorder()
    async with running(nc, before) as consumer:
        await wait_for(lambda: consumer.stats.acked == 10, what="first 10 acked")
    second = await publish_events(js, 10, start=10)
    after = Recorder()
    async with running(nc, after) as consumer:
        await wait_for(lambda: consumer.stats.acked == 10, what="next 10 acked")
        info = await consumer_info(js)
    assert sorted(before.done) == sorted(first)
    assert sorted(after.done) == sorted(second)
    assert [d.num_delivered for _, d in after.calls] == [1] * 10
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_graceful_shutdown_mid_batch_loses_and_duplicates_nothing(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    ids = await publish_events(js, 30)
    settings = dataclasses.replace(FAST, batch_size=8)
    first = Recorder(delay=0.3)
    async with running(nc, first, settings) as consumer:
        await wait_for(lambda: len(first.started) >= 3, what="handlers in flight")
        in_flight = len(first.started) - len(first.done)
        stats = await consumer.finish()
    assert in_flight > 0, "stopped while handlers were running"
    assert len(first.started) == len(first.done), "every started handler finished"
    assert stats.acked == len(first.done) and stats.naked == 0
    info = await consumer_info(js)
    assert info.num_ack_pending == 0, "nothing left in flight without an ack"
    assert len(first.done) < 30

    second = Recorder()
    async with running(nc, second, settings) as consumer:
        await wait_for(lambda: len(first.done) + len(second.done) >= 30, what="the rest handled")
        await wait_for(lambda: consumer.stats.acked == len(second.done), what="acks")
    counts = Counter(first.done + second.done)
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}, "each event exactly once over both runs"


def restart_cleanly(server: NatsServer) -> None:
    server.restart()


def crash_and_stay_down(server: NatsServer) -> None:
    """SIGKILL, down for longer than several pull expiries, then up again."""
    server.kill()
    time.sleep(2.0)  # the outage itself, in a worker thread
    server.start()


@pytest.mark.parametrize("outage", [restart_cleanly, crash_and_stay_down])
async def test_keeps_consuming_after_the_server_restarts(
    nats_server: NatsServer,
    nc: Client,
    js: JetStreamContext,
    outage: Callable[[NatsServer], None],
) -> None:
    await provision(js)
    publisher_nc = await connect_nats(nats_server.url, name="test-publisher")
    publisher = PublishFileDeleted(
        JetStreamPublisher(publisher_nc.jetstream(), timeout=1.0, attempts=20)
    )
    published: list[uuid.UUID] = []
    publishing = asyncio.Event()

    async def keep_publishing(count: int) -> None:
        for n in range(count):
            event = make_event(n)
            await publisher.publish(event)
            published.append(event.event_id)
            publishing.set()
            await asyncio.sleep(0.02)  # pacing, so the restart lands mid-stream

    handler = Recorder()
    try:
        async with running(nc, handler) as consumer:
            producer = asyncio.create_task(keep_publishing(150))
            await wait_for(lambda: len(handler.done) >= 20, what="consumption under way")
            await asyncio.to_thread(outage, nats_server)
            restarted_at = len(published)
            await asyncio.wait_for(producer, 30)
            assert len(published) == 150 and restarted_at < 150, "publishing went on"
            await wait_for(
                lambda: handler.done_set >= set(published), timeout=20, what="all handled"
            )
            info = await consumer_info(js)
    finally:
        await publisher_nc.close()
    assert info.num_pending == 0
    # At least once: an ack lost in the restart may bring a message back, nothing is lost.
    assert handler.done_set == set(published)
    assert consumer.stats.acked + consumer.stats.ack_unconfirmed == len(handler.done)


async def test_two_instances_of_one_durable_share_the_work(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    await provision(js)
    ids = await publish_events(js, 200)
    settings = dataclasses.replace(FAST, batch_size=4)
    a, b = Recorder(delay=0.005, name="a"), Recorder(delay=0.005, name="b")
    nc_a = await connect_nats(nats_server.url, name="instance-a")
    nc_b = await connect_nats(nats_server.url, name="instance-b")
    try:
        async with running(nc_a, a, settings), running(nc_b, b, settings):
            await wait_for(
                lambda: a.done_set | b.done_set == set(ids), timeout=20, what="all handled"
            )
    finally:
        await nc_a.close()
        await nc_b.close()
    assert a.done and b.done, "both instances did some of the work"
    assert not a.done_set & b.done_set, "no event handled by both"
    assert len(a.done) + len(b.done) == 200


# -- a real service process -------------------------------------------------------------------

SERVICE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from generated.consumers import TRASH_PROCESSOR
    from handwritten.runtime.consume import ConsumeSettings, serve
    from handwritten.runtime.logging import setup_logging

    class SlowRecorder:
        def __init__(self, path):
            self.path = path

        async def on_file_deleted_event(self, event, delivery):
            with open(self.path, "a") as out:
                out.write(f"start {event.event_id}\\n")
            await asyncio.sleep(0.2)
            with open(self.path, "a") as out:
                out.write(f"done {event.event_id}\\n")

    setup_logging("text", "INFO")
    settings = ConsumeSettings(batch_size=4, fetch_timeout=0.5)
    stats = asyncio.run(serve(TRASH_PROCESSOR, SlowRecorder(sys.argv[2]), nats_url=sys.argv[1],
                              settings=settings))
    print(f"acked={stats.acked}", flush=True)
    """
)


def _lines(path: Path, kind: str) -> list[str]:
    if not path.exists():
        return []
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith(kind)]


async def test_a_service_process_exits_0_on_sigterm_with_messages_in_flight(
    nats_server: NatsServer, nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    await provision(js)
    ids = {str(i) for i in await publish_events(js, 40)}
    script = tmp_path / "service.py"
    script.write_text(SERVICE_SCRIPT)
    record = tmp_path / "handled.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(script), nats_server.url, str(record)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await wait_for(lambda: len(_lines(record, "start")) >= 6, timeout=20, what="work")
        assert len(_lines(record, "start")) > len(_lines(record, "done")), "mid-handler"
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = err.decode()
    assert process.returncode == 0, log
    assert "✅ trash-processor ready. Listening for FileDeletedEvent" in log
    started, done = _lines(record, "start"), _lines(record, "done")
    assert started == [] or sorted(started) == sorted(done), "in-flight handlers finished"
    assert f"acked={len(done)}" in out.decode()
    info = await consumer_info(js)
    assert info.num_ack_pending == 0, "everything it took was acked before it exited"
    assert info.num_pending == 40 - len(done)

    rest = Recorder()
    async with running(nc, rest) as consumer:
        await wait_for(lambda: consumer.stats.acked == 40 - len(done), what="the rest")
    assert Counter(done + [str(i) for i in rest.done]) == Counter(ids)
