"""The deterministic ids: `ids.uuid5` is `uuid.uuid5` in the app's namespace, bit for bit, so
ids derived before and after it was written are the same ids."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from handwritten.filetrash import ids


@given(st.text())
def test_uuid5_is_the_standard_library_s(name: str) -> None:
    assert ids.uuid5(name) == uuid.uuid5(ids.NAMESPACE, name)


def test_the_derived_ids_are_those_of_the_spec_s_namespace() -> None:
    event_id = uuid.UUID("04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70")
    assert uuid.uuid5(uuid.NAMESPACE_URL, "urn:filetrash:file-trash-service") == ids.NAMESPACE
    assert ids.trash_id(event_id) == uuid.uuid5(ids.NAMESPACE, f"trash:{event_id}")
    assert ids.trash_event_id(event_id) == uuid.uuid5(ids.NAMESPACE, f"trashed:{event_id}")
    assert ids.purge_event_id(event_id) == uuid.uuid5(ids.NAMESPACE, f"purged:{event_id}")
    assert ids.trash_id(event_id).version == 5


def test_a_derived_id_behaves_as_a_standard_uuid() -> None:
    """The derived id is asyncpg's C `UUID`: everything a caller may do with a `uuid.UUID`
    gives the same answer (str, hash, int, bytes, version, comparisons, keys of a dict)."""
    name = "trash:04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70"
    derived, standard = ids.uuid5(name), uuid.uuid5(ids.NAMESPACE, name)
    assert isinstance(derived, uuid.UUID)
    assert (str(derived), repr(derived)) == (str(standard), repr(standard))
    assert (derived.int, derived.bytes, derived.hex) == (standard.int, standard.bytes, standard.hex)
    assert (derived.version, derived.variant) == (5, uuid.RFC_4122)
    assert hash(derived) == hash(standard)
    assert {standard: 1}[derived] == 1
    assert not derived < standard and not derived > standard


def test_a_fast_id_is_the_same_id() -> None:
    standard = uuid.UUID("04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70")
    fast = ids.fast(standard)
    assert fast == standard and hash(fast) == hash(standard)
    assert str(fast) == str(standard) and f"trash:{fast}" == f"trash:{standard}"
    assert ids.trash_id(fast) == ids.trash_id(standard)
