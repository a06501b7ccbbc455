"""Channel addresses with parameters: filling one to publish, reading one back from a delivered
subject, and what the builder records about each parameter."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from generator.build import build
from generator.load import load_text
from handwritten.runtime.addresses import (
    Address,
    InvalidSubjectParameter,
    SubjectOutsideAddress,
    SubjectParameter,
    token_problem,
    wildcard_tokens,
)
from handwritten.runtime.consume import read_parameters
from handwritten.runtime.contract import ConsumerEndpoint
from handwritten.runtime.jetstream import WildcardSubject, require_concrete

ORDERS = Address(
    "orders.{region}.{shop}.placed",
    (SubjectParameter("region", enum=("eu", "us")), SubjectParameter("shop", pattern="[a-z]+")),
)
EVENTS = Address("orders.{region}.>", (SubjectParameter("region"),))


def test_fill_puts_each_value_in_its_token() -> None:
    assert ORDERS.fill({"region": "us", "shop": "berlin"}) == "orders.us.berlin.placed"


def test_the_wildcard_is_the_address_with_each_parameter_as_a_star() -> None:
    assert ORDERS.wildcard == "orders.*.*.placed"
    assert EVENTS.wildcard == "orders.*.>"
    assert Address("files.deleted").wildcard == "files.deleted"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("eu.west", "contains '.'"),
        ("*", "contains a wildcard"),
        (">", "contains a wildcard"),
        ("e*", "contains a wildcard"),
        ("", "is empty"),
        ("e u", "contains whitespace"),
        ("eu\n", "contains whitespace"),
        ("apac", "is not one of eu, us"),
    ],
)
def test_fill_refuses_a_value_that_is_not_one_accepted_token(value: str, why: str) -> None:
    with pytest.raises(InvalidSubjectParameter) as caught:
        ORDERS.fill({"region": value, "shop": "berlin"})
    assert caught.value.parameter == "region"
    assert caught.value.value == value
    assert why in str(caught.value)
    assert f"parameter region cannot be {value!r}" in str(caught.value)


def test_the_pattern_must_match_the_whole_value() -> None:
    with pytest.raises(InvalidSubjectParameter, match="does not match \\[a-z\\]\\+"):
        ORDERS.fill({"region": "eu", "shop": "berlin1"})
    assert ORDERS.fill({"region": "eu", "shop": "b"}) == "orders.eu.b.placed"


def test_parse_reads_the_values_back_by_name() -> None:
    assert ORDERS.parse("orders.eu.berlin.placed") == {"region": "eu", "shop": "berlin"}
    assert EVENTS.parse("orders.apac.shipped.late") == {"region": "apac"}
    assert Address("files.deleted").parse("files.deleted") == {}


@pytest.mark.parametrize(
    "subject", ["orders.eu.berlin", "orders.eu.berlin.placed.x", "orders.eu.berlin.paid"]
)
def test_parse_refuses_a_subject_of_another_shape(subject: str) -> None:
    with pytest.raises(SubjectOutsideAddress, match=subject):
        ORDERS.parse(subject)


def test_parse_checks_values_as_fill_does() -> None:
    with pytest.raises(InvalidSubjectParameter, match="is not one of eu, us"):
        ORDERS.parse("orders.apac.berlin.placed")
    with pytest.raises(InvalidSubjectParameter, match="does not match"):
        ORDERS.parse("orders.eu.Berlin.placed")


def test_fill_then_parse_is_the_identity() -> None:
    for region in ("eu", "us"):
        for shop in ("a", "berlin", "zz"):
            values = {"region": region, "shop": shop}
            assert ORDERS.parse(ORDERS.fill(values)) == values


def test_an_address_needs_a_parameter_for_each_placeholder() -> None:
    with pytest.raises(ValueError, match=r"no SubjectParameter for \{shop\}"):
        Address("orders.{region}.{shop}", (SubjectParameter("region"),))
    with pytest.raises(ValueError, match="each parameter must stand in one token"):
        Address("orders.{region}", (SubjectParameter("region"), SubjectParameter("shop")))


def test_token_problem_and_wildcard_tokens() -> None:
    assert token_problem("eu-west_1") is None
    assert token_problem("a.b") is not None
    assert wildcard_tokens("orders.*.>") == ["*", ">"]
    assert wildcard_tokens("orders.a*b.placed") == []  # `*` inside a token is no wildcard


@pytest.mark.parametrize("subject", ["orders.*.placed", "orders.>", "*"])
def test_the_runtime_publisher_refuses_wildcard_subjects(subject: str) -> None:
    with pytest.raises(WildcardSubject, match="nothing was sent"):
        require_concrete(subject)
    require_concrete("orders.eu.placed")


def _endpoint(address: Address) -> ConsumerEndpoint[Any, Any]:
    async def dispatch(handler: Any, event: Any, delivery: Any) -> None:
        return None

    return ConsumerEndpoint(
        operation="op",
        durable="d",
        stream="S",
        address=address,
        filter_subject=address.wildcard,
        dead_letter_subject="dlq.d",
        event_types=("E",),
        decode=lambda data: data,
        dispatch=dispatch,
    )


def test_the_loop_reads_parameters_or_says_why_the_subject_can_never_succeed() -> None:
    endpoint = _endpoint(ORDERS)
    assert read_parameters(endpoint, "orders.us.berlin.placed") == {
        "region": "us",
        "shop": "berlin",
    }
    why = read_parameters(endpoint, "orders.apac.berlin.placed")
    assert isinstance(why, str) and "parameter region cannot be 'apac'" in why
    outside = read_parameters(endpoint, "orders.us.placed")
    assert isinstance(outside, str) and "does not match orders.{region}.{shop}.placed" in outside


# -- the builder ------------------------------------------------------------------------------
SPEC = """
asyncapi: 3.0.0
info: {title: T, version: 1.0.0}
x-jetstream-streams:
  S: {subjects: [s.>], retention: limits, storage: memory, duplicate_window: 60}
  D: {subjects: [dlq.*], retention: limits, storage: memory, duplicate_window: 60}
