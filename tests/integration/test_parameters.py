"""Parameterised channel addresses end to end on a real nats-server: a package generated from
an inline spec publishes to the concrete subject its keyword arguments name, refuses values
that are no accepted token before sending anything, and its consumer's handler gets the values
read back from the subject; a subject whose values the channel refuses is dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import sys
import textwrap
import time
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from generator.build import build
from generator.load import load_text
from generator.render import render
from handwritten.runtime.addresses import InvalidSubjectParameter
from handwritten.runtime.connect import connect_nats
from handwritten.runtime.consume import ConsumeSettings, ConsumeStats, run_consumer
from handwritten.runtime.contract import Delivery, OutgoingMessage
from handwritten.runtime.deadletter import DETAIL_HEADER, REASON_HEADER, SUBJECT_HEADER
from handwritten.runtime.jetstream import JetStreamPublisher, WildcardSubject
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

PACKAGE = "params_under_test"
SPEC = """
asyncapi: 3.0.0
info: {title: Regional orders, version: 1.0.0}
x-jetstream-streams:
  ORDERS: {subjects: [orders.>], retention: limits, storage: memory, duplicate_window: PT1M}
  ORDERS_DLQ: {subjects: [dlq.orders.*], retention: limits, storage: memory, duplicate_window: 60}
channels:
  ordersPlaced:
    address: orders.{region}.{shop-id}.placed
    parameters:
      region: {enum: [eu, us], default: eu}
      shop-id: {x-pattern: '[a-z0-9][a-z0-9-]*'}
    messages:
      OrderPlaced: {$ref: '#/components/messages/OrderPlaced'}
    bindings: {nats: {jetstream: {stream: ORDERS}}}
  deadLetters:
    address: dlq.orders.{consumer}
    messages:
      Raw: {payload: {}, contentType: application/octet-stream}
    bindings: {nats: {jetstream: {stream: ORDERS_DLQ}}}
operations:
  placeOrder:
    action: send
    channel: {$ref: '#/channels/ordersPlaced'}
  receipts:
    action: receive
    channel: {$ref: '#/channels/ordersPlaced'}
    x-jetstream-consumer:
      durable: receipts
      ack_policy: explicit
      ack_wait: 5
      max_deliver: 3
      dead_letter: deadLetters
components:
  messages:
    OrderPlaced:
      payload:
        type: object
        additionalProperties: false
        required: [eventId, eventType]
        properties:
          eventId: {type: string, format: uuid}
          eventType: {type: string, const: OrderPlaced}
