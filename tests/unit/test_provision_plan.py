"""The pure plan: live server responses (nanoseconds, server defaults) against a spec."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from handwritten.runtime.contract import ConsumerBinding
from handwritten.runtime.errors import ConsumerConfigConflict, StreamConfigConflict
from handwritten.runtime.provision import (
    Action,
    FieldChange,
    Plan,
    format_bytes,
    format_duration,
    plan_changes,
)

MiB = 1024 * 1024
NS = 1_000_000_000
DAY = 86_400

SPEC_STREAMS = {
    "FILE_EVENTS": StreamConfig(
        name="FILE_EVENTS",
        description="Every file lifecycle event.",
        subjects=["files.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_bytes=100 * MiB,
        max_age=7 * DAY,
        duplicate_window=120.0,
        num_replicas=1,
    ),
}

SPEC_CONSUMERS = {
    "trash-processor": ConsumerBinding(
        stream="FILE_EVENTS",
        config=ConsumerConfig(
            durable_name="trash-processor",
            description="Stores each deletion.",
            filter_subject="files.deleted",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=5,
            backoff=[1.0, 5.0, 15.0, 30.0],
            max_ack_pending=1000,
        ),
    ),
    "audit-logger": ConsumerBinding(
        stream="FILE_EVENTS",
        config=ConsumerConfig(
            durable_name="audit-logger",
            filter_subject="files.deleted",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30.0,
            max_deliver=5,
        ),
    ),
}

SERVER_METADATA = {"_nats.level": "5", "_nats.req.level": "0", "_nats.ver": "2.15.1"}


def stream_response(**overrides: Any) -> dict[str, Any]:
    """STREAM.INFO as nats-server 2.15 answers for the spec's FILE_EVENTS (nanoseconds)."""
    config: dict[str, Any] = {
        "name": "FILE_EVENTS",
        "description": "Every file lifecycle event.",
        "subjects": ["files.>"],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": 104857600,
        "max_age": 604800000000000,
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
        "discard": "old",
        "storage": "file",
        "num_replicas": 1,
        "duplicate_window": 120000000000,
        "compression": "none",
        "allow_direct": False,
        "mirror_direct": False,
        "sealed": False,
        "deny_delete": False,
        "deny_purge": False,
        "allow_rollup_hdrs": False,
        "consumer_limits": {},
        "allow_msg_ttl": False,
        "metadata": dict(SERVER_METADATA),
    }
    config.update(overrides)
    return {
        "config": config,
        "state": {"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0, "consumer_count": 2},
        "created": "2026-01-05T10:00:00.123456789Z",
        "ts": "2026-01-05T10:00:01Z",
    }


def consumer_response(durable: str = "trash-processor", **overrides: Any) -> dict[str, Any]:
    """CONSUMER.INFO as nats-server 2.15 answers: ack_wait replaced by backoff[0], the
    max_waiting default filled in, num_replicas 0 (as many as the stream)."""
    config: dict[str, Any] = {
        "durable_name": durable,
        "name": durable,
        "description": "Stores each deletion.",
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": 1000000000,
        "max_deliver": 5,
        "backoff": [1000000000, 5000000000, 15000000000, 30000000000],
        "filter_subject": "files.deleted",
        "replay_policy": "instant",
        "max_waiting": 512,
        "max_ack_pending": 1000,
        "num_replicas": 0,
        "metadata": dict(SERVER_METADATA),
    }
    if durable == "audit-logger":
        del config["description"], config["backoff"]
        config["ack_wait"] = 30000000000
    config.update(overrides)
    return {
        "stream_name": "FILE_EVENTS",
        "name": durable,
        "created": "2026-01-05T10:00:00.5Z",
        "config": config,
        "delivered": {"consumer_seq": 0, "stream_seq": 0},
        "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
        "num_ack_pending": 0,
        "num_redelivered": 0,
        "num_waiting": 0,
        "num_pending": 0,
        "ts": "2026-01-05T10:00:01Z",
    }


def live(
    stream: dict[str, Any] | None = None,
    consumers: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, StreamInfo], dict[tuple[str, str], ConsumerInfo]]:
    """Live state from raw responses; `consumers` defaults to both, freshly provisioned."""
    if consumers is None:
        consumers = {name: consumer_response(name) for name in SPEC_CONSUMERS}
    streams = {"FILE_EVENTS": StreamInfo.from_response(stream or stream_response())}
    return streams, {
        ("FILE_EVENTS", name): ConsumerInfo.from_response(response)
        for name, response in consumers.items()
    }


