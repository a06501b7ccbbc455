"""Provisioning: bring JetStream's streams and consumers to the spec, explicitly and safely.

First a plan: the live configuration of every stream and consumer the spec names, compared
field by field with the spec (`plan_changes`, a pure function). Then, only if nothing in the
plan is refused, its application: create what is missing, update what JetStream can change in
place. Provisioning never deletes a stream, a consumer or a message, and running it twice
changes nothing the second time.

What is compared: the fields the spec's configuration sets (a value that is not None), in the
units the server stores; fields the spec leaves to the server (max_waiting, max_msgs, ...) are
not drift, and an update keeps their live values. Normalisations learnt from nats-server:

- durations are compared in whole nanoseconds (the server's unit; nats-py gives seconds);
- with `backoff` set, the server replaces `ack_wait` by `backoff[0]`, so `ack_wait` is then
  not compared (`backoff` is);
- a consumer's `num_replicas` of 0 means "as many as its stream";
- 0 or a negative number means "unlimited" for the stream limits, and a `max_deliver` of 0 is
  -1; a `duplicate_window`, `max_ack_pending` or `max_waiting` of 0 is the server's default;
- metadata keys starting with `_nats.` are the server's own and are ignored;
- `filter_subject: x` and `filter_subjects: [x]` are the same filter.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    ConsumerInfo,
    RetentionPolicy,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError

from handwritten.runtime.contract import ConsumerBinding
from handwritten.runtime.errors import (
    CONSUMER_NOT_FOUND,
    STREAM_NAME_IN_USE,
    STREAM_NOT_FOUND,
    ConsumerConfigConflict,
    ProvisioningFailed,
    StreamConfigConflict,
    describe_api_error,
    is_jetstream_error,
)

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client
    from nats.js.manager import JetStreamManager

    from handwritten.runtime.servers import ServerUrls

Kind = Literal[
    "text",
    "enum",
    "flag",
    "limit",
    "bytes",
    "age",
    "duration",
    "durations",
    "subjects",
    "filter",
    "metadata",
    "replicas",
    "plain",
]
"""How a field's values are normalised for comparison and shown to a person."""

_NS_PER_SECOND = 1_000_000_000
_SERVER_METADATA_PREFIX = "_nats."

_STREAM_FIELDS: Mapping[str, Kind] = {
    "description": "text",
    "subjects": "subjects",
    "retention": "enum",
    "max_consumers": "limit",
    "max_msgs": "limit",
    "max_bytes": "bytes",
    "discard": "enum",
    "discard_new_per_subject": "flag",
    "max_age": "age",
    "max_msgs_per_subject": "limit",
    "max_msg_size": "bytes",
    "storage": "enum",
    "num_replicas": "replicas",
    "no_ack": "flag",
    "duplicate_window": "duration",
    "sealed": "flag",
    "deny_delete": "flag",
    "deny_purge": "flag",
    "allow_rollup_hdrs": "flag",
    "allow_direct": "flag",
    "mirror_direct": "flag",
    "compression": "enum",
    "allow_msg_ttl": "flag",
    "allow_msg_schedules": "flag",
    "allow_atomic": "flag",
    "allow_batched": "flag",
    "allow_msg_counter": "flag",
    "persist_mode": "enum",
    "metadata": "metadata",
    "subject_delete_marker_ttl": "duration",
}
"""Stream fields with a known meaning; any other field the spec sets is compared as is."""

_STREAM_IGNORED = frozenset({"name", "template_owner", "first_seq"})
"""Identity, a field current servers reject, and one that only matters at creation."""

_CONSUMER_FIELDS: Mapping[str, Kind] = {
    "description": "text",
    "deliver_policy": "enum",
    "opt_start_seq": "plain",
    "opt_start_time": "plain",
    "ack_policy": "enum",
    "ack_wait": "duration",
    "max_deliver": "limit",
    "backoff": "durations",
    "filter_subject": "filter",
    "replay_policy": "enum",
    "rate_limit_bps": "plain",
    "sample_freq": "text",
    "max_waiting": "plain",
    "max_ack_pending": "limit",
    "flow_control": "flag",
    "idle_heartbeat": "duration",
    "headers_only": "flag",
    "deliver_subject": "text",
    "deliver_group": "text",
    "inactive_threshold": "duration",
    "num_replicas": "replicas",
    "mem_storage": "flag",
    "metadata": "metadata",
}
"""Consumer fields with a known meaning; any other field the spec sets is compared as is."""

