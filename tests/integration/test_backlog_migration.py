"""The migration of issue 11 on a real nats-server: from the old FILE_EVENTS (limits retention,
100 MiB, discard old) to the spec's (interest retention, discard new per subject), in place,
losing no message a durable has not acknowledged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy

from generated.topology import CONSUMERS, STREAMS
from handwritten.runtime.errors import StreamConfigConflict
from handwritten.runtime.provision import Action, provision
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

EVENTS = "FILE_EVENTS"
OLD_EVENTS = STREAMS[EVENTS].evolve(
    retention=RetentionPolicy.LIMITS,
    discard=DiscardPolicy.OLD,
    max_bytes=100 * 1024 * 1024,
    max_msgs_per_subject=-1,
    discard_new_per_subject=False,
)
"""FILE_EVENTS as the spec had it before issue 11."""


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


async def test_limits_to_interest_keeps_what_a_durable_still_needs(nc: Client) -> None:
    js: JetStreamContext = nc.jetstream()
    await provision(js, {**STREAMS, EVENTS: OLD_EVENTS}, CONSUMERS, apply=True)
    for n in range(10):
        await js.publish("files.deleted", b"{}", headers={"Nats-Msg-Id": f"d{n}"})
    for n in range(4):
        await js.publish("files.trashed", b"{}", headers={"Nats-Msg-Id": f"t{n}"})
    # Every durable acknowledges the first three deletions; the trash-processor also #4-#6.
    for durable, binding in CONSUMERS.items():
        if binding.stream != EVENTS:
            continue
        sub = await js.pull_subscribe_bind(durable, EVENTS)
        wanted = 6 if durable == "trash-processor" else 3
        for msg in await sub.fetch(wanted, timeout=5):
            if msg.subject == "files.deleted" and msg.metadata.sequence.stream <= wanted:
                await msg.ack_sync()
        await sub.unsubscribe()

    with pytest.raises(StreamConfigConflict, match="--allow-interest"):
        await provision(js, STREAMS, CONSUMERS, apply=True)
    plan = await provision(js, STREAMS, CONSUMERS, apply=True, allow_interest=True)
    [events] = [p for p in plan.streams if p.name == EVENTS]
    assert events.action is Action.UPDATE

    info = await js.stream_info(EVENTS)
    assert info.config.retention == RetentionPolicy.INTEREST
    assert info.config.discard == DiscardPolicy.NEW
    # #1-#3 were acknowledged by every durable that reads them: gone; #4-#14 kept.
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (4, 14, 11)
    again = await provision(js, STREAMS, CONSUMERS, apply=True)
    assert not again.has_changes, "provisioning stays idempotent after the migration"