def plan_for(
    stream: dict[str, Any] | None = None,
    consumers: dict[str, dict[str, Any]] | None = None,
    *,
    replicas: int | None = None,
) -> Plan:
    live_streams, live_consumers = live(stream, consumers)
    return plan_changes(
        live_streams, live_consumers, SPEC_STREAMS, SPEC_CONSUMERS, replicas=replicas
    )


def changes_of(plan: Plan) -> dict[str, list[str]]:
    return {
        item.label: [change.render() for change in item.changes]
        for item in plan.items()
        if item.changes
    }


def test_empty_server_plans_a_create_for_everything() -> None:
    plan = plan_changes({}, {}, SPEC_STREAMS, SPEC_CONSUMERS)
    assert plan.render().splitlines() == [
        "stream FILE_EVENTS: create",
        "consumer FILE_EVENTS > trash-processor: create",
        "consumer FILE_EVENTS > audit-logger: create",
        "3 to create, 0 to update",
    ]
    assert plan.has_changes and not plan.refused
    # The consumer is created under its durable name with the modern create API.
    created = plan.consumers[0].config
    assert (created.name, created.durable_name) == ("trash-processor", "trash-processor")


def test_a_freshly_provisioned_server_plans_no_changes() -> None:
    plan = plan_for()
    assert [item.action for item in plan.items()] == [Action.NONE] * 3
    assert not plan.has_changes
    assert plan.render().splitlines() == [
        "stream FILE_EVENTS: no changes",
        "consumer FILE_EVENTS > trash-processor: no changes",
        "consumer FILE_EVENTS > audit-logger: no changes",
        "no changes",
    ]


def test_stream_durations_are_compared_in_nanoseconds_and_shown_in_days() -> None:
    plan = plan_for(stream_response(max_age=3 * DAY * NS))
    (change,) = plan.streams[0].changes
    assert change == FieldChange("max_age", 3.0 * DAY, 7.0 * DAY, "age")
    assert "stream FILE_EVENTS: update max_age 3d → 7d" in plan.render().splitlines()
    assert plan.streams[0].action is Action.UPDATE


def test_consumer_ack_wait_is_compared_in_nanoseconds_without_backoff() -> None:
    consumers = {
        "trash-processor": consumer_response(),
        "audit-logger": consumer_response("audit-logger", ack_wait=10 * NS),
    }
    assert changes_of(plan_for(consumers=consumers)) == {
        "consumer FILE_EVENTS > audit-logger": ["ack_wait 10s → 30s"]
    }


def test_with_backoff_the_rewritten_ack_wait_is_not_drift_but_backoff_is() -> None:
    consumers = {
        "trash-processor": consumer_response(ack_wait=2 * NS, backoff=[2 * NS, 4 * NS]),
        "audit-logger": consumer_response("audit-logger"),
    }
    assert changes_of(plan_for(consumers=consumers)) == {
        "consumer FILE_EVENTS > trash-processor": ["backoff [2s, 4s] → [1s, 5s, 15s, 30s]"]
    }


def test_a_live_backoff_the_spec_does_not_have_is_drift() -> None:
    consumers = {
        "trash-processor": consumer_response(),
        "audit-logger": consumer_response("audit-logger", ack_wait=NS, backoff=[NS, 2 * NS]),
    }
    plan = plan_for(consumers=consumers)
    assert changes_of(plan) == {
        "consumer FILE_EVENTS > audit-logger": ["ack_wait 1s → 30s", "backoff [1s, 2s] → none"]
    }
    update = plan.consumers[1].config
    assert update.backoff is None and update.ack_wait == 30.0


def test_max_bytes_is_shown_in_binary_units() -> None:
    plan = plan_for(stream_response(max_bytes=50 * MiB))
    assert "stream FILE_EVENTS: update max_bytes 50 MiB → 100 MiB" in plan.render().splitlines()
    assert plan.render().splitlines()[-1] == "0 to create, 1 to update"


def test_lowering_a_limit_warns_that_messages_are_discarded() -> None:
    plan = plan_for(stream_response(max_bytes=200 * MiB))
    (change,) = plan.streams[0].changes
    assert change.render() == (
        "max_bytes 200 MiB → 100 MiB (lower limit: messages beyond it are discarded)"
    )


