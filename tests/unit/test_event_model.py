"""EventModel refuses, in optional and list fields too, the uuid/date-time spellings the
schema's formats refuse (pydantic alone reads them leniently)."""

from __future__ import annotations

from uuid import UUID

import pytest
from pydantic import AwareDatetime, ValidationError

from handwritten.runtime.contract import EventModel

GOOD_UUID = "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70"


class Sample(EventModel):
    required_id: UUID
    optional_id: UUID | None = None
    ids: list[UUID] | None = None
    when: AwareDatetime | None = None


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
