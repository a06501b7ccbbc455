"""Any spec's generated package, run by the generic runtime on a real nats-server: for every
spec of tests/support/specs.py, its topology is provisioned, every receive operation runs under
the consume loop, every example of every message it receives is published through the generated
publisher of a send operation (parameters filled), reaches the handler method of its type as a
typed event with the subject's parameters, and a poison message is dead-lettered with its
reason while the next good one still gets through.

Nothing here knows a message, a subject or a durable by name: it all comes from the IR.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import time
import typing
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel

from generator.ir import Operation
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.contract import Delivery
from handwritten.runtime.deadletter import CONSUMER_HEADER, REASON_HEADER
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.provision import provision
from tests.support.servers import NatsServer
from tests.support.specs import SPECS, SpecUnderTest, spec_under_test

pytestmark = pytest.mark.integration

FAST = ConsumeSettings(
    batch_size=16, fetch_timeout=0.5, nak_delay_base=0.05, nak_delay_max=0.2, ack_timeout=1.0
)
TEST_TIMINGS = {"ack_wait": 5.0, "backoff": None, "deliver_policy": None}


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


class Recorder:
    """A handler for any receive operation: each `on_<message>` method records its call."""

    def __init__(self, methods: set[str]) -> None:
        self.methods = methods
        self.calls: list[tuple[str, BaseModel, Delivery]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.methods:
            raise AttributeError(name)

        async def record(event: BaseModel, delivery: Delivery) -> None:
            self.calls.append((name, event, delivery))

        return record


def parameter_values(publisher: Any) -> dict[str, str]:
    """A valid value for each subject parameter the publisher's `publish` takes: an enum's
    first member, else a plain token."""
    values: dict[str, str] = {}
    hints = typing.get_type_hints(publisher.publish)
    for name, parameter in inspect.signature(publisher.publish).parameters.items():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY or name in ("msg_id", "headers"):
            continue
        choices = typing.get_args(hints.get(name))
        values[name] = str(choices[0]) if choices else f"{name}-1"
    return values


def sender_of(sut: SpecUnderTest, receiver: Operation, message: str) -> Operation:
    """A send operation of `message` whose subject the receiver's filter takes."""
    from generator.subjects import contains

    assert receiver.consumer is not None
    senders = [
        op
        for op in sut.doc.senders
        if message in op.messages and contains(receiver.consumer.filter_subject, op.subject)
    ]
    assert senders, f"{sut.name}: nothing sends {message} where {receiver.key} receives"
    return senders[0]


@asynccontextmanager
async def connected(server: NatsServer) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    nc = await connect_nats(server.url, name="any-spec test")
    try:
        yield nc, nc.jetstream()
    finally:
        await nc.close()


async def provisioned(js: JetStreamContext, sut: SpecUnderTest) -> None:
    """The spec's topology through the runtime's provisioning, with test-friendly timings."""
    topology = sut.topology
    consumers = {
        durable: dataclasses.replace(
            binding,
            config=dataclasses.replace(
                binding.config,
                **{k: v for k, v in TEST_TIMINGS.items() if k != "deliver_policy"},
            ),
        )
        for durable, binding in topology.CONSUMERS.items()
    }
    plan = await provision(js, topology.STREAMS, consumers, apply=True)
    assert not plan.refused
    again = await provision(js, topology.STREAMS, consumers, apply=False)
    assert not again.has_changes, again.render()


