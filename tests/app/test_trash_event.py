"""The trash event is built without validation (`contract.trusted`) from values that were
validated on their way in; it must be the event the validating constructor makes, field for
field and byte for byte, for any deletion the model accepts and any row it becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from generated.models import DeletedFile, FileDeletedEvent
from handwritten.filetrash.trash_processor import (
    new_trash_entry,
    placed_in_trash_event,
    validated_trash_event,
)

_NAMES = st.text(
    st.characters(exclude_characters="/\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=60,
)
_USERS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
_ZONES = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=_ZONES
)


@settings(max_examples=300, deadline=None)
@given(
    event_id=st.uuids(),
    file_id=st.uuids(),
    name=_NAMES,
    user=_USERS,
    deleted_at=_MOMENTS,
    stored_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    retention_days=st.floats(min_value=0.001, max_value=3650),
)
def test_the_trusted_trash_event_is_the_validated_one(
    event_id: UUID,
    file_id: UUID,
    name: str,
    user: str,
    deleted_at: datetime,
    stored_at: datetime,
    retention_days: float,
) -> None:
    event = FileDeletedEvent(
        event_id=event_id,
        event_type="FileDeletedEvent",
        timestamp=deleted_at,
        data=DeletedFile(
            file_id=file_id,
            file_name=name,
            file_path=f"/u/{name}",
            file_size=7,
            mime_type="text/plain",
            user_id=user,
            deleted_at=deleted_at,
        ),
    )
    row = new_trash_entry(event, timedelta(days=retention_days)).stored(stored_at)
    trusted = placed_in_trash_event(row)
    validated = validated_trash_event(row)
    assert trusted == validated
    assert trusted.model_dump_json(by_alias=True) == validated.model_dump_json(by_alias=True)
    assert trusted.model_dump() == validated.model_dump()


def test_a_stored_entry_keeps_every_field_in_its_place() -> None:
    """`NewTrashEntry.stored` builds the row positionally: each field must land under its own
    name (timestamps in UTC, the same instants), the two PostgreSQL fills in as given."""
    from uuid import uuid4

    from handwritten.filetrash.db.queries import NewTrashEntry, TrashRow

    deleted_at = datetime(2026, 12, 3, 20, 15, tzinfo=timezone(timedelta(hours=2)))
    entry = NewTrashEntry(
        uuid4(), uuid4(), "a.txt", "/u/a.txt", 5, "text/plain", "user-1", deleted_at,
        deleted_at + timedelta(days=30), uuid4(), "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )  # fmt: skip
    stored_at = datetime(2026, 12, 3, 18, 16, tzinfo=UTC)
    row = entry.stored(stored_at)
    for name in NewTrashEntry._fields:
        assert getattr(row, name) == getattr(entry, name), name
    assert (row.trashed_at.tzinfo, row.expires_at.tzinfo) == (UTC, UTC)
    assert (row.stored_at, row.trash_event_seq) == (stored_at, None)
    assert set(TrashRow._fields) - set(NewTrashEntry._fields) == {"stored_at", "trash_event_seq"}
