"""JetStreamPublisher against a real nats-server: PubAcks, deduplication by Nats-Msg-Id, and
retries that ride out a server restart without storing a message twice."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from generated.topology import STREAMS
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.jetstream import JetStreamPublisher, NoStreamCaptures, PublishFailed
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url, name="test-publish")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    js = nc.jetstream()
    await js.add_stream(config=dataclasses.replace(STREAMS["FILE_EVENTS"]))
    # FILE_EVENTS keeps a message only while a durable still needs it (interest retention).
    await js.add_consumer(
        "FILE_EVENTS", ConsumerConfig(durable_name="keeper", ack_policy=AckPolicy.EXPLICIT)
    )
    return js


async def stored(js: JetStreamContext) -> int:
    return (await js.stream_info("FILE_EVENTS")).state.messages


async def test_publish_waits_for_the_pub_ack_and_sets_the_msg_id(js: JetStreamContext) -> None:
    publisher = JetStreamPublisher(js)
    result = await publisher.publish(
        "files.deleted", b'{"x": 1}', msg_id="event-1", headers={"Trace-Id": "t-1"}
    )
    assert (result.stream, result.seq, result.duplicate) == ("FILE_EVENTS", 1, False)
    message = await js.get_msg("FILE_EVENTS", 1)
    assert message.data == b'{"x": 1}'
    assert message.headers == {"Nats-Msg-Id": "event-1", "Trace-Id": "t-1"}


async def test_a_repeated_msg_id_is_reported_as_duplicate_and_stored_once(
    js: JetStreamContext,
) -> None:
    publisher = JetStreamPublisher(js)
    first = await publisher.publish("files.deleted", b"a", msg_id="same")
    again = await publisher.publish("files.deleted", b"a", msg_id="same")
    other = await publisher.publish("files.deleted", b"b", msg_id="other")
    assert not first.duplicate and again.duplicate
    assert again.seq == first.seq
    assert other.seq == first.seq + 1 and not other.duplicate
    assert await stored(js) == 2


async def test_an_empty_msg_id_is_refused(js: JetStreamContext) -> None:
    with pytest.raises(ValueError, match="msg_id"):
        await JetStreamPublisher(js).publish("files.deleted", b"a", msg_id="")
    assert await stored(js) == 0


async def test_a_subject_no_stream_captures_fails_at_once_and_names_the_fix(
    js: JetStreamContext,
) -> None:
    publisher = JetStreamPublisher(js, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(NoStreamCaptures, match=r"nowhere\.at\.all.*filetrash provision"):
        await publisher.publish("nowhere.at.all", b"a", msg_id="lost")
    assert time.monotonic() - started < 3, "not retried for the whole retry budget"


async def test_retries_last_the_time_budget_however_fast_the_attempts_fail(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    """A clustered stream without a leader has no responders: each attempt fails at once, and
    the election takes seconds. Here the server is down for 2 s with one attempt allowed."""
    publisher = JetStreamPublisher(js, timeout=0.5, attempts=1, retry_for=15.0)
    await asyncio.to_thread(nats_server.stop)
    task = asyncio.create_task(publisher.publish("files.deleted", b"patient", msg_id="e-7"))
    await asyncio.sleep(2.0)
    assert not task.done(), "still retrying after its one attempt"
    await asyncio.to_thread(nats_server.start)
    result = await asyncio.wait_for(task, 20)
    assert result.seq == 1 and await stored(js) == 1  # a buffered attempt may have landed first
    give_up = JetStreamPublisher(js, timeout=0.2, attempts=2, retry_for=0.0)
    await asyncio.to_thread(nats_server.stop)
    with pytest.raises(PublishFailed, match=r"after 2 attempts"):
        await give_up.publish("files.deleted", b"impatient", msg_id="e-8")
    await asyncio.to_thread(nats_server.start)
    await publisher.publish("files.deleted", b"reconnected", msg_id="e-9")


async def test_a_publish_during_a_server_restart_is_retried_with_the_same_msg_id(
    nats_server: NatsServer, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="handwritten.runtime.jetstream")
    publisher = JetStreamPublisher(js, timeout=0.5, attempts=20)
    await asyncio.to_thread(nats_server.stop)
    task = asyncio.create_task(publisher.publish("files.deleted", b"survivor", msg_id="e-42"))
    await wait_for(lambda: any("retry" in r.getMessage() for r in caplog.records), what="a retry")
    assert not task.done()
    await asyncio.to_thread(nats_server.start)
    result = await asyncio.wait_for(task, 20)
    assert result.seq == 1
    assert await stored(js) == 1, "stored once although it may have been sent several times"
    message = await js.get_msg("FILE_EVENTS", 1)
    assert message.data == b"survivor" and (message.headers or {})["Nats-Msg-Id"] == "e-42"
    repeat = await publisher.publish("files.deleted", b"survivor", msg_id="e-42")
    assert repeat.duplicate and repeat.seq == 1


async def test_publish_many_answers_a_full_stream_at_once_and_each_message_alone(
    js: JetStreamContext,
) -> None:
    """The PubAcks of `publish_many` come on an inbox of ours: a refusal (err_code 10077 with
    status 503) fails its own message at once — not after the PubAck timeout — and the others
    of the batch are stored; a subject no stream captures is named."""
    from nats.js.api import DiscardPolicy, StreamConfig

    from handwritten.runtime.contract import OutgoingMessage
    from handwritten.runtime.jetstream import StreamFull

    await js.add_stream(
        StreamConfig(
            name="TINY",
            subjects=["tiny.*"],
            max_msgs_per_subject=1,
            discard=DiscardPolicy.NEW,
            discard_new_per_subject=True,
        )
    )
    publisher = JetStreamPublisher(js, timeout=10.0, attempts=1, retry_for=0.0)
    started = time.monotonic()
    results = await publisher.publish_many(
        [
            OutgoingMessage("tiny.a", b"1", "m1"),
            OutgoingMessage("tiny.a", b"2", "m2"),
            OutgoingMessage("tiny.b", b"3", "m3"),
            OutgoingMessage("nowhere.at.all", b"4", "m4"),
        ]
    )
    assert time.monotonic() - started < 5, "waited for a PubAck that was a refusal"
    first, refused, other, lost = results
    assert not isinstance(first, Exception) and (first.stream, first.seq) == ("TINY", 1)
    assert isinstance(refused, StreamFull) and refused.limit == "max_msgs_per_subject"
    assert not isinstance(other, Exception) and (other.stream, other.seq) == ("TINY", 2)
    assert isinstance(lost, NoStreamCaptures)
    again = await publisher.publish_many([OutgoingMessage("tiny.b", b"3", "m3")])
    assert not isinstance(again[0], Exception) and again[0].duplicate and again[0].seq == 2


async def test_a_header_nats_cannot_carry_fails_its_message_and_the_others_are_stored(
    js: JetStreamContext,
) -> None:
    """`publish_many` writes a batch in one piece; a message refused before anything is
    written (a header name with a space) is its own failure: the batch is then sent one by
    one, and the others are stored."""
    from handwritten.runtime.contract import OutgoingMessage
    from handwritten.runtime.natsio import BadHeaderError

    publisher = JetStreamPublisher(js, timeout=10.0, attempts=1, retry_for=0.0)
    results = await publisher.publish_many(
        [
            OutgoingMessage("files.deleted", b"1", "h1", {"Trace-Id": "t-1"}),
            OutgoingMessage("files.deleted", b"2", "h2", {"Bad Name": "x"}),
            OutgoingMessage("files.deleted", b"3", "h3"),
        ]
    )
    first, bad, after = results
    assert not isinstance(first, Exception) and first.seq == 1
    assert isinstance(bad, BadHeaderError)
    assert not isinstance(after, Exception) and after.seq == 2
    assert await stored(js) == 2
    message = await js.get_msg("FILE_EVENTS", 1)
    assert message.headers == {"Trace-Id": "t-1", "Nats-Msg-Id": "h1"}