channels:
  c:
    address: s.{region}.{event}.{class}
    parameters:
      region: {description: Where., enum: [eu, us], default: eu, examples: [us]}
      event: {x-pattern: '[a-z]+', location: $message.payload#/k}
      class: {}
    messages: {M: {$ref: '#/components/messages/M'}}
    bindings: {nats: {jetstream: {stream: S}}}
  dead:
    address: dlq.{consumer}
    messages: {Raw: {payload: {}, contentType: application/octet-stream}}
    bindings: {nats: {jetstream: {stream: D}}}
operations:
  send: {action: send, channel: {$ref: '#/channels/c'}}
components:
  messages:
    M:
      payload:
        type: object
        additionalProperties: false
        required: [eventId]
        properties: {eventId: {type: string, format: uuid}, k: {type: string}}
"""


def test_the_ir_carries_each_parameter_in_address_order() -> None:
    doc, _ = build(load_text(textwrap.dedent(SPEC), "spec.yaml"))
    region, event, class_ = doc.channel("c").parameters
    assert (region.name, region.python_name, region.description) == ("region", "region", "Where.")
    assert (region.enum, region.default, region.examples) == (("eu", "us"), "eu", ("us",))
    assert (event.pattern, event.location) == ("[a-z]+", "$message.payload#/k")
    assert all(p.declared for p in (region, event, class_))
    assert region.where.line == 11  # SPEC starts with a blank line
    # Names the generated publisher uses itself, and keywords, are escaped.
    assert (event.python_name, class_.python_name) == ("event_", "class_")
    assert doc.channel("c").subject == "s.*.*.*"


def test_an_address_without_parameters_object_has_free_tokens() -> None:
    doc, _ = build(load_text(textwrap.dedent(SPEC), "spec.yaml"))
    [consumer] = doc.channel("dead").parameters
    assert consumer.name == "consumer" and not consumer.declared
    assert (consumer.enum, consumer.pattern, consumer.default) == ((), None, None)
