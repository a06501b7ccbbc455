"""Stage 2's output: an immutable picture of the spec, with every Python name already chosen.

Templates read only these classes; nothing downstream looks at the raw document again.
"""

from __future__ import annotations

from dataclasses import dataclass

from generator.diagnostics import Location


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    description: str
    subjects: tuple[str, ...]
    retention: str
    storage: str
    discard: str
    max_bytes: int | None
    max_msgs: int | None
    max_msg_size: int | None
    max_msgs_per_subject: int | None
    discard_new_per_subject: bool
    """With discard new: a full subject refuses publishes to it alone, the others go on."""
    max_age: float | None
    """Seconds (nats-py's unit; the server's nanoseconds are derived from it)."""
    duplicate_window: float | None
    num_replicas: int
    location: Location


@dataclass(frozen=True, slots=True)
class Message:
    key: str
    """Its name under components.messages (or the channel's message key)."""
    class_name: str
    title: str
    summary: str
    is_json: bool
    event_type: str | None
    """The `eventType` constant of the payload, when it has one (the routing discriminator)."""
    handler_method: str
    id_field: str | None
    """Python name of the field whose value is the default `Nats-Msg-Id` (the `eventId`)."""
    pointer: str
    location: Location
    description: str = ""
    content_type: str = "application/json"
    examples: tuple[tuple[str, str], ...] = ()
    """(name, payload as indented JSON) of each example, for the docs."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """One `{name}` of a channel address; it stands for exactly one subject token."""

    name: str
    """As written in the address and under `parameters` (the key of `Delivery.parameters`)."""
    python_name: str
    """The publisher's keyword argument."""
    description: str
    enum: tuple[str, ...]
    default: str | None
    examples: tuple[str, ...]
    pattern: str | None
    """`x-pattern`: a regular expression the whole value must match."""
    location: str | None
    """AsyncAPI's runtime expression saying where in the message the value also is; kept for
    readers, not used by the generated code."""
    declared: bool
    """False for a `{name}` of an address without a `parameters` object: any single token."""
    where: Location


@dataclass(frozen=True, slots=True)
class Channel:
    key: str
    address: str
    subject: str
    """The address as a NATS subject: each `{parameter}` becomes `*`."""
    stream: str
    messages: tuple[str, ...]
    location: Location
    parameters: tuple[Parameter, ...] = ()
    """In the order they appear in the address."""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Consumer:
    durable: str
    stream: str
    description: str
    filter_subject: str
    ack_policy: str
    deliver_policy: str
    ack_wait: float | None
    max_deliver: int | None
    backoff: tuple[float, ...]
    max_ack_pending: int | None
    max_waiting: int | None
    dead_letter_subject: str
    location: Location


@dataclass(frozen=True, slots=True)
class Operation:
    key: str
    action: str
    channel: str
    subject: str
    messages: tuple[str, ...]
    title: str
    summary: str
    queue: str | None
    consumer: Consumer | None
    class_name: str
    """`PublishFileDeleted` for a send, `TrashProcessorHandler` for a receive."""
    constant_name: str
    """`TRASH_PROCESSOR`: the generated ConsumerEndpoint of a receive operation."""
    function_prefix: str
    """`trash_processor`: the stem of its private decode and dispatch functions."""
    union_name: str
    """`AnalyticsServiceEvent`: the discriminated union of a multi-message receive."""
    location: Location
    sends: tuple[str, ...] = ()
    """`x-sends` of a receive operation: the send operations its service performs."""


@dataclass(frozen=True, slots=True)
class Role:
    """A NATS user: what one service of the spec may publish and subscribe to, and nothing else.

    One per receive operation (named by its durable; its `x-sends` included), one per send
    operation no receive operation performs (named by the operation), and `admin`."""

    name: str
    kind: str
    """`receive`, `send` or `admin`."""
    operations: tuple[str, ...]
    """The spec's operations it serves."""
    inbox_prefix: str
    """Its reply subjects (`_INBOX.<role>`): no other role may subscribe to them."""
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    reasons: tuple[tuple[str, str], ...] = ()
    """(subject, why it is granted), for the docs and `just compat`."""


@dataclass(frozen=True, slots=True)
class Document:
    spec_path: str
    title: str
    version: str
    description: str
    streams: tuple[Stream, ...]
    channels: tuple[Channel, ...]
    messages: tuple[Message, ...]
    operations: tuple[Operation, ...]
    models_schema: str
    """Canonical JSON of one JSON Schema whose $defs are every JSON payload (by class name) and
    every component schema they use: the input to datamodel-code-generator."""
    roles: tuple[Role, ...] = ()
    """Every NATS role, by name (generator/roles.py derives them)."""

    def message(self, key: str) -> Message:
        return next(m for m in self.messages if m.key == key)

    def channel(self, key: str) -> Channel:
        return next(c for c in self.channels if c.key == key)

    @property
    def senders(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.action == "send")

    @property
    def receivers(self) -> tuple[Operation, ...]:
        return tuple(op for op in self.operations if op.action == "receive")
