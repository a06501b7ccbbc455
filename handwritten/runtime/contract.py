"""The small surface that generated code depends on (like sqlc's DBTX).

Generated publishers, consumer endpoints and topology import only this module, `addresses`
(channel addresses with parameters), pydantic and nats.js.api; everything that talks to a server lives elsewhere in the runtime and satisfies
these protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import (
    Any,
    Final,
    Generic,
    NamedTuple,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from nats.js.api import ConsumerConfig
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from handwritten.runtime.addresses import Address
from handwritten.runtime.wire import FORMATS, PARSED_STRINGS, WIRE_KEY, checker

NO_ENTRIES: Final[Mapping[str, str]] = MappingProxyType({})
"""An empty mapping nobody can fill: the headers or parameters of a delivery that has none."""

HandlerT = TypeVar("HandlerT")
EventT = TypeVar("EventT")
EventT_contra = TypeVar("EventT_contra", contravariant=True)


class PublishResult(NamedTuple):
    """What JetStream answered to a publish: where the message is stored, and whether it was a
    duplicate that the stream's duplicate window dropped (then `seq` is the original's).

    A named tuple, like `OutgoingMessage`: one is made per message published, and a tuple
    is made in a third of the time of a frozen dataclass."""

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


class OutgoingMessage(NamedTuple):
    """One message of a `PublishMany.publish_many` batch (a generated publisher's `message`)."""

    subject: str
    payload: bytes
    msg_id: str
    headers: Mapping[str, str] | None = None


@runtime_checkable
class PublishMany(Publish, Protocol):
    """A `Publish` that also sends many messages at once and waits for their PubAcks
    together. Item i of the answer is message i's `PublishResult`, or the exception it failed
    with (after the same retries, with the same Nats-Msg-Id, as `publish`)."""

    async def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[PublishResult | Exception]: ...


class Delivery(NamedTuple):
    """Where a message came from, handed to handlers next to the decoded event.

    `parameters` holds the values of the channel address's parameters, read from `subject`
    and already checked against their enum and pattern (`orders.{region}.placed` delivered on
    `orders.eu.placed` gives `{"region": "eu"}`), keyed by the parameter's name in the spec.
    `payload` is the message's body as it arrived, the bytes the event was decoded from: for a
    handler that keeps or forwards the event as sent (an audit log) rather than re-serialised.

    A named tuple: immutable, and made in a fifth of the time of a frozen dataclass, which
    sets each field through `object.__setattr__` — the consume loop makes one per message
    (`new_delivery`). `delivery._replace(num_delivered=2)` makes a changed copy.
    """

    subject: str
    stream: str
    stream_seq: int
    consumer: str
    num_delivered: int
    headers: Mapping[str, str] = NO_ENTRIES
    parameters: Mapping[str, str] = NO_ENTRIES
    payload: bytes = b""


def new_delivery(
    subject: str,
    stream: str,
    stream_seq: int,
    consumer: str,
    num_delivered: int,
    headers: Mapping[str, str],
    parameters: Mapping[str, str],
    payload: bytes,
) -> Delivery:
    """`Delivery(...)` for the consume loop, which makes one per message: the tuple made
    directly, without the named tuple's `__new__`, a Python function (0.25 µs instead of
    0.6). tests/unit/test_consume_units.py holds the two to the same value."""
    return _new_tuple(
        Delivery,
        (subject, stream, stream_seq, consumer, num_delivered, headers, parameters, payload),
    )


_new_tuple = tuple.__new__
_new = object.__new__


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it is dead-lettered, not retried."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How a batch ended, item by item: `failures` maps the index of each item that failed to
    its exception; every other item succeeded. The loop settles a failed item as it would a
    single message that raised it: `PermanentError` is dead-lettered, anything else retried."""

    failures: Mapping[int, BaseException] = field(default_factory=dict)


class BatchHandler(Protocol[EventT_contra]):
    """A handler that can also take a whole fetched batch at once (one database round trip,
    concurrent publishes). The consume loop uses `handle_batch` when the handler has it.

    Contract: return only once every item reported as succeeded is durably done, since the
    loop acks those right after. Raising means "the batch as a whole failed": the loop then
    handles each item on its own through the handler's per-message method, so one bad item
    is isolated and the others still succeed. Both paths must therefore be idempotent.
    """

    async def handle_batch(
        self, items: Sequence[tuple[EventT_contra, Delivery]]
    ) -> BatchResult: ...


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
    method for the event's type. `address` is the channel's address, from which the loop reads
    each delivery's `parameters`.
    """

    operation: str
    durable: str
    stream: str
    address: Address
    filter_subject: str
    dead_letter_subject: str
    event_types: tuple[str, ...]
    decode: Callable[[bytes], EventT]
    dispatch: Callable[[HandlerT, EventT, Delivery], Awaitable[None]]


def _attach_wire_rules(cls: type[BaseModel], schema: CoreSchema) -> None:
    """Wrap, in place, the schema of every field of `cls` that has a wire rule
    (`json_schema_extra={"x-wire": ...}`) in a before-validator applying that rule."""
    fields = _model_fields_schema(cls, schema)
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra
        rule = extra.get(WIRE_KEY) if isinstance(extra, dict) else None
        if not isinstance(rule, dict):
            continue
        holder = fields[name]
        if holder["schema"].get("type") == "default":
            holder = holder["schema"]  # a default (MISSING) stays outermost: it is not validated
        inner = holder["schema"]
        if inner.get("metadata", {}).get(WIRE_KEY) is not None:
            continue  # already attached (the schema is reused when the model is nested)
        holder["schema"] = _with_rule(rule, inner)


_PARSED_TYPES = {"date": "date", "date-time": "datetime", "uuid": "uuid"}
"""The core schema type of a field that holds each parsed format."""


def _with_rule(rule: dict[str, Any], inner: CoreSchema) -> CoreSchema:
    """`inner` preceded by `rule`: for a format pydantic parses (a uuid, a date-time), on the
    wire a pattern or length checked by pydantic's own string validation and then the parse (see
    wire.PARSED_STRINGS), with no Python call; otherwise, and for Python values, the rule's
    checker as a before-validator."""
    checked = core_schema.no_info_before_validator_function(checker(rule), inner)
    name = rule.get("format")
    if (
        set(rule) != {"format"}
        or not isinstance(name, str)
        or _PARSED_TYPES.get(name) != inner.get("type")
    ):
        return {**checked, "metadata": {WIRE_KEY: rule}}
    on_the_wire = core_schema.custom_error_schema(
        core_schema.chain_schema(
            [core_schema.str_schema(strict=True, **PARSED_STRINGS[name]), inner]
        ),
        custom_error_type="wire_format",
        custom_error_message=f"Input should be {FORMATS[name][1]}",
    )
    return core_schema.json_or_python_schema(
        json_schema=on_the_wire, python_schema=checked, metadata={WIRE_KEY: rule}
    )


def _model_fields_schema(cls: type[BaseModel], schema: Any) -> dict[str, Any]:
    """The `fields` of the model-fields schema inside `cls`'s model schema (under the
    validators pydantic wraps it in)."""
    node = schema
    while isinstance(node, dict):
        if node.get("type") == "definitions":
            node = node["schema"]
        elif node.get("type") == "model-fields":
            fields: dict[str, Any] = node["fields"]
            return fields
        elif "schema" in node:
            node = node["schema"]
        else:
            break
    raise TypeError(f"{cls.__name__}: no model-fields schema to attach the wire rules to")


EVENT_UNION_CONFIG: Final = ConfigDict(cache_strings="keys")
"""The config of the `TypeAdapter` a generated consumer decodes a union of events with: an
adapter parses JSON by its own config, not its models', and pydantic's default puts every
string through its cache. Keys only, as `EventModel` does: an analytics event decoded in
7.7 µs instead of 11.0 (`json.loads`: 5.1)."""


class EventModel(BaseModel):
    """Base of every generated payload model.

    Together with the strict scalar types the generator uses (StrictInt, StrictStr, ...) and
    the rules it attaches to fields for what pydantic does not check as JSON Schema does
    (handwritten/runtime/wire.py: formats, decimal multipleOf, 1.0 as an integer), it accepts
    exactly what the JSON Schema accepts.
    """

    # A payload may have a field called model_dump (datamodel-code-generator names it
    # model_dump_): nothing of pydantic's is shadowed, so no namespace needs guarding.
    # Only the JSON's keys go through pydantic's string cache: an event's values (ids, names,
    # paths, times) are mostly unique, and looking each up in the cache cost 0.55 µs of a
    # FileDeletedEvent's 4.25 µs decode (3.7 µs with keys only).
    model_config = ConfigDict(
        validate_by_name=True,
        validate_by_alias=True,
        protected_namespaces=(),
        cache_strings="keys",
    )

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[BaseModel], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        """The model's schema with each field's wire rule run before pydantic reads the field.

        The rules are field-level rather than one model-level validator: a model validator
        that sees the input makes pydantic turn the whole JSON document into a Python dict
        first, while a field's validator receives only that field's value, parsed from JSON
        by pydantic's own parser as it goes (about a third of the decoding's cost).
        """
        schema = handler(source)
        if source is cls:
            _attach_wire_rules(cls, schema)
        return schema


ModelT = TypeVar("ModelT", bound=BaseModel)


def trusted(cls: type[ModelT], values: dict[str, Any]) -> ModelT:
    """An instance of `cls` holding `values` (by field name) as given, unvalidated: for an
    event the service builds from data it already validated (a stored row), whose fields have
    exactly the types validation would give them. Like `model_construct` without its
    per-field bookkeeping (defaults, aliases), about a third of a validated construction's
    cost. Serialising it gives what the validated model gives; the caller's tests hold that.
    """
    model = _new(cls)
    _set_values(model, values)
    _set_fields_set(model, set(values))
    _set_extra(model, None)
    _set_private(model, None)
    return model


_set_values = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
"""A pydantic model's slots, written directly (as `new_delivery` does a Delivery's)."""


@dataclass(frozen=True, slots=True)
class Role:
    """A NATS user derived from the spec: exactly the subjects one service may publish and
    subscribe to (generated/permissions.py; `handwritten.runtime.roles` renders them into a
    nats-server configuration). Replies come to `inbox_prefix`, which no other role may read."""

    name: str
    kind: str
    """`receive` (a durable's service), `send` (a producer) or `admin`."""
    operations: tuple[str, ...]
    inbox_prefix: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
