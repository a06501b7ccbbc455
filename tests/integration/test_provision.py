"""Provisioning against a real nats-server: plan, create, drift, refusals, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import APIError

from generated.topology import CONSUMERS, STREAMS
from handwritten.runtime.errors import (
    REPLICAS_NOT_SUPPORTED,
    STREAM_NOT_FOUND,
    ConsumerConfigConflict,
    ProvisioningFailed,
    StreamConfigConflict,
)
from handwritten.runtime.provision import Action, provision
from handwritten.runtime.servers import ServerUrls
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
DAY = 86_400.0
EVENTS = "FILE_EVENTS"
PROCESSOR = "trash-processor"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    return nc.jetstream()


async def stream_names(js: JetStreamContext) -> set[str]:
    return {info.config.name for info in await js.streams_info() if info.config.name}


async def consumer_names(js: JetStreamContext, stream: str) -> set[str]:
    return {info.name for info in await js.consumers_info(stream)}


def set_fields(config: StreamConfig | ConsumerConfig) -> dict[str, object]:
    """The fields a spec configuration sets."""
    return {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if getattr(config, f.name) is not None
    }


async def test_plan_on_an_empty_server_lists_every_create_and_changes_nothing(
    js: JetStreamContext,
) -> None:
    plan = await provision(js, STREAMS, CONSUMERS, apply=False)
    expected = [f"stream {name}: create" for name in STREAMS] + [
        f"consumer {binding.stream} > {durable}: create" for durable, binding in CONSUMERS.items()
    ]
    lines = plan.render().splitlines()
    assert lines[:-1] == expected
    assert lines[-1] == f"{len(expected)} to create, 0 to update"
    assert await stream_names(js) == set()


async def test_provision_creates_exactly_the_spec(js: JetStreamContext) -> None:
    plan = await provision(js, STREAMS, CONSUMERS, apply=True)
    assert plan.count(Action.CREATE) == len(STREAMS) + len(CONSUMERS)
    assert await stream_names(js) == set(STREAMS)

    for name, spec in STREAMS.items():
        live = (await js.stream_info(name)).config
        for field, value in set_fields(spec).items():
            assert getattr(live, field) == value, f"stream {name}: {field}"

    for durable, binding in CONSUMERS.items():
        live_consumer = (await js.consumer_info(binding.stream, durable)).config
        for field, value in set_fields(binding.config).items():
            if field == "ack_wait" and binding.config.backoff:
                # The server replaces ack_wait by the first backoff step.
                assert live_consumer.ack_wait == binding.config.backoff[0]
                continue
            assert getattr(live_consumer, field) == value, f"consumer {durable}: {field}"


async def test_the_second_run_changes_nothing_and_says_so(js: JetStreamContext) -> None:
    await provision(js, STREAMS, CONSUMERS, apply=True)
    before = {name: (await js.stream_info(name)).config for name in STREAMS}
    created = {d: (await js.consumer_info(b.stream, d)).created for d, b in CONSUMERS.items()}

    plan = await provision(js, STREAMS, CONSUMERS, apply=True)

    assert not plan.has_changes
    assert {item.action for item in plan.items()} == {Action.NONE}
    assert plan.render().splitlines()[-1] == "no changes"
    assert {name: (await js.stream_info(name)).config for name in STREAMS} == before
    assert {
        d: (await js.consumer_info(b.stream, d)).created for d, b in CONSUMERS.items()
    } == created


async def test_stream_drift_is_planned_with_units_and_apply_restores_it(
    js: JetStreamContext,
) -> None:
    spec = STREAMS[EVENTS]
    assert spec.max_bytes == 8192 * MiB and spec.max_age == 7 * DAY  # what the lines below say
    await provision(js, STREAMS, CONSUMERS, apply=True)
    live = (await js.stream_info(EVENTS)).config
    await js.update_stream(live.evolve(max_bytes=50 * MiB, max_age=3 * DAY, allow_direct=True))

    plan = await provision(js, STREAMS, CONSUMERS, apply=False)
    changed = [line for line in plan.render().splitlines() if ": update " in line]
    assert changed == [
        f"stream {EVENTS}: update max_bytes 50 MiB → 8 GiB",
        f"stream {EVENTS}: update max_age 3d → 7d",
    ]
    assert (await js.stream_info(EVENTS)).config.max_bytes == 50 * MiB  # a plan changes nothing

    applied = await provision(js, STREAMS, CONSUMERS, apply=True)
    assert applied.count(Action.UPDATE) == 1
    restored = (await js.stream_info(EVENTS)).config
    assert (restored.max_bytes, restored.max_age) == (8192 * MiB, 7 * DAY)
    assert restored.allow_direct is True  # not in the spec: left as it was
    assert not (await provision(js, STREAMS, CONSUMERS, apply=False)).has_changes


async def test_consumer_drift_is_planned_and_apply_restores_it(js: JetStreamContext) -> None:
    spec = CONSUMERS[PROCESSOR].config
    await provision(js, STREAMS, CONSUMERS, apply=True)
    live = (await js.consumer_info(EVENTS, PROCESSOR)).config
    await js.add_consumer(EVENTS, live.evolve(max_deliver=9))

    plan = await provision(js, STREAMS, CONSUMERS, apply=False)
    changed = [line for line in plan.render().splitlines() if ": update " in line]
    assert changed == [
        f"consumer {EVENTS} > {PROCESSOR}: update max_deliver 9 → {spec.max_deliver}"
    ]

    await provision(js, STREAMS, CONSUMERS, apply=True)
    assert (await js.consumer_info(EVENTS, PROCESSOR)).config.max_deliver == spec.max_deliver
    assert not (await provision(js, STREAMS, CONSUMERS, apply=False)).has_changes


async def test_a_storage_change_is_refused_and_nothing_is_changed(js: JetStreamContext) -> None:
    memory = STREAMS[EVENTS].evolve(storage=StorageType.MEMORY, max_bytes=10 * MiB)
    await js.add_stream(memory)

    plan = await provision(js, STREAMS, CONSUMERS, apply=False)
    assert plan.refused
    assert f"stream {EVENTS}: refused storage memory → file" in plan.render()

    with pytest.raises(StreamConfigConflict) as raised:
        await provision(js, STREAMS, CONSUMERS, apply=True)
    message = str(raised.value)
    assert message.startswith(
        f"stream {EVENTS}: storage is memory on the server but file in the spec; "
        "JetStream cannot change it in place"
    )
    assert f"`nats stream rm {EVENTS}`" in message

    # Nothing changed: not the refused stream's other fields, no other stream, no consumer.
    live = (await js.stream_info(EVENTS)).config
    assert (live.storage, live.max_bytes) == (StorageType.MEMORY, 10 * MiB)
    assert await stream_names(js) == {EVENTS}
    assert await consumer_names(js, EVENTS) == set()


async def test_a_consumer_deliver_policy_change_is_refused(js: JetStreamContext) -> None:
    await provision(js, STREAMS, CONSUMERS, apply=True)
    await js.delete_consumer(EVENTS, PROCESSOR)
    await js.add_consumer(
        EVENTS, CONSUMERS[PROCESSOR].config.evolve(deliver_policy=DeliverPolicy.NEW, max_deliver=9)
    )

    with pytest.raises(ConsumerConfigConflict) as raised:
        await provision(js, STREAMS, CONSUMERS, apply=True)
    assert str(raised.value).startswith(
        f"consumer {EVENTS} > {PROCESSOR}: deliver_policy is new on the server but all in the spec"
    )
    live = (await js.consumer_info(EVENTS, PROCESSOR)).config
    assert (live.deliver_policy, live.max_deliver) == (DeliverPolicy.NEW, 9)  # untouched


async def test_a_changed_filter_is_updated_in_place(js: JetStreamContext) -> None:
    await provision(js, STREAMS, CONSUMERS, apply=True)
    live = (await js.consumer_info(EVENTS, PROCESSOR)).config
    await js.add_consumer(EVENTS, live.evolve(filter_subject="files.elsewhere"))
    plan = await provision(js, STREAMS, CONSUMERS, apply=True)
    assert plan.count(Action.UPDATE) == 1 and not plan.refused
    spec_filter = CONSUMERS[PROCESSOR].config.filter_subject
    assert (await js.consumer_info(EVENTS, PROCESSOR)).config.filter_subject == spec_filter


async def test_replicas_override_sets_every_stream_and_consumer(js: JetStreamContext) -> None:
    plan = await provision(js, STREAMS, CONSUMERS, apply=True, replicas=1)
    assert {item.config.num_replicas for item in plan.items()} == {1}
    for name in STREAMS:
        assert (await js.stream_info(name)).config.num_replicas == 1
    for durable, binding in CONSUMERS.items():
        assert (await js.consumer_info(binding.stream, durable)).config.num_replicas == 1
    # The second run with the same override has nothing to do.
    assert not (await provision(js, STREAMS, CONSUMERS, apply=False, replicas=1)).has_changes
    # Without it, neither: the spec's streams have one replica, its consumers leave it to them.
    assert not (await provision(js, STREAMS, CONSUMERS, apply=False)).has_changes


async def test_replicas_the_server_cannot_host_fail_before_anything_is_created(
    js: JetStreamContext,
) -> None:
    with pytest.raises(ProvisioningFailed) as raised:
        await provision(js, STREAMS, CONSUMERS, apply=True, replicas=3)
    assert f"err_code {REPLICAS_NOT_SUPPORTED}" in str(raised.value)
    assert str(raised.value).startswith(
        f"stream {next(iter(STREAMS))}: the server refused to create it"
    )
    assert await stream_names(js) == set()


async def test_only_the_specs_streams_are_read(js: JetStreamContext) -> None:
    await js.add_stream(
        StreamConfig(name="OTHER", subjects=["other.>"], storage=StorageType.MEMORY)
    )
    plan = await provision(js, STREAMS, CONSUMERS, apply=True)
    assert "OTHER" not in plan.render()
    assert await stream_names(js) == {*STREAMS, "OTHER"}  # never deleted


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handwritten.cli", "provision", *args],
        cwd=REPO_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_cli_plans_applies_and_then_has_nothing_to_do(
    server_env: ServerUrls, js: JetStreamContext
) -> None:
    planned = run_cli("--plan")
    assert planned.returncode == 0, planned.stderr
    assert f"stream {EVENTS}: create" in planned.stdout.splitlines()
    assert f"consumer {EVENTS} > {PROCESSOR}: create" in planned.stdout.splitlines()
    with pytest.raises(APIError) as missing:
        await js.stream_info(EVENTS)
    assert missing.value.err_code == STREAM_NOT_FOUND  # --plan changed nothing

    applied = run_cli()
    assert applied.returncode == 0, applied.stderr
    assert "done: " in applied.stdout
    assert await stream_names(js) == set(STREAMS)

    again = run_cli("--plan")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "no changes"
    assert "migration " not in again.stdout  # every migration was applied by the run before


async def test_cli_refusal_exits_2_with_the_message_and_no_traceback(
    server_env: ServerUrls, js: JetStreamContext
) -> None:
    await js.add_stream(STREAMS[EVENTS].evolve(storage=StorageType.MEMORY))
    for args in (("--plan",), ()):
        result = run_cli(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr + result.stdout
        assert f"stream {EVENTS}: storage is memory on the server but file in the spec" in (
            result.stderr
        )
    assert await stream_names(js) == {EVENTS}