_CONSUMER_IGNORED = frozenset({"name", "durable_name", "filter_subjects", "pause_until"})
"""Identity, the other half of the filter (compared as `filter_subject`), and pause state."""

_ENUM_DEFAULTS: Mapping[str, str] = {"compression": "none", "persist_mode": "default"}
"""What the server means when it leaves these out."""


# --- the plan --------------------------------------------------------------------------------


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REFUSE = "refuse"
    NONE = "no changes"


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field whose live value differs from the spec's (values as nats-py holds them:
    durations in seconds); `note` warns of a consequence, e.g. messages discarded."""

    field: str
    live: object
    spec: object
    kind: Kind = "plain"
    note: str = ""

    def render(self) -> str:
        text = f"{self.field} {format_value(self.kind, self.live)} → {format_value(self.kind, self.spec)}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True, slots=True)
class Refusal:
    """A difference JetStream cannot (or provisioning will not) change in place."""

    field: str
    live: object
    spec: object
    kind: Kind
    reason: str
    way_out: str


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What provisioning does to one stream; `config` is what it would send to the server."""

    name: str
    action: Action
    config: StreamConfig
    changes: tuple[FieldChange, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def label(self) -> str:
        return f"stream {self.name}"


@dataclass(frozen=True, slots=True)
class ConsumerPlan:
    """What provisioning does to one durable consumer; `config` is what it would send."""

    stream: str
    durable: str
    action: Action
    config: ConsumerConfig
    changes: tuple[FieldChange, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def label(self) -> str:
        return f"consumer {self.stream} > {self.durable}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Every stream and consumer of the spec with what provisioning does to it, plus the
    database migrations still to apply (filled in by whoever also migrates)."""

    streams: tuple[StreamPlan, ...] = ()
    consumers: tuple[ConsumerPlan, ...] = ()
    migrations: tuple[str, ...] = ()

    def items(self) -> tuple[StreamPlan | ConsumerPlan, ...]:
        """Streams first, then consumers: the order in which they are applied."""
        return (*self.streams, *self.consumers)

    @property
    def refused(self) -> bool:
        return any(item.refusals for item in self.items())

    @property
    def has_changes(self) -> bool:
        """Whether applying would change anything (a refused plan applies nothing)."""
        return bool(self.migrations) or any(item.action is not Action.NONE for item in self.items())

    def count(self, action: Action) -> int:
        return sum(item.action is action for item in self.items())

    def problems(self) -> list[str]:
        """One sentence per refusal: object, field, live and spec values, and the way out."""
        return [
            f"{item.label}: {refusal.field} is {format_value(refusal.kind, refusal.live)} on "
            f"the server but {format_value(refusal.kind, refusal.spec)} in the spec; "
            f"{refusal.reason} — {refusal.way_out}"
            for item in self.items()
            for refusal in item.refusals
        ]

    def check(self) -> None:
        """Raise the conflict when anything is refused: then nothing may be applied."""
        if not self.refused:
            return
        if any(item.refusals for item in self.streams):
            raise StreamConfigConflict(self.problems())
        raise ConsumerConfigConflict(self.problems())

    def render(self) -> str:
        """The plan for a person: one line per stream, consumer, changed field or migration,
        then a summary (`no changes` when there is nothing to do)."""
        lines: list[str] = []
        for item in self.items():
            if item.action is Action.NONE or item.action is Action.CREATE:
                lines.append(f"{item.label}: {item.action.value}")
                continue
            lines.extend(
                f"{item.label}: refused {r.field} {format_value(r.kind, r.live)} → "
                f"{format_value(r.kind, r.spec)} ({r.reason})"
                for r in item.refusals
            )
            lines.extend(f"{item.label}: update {change.render()}" for change in item.changes)
        lines.extend(f"migration {name}: apply" for name in self.migrations)
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        if self.refused:
            return (
                f"refused: {len(self.problems())} change(s) JetStream cannot make in place; "
                "nothing will be changed"
            )
        if not self.has_changes:
            return "no changes"
        parts = [
            f"{self.count(Action.CREATE)} to create",
            f"{self.count(Action.UPDATE)} to update",
        ]
        if self.migrations:
            parts.append(f"{len(self.migrations)} migration(s) to apply")
        return ", ".join(parts)


# --- comparing -------------------------------------------------------------------------------


def plan_changes(
    live_streams: Mapping[str, StreamInfo],
    live_consumers: Mapping[tuple[str, str], ConsumerInfo],
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    *,
    replicas: int | None = None,
    allow_interest: bool = False,
) -> Plan:
    """Compare the live state (keyed by stream name and by (stream, durable)) with the spec.

    Pure: the same inputs give the same plan. `replicas` overrides every stream's and
    consumer's `num_replicas`, as `provision` does. `allow_interest` lets a stream switch
    from limits to interest retention (the migration of issue 11), which removes the messages
    every consumer has acknowledged and keeps the others.
    """
    streams, consumers = with_replicas(streams, consumers, replicas)
    stream_plans = tuple(
        _plan_stream(name, live_streams.get(name), spec, allow_interest)
        for name, spec in streams.items()
    )
    consumer_plans: list[ConsumerPlan] = []
    for key, binding in consumers.items():
        durable = binding.config.durable_name or key
        live_stream = live_streams.get(binding.stream)
        spec_stream = streams.get(binding.stream)
        consumer_plans.append(
            _plan_consumer(
                binding.stream,
                durable,
                live_consumers.get((binding.stream, durable)),
                binding.config,
                live_stream_replicas=_stream_replicas(live_stream.config if live_stream else None),
                spec_stream_replicas=_stream_replicas(spec_stream),
            )
        )
    return Plan(stream_plans, tuple(consumer_plans))


def with_replicas(
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    replicas: int | None,
) -> tuple[Mapping[str, StreamConfig], Mapping[str, ConsumerBinding]]:
    """The spec with every stream's and consumer's `num_replicas` set to `replicas`."""
    if replicas is None:
        return streams, consumers
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, not {replicas}")
    return (
        {name: config.evolve(num_replicas=replicas) for name, config in streams.items()},
        {
            key: replace(binding, config=binding.config.evolve(num_replicas=replicas))
            for key, binding in consumers.items()
        },
    )


def _stream_replicas(config: StreamConfig | None) -> int:
    return max(config.num_replicas or 1, 1) if config is not None else 1


def _spec_fields(config: StreamConfig | ConsumerConfig, ignored: frozenset[str]) -> list[str]:
    """The fields the spec's configuration sets, in declaration order."""
    return [
        f.name
        for f in fields(config)
        if f.name not in ignored and getattr(config, f.name) is not None
    ]


def _plan_stream(
    name: str, live_info: StreamInfo | None, spec: StreamConfig, allow_interest: bool = False
) -> StreamPlan:
    spec = spec.evolve(name=name)
    if live_info is None or live_info.config is None:
        return StreamPlan(name, Action.CREATE, spec)
    live = live_info.config
    changes: list[FieldChange] = []
    refusals: list[Refusal] = []
    managed: dict[str, object] = {}
    for field in _spec_fields(spec, _STREAM_IGNORED):
        spec_value = getattr(spec, field)
        if field == "duplicate_window" and not spec_value:
            continue  # 0 asks for the server's default window
        kind = _STREAM_FIELDS.get(field, "plain")
        managed[field] = spec_value
        live_value = getattr(live, field, None)
        if _normalise(kind, field, live_value) == _normalise(kind, field, spec_value):
            continue
        refusal = _stream_refusal(name, field, kind, live_value, spec_value, allow_interest)
        if refusal is not None:
            refusals.append(refusal)
        else:
            changes.append(
                FieldChange(
                    field, live_value, spec_value, kind, _shrink_note(kind, live_value, spec_value)
                )
            )
    if not changes and not refusals:
        return StreamPlan(name, Action.NONE, live)
    # Start from the live configuration so that what the spec leaves alone stays as it is.
    config = live.evolve(**managed)
    action = Action.REFUSE if refusals else Action.UPDATE
    return StreamPlan(name, action, config, tuple(changes), tuple(refusals))


def _plan_consumer(
    stream: str,
    durable: str,
    live_info: ConsumerInfo | None,
    spec: ConsumerConfig,
    *,
    live_stream_replicas: int,
    spec_stream_replicas: int,
) -> ConsumerPlan:
    spec = spec.evolve(durable_name=durable, name=durable)
    if live_info is None or live_info.config is None:
        return ConsumerPlan(stream, durable, Action.CREATE, spec)
    live = live_info.config
    changes: list[FieldChange] = []
    refusals: list[Refusal] = []
    managed: dict[str, object] = {}
    for field in _consumer_spec_fields(spec):
        kind = _CONSUMER_FIELDS.get(field, "plain")
        spec_value = _consumer_value(spec, field, spec_stream_replicas)
        live_value = _consumer_value(live, field, live_stream_replicas)
        managed.update(_consumer_managed(spec, field))
        if _normalise(kind, field, live_value) == _normalise(kind, field, spec_value):
            continue
        shown = "filter_subjects" if field == "filter_subject" and spec.filter_subjects else field
        refusal = _consumer_refusal(stream, durable, shown, kind, live_value, spec_value)
        if refusal is not None:
            refusals.append(refusal)
        else:
            changes.append(FieldChange(shown, live_value, spec_value, kind))
    if not changes and not refusals:
        return ConsumerPlan(stream, durable, Action.NONE, live)
    config = live.evolve(**managed)
    action = Action.REFUSE if refusals else Action.UPDATE
    return ConsumerPlan(stream, durable, action, config, tuple(changes), tuple(refusals))


def _consumer_spec_fields(spec: ConsumerConfig) -> list[str]:
    names = _spec_fields(spec, _CONSUMER_IGNORED)
    if spec.filter_subjects and "filter_subject" not in names:
        names.append("filter_subject")
    if spec.backoff:
        # The server sets ack_wait to backoff[0]; the spec's ack_wait has no effect then.
        names = [n for n in names if n != "ack_wait"]
    elif "ack_wait" in names:
        if spec.ack_wait:
            names.append("backoff")  # a live backoff would override the spec's ack_wait
        else:
            names.remove("ack_wait")  # 0 asks for the server's default
    for default_when_zero in ("max_ack_pending", "max_waiting", "inactive_threshold"):
        if default_when_zero in names and not getattr(spec, default_when_zero):
            names.remove(default_when_zero)
    return names


def _consumer_value(config: ConsumerConfig, field: str, stream_replicas: int) -> object:
    if field == "filter_subject":
        if config.filter_subjects:
            return list(config.filter_subjects)
        return config.filter_subject
    if field == "num_replicas":
        return config.num_replicas or stream_replicas
    return getattr(config, field, None)


def _consumer_managed(spec: ConsumerConfig, field: str) -> dict[str, object]:
    """The fields an update sets for one compared field (a filter is one of two fields)."""
    if field == "filter_subject":
        if spec.filter_subjects:
            return {"filter_subject": None, "filter_subjects": list(spec.filter_subjects)}
        return {"filter_subject": spec.filter_subject, "filter_subjects": None}
    return {field: getattr(spec, field)}


def _normalise(kind: Kind, field: str, value: object) -> object:
    """The value in the form the server compares: nanoseconds, -1 for unlimited, no None."""
    if kind == "flag":
        return bool(value)
    if kind in ("limit", "bytes"):
        return value if isinstance(value, int) and value > 0 else -1
    if kind in ("age", "duration"):
        return _nanoseconds(value)
    if kind == "durations":
        return tuple(_nanoseconds(v) for v in _as_list(value))
    if kind in ("subjects", "filter"):
        return tuple(sorted(str(s) for s in _as_list(value) if s))
    if kind == "metadata":
        return _user_metadata(value)
    if kind == "enum":
        text = _enum_text(value)
        return text if text is not None else _ENUM_DEFAULTS.get(field)
    if kind == "text":
        return value or ""
    if kind == "replicas":
        return value if isinstance(value, int) and value > 0 else 1
    return value


def _nanoseconds(seconds: object) -> int:
    if seconds is None:
        return 0
    if not isinstance(seconds, int | float):
        raise TypeError(f"a duration in seconds, not {seconds!r}")
    return round(seconds * _NS_PER_SECOND)


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _user_metadata(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        return ()
    return tuple(
        sorted(
            (str(k), str(v))
            for k, v in value.items()
            if not str(k).startswith(_SERVER_METADATA_PREFIX)
        )
    )


def _enum_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _shrink_note(kind: Kind, live: object, spec: object) -> str:
    """A warning when a stream limit goes down: the server discards what no longer fits."""
    if kind == "enum" and _enum_text(spec) == RetentionPolicy.INTEREST.value:
        return "messages every consumer has acknowledged are removed; the others are kept"
    if kind not in ("limit", "bytes", "age"):
        return ""
    unlimited = -1 if kind != "age" else 0
    old = _normalise(kind, "", live)
    new = _normalise(kind, "", spec)
    assert isinstance(old, int) and isinstance(new, int)
    if new != unlimited and (old == unlimited or new < old):
        return "lower limit: messages beyond it are discarded"
    return ""


# --- what JetStream refuses ------------------------------------------------------------------

_STREAM_FIXED = frozenset({"storage", "allow_msg_counter", "persist_mode", "mirror"})
"""Stream fields nats-server refuses to change in an update (verified against 2.15)."""

_STREAM_ONE_WAY = frozenset(
    {"sealed", "deny_delete", "deny_purge", "allow_msg_ttl", "allow_msg_schedules"}
)
"""Stream flags nats-server can turn on in an update but never off again."""

_CONSUMER_FIXED = frozenset(
    {
        "deliver_policy",
        "opt_start_seq",
        "opt_start_time",
        "ack_policy",
        "replay_policy",
        "max_waiting",
        "mem_storage",
        "idle_heartbeat",
        "flow_control",
    }
)
"""Consumer fields nats-server refuses to change in an update (verified against 2.15)."""


def _stream_refusal(
    name: str, field: str, kind: Kind, live: object, spec: object, allow_interest: bool = False
) -> Refusal | None:
    recreate = f"back up and delete the stream (`nats stream rm {name}`) or change the spec"
    if field in _STREAM_FIXED:
        return Refusal(field, live, spec, kind, "JetStream cannot change it in place", recreate)
    if field in _STREAM_ONE_WAY and bool(live) and not bool(spec):
        return Refusal(
            field, live, spec, kind, "JetStream cannot turn it off once it is on", recreate
        )
    if field == "retention":
        old, new = _enum_text(live), _enum_text(spec)
        workqueue = RetentionPolicy.WORK_QUEUE.value
        if workqueue in (old, new):
            return Refusal(
                field,
                live,
                spec,
                kind,
                "JetStream cannot change retention to or from workqueue in place",
                recreate,
            )
        if new == RetentionPolicy.INTEREST.value and not allow_interest:
            return Refusal(
                field,
                live,
                spec,
                kind,
                "switching to interest retention removes every message no consumer still "
                "needs, and provisioning never deletes messages",
                "make the change deliberately (`filetrash provision --allow-interest`, which "
                "keeps every message a consumer has not acknowledged) or change the spec",
            )
    return None


def _consumer_refusal(
    stream: str, durable: str, field: str, kind: Kind, live: object, spec: object
) -> Refusal | None:
    fixed = field in _CONSUMER_FIXED or (field == "deliver_subject" and (not live or not spec))
    if not fixed:
        return None
    return Refusal(
        field,
        live,
        spec,
        kind,
        "JetStream cannot change it in place",
        f"delete the consumer (`nats consumer rm {stream} {durable}`; it forgets its position "
        "and pending acknowledgements and starts again from its deliver policy) and provision "
        "again, or change the spec",
    )


# --- showing values --------------------------------------------------------------------------

_DURATION_UNITS: Sequence[tuple[str, int]] = (
    ("d", 86_400 * _NS_PER_SECOND),
    ("h", 3_600 * _NS_PER_SECOND),
    ("m", 60 * _NS_PER_SECOND),
    ("s", _NS_PER_SECOND),
    ("ms", 1_000_000),
    ("µs", 1_000),
    ("ns", 1),
)
_BYTE_UNITS: Sequence[tuple[str, int]] = (
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
)


def format_duration(seconds: float) -> str:
    """`7d`, `1m30s`, `1s500ms`: exact, in the largest units that fit."""
    rest = _nanoseconds(seconds)
    if rest == 0:
        return "0s"
    sign = "-" if rest < 0 else ""
    rest = abs(rest)
    parts: list[str] = []
    for unit, size in _DURATION_UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def format_bytes(size: int) -> str:
    """`100 MiB` when exact, else `1.43 MiB (1500000 B)` so that no difference is hidden."""
    if size < 0:
        return "unlimited"
    for unit, scale in _BYTE_UNITS:
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    for unit, scale in _BYTE_UNITS:
        if size >= scale:
            return f"{size / scale:.2f} {unit} ({size} B)"
    return f"{size} B"


def format_value(kind: Kind, value: object) -> str:
    """A value as a person reads it: human units, `unlimited`, quoted text."""
    normal = _normalise(kind, "", value)
    if kind == "text":
        return json.dumps(normal, ensure_ascii=False)
    if kind == "flag":
        return "true" if normal else "false"
    if kind == "enum":
        return _enum_text(value) or "default"
    if kind == "limit":
        return "unlimited" if normal == -1 else str(normal)
    if kind == "bytes":
        assert isinstance(normal, int)
        return format_bytes(normal)
    if kind == "age":
        return "unlimited" if normal == 0 else format_duration(_seconds(value))
    if kind == "duration":
        return format_duration(_seconds(value))
    if kind == "durations":
        items = _as_list(value)
        return (
            "[" + ", ".join(format_duration(_seconds(v)) for v in items) + "]" if items else "none"
        )
    if kind in ("subjects", "filter"):
        assert isinstance(normal, tuple)
        if kind == "filter" and len(normal) <= 1:
            return str(normal[0]) if normal else "none"
        return "[" + ", ".join(normal) + "]"
    if kind == "metadata":
        assert isinstance(normal, tuple)
        return "{" + ", ".join(f"{k}={v}" for k, v in normal) + "}"
    if value is None:
        return "unset"
    return str(value)


def _seconds(value: object) -> float:
    return _nanoseconds(value) / _NS_PER_SECOND


# --- reading and applying --------------------------------------------------------------------


async def read_live(
    js: JetStreamManager,
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
) -> tuple[dict[str, StreamInfo], dict[tuple[str, str], ConsumerInfo]]:
    """The live state of exactly the streams and consumers the spec names (no others)."""
    live_streams: dict[str, StreamInfo] = {}
    for name in streams:
        try:
            live_streams[name] = await js.stream_info(name)
        except APIError as error:
            if not is_jetstream_error(error, STREAM_NOT_FOUND):
                raise
    live_consumers: dict[tuple[str, str], ConsumerInfo] = {}
    for key, binding in consumers.items():
        if binding.stream not in live_streams:
            continue
        durable = binding.config.durable_name or key
        try:
            live_consumers[binding.stream, durable] = await js.consumer_info(
                binding.stream, durable
            )
        except APIError as error:
            if not is_jetstream_error(error, CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
                raise
    return live_streams, live_consumers


async def apply_plan(js: JetStreamManager, plan: Plan) -> None:
    """Make the plan's creates and updates: streams first, then their consumers.

    Refuses (raises the conflict, changing nothing) when the plan holds any refusal.
    """
    plan.check()
    for stream in plan.streams:
        try:
            if stream.action is Action.CREATE:
                await js.add_stream(stream.config)
            elif stream.action is Action.UPDATE:
                await js.update_stream(stream.config)
        except APIError as error:
            raise ProvisioningFailed(_refused_by_server(stream, error)) from None
    for consumer in plan.consumers:
        if consumer.action in (Action.CREATE, Action.UPDATE):
            try:
                await js.add_consumer(consumer.stream, consumer.config)
            except APIError as error:
                raise ProvisioningFailed(_refused_by_server(consumer, error)) from None


def _refused_by_server(item: StreamPlan | ConsumerPlan, error: APIError) -> str:
    verb = "create" if item.action is Action.CREATE else "update"
    text = f"{item.label}: the server refused to {verb} it: {describe_api_error(error)}"
    if is_jetstream_error(error, STREAM_NAME_IN_USE):
        text += "; it was created by someone else after the plan was made — run provision again"
    return text


async def provision(
    js: JetStreamManager,
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    *,
    apply: bool,
    replicas: int | None = None,
    allow_interest: bool = False,
) -> Plan:
    """Plan, and with `apply` make the plan; returns the plan (what was, or would be, done).

    With `apply`, a plan holding any refusal raises `StreamConfigConflict` or
    `ConsumerConfigConflict` before anything is changed. Without it nothing is changed and
    refusals are only reported in the plan.
    """
    live_streams, live_consumers = await read_live(js, streams, consumers)
    plan = plan_changes(
        live_streams,
        live_consumers,
        streams,
        consumers,
        replicas=replicas,
        allow_interest=allow_interest,
    )
    if apply:
        await apply_plan(js, plan)
    return plan


async def provision_servers(
    urls: ServerUrls,
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    *,
    apply: bool,
    replicas: int | None = None,
    migrations: Path | None = None,
    echo: Callable[[str], None] = print,
    allow_interest: bool = False,
) -> Plan:
    """`filetrash provision`: show the plan for JetStream (and, when an app declares
    `migrations`, for the database), then (with `apply`) make it. Every server involved is
    reached before anything is changed; without migrations PostgreSQL is not contacted."""
    from handwritten.runtime.connect import connect_nats
    from handwritten.runtime.roles import ADMIN, RefusalWatch

    database_url = urls.database() if migrations is not None else None
    watch = RefusalWatch()  # provisioning is the admin role's: any other is refused, once
    nc = await connect_nats(
        urls.nats_url, name="filetrash-provision", login=urls.login(ADMIN), on_refused=watch
    )
    try:
        return await _provision_on(
            nc, database_url, streams, consumers, apply, replicas, migrations, echo, allow_interest
        )
    except Exception:
        watch.raise_if_refused()
        raise
    finally:
        await nc.close()


async def _provision_on(
    nc: Client,
    database_url: str | None,
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    apply: bool,
    replicas: int | None,
    migrations: Path | None,
    echo: Callable[[str], None],
    allow_interest: bool,
) -> Plan:
    from handwritten.runtime.connect import connect_db
    from handwritten.runtime.migrate import migrate, pending_migrations

    pool = None
    if database_url is not None:
        pool = await connect_db(database_url, min_size=1, max_size=1)
    try:
        js = nc.jetstream()
        plan = await provision(
            js,
            streams,
            consumers,
            apply=False,
            replicas=replicas,
            allow_interest=allow_interest,
        )
        if pool is not None and migrations is not None:
            plan = replace(plan, migrations=tuple(await pending_migrations(pool, migrations)))
        echo(plan.render())
        plan.check()
        if not apply or not plan.has_changes:
            await _warn_headroom(js, streams, echo)
            return plan
        await apply_plan(js, plan)
        await _warn_headroom(js, streams, echo)
        created, updated = plan.count(Action.CREATE), plan.count(Action.UPDATE)
        done = f"done: {created} created, {updated} updated"
        if pool is not None and migrations is not None:
            applied = await migrate(pool, migrations)
            done += f", {len(applied)} migration(s) applied"
        echo(done)
        return plan
    finally:
        if pool is not None:
            await pool.close()


async def _warn_headroom(
    js: JetStreamContext, streams: Mapping[str, StreamConfig], echo: Callable[[str], None]
) -> None:
    """A warning for each limit a durable's backlog (or a stream) has used past the threshold."""
    from handwritten.runtime.headroom import read_headroom, warn_at

    live = {info.config.name for info in await js.streams_info()}
    usages, _ = await read_headroom(js, [name for name in streams if name in live])
    threshold = warn_at()
    for usage in (u for u in usages if u.share >= threshold):
        echo(f"warning: headroom: {usage.describe()}")
