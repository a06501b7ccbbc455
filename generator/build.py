"""Stage 2: loaded spec → immutable IR. Every check lives here, and all problems are collected.

First the structure (jsonschema against the subset we support, extensions included), then the
meaning: streams and their subjects, channels captured by exactly one stream, consumer filters
inside their stream, unique durables, message discriminators, and names that collide once
made into Python identifiers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from generator import formats, naming, subjects, subset
from generator.diagnostics import Diagnostic, Level, Location, SpecError, escape_pointer_token
from generator.formats import format_checker
from generator.ir import Channel, Consumer, Document, Message, Operation, Parameter, Stream
from generator.load import Spec
from generator.roles import build_roles

_SCHEMAS = Path(__file__).parent / "schemas"
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_PARAMETER = re.compile(r"\{([^{}]*)\}")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_\-]+")
_SCHEMA_REF = "#/components/schemas/"


@cache
def _validator() -> jsonschema.protocols.Validator:
    def resource(name: str) -> Resource[Any]:
        return Resource.from_contents(json.loads((_SCHEMAS / name).read_text(encoding="utf-8")))

    document = resource("document.schema.json")
    extensions = resource("extensions.schema.json")
    registry: Registry[Any] = Registry().with_resources(
        [
            ("https://filetrash.invalid/schemas/document.schema.json", document),
            ("https://filetrash.invalid/schemas/extensions.schema.json", extensions),
        ]
    )
    return formats.Validator(document.contents, registry=registry)


def seconds(value: float | int | str) -> float:
    """A spec duration (seconds, or ISO 8601 such as PT30S) in seconds. The schema has already
    checked the form."""
    if isinstance(value, int | float):
        return float(value)
    match = _ISO_DURATION.match(value)
    if not match:
        raise ValueError(value)
    d, h, m, s = (float(match.group(k) or 0) for k in "dhms")
    return d * 86400 + h * 3600 + m * 60 + s


def build(spec: Spec, *, strict: bool = False) -> tuple[Document, list[Diagnostic]]:
    """Builds the IR; raises SpecError with every error (and, when strict, every warning)."""
    builder = _Builder(spec)
    builder.check_structure()
    if builder.errors:
        raise SpecError(sorted(builder.errors, key=lambda d: d.where))
    document = builder.build()
    fatal = builder.errors + (builder.warnings if strict else [])
    if fatal:
        # The same problem can be met twice (a $ref followed from two places): report it once.
        raise SpecError(sorted(dict.fromkeys(fatal), key=lambda d: d.where))
    return document, builder.warnings


class _Builder:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.data = spec.data
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.names: dict[str, Location] = {}

    # -- reporting -------------------------------------------------------------------------
    def error(self, pointer: str, code: str, message: str, hint: str = "") -> None:
        self.errors.append(Diagnostic(Level.ERROR, code, self.spec.where(pointer), message, hint))

    def warn(self, pointer: str, code: str, message: str, hint: str = "") -> None:
        self.warnings.append(
            Diagnostic(Level.WARNING, code, self.spec.where(pointer), message, hint)
        )

    def resolve(self, node: Any, pointer: str) -> tuple[Any, str] | None:
        try:
            return self.spec.resolve(node, pointer)
        except SpecError as exc:
            self.errors.extend(exc.diagnostics)
            return None

    def check_class_name(self, class_name: str, pointer: str, what: str) -> None:
        """datamodel-code-generator would not keep an escaped model name (`BaseModel_`), so the
        generated imports would miss it: such names are refused instead."""
        if class_name.endswith("_"):
            self.error(
                pointer,
                "reserved-name",
                f"{what} would become the class {class_name[:-1]!r}, a Python keyword or builtin "
                "or a name the generated code uses",
                f"rename it, e.g. to {class_name[:-1]}Event",
            )

    def claim(self, name: str, pointer: str, what: str) -> None:
        """Registers a generated Python name; a second claim is a collision, reported with both
        places."""
        where = self.spec.where(pointer)
        first = self.names.get(name)
        if first is None:
            self.names[name] = where
        elif first != where:
            self.error(
                pointer,
                "name-collision",
                f"{what} becomes the Python name {name!r}, already taken by the name "
                f"defined at {first} ({first.pointer})",
                "rename one of them so that their Python names differ",
            )

    # -- structure -------------------------------------------------------------------------
    def check_structure(self) -> None:
        for err in sorted(
            _validator().iter_errors(self.data), key=lambda e: list(map(str, e.path))
        ):
            for leaf in _leaves(err):
                path = list(leaf.absolute_path)
                if "propertyNames" in leaf.absolute_schema_path:
                    path.append(str(leaf.instance))  # point at the bad name, not its mapping
                pointer = "".join(f"/{escape_pointer_token(p)}" for p in path)
                self.error(
                    pointer,
                    "structure",
                    _describe(leaf),
                    "see asyncapi/EXTENSIONS.md for the supported subset",
                )

    # -- meaning ---------------------------------------------------------------------------
    def build(self) -> Document:
        info = self.data["info"]
        streams = self.build_streams()
        messages: dict[str, Message] = {}
        channels = self.build_channels(streams, messages)
        operations = self.build_operations(streams, channels, messages)
        models_schema = self.build_models_schema(messages)
        roles = build_roles(
            operations,
            streams.values(),
            lambda op: f"/operations/{escape_pointer_token(op.key)}",
            self.error,
        )
        if not any(d.code == "invalid-schema" for d in self.errors):  # else it cannot validate
            self.check_examples(messages, models_schema)
        return Document(
            spec_path=self.spec.path,
            title=info["title"],
            version=info["version"],
            description=info.get("description", ""),
            streams=tuple(streams[name] for name in sorted(streams)),
            channels=tuple(channels[key] for key in sorted(channels)),
            messages=tuple(messages[key] for key in sorted(messages)),
            operations=tuple(operations),
            models_schema=json.dumps(models_schema, ensure_ascii=True),
            roles=roles,
        )

    def build_streams(self) -> dict[str, Stream]:
        streams: dict[str, Stream] = {}
        claimed: list[tuple[str, str, str]] = []
        for name, raw in self.data["x-jetstream-streams"].items():
            pointer = f"/x-jetstream-streams/{escape_pointer_token(name)}"
            for i, subject in enumerate(raw["subjects"]):
                sp = f"{pointer}/subjects/{i}"
                if not subjects.is_valid_subject(subject):
                    self.error(
                        sp,
                        "invalid-subject",
                        f"{subject!r} is not a valid NATS subject",
                        "use dot-separated tokens; '*' is one token, '>' only at the end",
                    )
                    continue
                for other_name, other, other_pointer in claimed:
                    if subjects.overlaps(subject, other):
                        self.error(
                            sp,
                            "overlapping-streams",
                            f"subject {subject!r} of stream {name} overlaps {other!r} of "
                            f"stream {other_name} ({self.spec.where(other_pointer)})",
                            "JetStream refuses streams whose subjects overlap; make them disjoint",
                        )
                claimed.append((name, subject, sp))
            streams[name] = Stream(
                name=name,
                description=raw.get("description", ""),
                subjects=tuple(raw["subjects"]),
                retention=raw["retention"],
                storage=raw["storage"],
                discard=raw.get("discard", "old"),
                max_bytes=raw.get("max_bytes"),
                max_msgs=raw.get("max_msgs"),
                max_msg_size=raw.get("max_msg_size"),
                max_msgs_per_subject=raw.get("max_msgs_per_subject"),
                discard_new_per_subject=raw.get("discard_new_per_subject", False),
                max_age=seconds(raw["max_age"]) if "max_age" in raw else None,
                duplicate_window=seconds(raw["duplicate_window"])
                if "duplicate_window" in raw
                else None,
                num_replicas=raw.get("num_replicas", 1),
                location=self.spec.where(pointer),
            )
            if "duplicate_window" not in raw:
                self.warn(
                    pointer,
                    "no-duplicate-window",
                    f"stream {name} has no duplicate_window",
                    "set one so that retried publishes with the same Nats-Msg-Id are dropped",
                )
            if raw.get("discard_new_per_subject") and (
                raw.get("discard", "old") != "new" or raw.get("max_msgs_per_subject", -1) <= 0
            ):
                self.error(
                    f"{pointer}/discard_new_per_subject",
                    "discard-new-per-subject",
                    f"stream {name} sets discard_new_per_subject without discard: new and a "
                    "positive max_msgs_per_subject",
                    "JetStream refuses it otherwise; set discard: new and max_msgs_per_subject",
                )
        return streams

    def stream_of(self, subject: str, streams: dict[str, Stream]) -> list[str]:
        return [
            s.name
            for s in streams.values()
            if any(subjects.contains(p, subject) for p in s.subjects)
        ]

    def build_channels(
        self, streams: dict[str, Stream], messages: dict[str, Message]
    ) -> dict[str, Channel]:
        channels: dict[str, Channel] = {}
        for key, node in self.data["channels"].items():
            pointer = f"/channels/{escape_pointer_token(key)}"
            resolved = self.resolve(node, pointer)
            if resolved is None:
                continue
            raw, pointer = resolved
            address = raw["address"]
            subject = _PARAMETER.sub("*", address)
            if not subjects.is_valid_subject(subject):
                self.error(
                    f"{pointer}/address",
                    "invalid-subject",
                    f"channel address {address!r} is not a valid NATS subject",
                    "use dot-separated tokens; '{param}' and '*' stand for one token",
                )
                continue
            bound = raw["bindings"]["nats"]["jetstream"]["stream"]
            owners = self.stream_of(subject, streams)
            if bound not in streams:
                self.error(
                    f"{pointer}/bindings/nats/jetstream/stream",
                    "unknown-stream",
                    f"channel {key} is bound to stream {bound}, which is not declared",
                    f"declare it under x-jetstream-streams (known: {', '.join(sorted(streams))})",
                )
            elif not owners:
                self.error(
                    f"{pointer}/address",
                    "uncaptured-channel",
                    f"channel address {address} is captured by no stream",
                    f"add it to the subjects of stream {bound}",
                )
            elif len(owners) > 1:
                self.error(
                    f"{pointer}/address",
                    "channel-in-two-streams",
                    f"channel address {address} is captured by streams {', '.join(owners)}",
                    "a subject may belong to one stream only; narrow their subjects",
                )
            elif owners[0] != bound:
                self.error(
                    f"{pointer}/bindings/nats/jetstream/stream",
                    "wrong-stream",
                    f"channel {key} is bound to {bound}, but its address {address} "
                    f"is captured by {owners[0]}",
                    f"bind it to {owners[0]} or move the subject",
                )
            parameters = self.build_parameters(key, raw, pointer)
            keys = []
            for mkey, mnode in raw["messages"].items():
                message = self.build_message(
                    mkey, mnode, f"{pointer}/messages/{escape_pointer_token(mkey)}", messages
                )
                if message is not None:
                    keys.append(message.key)
            channels[key] = Channel(
                key,
                address,
                subject,
                bound,
                tuple(keys),
                self.spec.where(pointer),
                parameters,
                naming.printable(str(raw.get("description") or raw.get("title") or "")),
            )
        return channels

    def build_parameters(
        self, key: str, raw: dict[str, Any], pointer: str
    ) -> tuple[Parameter, ...]:
        """The parameters of a channel's address, in address order, each checked: declared
        (when the channel has a `parameters` object), used, with values that are single NATS
        tokens matching the pattern, and with distinct Python names."""
        address = raw["address"]
        apointer = f"{pointer}/address"
        declared = raw.get("parameters")
        names: list[str] = []
        for name in _PARAMETER.findall(address):
            if not _PARAMETER_NAME.fullmatch(name):
                self.error(
                    apointer,
                    "invalid-parameter-name",
                    f"channel {key} has the parameter {{{name}}} in its address",
                    "name parameters with letters, digits, '_' and '-'",
                )
            elif name in names:
                self.error(
                    apointer,
                    "repeated-parameter",
                    f"parameter {{{name}}} appears twice in the address {address}",
                    "use each parameter once; give the other token its own parameter",
                )
            else:
                names.append(name)
        if declared is not None:
            for name in declared:
                if name not in names:
                    self.error(
                        f"{pointer}/parameters/{escape_pointer_token(name)}",
                        "unused-parameter",
                        f"parameter {name} of channel {key} is not in its address {address}",
                        f"use {{{name}}} in the address or remove the declaration",
                    )
        parameters: list[Parameter] = []
        python_names: dict[str, Parameter] = {}
        for name in names:
            ppointer = f"{pointer}/parameters/{escape_pointer_token(name)}"
            if declared is not None and name not in declared:
                self.error(
                    apointer,
                    "undeclared-parameter",
                    f"the address {address} of channel {key} uses {{{name}}}, which is not "
                    "declared under its parameters",
                    f"declare {name} under channels.{key}.parameters",
                )
                continue
            spec: dict[str, Any] = {}
            if declared is not None:
                resolved = self.resolve(declared[name], ppointer)
                if resolved is None:
                    continue
                spec, ppointer = resolved
            parameter = self.build_parameter(key, name, spec, ppointer, declared is not None)
            other = python_names.setdefault(parameter.python_name, parameter)
            if other is not parameter:
                self.error(
                    ppointer,
                    "parameter-collision",
                    f"parameters {other.name} ({other.where}) and {name} of channel {key} both "
                    f"become the Python name {parameter.python_name!r}",
                    "rename one of them",
                )
            parameters.append(parameter)
        return tuple(parameters)

    def build_parameter(
        self, channel: str, name: str, spec: dict[str, Any], pointer: str, declared: bool
    ) -> Parameter:
        pattern = spec.get("x-pattern")
        regex: re.Pattern[str] | None = None
        if pattern is not None:
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                self.error(
                    f"{pointer}/x-pattern",
                    "invalid-pattern",
                    f"x-pattern {pattern!r} of parameter {name} is not a regular expression: {exc}",
                    "fix the pattern (Python's re syntax; the whole value must match it)",
                )
        enum = tuple(spec.get("enum", ()))
        values = [(f"enum/{i}", v, "enum value") for i, v in enumerate(enum)]
        values += [(f"examples/{i}", v, "example") for i, v in enumerate(spec.get("examples", []))]
        if "default" in spec:
            values.append(("default", spec["default"], "default"))
        for at, value, what in values:
            why = _value_problem(value, regex, pattern)
            if why is None and what != "enum value" and enum and value not in enum:
                why = f"is not one of its enum values {', '.join(enum)}"
            if why is not None:
                self.error(
                    f"{pointer}/{at}",
                    "invalid-parameter-value",
                    f"{what} {value!r} of parameter {name} (channel {channel}) {why}",
                    "a parameter value is exactly one subject token: non-empty, without '.', "
                    "'*', '>' or whitespace, and matching the parameter's enum and x-pattern",
                )
        return Parameter(
            name=name,
            python_name=naming.snake(name),
            description=naming.one_line(spec.get("description"), limit=4096),
            enum=enum,
            default=spec.get("default"),
            examples=tuple(spec.get("examples", ())),
            pattern=pattern,
            location=spec.get("location"),
            declared=declared,
            where=self.spec.where(pointer),
        )

    def check_parameter_tokens(
        self, channel: Channel, subject: str, pointer: str, code: str, what: str
    ) -> None:
        """Each literal token of `subject` that stands where `channel` has a parameter must be
        a value that parameter accepts (messages there would all be dead-lettered)."""
        tokens = subject.split(".")
        for position, token in enumerate(channel.address.split(".")):
            found = _PARAMETER.fullmatch(token)
            if found is None or position >= len(tokens) or tokens[position] in ("*", ">"):
                continue
            parameter = next((p for p in channel.parameters if p.name == found.group(1)), None)
            if parameter is None:
                continue
            value = tokens[position]
            regex = _compiled(parameter.pattern)
            why = _value_problem(value, regex, parameter.pattern)
            if why is None and parameter.enum and value not in parameter.enum:
                why = f"is not one of {', '.join(parameter.enum)}"
            if why is not None:
                self.error(
                    pointer,
                    code,
                    f"{what} has {value!r} where channel {channel.key} has the parameter "
                    f"{parameter.name}, but {value!r} {why}",
                    f"use a value that {parameter.name} accepts",
                )

    def build_message(
        self, key: str, node: Any, pointer: str, messages: dict[str, Message]
    ) -> Message | None:
        resolved = self.resolve(node, pointer)
        if resolved is None:
            return None
        raw, target = resolved
        if target.startswith("/components/messages/"):
            key = target.rsplit("/", 1)[1].replace("~1", "/").replace("~0", "~")
        existing = messages.get(key)
        if existing is not None:
            if existing.pointer != target:
                self.error(
                    pointer,
                    "duplicate-message",
                    f"two different messages are both called {key}",
                    f"the other is at {existing.location}; give them distinct names",
                )
            return existing
        if not isinstance(raw, dict) or "payload" not in raw:
            self.error(
                target,
                "no-payload",
                f"message {key} has no payload",
                "add a payload schema (use {} for opaque bytes)",
            )
            return None
        content_type = raw.get(
            "contentType", self.data.get("defaultContentType", "application/json")
        )
        is_json = "json" in content_type
        class_name = naming.pascal(key)
        event_type: str | None = None
        id_field: str | None = None
        if is_json:
            payload = self.resolve(raw["payload"], f"{target}/payload")
            if payload is None:
                return None
            schema, schema_pointer = payload
            properties = schema.get("properties") if isinstance(schema, dict) else None
            if not isinstance(properties, dict) or schema.get("type") != "object":
                self.error(
                    schema_pointer,
                    "payload-not-object",
                    f"the payload of JSON message {key} is not an object schema with properties",
                    "describe the payload as {type: object, properties: ...}",
                )
                return None
            event_type_schema = self.resolve(
                properties.get("eventType", {}), f"{schema_pointer}/properties/eventType"
            )
            required = schema.get("required")
            if (
                event_type_schema
                and isinstance(event_type_schema[0], dict)
                and isinstance(required, list)
                and "eventType" in required
            ):
                # Only a required constant can discriminate: pydantic refuses an optional one.
                const = event_type_schema[0].get("const")
                event_type = const if isinstance(const, str) else None
            if isinstance(required, list) and "eventId" in required:
                # An optional eventId would make every such event's Nats-Msg-Id "None".
                id_field = naming.snake("eventId")
            self.check_class_name(class_name, target, f"message {key}")
            self.claim(class_name, target, f"message {key}")
        message = Message(
            key=key,
            class_name=class_name,
            title=raw.get("title", key),
            summary=naming.one_line(raw.get("summary") or raw.get("description")),
            is_json=is_json,
            event_type=event_type,
            handler_method="on_" + naming.snake(key).rstrip("_"),
            id_field=id_field,
            pointer=target,
            location=self.spec.where(target),
            description=naming.printable(str(raw.get("description") or raw.get("summary") or "")),
            content_type=content_type,
            examples=tuple(
                (
                    str(example.get("name", i)),
                    json.dumps(example["payload"], indent=2, ensure_ascii=False, default=str),
                )
                for i, example in enumerate(raw.get("examples") or [])
                if isinstance(example, dict) and "payload" in example
            ),
        )
        messages[key] = message
        return message

    def build_operations(
        self, streams: dict[str, Stream], channels: dict[str, Channel], messages: dict[str, Message]
    ) -> list[Operation]:
        operations: list[Operation] = []
        durables: dict[str, str] = {}
        for key, node in self.data["operations"].items():
            pointer = f"/operations/{escape_pointer_token(key)}"
            resolved = self.resolve(node, pointer)
            if resolved is None:
                continue
            raw, pointer = resolved
            ref = raw["channel"]["$ref"]
            channel_key = ref[len("#/channels/") :] if ref.startswith("#/channels/") else None
            channel = channels.get(channel_key or "")
            if channel is None:
                self.error(
                    f"{pointer}/channel",
                    "unknown-channel",
                    f"operation {key} refers to channel {ref!r}, which does not exist",
                    f"use one of: {', '.join('#/channels/' + c for c in sorted(channels))}",
                )
                continue
            op_messages = self.operation_messages(key, raw, pointer, channel, messages)
            action = raw["action"]
            queue = raw.get("bindings", {}).get("nats", {}).get("queue")
            consumer = None
            if action == "receive":
                consumer = self.build_consumer(
                    key, raw, pointer, channel, streams, channels, durables
                )
                if consumer and queue is not None and queue != consumer.durable:
                    self.error(
                        f"{pointer}/bindings/nats/queue",
                        "queue-mismatch",
                        f"queue {queue!r} differs from the durable {consumer.durable!r}",
                        "instances of one durable share work; name the queue after it",
                    )
                self.check_routable(key, pointer, op_messages, messages)
            else:
                self.check_sendable(key, pointer, op_messages, messages)
                if any(t in ("*", ">") for t in channel.address.split(".")):
                    self.error(
                        f"{pointer}/channel",
                        "wildcard-send",
                        f"send operation {key} publishes on {channel.address}, which has a "
                        "wildcard: a message goes to one concrete subject",
                        "send on a channel whose variable tokens are {parameters}",
                    )
            if action == "send" and "x-sends" in raw:
                self.error(
                    f"{pointer}/x-sends",
                    "sends-on-send",
                    f"send operation {key} lists x-sends",
                    "list the send operations a service performs on its receive operation",
                )
            if action == "send" and "x-jetstream-consumer" in raw:
                self.error(
                    f"{pointer}/x-jetstream-consumer",
                    "consumer-on-send",
                    f"send operation {key} declares a consumer",
                    "move x-jetstream-consumer to a receive operation",
                )
            base = naming.pascal(key)
            class_name = base + "Handler" if action == "receive" else base
            self.claim(class_name, pointer, f"operation {key}")
            if action == "receive":
                self.claim(naming.constant(key), pointer, f"operation {key}")
                if len(op_messages) > 1:
                    self.claim(base + "Event", pointer, f"operation {key}")
            operations.append(
                Operation(
                    key=key,
                    action=action,
                    channel=channel.key,
                    subject=channel.subject,
                    messages=tuple(op_messages),
                    title=raw.get("title", key),
                    summary=naming.one_line(raw.get("summary") or raw.get("description")),
                    queue=queue,
                    consumer=consumer,
                    class_name=class_name,
                    constant_name=naming.constant(key),
                    function_prefix=naming.snake(key).rstrip("_"),
                    union_name=base + "Event",
                    location=self.spec.where(pointer),
                    sends=tuple(raw.get("x-sends", ())),
                )
            )
        return sorted(operations, key=lambda op: op.key)

    def operation_messages(
        self,
        key: str,
        raw: dict[str, Any],
        pointer: str,
        channel: Channel,
        messages: dict[str, Message],
    ) -> list[str]:
        if "messages" not in raw:
            return list(channel.messages)
        keys: list[str] = []
        prefix = f"#/channels/{channel.key}/messages/"
        for i, item in enumerate(raw["messages"]):
            ref = item["$ref"]
            mkey = ref[len(prefix) :] if ref.startswith(prefix) else None
            channel_raw = self.data["channels"].get(channel.key, {})
            if mkey is None or mkey not in channel_raw.get("messages", {}):
                self.error(
                    f"{pointer}/messages/{i}",
                    "unknown-message",
                    f"operation {key} lists {ref!r}, which is not a message of its channel {channel.key}",
                    f"refer to {prefix}<name> for a message the channel declares",
                )
                continue
            found = self.resolve(
                channel_raw["messages"][mkey], f"/channels/{channel.key}/messages/{mkey}"
            )
            if found is None:
                continue
            target = found[1]
            message = next((m for m in messages.values() if m.pointer == target), None)
            if message is not None:
                keys.append(message.key)
        return keys

    def check_sendable(
        self, key: str, pointer: str, keys: list[str], messages: dict[str, Message]
    ) -> None:
        for mkey in keys:
            if not messages[mkey].is_json:
                self.error(
                    pointer,
                    "non-json-send",
                    f"operation {key} sends {mkey}, which is not JSON",
                    "publishers are generated for JSON messages with a schema only",
                )

    def check_routable(
        self, key: str, pointer: str, keys: list[str], messages: dict[str, Message]
    ) -> None:
        seen: dict[str, str] = {}
        methods: dict[str, str] = {}
        for mkey in keys:
            message = messages[mkey]
            other = methods.setdefault(message.handler_method, mkey)
            if other != mkey:
                self.error(
                    message.pointer,
                    "name-collision",
                    f"operation {key} receives {other} and {mkey}, whose handler methods are "
                    f"both {message.handler_method}",
                    "rename one of the messages",
                )
            if not message.is_json:
                self.error(
                    pointer,
                    "non-json-receive",
                    f"operation {key} receives {mkey}, which is not JSON",
                    "receive operations need JSON messages with a schema",
                )
            elif len(keys) > 1 and message.event_type is None:
                self.error(
                    message.pointer,
                    "no-discriminator",
                    f"operation {key} receives several message types, but {mkey} has no "
                    "required, constant eventType to tell it apart",
                    "give its payload a required eventType property with a const value",
                )
            elif message.event_type is not None and message.event_type in seen:
                self.error(
                    message.pointer,
                    "ambiguous-discriminator",
                    f"{mkey} and {seen[message.event_type]} share eventType "
                    f"{message.event_type!r} in operation {key}",
                    "give each message its own eventType constant",
                )
            if message.event_type is not None:
                seen.setdefault(message.event_type, mkey)

    def build_consumer(
        self,
        key: str,
        raw: dict[str, Any],
        pointer: str,
        channel: Channel,
        streams: dict[str, Stream],
        channels: dict[str, Channel],
        durables: dict[str, str],
    ) -> Consumer | None:
        settings = raw.get("x-jetstream-consumer")
        cpointer = f"{pointer}/x-jetstream-consumer"
        if settings is None:
            self.error(
                pointer,
                "no-consumer",
                f"receive operation {key} has no x-jetstream-consumer",
                "declare its durable consumer (see asyncapi/EXTENSIONS.md)",
            )
            return None
        durable = settings["durable"]
        if durable in durables:
            self.error(
                f"{cpointer}/durable",
                "duplicate-durable",
                f"durable {durable!r} is declared twice (also by operation {durables[durable]})",
                "every receive operation needs its own durable name",
            )
        durables.setdefault(durable, key)
        stream = streams.get(channel.stream)
        filter_subject = settings.get("filter_subject", channel.subject)
        if not subjects.is_valid_subject(filter_subject):
            self.error(
                f"{cpointer}/filter_subject",
                "invalid-subject",
                f"filter {filter_subject!r} is not a valid NATS subject",
                "fix the filter",
            )
        elif stream is not None and not any(
            subjects.contains(p, filter_subject) for p in stream.subjects
        ):
            self.error(
                f"{cpointer}/filter_subject"
                if "filter_subject" in settings
                else f"{pointer}/channel",
                "filter-outside-stream",
                f"consumer {durable} filters {filter_subject!r}, outside stream "
                f"{stream.name} ({', '.join(stream.subjects)})",
                "filter a subject that the stream captures",
            )
        if channel.parameters and subjects.is_valid_subject(filter_subject):
            where = f"{cpointer}/filter_subject" if "filter_subject" in settings else pointer
            if not subjects.contains(channel.subject, filter_subject):
                self.error(
                    where,
                    "filter-outside-channel",
                    f"consumer {durable} filters {filter_subject!r}, wider than its channel's "
                    f"address {channel.address}: the parameters of a subject outside it cannot "
                    "be read",
                    f"filter {channel.subject} or a subject inside it",
                )
            else:
                self.check_parameter_tokens(
                    channel,
                    filter_subject,
                    where,
                    "invalid-parameter-value",
                    f"consumer {durable}'s filter {filter_subject}",
                )
        backoff = tuple(seconds(v) for v in settings.get("backoff", ()))
        ack_wait = seconds(settings["ack_wait"]) if "ack_wait" in settings else None
        max_deliver = settings.get("max_deliver")
        if backoff and max_deliver is not None and max_deliver <= len(backoff):
            self.error(
                f"{cpointer}/backoff",
                "backoff-too-long",
                f"backoff has {len(backoff)} steps but max_deliver is {max_deliver}",
                "JetStream needs max_deliver greater than the number of backoff steps",
            )
        if backoff and ack_wait is not None and ack_wait != backoff[0]:
            self.error(
                f"{cpointer}/ack_wait",
                "ack-wait-overridden",
                f"ack_wait is {ack_wait:g}s but backoff starts at {backoff[0]:g}s; with a "
                "backoff JetStream waits backoff[0] for the first delivery's ack, not ack_wait",
                f"make backoff start at the ack wait you mean (e.g. backoff: [{ack_wait:g}, ...]) "
                "or drop ack_wait",
            )
        dead_letter = self.dead_letter_subject(
            settings["dead_letter"],
            durable,
            f"{cpointer}/dead_letter",
            filter_subject,
            streams,
            channels,
        )
        return Consumer(
            durable=durable,
            stream=channel.stream,
            description=naming.one_line(
                settings.get("description") or raw.get("summary"), limit=4096
            ),
            filter_subject=filter_subject,
            ack_policy=settings["ack_policy"],
            deliver_policy=settings.get("deliver_policy", "all"),
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            backoff=backoff,
            max_ack_pending=settings.get("max_ack_pending"),
            max_waiting=settings.get("max_waiting"),
            dead_letter_subject=dead_letter,
            location=self.spec.where(cpointer),
        )

    def dead_letter_subject(
        self,
        channel_key: str,
        durable: str,
        pointer: str,
        filter_subject: str,
        streams: dict[str, Stream],
        channels: dict[str, Channel],
    ) -> str:
        channel = channels.get(channel_key)
        if channel is None:
            self.error(
                pointer,
                "unknown-channel",
                f"dead-letter channel {channel_key!r} does not exist",
                f"name a channel id (known: {', '.join(sorted(channels))})",
            )
            return ""
        subject = _PARAMETER.sub(durable, channel.address)
        self.check_parameter_tokens(
            channel,
            subject,
            pointer,
            "invalid-parameter-value",
            f"the dead-letter subject {subject} of {durable}",
        )
        if subjects.contains(filter_subject, subject):
            self.error(
                pointer,
                "dead-letter-loop",
                f"dead letters of {durable} go to {subject}, which its own filter "
                f"{filter_subject} receives again",
                "put dead-letter channels outside every consumer's filter (e.g. dlq.files.*)",
            )
        return subject

    # -- models ----------------------------------------------------------------------------
    def build_models_schema(self, messages: dict[str, Message]) -> dict[str, Any]:
        defs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        pending: list[str] = []
        components = self.data.get("components", {}).get("schemas", {})
        for message in messages.values():
            if not message.is_json:
                continue
            raw = self.spec.get(message.pointer)
            found = self.resolve(raw["payload"], f"{message.pointer}/payload")
            if found is None:
                continue
            schema, schema_pointer = found
            defs[message.class_name] = self.rewrite_refs(schema, schema_pointer, pending)
            sources[message.class_name] = schema_pointer
        done: set[str] = set()
        while pending:
            name = pending.pop()
            if name in done:
                continue
            done.add(name)
            pointer = f"/components/schemas/{escape_pointer_token(name)}"
            class_name = naming.pascal(name)
            if class_name in defs:
                self.error(
                    pointer,
                    "name-collision",
                    f"schema {name} becomes the Python name {class_name!r}, already taken by a message",
                    "rename the schema or the message",
                )
                continue
            self.check_class_name(class_name, pointer, f"schema {name}")
            self.claim(class_name, pointer, f"schema {name}")
            defs[class_name] = self.rewrite_refs(components[name], pointer, pending)
            sources[class_name] = pointer
        for class_name in sorted(defs):
            problems = list(subset.check_metaschema(defs[class_name], sources[class_name]))
            problems = problems or list(subset.check(defs[class_name], sources[class_name]))
            for problem in problems:
                self.error(problem.pointer, problem.code, problem.message, problem.hint)
            if not problems:
                self.check_defaults(defs[class_name], sources[class_name], defs)
            self.check_fields(defs[class_name], class_name, sources[class_name])
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": dict(sorted(defs.items())),
        }

    def rewrite_refs(self, schema: Any, pointer: str, pending: list[str]) -> Any:
        """A copy of `schema` whose `#/components/schemas/X` refs point at `#/$defs/X` (X as its
        Python class name); any other ref is reported."""
        if isinstance(schema, list):
            return [self.rewrite_refs(v, f"{pointer}/{i}", pending) for i, v in enumerate(schema)]
        if not isinstance(schema, dict):
            return schema
        result: dict[str, Any] = {}
        for k, v in schema.items():
            child = f"{pointer}/{escape_pointer_token(k)}"
            if k == "$ref" and isinstance(v, str):
                if not v.startswith(_SCHEMA_REF):
                    self.error(
                        child,
                        "unsupported-ref",
                        f"schema $ref {v!r} is not under #/components/schemas",
                        "define shared schemas under components.schemas",
                    )
                    continue
                name = v[len(_SCHEMA_REF) :]
                if name not in self.data.get("components", {}).get("schemas", {}):
                    self.error(
                        child,
                        "unknown-ref",
                        f"$ref {v!r} points at nothing",
                        "check the spelling, or define it under components.schemas",
                    )
                    continue
                pending.append(name)
                result[k] = "#/$defs/" + naming.pascal(name)
            elif k in ("examples", "example"):
                continue
            elif k in ("description", "title") and isinstance(v, str):
                result[k] = naming.printable(v)  # they become docstrings
            else:
                result[k] = self.rewrite_refs(v, child, pending)
        return result

    def check_fields(self, schema: Any, owner: str, pointer: str) -> None:
        """`pointer` is where `schema` was written: the rewritten copy keeps the original's shape."""
        if not isinstance(schema, dict):
            return
        properties = schema.get("properties")
        if isinstance(properties, dict):
            seen: dict[str, str] = {}
            for wire, value in properties.items():
                child = f"{pointer}/properties/{escape_pointer_token(wire)}"
                python = naming.snake(wire)
                if python in seen:
                    self.error(
                        child,
                        "field-collision",
                        f"in {owner}, properties {seen[python]!r} and {wire!r} both become {python!r}",
                        "rename one of the properties",
                    )
                seen[python] = wire
                self.check_fields(value, owner, child)
        for key in ("items", "additionalProperties"):
            self.check_fields(schema.get(key), owner, f"{pointer}/{key}")

    def check_defaults(self, schema: Any, pointer: str, defs: dict[str, Any]) -> None:
        """A default is what the model fills in for an absent field: it must be valid itself."""
        if not isinstance(schema, dict):
            return
        if "default" in schema:
            node = {k: v for k, v in schema.items() if k != "default"}
            validator = formats.Validator({**node, "$defs": defs}, format_checker=format_checker)
            for err in validator.iter_errors(schema["default"]):
                self.error(
                    f"{pointer}/default",
                    "invalid-default",
                    f"default {schema['default']!r} does not match its schema: {err.message}",
                    "fix the default or the schema",
                )
        for name, sub in (schema.get("properties") or {}).items():
            self.check_defaults(sub, f"{pointer}/properties/{escape_pointer_token(name)}", defs)
        self.check_defaults(schema.get("items"), f"{pointer}/items", defs)
        for key in ("anyOf", "oneOf"):
            for i, branch in enumerate(schema.get(key) or []):
                self.check_defaults(branch, f"{pointer}/{key}/{i}", defs)

    def check_examples(self, messages: dict[str, Message], models_schema: dict[str, Any]) -> None:
        """Every example in the spec must validate against its message's schema."""
        for message in messages.values():
            if not message.is_json:
                continue
            raw = self.spec.get(message.pointer)
            validator = formats.Validator(
                {**models_schema, "$ref": f"#/$defs/{message.class_name}"},
                format_checker=format_checker,
            )
            for i, example in enumerate(raw.get("examples", [])):
                if "payload" not in example:
                    continue
                for err in validator.iter_errors(example["payload"]):
                    at = "".join(f"/{escape_pointer_token(p)}" for p in err.absolute_path)
                    self.error(
                        f"{message.pointer}/examples/{i}/payload{at}",
                        "invalid-example",
                        f"example {example.get('name', i)!r} of {message.key} does not match "
                        f"its schema: {err.message}",
                        "fix the example or the schema",
                    )
            if len(raw.get("examples", [])) < 2:
                self.warn(
                    message.pointer,
                    "few-examples",
                    f"message {message.key} has fewer than two examples",
                    "examples document the message and feed the conformance tests",
                )


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern) if pattern is not None else None
    except re.error:
        return None  # reported where the pattern is declared


