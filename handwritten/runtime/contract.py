"""The small surface that generated code depends on (like sqlc's DBTX).

Generated publishers, consumer endpoints and topology import only this module, pydantic and
nats.js.api; everything that talks to a server lives elsewhere in the runtime and satisfies
these protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from nats.js.api import ConsumerConfig
from pydantic import BaseModel, ConfigDict

HandlerT = TypeVar("HandlerT")
EventT = TypeVar("EventT")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What JetStream answered to a publish: where the message is stored, and whether it was a
    duplicate that the stream's duplicate window dropped (then `seq` is the original's)."""

    stream: str
    seq: int
    duplicate: bool


class Publish(Protocol):
    """Publishes bytes to JetStream and waits for the PubAck."""

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a message came from, handed to handlers next to the decoded event."""

    subject: str
    stream: str
    stream_seq: int
    consumer: str
    num_delivered: int
    headers: Mapping[str, str] = field(default_factory=dict)


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it is dead-lettered, not retried."""


@dataclass(frozen=True, slots=True)
class ConsumerBinding:
    """A durable consumer declared in the spec: the stream it reads and its exact configuration."""

    stream: str
    config: ConsumerConfig


@dataclass(frozen=True, slots=True)
class ConsumerEndpoint(Generic[HandlerT, EventT]):
    """Everything the consume loop needs to run one `receive` operation of the spec.

    `decode` raises `pydantic.ValidationError` for bytes that are not a valid event of this
    operation (not JSON, schema-invalid, unknown `eventType`); `dispatch` calls the handler's
    method for the event's type.
    """

    operation: str
    durable: str
    stream: str
    filter_subject: str
    dead_letter_subject: str
    event_types: tuple[str, ...]
    decode: Callable[[bytes], EventT]
    dispatch: Callable[[HandlerT, EventT, Delivery], Awaitable[None]]


class EventModel(BaseModel):
    """Base of every generated payload model.

    Strict, so that the model accepts exactly what the JSON Schema accepts: no "42" for an
    integer, no number for a date-time. Validate wire data with `model_validate_json`.
    """

    model_config = ConfigDict(strict=True, populate_by_name=True)
