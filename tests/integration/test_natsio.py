"""The consume loop's shortcuts below nats-py's public API (handwritten/runtime/natsio.py),
against a real nats-server: messages handed over inline, in order, with nats-py's bookkeeping
kept; many publishes written as one piece, or refused before anything is written. The first
test fails when the installed nats-py no longer has what the shortcuts need (they would then
fall back to the public API, correct but slower)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from handwritten.runtime.connect import connect_nats
from handwritten.runtime.natsio import (
    BadHeaderError,
    is_inline,
    publish_all,
    read_inline,
    subscribe_inline,
)
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url, name="test-natsio")
    yield client
    if not client.is_closed:
        await client.close()


class Received:
    """Messages handed over, and a future done once `expected` of them came."""

    def __init__(self, expected: int) -> None:
        self.messages: list[Msg] = []
        self.expected = expected
        self.all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self, msg: Msg) -> None:
        self.messages.append(msg)
        if len(self.messages) == self.expected and not self.all_in.done():
            self.all_in.set_result(None)

    async def wait(self) -> list[Msg]:
        await asyncio.wait_for(self.all_in, 10)
        return self.messages


async def test_messages_are_handed_over_inline_in_order_with_no_bytes_left_pending(
    nc: Client,
) -> None:
    received = Received(expected=500)
    sub = await subscribe_inline(nc, "inline.>", received)
    assert is_inline(sub), "the installed nats-py lacks what subscribe_inline relies on"
    await publish_all(nc, [(f"inline.{i}", "", str(i).encode(), None) for i in range(500)])
    messages = await received.wait()
    assert [m.data for m in messages] == [str(i).encode() for i in range(500)]
    assert [m.subject for m in messages] == [f"inline.{i}" for i in range(500)]
    # nats-py counts a message's bytes as pending until its queue gives it out: were they
    # never taken off, its slow-consumer limit would start dropping messages.
    assert sub.pending_bytes == 0
    assert sub.pending_msgs == 0
    assert sub.delivered == 500


async def test_the_reader_hands_inline_messages_over_with_nats_pys_headers_and_counts(
    nc: Client,
) -> None:
    received = Received(expected=3)
    sub = await subscribe_inline(nc, "reader.*", received)
    assert read_inline(nc), "the installed nats-py lacks what the inline reader relies on"
    in_msgs, in_bytes = nc.stats["in_msgs"], nc.stats["in_bytes"]
    sent = [
        ("reader.1", b"one", {"Nats-Msg-Id": "a-1", "traceparent": "00-ab-cd-01"}),
        ("reader.2", b"", {"Nats-Msg-Id": " spaced value "}),
        ("reader.3", b"three", None),
    ]
    await publish_all(nc, [(subject, "", data, headers) for subject, data, headers in sent])
    messages = await received.wait()
    assert [(m.subject, m.data) for m in messages] == [(s, d) for s, d, _ in sent]
    assert [m.headers for m in messages] == [
        {"Nats-Msg-Id": "a-1", "traceparent": "00-ab-cd-01"},
        {"Nats-Msg-Id": "spaced value"},
        None,
    ]
    assert nc.stats["in_msgs"] - in_msgs == 3
    assert nc.stats["in_bytes"] - in_bytes == len(b"one") + len(b"three")
    assert sub.delivered == 3
    assert sub.pending_bytes == 0


async def test_what_the_reader_leaves_to_nats_py_still_arrives(nc: Client) -> None:
    """A status message (no responders: a space after NATS/1.0), a subscription with a message
    limit and one with nats-py's own queue go nats-py's way, on the same connection."""
    statuses = Received(expected=1)
    inbox = nc.new_inbox()
    await subscribe_inline(nc, inbox, statuses)
    await nc.publish("reader.nobody.listens", b"?", reply=inbox)
    [status] = await statuses.wait()
    assert status.headers is not None and status.headers.get("Status") == "503"

    limited = Received(expected=2)
    sub = await subscribe_inline(nc, "reader.limited", limited)
    await sub.unsubscribe(limit=2)
    for data in (b"1", b"2", b"3"):
        await nc.publish("reader.limited", data)
    assert [m.data for m in await limited.wait()] == [b"1", b"2"]

    queued = await nc.subscribe("reader.queued")
    await nc.publish("reader.queued", b"q", headers={"k": "v"})
    msg = await queued.next_msg(timeout=5)
    assert (msg.data, msg.headers) == (b"q", {"k": "v"})
    await nc.flush()
    assert limited.messages[2:] == []  # the third came after the limit: not handed over


async def test_a_failing_function_is_logged_and_the_next_message_still_comes(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    received = Received(expected=2)

    def on_message(msg: Msg) -> None:
        if msg.data == b"bad":
            raise ValueError("cannot take this one")
        received(msg)

    await subscribe_inline(nc, "inline.failing", on_message)
    with caplog.at_level(logging.ERROR, logger="handwritten.runtime.natsio"):
        for data in (b"first", b"bad", b"after"):
            await nc.publish("inline.failing", data)
        messages = await received.wait()
    assert [m.data for m in messages] == [b"first", b"after"]
    assert "handling a message on inline.failing failed" in caplog.text
    assert "cannot take this one" in caplog.text


async def test_an_inline_subscription_unsubscribes_drains_and_closes(
    nats_server: NatsServer,
) -> None:
    nc = await connect_nats(nats_server.url, name="test-natsio-end")
    kept = Received(expected=1)
    ended = Received(expected=1)
    sub = await subscribe_inline(nc, "inline.kept", kept)
    gone = await subscribe_inline(nc, "inline.gone", ended)
    await gone.unsubscribe()
    await nc.publish("inline.gone", b"nobody")
    await nc.publish("inline.kept", b"somebody")
    assert [m.data for m in await kept.wait()] == [b"somebody"]
    assert ended.messages == []  # the flush above went round the server: nothing is coming
    await asyncio.wait_for(sub.drain(), 5)
    await asyncio.wait_for(nc.drain(), 5)
    assert nc.is_closed


async def test_publish_all_sends_each_message_with_its_reply_subject(nc: Client) -> None:
    received = Received(expected=3)
    await subscribe_inline(nc, "all.*", received)
    before = nc.stats["out_msgs"]
    await publish_all(
        nc,
        [
            ("all.a", "_INBOX.r.0", b"+ACK", None),
            ("all.b", "_INBOX.r.1", b"", {"Nats-Msg-Id": "b-1", "traceparent": "00-ab-cd-01"}),
            ("all.c", "", b"x" * 300, {}),
        ],
    )
    messages = await received.wait()
    assert [(m.subject, m.reply, m.data, m.headers) for m in messages] == [
        ("all.a", "_INBOX.r.0", b"+ACK", None),
        ("all.b", "_INBOX.r.1", b"", {"Nats-Msg-Id": "b-1", "traceparent": "00-ab-cd-01"}),
        ("all.c", "", b"x" * 300, None),
    ]
    assert nc.stats["out_msgs"] == before + 3


async def test_a_refused_batch_writes_nothing(nc: Client) -> None:
    received = Received(expected=1)
    await subscribe_inline(nc, "refused.*", received)
    with pytest.raises(BadHeaderError):
        await publish_all(
            nc, [("refused.a", "", b"1", None), ("refused.b", "", b"2", {"Bad Name": "v"})]
        )
    await publish_all(nc, [("refused.after", "", b"3", None)])
    # Had any of the refused batch been written, it would have come first.
    messages = await received.wait()
    assert [(m.subject, m.data) for m in messages] == [("refused.after", b"3")]


async def test_publish_all_on_a_closed_connection_raises(nats_server: NatsServer) -> None:
    nc = await connect_nats(nats_server.url, name="test-natsio-closed")
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await publish_all(nc, [("closed.a", "", b"1", None)])


async def test_while_reconnecting_publishes_are_buffered_and_sent_after(
    nats_server: NatsServer,
) -> None:
    nc = await connect_nats(nats_server.url, name="test-natsio-buffered")
    try:
        received = Received(expected=2)
        await subscribe_inline(nc, "buffered.*", received)
        await nc.flush()
        nats_server.stop()
        await asyncio.wait_for(_until(lambda: nc.is_reconnecting), 10)
        await publish_all(nc, [("buffered.a", "", b"1", None), ("buffered.b", "", b"2", None)])
        assert nc.pending_data_size > 0
        nats_server.start()
        # On reconnecting, nats-py subscribes again before it writes what it buffered.
        messages = await received.wait()
        assert [(m.subject, m.data) for m in messages] == [
            ("buffered.a", b"1"),
            ("buffered.b", b"2"),
        ]
    finally:
        await nc.close()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)
