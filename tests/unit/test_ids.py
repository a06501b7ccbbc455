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