def test_fields_the_spec_leaves_to_the_server_are_not_drift_and_are_kept() -> None:
    plan = plan_for(
        stream_response(max_msgs=1000, allow_direct=True, max_bytes=50 * MiB),
        {
            "trash-processor": consumer_response(max_waiting=64, headers_only=True),
            "audit-logger": consumer_response("audit-logger"),
        },
    )
    assert changes_of(plan) == {"stream FILE_EVENTS": ["max_bytes 50 MiB → 100 MiB"]}
    update = plan.streams[0].config
    assert (update.max_bytes, update.max_msgs, update.allow_direct) == (100 * MiB, 1000, True)


def test_an_update_sends_the_live_configuration_with_the_spec_fields() -> None:
    plan = plan_for(
        consumers={
            "trash-processor": consumer_response(max_deliver=9, max_waiting=64),
            "audit-logger": consumer_response("audit-logger"),
        }
    )
    assert changes_of(plan) == {"consumer FILE_EVENTS > trash-processor": ["max_deliver 9 → 5"]}
    update = plan.consumers[0].config
    assert (update.max_deliver, update.max_waiting, update.name) == (5, 64, "trash-processor")


def test_server_metadata_is_ignored_and_user_metadata_is_compared() -> None:
    spec = {"FILE_EVENTS": SPEC_STREAMS["FILE_EVENTS"].evolve(metadata={"team": "files"})}
    live_streams, live_consumers = live(
        stream_response(metadata={**SERVER_METADATA, "team": "storage"})
    )
    plan = plan_changes(live_streams, live_consumers, spec, SPEC_CONSUMERS)
    assert changes_of(plan) == {"stream FILE_EVENTS": ["metadata {team=storage} → {team=files}"]}
    live_streams, live_consumers = live(
        stream_response(metadata={**SERVER_METADATA, "team": "files"})
    )
    assert not plan_changes(live_streams, live_consumers, spec, SPEC_CONSUMERS).has_changes


def test_a_one_element_filter_list_is_the_same_filter() -> None:
    consumers = {
        "trash-processor": consumer_response(
            filter_subject=None, filter_subjects=["files.deleted"]
        ),
        "audit-logger": consumer_response("audit-logger", filter_subject="files.trashed"),
    }
    plan = plan_for(consumers=consumers)
    assert changes_of(plan) == {
        "consumer FILE_EVENTS > audit-logger": ["filter_subject files.trashed → files.deleted"]
    }
    assert not plan.refused  # JetStream 2.10+ changes a filter in place


def test_a_storage_change_is_refused_naming_the_field_values_and_way_out() -> None:
    plan = plan_for(stream_response(storage="memory", max_bytes=50 * MiB))
    assert plan.refused
    assert plan.streams[0].action is Action.REFUSE
    assert plan.problems() == [
        "stream FILE_EVENTS: storage is memory on the server but file in the spec; JetStream "
        "cannot change it in place — back up and delete the stream (`nats stream rm "
        "FILE_EVENTS`) or change the spec"
    ]
    lines = plan.render().splitlines()
    assert lines[0] == (
        "stream FILE_EVENTS: refused storage memory → file (JetStream cannot change it in place)"
    )
    assert lines[-1].startswith("refused: 1 change(s)")
    with pytest.raises(StreamConfigConflict) as raised:
        plan.check()
    assert raised.value.problems == tuple(plan.problems())


@pytest.mark.parametrize(
    ("live_retention", "spec_retention", "refused"),
    [
        ("workqueue", RetentionPolicy.LIMITS, True),
        ("limits", RetentionPolicy.WORK_QUEUE, True),
        ("limits", RetentionPolicy.INTEREST, True),  # would delete acknowledged messages
        ("interest", RetentionPolicy.LIMITS, False),  # keeps more: an update
    ],
)
def test_retention_changes(
    live_retention: str, spec_retention: RetentionPolicy, refused: bool
) -> None:
    spec = {"FILE_EVENTS": SPEC_STREAMS["FILE_EVENTS"].evolve(retention=spec_retention)}
    live_streams, live_consumers = live(stream_response(retention=live_retention))
    plan = plan_changes(live_streams, live_consumers, spec, SPEC_CONSUMERS)
    assert plan.refused is refused
    assert plan.streams[0].action is (Action.REFUSE if refused else Action.UPDATE)