def _value_problem(value: str, regex: re.Pattern[str] | None, pattern: str | None) -> str | None:
    """Why `value` cannot stand for a parameter (not one NATS token, not matching its
    pattern), or None."""
    if not value:
        return "is empty"
    if "." in value:
        return "contains '.', which would split it into several tokens"
    if "*" in value or ">" in value:
        return "contains a wildcard ('*' or '>')"
    if any(c.isspace() for c in value):
        return "contains whitespace"
    if regex is not None and not regex.fullmatch(value):
        return f"does not match its x-pattern {pattern!r}"
    return None


def _leaves(error: jsonschema.ValidationError) -> Iterable[jsonschema.ValidationError]:
    """The most specific errors under an anyOf/oneOf, so messages say what is really wrong."""
    if not error.context:
        yield error
        return
    deepest = max(len(e.absolute_path) for e in error.context)
    best = [e for e in error.context if len(e.absolute_path) == deepest]
    # Prefer the branch that is not "this could have been a $ref".
    non_ref = [e for e in best if "$ref" not in (e.message or "")]
    chosen = non_ref or best
    if deepest == len(error.absolute_path) and len(chosen) > 1:
        yield error
        return
    for e in chosen[:1]:
        yield from _leaves(e)


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is required here")
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unsupported key(s)")
    return error.message
