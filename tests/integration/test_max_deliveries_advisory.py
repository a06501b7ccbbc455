"""Messages whose deliveries run out without the loop seeing them fail (the process crashed
on each, or the acks were lost) are dead-lettered from the server's MAX_DELIVERIES advisory.

A raw pull subscription bound to the durable plays the crashing instance: it takes the poison
message's deliveries and drops them, unacked. run_consumer, another instance of the same
durable, must then store the copy from the advisory. Real nats-server; every wait has a
deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from generated.consumers import TRASH_PROCESSOR
from handwritten.runtime.advisories import (
    MAX_DELIVERIES_DETAIL,
    MaxDeliveriesWatcher,
    max_deliveries_subject,
)
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.deadletter import (
    CONSUMER_HEADER,
    DELIVERIES_HEADER,
    DETAIL_HEADER,
    REASON_HEADER,
    SEQUENCE_HEADER,
    STREAM_HEADER,
    SUBJECT_HEADER,
)
from tests.integration.test_consume import (
    Recorder,
    dead_letters,
    dlq_count,
    make_event,
    provision,
    publish_events,
    running,
    wait_for,
)
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

STREAM = TRASH_PROCESSOR.stream
DURABLE = TRASH_PROCESSOR.durable
ACK_WAIT = 1.5
"""Long enough for run_consumer to subscribe between the last stolen delivery and its expiry."""


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url, name="test-max-deliveries")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


async def steal(sub: JetStreamContext.PullSubscription, timeout: float) -> Msg:
    [msg] = await sub.fetch(1, timeout=timeout)
    return msg  # never acked: the "instance" crashed while handling it


async def test_deliveries_that_ran_out_unhandled_are_dead_lettered_from_the_advisory(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js, max_deliver=2, ack_wait=ACK_WAIT)
    poison = make_event(99)
    body = poison.model_dump_json(by_alias=True).encode()
    ack = await js.publish("files.deleted", body, headers={"Nats-Msg-Id": str(poison.event_id)})
    advisories: list[Msg] = []
    spy = await nc.subscribe(max_deliveries_subject(STREAM, DURABLE), cb=_append(advisories))

    crashing = await js.pull_subscribe_bind(DURABLE, STREAM)
    first = await steal(crashing, timeout=2)
    second = await steal(crashing, timeout=ACK_WAIT + 3)
    assert (first.metadata.num_delivered, second.metadata.num_delivered) == (1, 2)
    assert first.metadata.sequence.stream == ack.seq
    await crashing.unsubscribe()

    handler = Recorder()
    async with running(nc, handler) as consumer:
        ids = await publish_events(js, 5)
        await wait_for(lambda: consumer.stats.acked == 5, what="the other messages acked")
        await wait_for(lambda: len(advisories) == 1, timeout=ACK_WAIT + 5, what="the advisory")
        await wait_for_dlq(js, 1)
    await spy.unsubscribe()

    advisory = json.loads(advisories[0].data)
    assert (advisory["stream_seq"], advisory["deliveries"]) == (ack.seq, 2)
    assert sorted(handler.done) == sorted(ids), "others processed normally"
    assert poison.event_id not in handler.started, "the loop never saw the poison message"
    [letter] = await dead_letters(js)
    headers = letter.headers or {}
    assert letter.data == body, "the original bytes"
    assert letter.subject == TRASH_PROCESSOR.dead_letter_subject
    assert headers[REASON_HEADER] == "max-deliver"
    assert headers[DETAIL_HEADER] == MAX_DELIVERIES_DETAIL
    assert headers[SEQUENCE_HEADER] == str(ack.seq)
    assert headers[STREAM_HEADER] == STREAM
    assert headers[SUBJECT_HEADER] == "files.deleted"
    assert headers[CONSUMER_HEADER] == DURABLE
    assert headers[DELIVERIES_HEADER] == "2"
    assert headers["Nats-Msg-Id"] == f"dlq:{STREAM}:{DURABLE}:{ack.seq}"


async def test_a_message_the_loop_dead_lettered_gives_no_advisory_and_one_copy(
    nc: Client, js: JetStreamContext
) -> None:
    """Term is not max deliveries: the loop's own dead letter is the only copy."""
    await provision(js, max_deliver=2, ack_wait=0.5)
    [doomed, _fine] = await publish_events(js, 2)
    advisories: list[Msg] = []
    spy = await nc.subscribe(max_deliveries_subject(STREAM, DURABLE), cb=_append(advisories))
    async with running(nc, Recorder(always_fail=[doomed])) as consumer:
        await wait_for(lambda: consumer.stats.dead_lettered == 1, what="the loop's dead letter")
        await asyncio.sleep(2.0)  # several ack waits: time for an advisory, if one came
    await spy.unsubscribe()
    assert advisories == []
    assert await dlq_count(js) == 1


async def test_two_advisories_for_one_message_store_one_copy(
    nc: Client, js: JetStreamContext
) -> None:
    await provision(js)
    [event_id] = await publish_events(js, 1)
    seq = (await js.stream_info(STREAM)).state.last_seq
    watcher = MaxDeliveriesWatcher(nc, js, TRASH_PROCESSOR)
    payload = json.dumps(
        {"stream": STREAM, "consumer": DURABLE, "stream_seq": seq, "deliveries": 5}
    ).encode()
    assert await watcher.handle_advisory(payload)
    assert await watcher.handle_advisory(payload), "a duplicate PubAck is a success"
    [letter] = await dead_letters(js)
    assert (letter.headers or {})["Nats-Msg-Id"] == f"dlq:{STREAM}:{DURABLE}:{seq}"
    assert json.loads(letter.data)["eventId"] == str(event_id)

    gone = json.dumps({"stream": STREAM, "consumer": DURABLE, "stream_seq": seq + 100})
    assert not await watcher.handle_advisory(gone.encode()), "missing: warned and skipped"
    other = json.dumps({"stream": STREAM, "consumer": "someone-else", "stream_seq": seq})
    assert not await watcher.handle_advisory(other.encode())
    assert not await watcher.handle_advisory(b"not json")
    assert await dlq_count(js) == 1


async def wait_for_dlq(js: JetStreamContext, count: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await dlq_count(js) < count:
        assert loop.time() < deadline, f"timed out waiting for {count} dead letters"
        await asyncio.sleep(0.05)


def _append(into: list[Msg]) -> Callable[[Msg], Awaitable[None]]:
    async def cb(msg: Msg) -> None:
        into.append(msg)

    return cb