@pytest.mark.parametrize("name", list(SPECS))
async def test_every_receive_operation_gets_its_typed_events(
    name: str, nats_server: NatsServer
) -> None:
    sut = spec_under_test(name)
    async with connected(nats_server) as (nc, js):
        await provisioned(js, sut)
        publisher_js = JetStreamPublisher(js)
        checked = 0
        for op in sut.doc.receivers:
            assert op.consumer is not None
            endpoint = sut.consumers.ENDPOINTS[op.consumer.durable]
            methods = {sut.doc.message(k).handler_method for k in op.messages}
            recorder = Recorder(methods)
            receiving_channel = next(c for c in sut.doc.channels if c.key == op.channel)
            stop, stats = asyncio.Event(), ConsumeStats()
            task = asyncio.create_task(
                run_consumer(nc, endpoint, recorder, settings=FAST, stop=stop, stats=stats)
            )
            try:
                expected: list[tuple[str, str, str]] = []
                for key in op.messages:
                    message = sut.doc.message(key)
                    sender = sender_of(sut, op, key)
                    publisher = getattr(sut.publishers, sender.class_name)(publisher_js)
                    params = parameter_values(publisher)
                    model = getattr(sut.models, message.class_name)
                    for _, payload in sut.examples(message):
                        event = model.model_validate_json(json.dumps(payload))
                        await publisher.publish(event, **params)
                        # The receiver parses the parameters of its own channel's address.
                        parsed = {
                            p.name: params[p.python_name]
                            for p in receiving_channel.parameters
                            if p.python_name in params
                        }
                        expected.append((message.handler_method, message.class_name, str(parsed)))
                wanted = len(expected)
                await wait_for(
                    lambda r=recorder, n=wanted: len(r.calls) >= n,  # type: ignore[misc]
                    what=f"{op.key}: {len(expected)} events",
                )
                got = [
                    (method, type(event).__name__, str(dict(getattr(delivery, "parameters", {}))))
                    for method, event, delivery in recorder.calls
                ]
                assert sorted(got) == sorted(expected)
                for _, _event, delivery in recorder.calls:
                    assert delivery.consumer == op.consumer.durable
                    assert "*" not in delivery.subject and ">" not in delivery.subject
                checked += len(expected)
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
        assert checked > 0


@pytest.mark.parametrize("name", list(SPECS))
async def test_poison_is_dead_lettered_and_the_rest_goes_on(
    name: str, nats_server: NatsServer
) -> None:
    sut = spec_under_test(name)
    async with connected(nats_server) as (nc, js):
        await provisioned(js, sut)
        publisher_js = JetStreamPublisher(js)
        for op in sut.doc.receivers:
            assert op.consumer is not None
            endpoint = sut.consumers.ENDPOINTS[op.consumer.durable]
            key = op.messages[0]
            message = sut.doc.message(key)
            sender = sender_of(sut, op, key)
            publisher = getattr(sut.publishers, sender.class_name)(publisher_js)
            params = parameter_values(publisher)
            model = getattr(sut.models, message.class_name)
            _, payload = sut.examples(message)[0]
            good = model.model_validate_json(json.dumps(payload))
            # The poison goes where the good event goes, so the consumer's filter takes it.
            first = await publisher.publish(good, **params)
            stored = await js.get_msg(first.stream, first.seq)
            await js.publish(stored.subject, b'{"not": "an event of this operation"}')
            await publisher.publish(good, msg_id=f"after-the-poison-{op.key}", **params)
            recorder = Recorder({sut.doc.message(k).handler_method for k in op.messages})
            stop, stats = asyncio.Event(), ConsumeStats()
            task = asyncio.create_task(
                run_consumer(nc, endpoint, recorder, settings=FAST, stop=stop, stats=stats)
            )
            try:
                await wait_for(
                    lambda r=recorder, st=stats: len(r.calls) >= 2 and st.dead_lettered >= 1,  # type: ignore[misc]
                    what=f"{op.key}: two good events and one dead letter",
                )
            finally:
                stop.set()
                await asyncio.wait_for(task, 15)
            letter = await js.get_last_msg(
                _dlq_stream(sut, endpoint.dead_letter_subject), endpoint.dead_letter_subject
            )
            assert letter.data == b'{"not": "an event of this operation"}'
            assert letter.headers is not None
            assert letter.headers[CONSUMER_HEADER] == op.consumer.durable
            assert letter.headers[REASON_HEADER]


def _dlq_stream(sut: SpecUnderTest, subject: str) -> str:
    from generator.subjects import contains

    return next(s.name for s in sut.doc.streams if any(contains(p, subject) for p in s.subjects))
