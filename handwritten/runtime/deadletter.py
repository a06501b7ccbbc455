"""Dead letters: a copy of a message a consumer gives up on, with the reason in its headers.

The copy goes to the endpoint's `dead_letter_subject` (stream FILE_EVENTS_DLQ), byte for byte,
with the `Filetrash-Dlq-*` headers of the spec's DeadLetterHeaders. Its `Nats-Msg-Id` is
`dlq:<stream>:<consumer>:<sequence>`, so a dead letter that is retried (the term got lost, the
consumer crashed between publish and term) is stored once within the DLQ's duplicate window,
while two consumers that both give up on one message (fan-out) each keep their own.

Order matters: publish the dead letter first, term the original only after the PubAck. If
the publish fails, the original must stay in its stream (nak it) — never term what is not
safely copied.

A message close to the server's max_payload does not fit with these headers: its copy keeps
as much of the body as fits and says so in `Filetrash-Dlq-Truncated` (the original's size);
the whole original stays in its stream at the sequence the headers name. Without that, such a
message could never be dead-lettered, and sending it whole would make the server close the
consumer's connection, again at every redelivery.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final, Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from handwritten.runtime import tracing
from handwritten.runtime.contract import ConsumerEndpoint, Publish, PublishResult
from handwritten.runtime.jetstream import (
    MSG_ID_HEADER,
    JetStreamPublisher,
    PayloadTooLarge,
    headers_size,
)

log = logging.getLogger(__name__)

DeadLetterReason = Literal[
    "invalid-subject",
    "invalid-json",
    "schema-invalid",
    "unknown-event-type",
    "permanent-error",
    "max-deliver",
]
REASONS: Final[tuple[DeadLetterReason, ...]] = (
    "invalid-subject",
    "invalid-json",
    "schema-invalid",
    "unknown-event-type",
    "permanent-error",
    "max-deliver",
)

REASON_HEADER = "Filetrash-Dlq-Reason"
DETAIL_HEADER = "Filetrash-Dlq-Detail"
STREAM_HEADER = "Filetrash-Dlq-Stream"
SUBJECT_HEADER = "Filetrash-Dlq-Subject"
SEQUENCE_HEADER = "Filetrash-Dlq-Sequence"
CONSUMER_HEADER = "Filetrash-Dlq-Consumer"
DELIVERIES_HEADER = "Filetrash-Dlq-Deliveries"
TRUNCATED_HEADER = "Filetrash-Dlq-Truncated"

DETAIL_MAX_CHARS = 500
"""Headers are not a log: keep the detail to what fits on a line."""


class DeadLetterFailed(Exception):
    """The dead letter could not be stored; the original must not be termed."""


def one_line(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """Whitespace runs (newlines included) become one space; long text is cut with '…'.

    Header values may not contain CR or LF, and a detail is for a human skimming a list.
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def dead_letter_msg_id(stream: str, stream_seq: int, consumer: str) -> str:
    """Unique per original message *and* consumer: without the consumer, the second consumer
    of a fan-out to dead-letter a message would be dropped as a duplicate of the first."""
    return f"dlq:{stream}:{consumer}:{stream_seq}"


def dead_letter_headers(
    msg: Msg, *, consumer: str, reason: DeadLetterReason, detail: str
) -> dict[str, str]:
    """The DeadLetterHeaders of the spec, taken from the message's JetStream metadata."""
    meta = msg.metadata
    return _headers(
        stream=meta.stream,
        subject=msg.subject,
        stream_seq=meta.sequence.stream,
        deliveries=meta.num_delivered,
        consumer=consumer,
        reason=reason,
        detail=detail,
    )


def _headers(
    *,
    stream: str,
    subject: str,
    stream_seq: int,
    deliveries: int,
    consumer: str,
    reason: DeadLetterReason,
    detail: str,
) -> dict[str, str]:
    return {
        REASON_HEADER: reason,
        DETAIL_HEADER: one_line(detail) or reason,
        STREAM_HEADER: stream,
        SUBJECT_HEADER: subject,
        SEQUENCE_HEADER: str(stream_seq),
        CONSUMER_HEADER: consumer,
        DELIVERIES_HEADER: str(deliveries),
    }


async def dead_letter(
    js: Publish | JetStreamContext,
    msg: Msg,
    *,
    endpoint: ConsumerEndpoint[Any, Any],
    reason: DeadLetterReason,
    detail: str,
) -> PublishResult:
    """Store a copy of `msg` in the dead-letter stream and wait for the PubAck.

    Raises `DeadLetterFailed` when it could not be stored; the caller then naks the original
    instead of terming it. Does not ack or term `msg` itself.
    """
    meta = msg.metadata
    return await store_dead_letter(
        js,
        msg.data,
        endpoint=endpoint,
        stream=meta.stream,
        subject=msg.subject,
        stream_seq=meta.sequence.stream,
        deliveries=meta.num_delivered,
        reason=reason,
        detail=detail,
        trace=tracing.carried(msg.headers),
    )


async def store_dead_letter(
    js: Publish | JetStreamContext,
    data: bytes,
    *,
    endpoint: ConsumerEndpoint[Any, Any],
    stream: str,
    subject: str,
    stream_seq: int,
    deliveries: int,
    reason: DeadLetterReason,
    detail: str,
    trace: Mapping[str, str] | None = None,
) -> PublishResult:
    """`dead_letter` for a message known by its place in the stream rather than as a delivery
    (e.g. read back with `get_msg`): the same headers and the same Nats-Msg-Id, so both paths
    store one copy of a message between them."""
    if reason not in REASONS:
        raise ValueError(f"unknown dead-letter reason {reason!r}; expected one of {REASONS}")
    publisher: Publish = JetStreamPublisher(js) if isinstance(js, JetStreamContext) else js
    headers = _headers(
        stream=stream,
        subject=subject,
        stream_seq=stream_seq,
        deliveries=deliveries,
        consumer=endpoint.durable,
        reason=reason,
        detail=detail,
    )
    headers.update(tracing.carried(trace))  # the original's trace: one request, followed
    msg_id = dead_letter_msg_id(stream, stream_seq, endpoint.durable)
    try:
        try:
            result = await publisher.publish(
                endpoint.dead_letter_subject, data, msg_id=msg_id, headers=headers
            )
        except PayloadTooLarge as too_large:
            headers[TRUNCATED_HEADER] = str(len(data))
            room = too_large.limit - headers_size({**headers, MSG_ID_HEADER: msg_id})
            result = await publisher.publish(
                endpoint.dead_letter_subject,
                data[: max(room, 0)],
                msg_id=msg_id,
                headers=headers,
            )
    except Exception as error:
        raise DeadLetterFailed(
            f"could not store the dead letter of {stream} #{stream_seq} on "
            f"{endpoint.dead_letter_subject}: {type(error).__name__} {error}".rstrip()
        ) from error
    log.warning(
        "☠️ %s #%d (%s) dead-lettered to %s: %s — %s%s",
        stream,
        stream_seq,
        subject,
        endpoint.dead_letter_subject,
        reason,
        headers[DETAIL_HEADER],
        " (already stored: duplicate)" if result.duplicate else "",
    )
    return result