def test_a_flag_jetstream_cannot_turn_off_is_refused_but_turning_it_on_is_not() -> None:
    plan = plan_for(stream_response(deny_delete=True))
    assert [r.field for r in plan.streams[0].refusals] == ["deny_delete"]
    assert "cannot turn it off" in plan.problems()[0]
    spec = {"FILE_EVENTS": SPEC_STREAMS["FILE_EVENTS"].evolve(deny_delete=True)}
    live_streams, live_consumers = live()
    plan = plan_changes(live_streams, live_consumers, spec, SPEC_CONSUMERS)
    assert changes_of(plan) == {"stream FILE_EVENTS": ["deny_delete false → true"]}


@pytest.mark.parametrize(
    ("field", "live_value"),
    [("deliver_policy", "new"), ("ack_policy", "all"), ("replay_policy", "original")],
)
def test_consumer_fields_jetstream_cannot_change_are_refused(field: str, live_value: str) -> None:
    consumers = {
        "trash-processor": consumer_response(**{field: live_value}),
        "audit-logger": consumer_response("audit-logger", max_deliver=3),
    }
    plan = plan_for(consumers=consumers)
    (refusal,) = plan.consumers[0].refusals
    assert refusal.field == field
    (problem,) = plan.problems()
    assert problem.startswith(
        f"consumer FILE_EVENTS > trash-processor: {field} is {live_value} on the server but "
    )
    assert "`nats consumer rm FILE_EVENTS trash-processor`" in problem
    with pytest.raises(ConsumerConfigConflict):
        plan.check()
    # The other consumer's update is still planned (and shown), but nothing is applied.
    assert plan.consumers[1].action is Action.UPDATE


def test_replicas_override_applies_to_streams_and_consumers() -> None:
    plan = plan_for(replicas=3)
    assert changes_of(plan) == {
        "stream FILE_EVENTS": ["num_replicas 1 → 3"],
        "consumer FILE_EVENTS > trash-processor": ["num_replicas 1 → 3"],
        "consumer FILE_EVENTS > audit-logger": ["num_replicas 1 → 3"],
    }
    assert {item.config.num_replicas for item in plan.items()} == {3}
    # A consumer's 0 means "as many as its stream": with one replica nothing differs.
    assert not plan_for(replicas=1).has_changes


def test_replicas_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_for(replicas=0)


def test_the_spec_mapping_is_not_modified() -> None:
    before = SPEC_STREAMS["FILE_EVENTS"].num_replicas
    plan_changes({}, {}, SPEC_STREAMS, SPEC_CONSUMERS, replicas=5)
    assert SPEC_STREAMS["FILE_EVENTS"].num_replicas == before
    assert SPEC_CONSUMERS["trash-processor"].config.num_replicas is None


def test_a_missing_consumer_on_a_live_stream_is_created() -> None:
    plan = plan_for(consumers={"trash-processor": consumer_response()})
    assert [item.action for item in plan.items()] == [Action.NONE, Action.NONE, Action.CREATE]


def test_migrations_are_part_of_the_plan() -> None:
    plan = Plan(migrations=("0001_trash", "0002_audit_log"))
    assert plan.has_changes
    assert plan.render().splitlines() == [
        "migration 0001_trash: apply",
        "migration 0002_audit_log: apply",
        "0 to create, 0 to update, 2 migration(s) to apply",
    ]
    assert Plan().render() == "no changes"


def test_descriptions_are_quoted_so_control_characters_show() -> None:
    plan = plan_for(stream_response(description="old\x1b[31m"))
    (change,) = plan.streams[0].changes
    assert change.render() == 'description "old\\u001b[31m" → "Every file lifecycle event."'


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7 * DAY, "7d"),
        (30.0, "30s"),
        (90.0, "1m30s"),
        (1.5, "1s500ms"),
        (0.25, "250ms"),
        (DAY + 2 * 3600, "1d2h"),
        (0, "0s"),
        (1e-9, "1ns"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (100 * MiB, "100 MiB"),
        (1 << 30, "1 GiB"),
        (4096, "4 KiB"),
        (1_500_000, "1.43 MiB (1500000 B)"),
        (512, "512 B"),
        (-1, "unlimited"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text