"""
FAST = ConsumeSettings(batch_size=8, fetch_timeout=0.5, ack_timeout=1.0)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    """The spec generated into a temporary folder and imported as `params_under_test`."""
    root = tmp_path_factory.mktemp("generated")
    document, _ = build(load_text(textwrap.dedent(SPEC), "spec.yaml"))
    for rel, text in render(document).items():
        target = root / PACKAGE / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        yield {
            name: importlib.import_module(f"{PACKAGE}.{name}")
            for name in ("models", "publishers", "consumers", "topology")
        }
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
            del sys.modules[name]


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect_nats(nats_server.url, name="test-parameters")
    yield client
    await client.close()


@pytest.fixture
async def js(nc: Client, package: dict[str, ModuleType]) -> JetStreamContext:
    js = nc.jetstream()
    topology = package["topology"]
    for config in topology.STREAMS.values():
        await js.add_stream(config=dataclasses.replace(config))
    for binding in topology.CONSUMERS.values():
        await js.add_consumer(binding.stream, config=dataclasses.replace(binding.config))
    return js


def order(package: dict[str, ModuleType]) -> Any:
    return package["models"].OrderPlaced(event_id=uuid.uuid4(), event_type="OrderPlaced")


async def stored_subjects(js: JetStreamContext, stream: str = "ORDERS") -> list[str]:
    state = (await js.stream_info(stream)).state
    if state.messages == 0:
        return []
    return [
        (await js.get_msg(stream, seq)).subject or ""
        for seq in range(state.first_seq, state.last_seq + 1)
    ]


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


async def test_the_publisher_sends_to_the_subject_its_parameters_name(
    js: JetStreamContext, package: dict[str, ModuleType]
) -> None:
    publisher = package["publishers"].PlaceOrder(JetStreamPublisher(js))
    await publisher.publish(order(package), region="us", shop_id="berlin-1")
    await publisher.publish(order(package), shop_id="nyc")  # region defaults to eu
    assert await stored_subjects(js) == ["orders.us.berlin-1.placed", "orders.eu.nyc.placed"]


@pytest.mark.parametrize(
    ("values", "parameter", "why"),
    [
        ({"region": "eu.west", "shop_id": "nyc"}, "region", "contains '.'"),
        ({"region": "*", "shop_id": "nyc"}, "region", "contains a wildcard"),
        ({"region": "apac", "shop_id": "nyc"}, "region", "is not one of eu, us"),
        ({"shop_id": ">"}, "shop-id", "contains a wildcard"),
        ({"shop_id": "New York"}, "shop-id", "contains whitespace"),
        ({"shop_id": "Nyc"}, "shop-id", "does not match [a-z0-9][a-z0-9-]*"),
    ],
)
async def test_an_invalid_value_raises_before_anything_is_sent(
    js: JetStreamContext,
    package: dict[str, ModuleType],
    values: dict[str, str],
    parameter: str,
    why: str,
) -> None:
    publisher = package["publishers"].PlaceOrder(JetStreamPublisher(js))
    with pytest.raises(InvalidSubjectParameter) as caught:
        await publisher.publish(order(package), **values)
    assert caught.value.parameter == parameter
    assert why in str(caught.value)
    assert await stored_subjects(js) == []


async def test_the_runtime_publisher_refuses_a_wildcard_subject(js: JetStreamContext) -> None:
    publisher = JetStreamPublisher(js)
    with pytest.raises(WildcardSubject, match=r"orders\.\*\.nyc\.placed"):
        await publisher.publish("orders.*.nyc.placed", b"{}", msg_id="wild-1")
    # The first message of the batch is fine, but nothing of a batch with a wildcard is sent.
    batch = [
        OutgoingMessage("orders.eu.nyc.placed", b"{}", "batch-1"),
        OutgoingMessage("orders.>", b"{}", "batch-2"),
    ]
    with pytest.raises(WildcardSubject, match=r"orders\.>"):
        await publisher.publish_many(batch)
    assert await stored_subjects(js) == []


class Receipts:
    """A ReceiptsHandler that records what each delivery said."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    async def on_order_placed(self, event: Any, delivery: Delivery) -> None:
        self.deliveries.append(delivery)


async def test_the_handler_gets_the_parameters_and_refused_subjects_are_dead_lettered(
    nc: Client, js: JetStreamContext, package: dict[str, ModuleType]
) -> None:
    publisher = package["publishers"].PlaceOrder(JetStreamPublisher(js))
    await publisher.publish(order(package), region="us", shop_id="berlin-1")
    await publisher.publish(order(package), shop_id="nyc")
    # Another producer, not bound by the generated publisher, uses values the spec refuses.
    body = order(package).model_dump_json(by_alias=True).encode()
    await js.publish("orders.apac.nyc.placed", body, headers={"Nats-Msg-Id": "apac"})

    handler = Receipts()
    stop, stats = asyncio.Event(), ConsumeStats()
    endpoint = package["consumers"].RECEIPTS
    task = asyncio.create_task(
        run_consumer(nc, endpoint, handler, settings=FAST, stop=stop, stats=stats)
    )
    try:
        await wait_for(lambda: stats.acked == 2 and stats.dead_lettered == 1, what="settled")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

    assert [(d.subject, dict(d.parameters)) for d in handler.deliveries] == [
        ("orders.us.berlin-1.placed", {"region": "us", "shop-id": "berlin-1"}),
        ("orders.eu.nyc.placed", {"region": "eu", "shop-id": "nyc"}),
    ]
    [letter_subject] = await stored_subjects(js, "ORDERS_DLQ")
    assert letter_subject == "dlq.orders.receipts"
    letter = await js.get_msg("ORDERS_DLQ", 1)
    headers = letter.headers or {}
    assert headers[REASON_HEADER] == "invalid-subject"
    assert headers[SUBJECT_HEADER] == "orders.apac.nyc.placed"
    assert "parameter region cannot be 'apac'" in headers[DETAIL_HEADER]


def test_the_generated_signature_types_each_parameter(package: dict[str, ModuleType]) -> None:
    signature = inspect.signature(package["publishers"].PlaceOrder.publish)
    region, shop_id = signature.parameters["region"], signature.parameters["shop_id"]
    assert region.kind is shop_id.kind is inspect.Parameter.KEYWORD_ONLY
    assert region.default == "eu" and shop_id.default is inspect.Parameter.empty
    hints = typing.get_type_hints(package["publishers"].PlaceOrder.publish)
    assert hints["region"] == typing.Literal["eu", "us"]
    assert hints["shop_id"] is str
