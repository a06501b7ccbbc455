"""EventModel applies the wire rules the generator attaches to fields (handwritten/runtime/wire.py):
what the schema refuses and pydantic's types would take is refused, in optional and list fields
too, and numbers follow JSON Schema's decimal semantics."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import pytest
from pydantic import AwareDatetime, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from handwritten.runtime.contract import EventModel

GOOD_UUID = "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70"


def rule(**wire: Any) -> Any:
    return Field(json_schema_extra={"x-wire": wire})


class Sample(EventModel):
    required_id: Annotated[UUID, rule(format="uuid")]
    optional_id: Annotated[UUID | None, rule(format="uuid", nullable=True)] = None
    ids: Annotated[list[UUID] | None, rule(items={"format": "uuid"}, nullable=True)] = None
    when: Annotated[AwareDatetime | None, rule(format="date-time", nullable=True)] = None


class Numbers(EventModel):
    price: Annotated[StrictFloat, rule(type="number", multipleOf="0.01")] = 0.0
    count: Annotated[StrictInt, rule(type="integer")] = 0
    level: Annotated[Literal[1, 2], rule(type="integer")] = 1
    grams: Annotated[
        list[StrictInt], rule(items={"type": "integer", "multipleOf": "5"}, nullable=False)
    ] = []  # noqa: RUF012
    email: Annotated[StrictStr, rule(format="email")] = "a@example.org"
    flag: Annotated[Literal[True], rule(type="boolean")] = True


@pytest.mark.parametrize(
    "payload",
    [
        {"required_id": "04d05b5f3a4c4d8e9f102b3c4d5e6f70"},
        {"required_id": GOOD_UUID + "\n"},
        {"required_id": GOOD_UUID, "optional_id": "{" + GOOD_UUID + "}"},
        {"required_id": GOOD_UUID, "ids": [GOOD_UUID, "urn:uuid:" + GOOD_UUID]},
        {"required_id": GOOD_UUID, "when": "2026-01-01 00:00:00Z"},
        {"required_id": GOOD_UUID, "when": "2026-01-01T00:00:00+0100"},
        {"required_id": GOOD_UUID, "when": 1700000000},
        {"required_id": 42},
    ],
    ids=[
        "no-hyphens",
        "trailing-newline",
        "braces-optional",
        "urn-in-list",
        "space",
        "offset-without-colon",
        "number-date-time",
        "number-uuid",
    ],
)
def test_lenient_spellings_are_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Sample.model_validate(payload)


def test_wire_spellings_are_accepted_and_python_values_too() -> None:
    wire = Sample.model_validate(
        {
            "required_id": GOOD_UUID,
            "optional_id": None,
            "ids": [GOOD_UUID],
            "when": "2026-01-01T00:00:00.5+01:00",
        }
    )
    assert wire.ids == [UUID(GOOD_UUID)]
    assert wire.when is not None and wire.when.utcoffset() is not None
    assert Sample(required_id=UUID(GOOD_UUID)).required_id == UUID(GOOD_UUID)


@pytest.mark.parametrize(
    ("json", "field", "value"),
    [
        ('{"price": 19.99}', "price", 19.99),
        ('{"price": 0.07}', "price", 0.07),
        ('{"price": 3}', "price", 3.0),
        ('{"count": 2.0}', "count", 2),
        ('{"count": 1e2}', "count", 100),
        ('{"level": 2.0}', "level", 2),
        ('{"grams": [5, 10.0, 15]}', "grams", [5, 10, 15]),
        ('{"email": "ada+shop@example.org"}', "email", "ada+shop@example.org"),
    ],
)
def test_numbers_are_read_as_json_schema_reads_them(json: str, field: str, value: Any) -> None:
    parsed = Numbers.model_validate_json(json)
    assert getattr(parsed, field) == value
    assert type(getattr(parsed, field)) is type(value)


@pytest.mark.parametrize(
    "json",
    [
        '{"price": 1e-9}',
        '{"price": 19.999}',
        '{"price": NaN}',
        '{"price": 1e400}',
        '{"count": 2.5}',
        '{"count": true}',
        '{"level": true}',
        '{"level": 3}',
        '{"grams": [5, 7]}',
        '{"grams": [5, 7.5]}',
        '{"email": "not an email"}',
        '{"email": "a@b..c"}',
        '{"flag": 1}',
    ],
)
def test_what_the_schema_refuses_is_refused(json: str) -> None:
    with pytest.raises(ValidationError):
        Numbers.model_validate_json(json)
