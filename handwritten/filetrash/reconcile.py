"""Reading back what a run left in JetStream: the messages on a subject from a sequence on,
counted against the event ids the run expects. Used by the demo and the tests."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from uuid import UUID

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

SCAN_BATCH = 256
SCAN_FETCH_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def event_id(self) -> str | None:
        try:
            document = json.loads(self.data)
        except (ValueError, UnicodeDecodeError):
            return None
        value = document.get("eventId") if isinstance(document, dict) else None
        return value if isinstance(value, str) else None


async def scan(
    js: JetStreamContext, *, stream: str, subject: str, start_seq: int = 1
) -> list[StoredMessage]:
    """Every message of `stream` on `subject` (wildcards allowed) from `start_seq` on, read
    with a short-lived ephemeral consumer that acks nothing and is deleted afterwards."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(start_seq, 1),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    return await _drain(js, stream, sub)


class Witness:
    """An ephemeral consumer made before a run, read after it: in an interest stream it is
    one more interest, so every message on its subject stays until `collect` has read it,
    even once the services' acks would have removed it. It acks nothing."""

    def __init__(self, js: JetStreamContext, stream: str, sub: JetStreamContext.PullSubscription):
        self.js = js
        self.stream = stream
        self.sub = sub

    @classmethod
    async def start(
        cls, js: JetStreamContext, *, stream: str, subject: str, keep_for: float = 900.0
    ) -> Witness:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=keep_for,
            mem_storage=True,
        )
        return cls(js, stream, await js.pull_subscribe(subject, stream=stream, config=config))

    async def collect(self) -> list[StoredMessage]:
        """Every message stored on the subject since `start`; the consumer is deleted."""
        return await _drain(self.js, self.stream, self.sub)


async def _drain(
    js: JetStreamContext, stream: str, sub: JetStreamContext.PullSubscription
) -> list[StoredMessage]:
    found: list[StoredMessage] = []
    name: str | None = None
    try:
        info = await sub.consumer_info()
        name = info.name
        pending = info.num_pending or 0
        while len(found) < pending:
            msgs = await sub.fetch(
                min(SCAN_BATCH, pending - len(found)), timeout=SCAN_FETCH_TIMEOUT
            )
            found.extend(
                StoredMessage(
                    msg.metadata.sequence.stream, msg.subject, msg.data, dict(msg.headers or {})
                )
                for msg in msgs
            )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(stream, name)
    return found


@dataclass(frozen=True, slots=True)
class EventTally:
    """How often each expected event id is stored; `copies` > `distinct` means duplicates."""

    distinct: int
    copies: int
    unexpected: int

    @property
    def duplicates(self) -> int:
        return self.copies - self.distinct


def tally(messages: list[StoredMessage], expected: Collection[UUID | str]) -> EventTally:
    wanted = {str(e) for e in expected}
    seen = Counter(m.event_id() for m in messages)
    hits = {event_id: n for event_id, n in seen.items() if event_id in wanted}
    return EventTally(
        distinct=len(hits),
        copies=sum(hits.values()),
        unexpected=sum(n for event_id, n in seen.items() if event_id not in wanted),
    )


async def last_seq(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.last_seq)
