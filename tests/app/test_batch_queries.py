"""The batch statements of the services against a real PostgreSQL: each one agrees with the
one-event statement it replaces (same rows, same idempotency), a deletion repeated within a
batch counts once, and a row the trash-processor builds from an insert equals the row read
back, so the trash event published from either is the same, byte for byte."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, timedelta, timezone

import asyncpg
import pytest

from generated.publishers import PublishFilePlacedInTrash
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.filetrash.trash_processor import (
    new_trash_entry,
    placed_in_trash_event,
    validated_trash_event,
)
from handwritten.runtime.migrate import migrate

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        await migrate(pool, MIGRATIONS)
        yield pool
    finally:
        await pool.close()


def entries(count: int, seed: int = 3) -> list[queries.NewTrashEntry]:
    simulator = DeletionSimulator(random.Random(seed))
    made = []
    for i in range(count):
        event = simulator.next_event()
        # Half of them deleted in a time zone other than UTC: the row stores UTC.
        if i % 2:
            when = event.data.deleted_at.astimezone(timezone(timedelta(hours=5, minutes=30)))
            event = event.model_copy(
                update={"data": event.data.model_copy(update={"deleted_at": when})}
            )
        made.append(new_trash_entry(event, timedelta(days=30)))
    return made


async def test_an_inserted_row_equals_the_row_read_back_and_so_does_its_trash_event(
    pool: asyncpg.Pool,
) -> None:
    batch = entries(6)
    first = await queries.store_trashed_files(pool, batch)
    assert [outcome[1] for outcome in first if outcome] == [True] * 6
    again = await queries.store_trashed_files(pool, batch)
    assert [outcome[1] for outcome in again if outcome] == [False] * 6
    for inserted, found in zip(first, again, strict=True):
        assert inserted is not None and found is not None
        assert inserted[0] == found[0]
        assert inserted[0].trashed_at.tzinfo == UTC
        sent = PublishFilePlacedInTrash.subject, placed_in_trash_event(inserted[0])
        resent = PublishFilePlacedInTrash.subject, placed_in_trash_event(found[0])
        assert sent[1].model_dump_json(by_alias=True) == resent[1].model_dump_json(by_alias=True)
        # Built unvalidated from a row asyncpg read back (its own UUID type), it is still
        # the event the validating constructor makes.
        for row in (inserted[0], found[0]):
            validated = validated_trash_event(row).model_dump_json(by_alias=True)
            assert placed_in_trash_event(row).model_dump_json(by_alias=True) == validated


async def test_sequences_are_recorded_row_by_row_and_only_once(pool: asyncpg.Pool) -> None:
    batch = entries(5)
    stored = await queries.store_trashed_files(pool, batch)
    rows = [outcome[0] for outcome in stored if outcome]
    await queries.mark_trash_events_published(
        pool, [(row.id, 100 + i) for i, row in enumerate(rows)]
    )
    # A repeat (another sequence for the same rows) changes nothing: the first one stays.
    await queries.mark_trash_events_published(pool, [(rows[0].id, 999), (rows[1].id, 998)])
    marked = {
        r["id"]: r["trash_event_seq"]
        for r in await pool.fetch("SELECT id, trash_event_seq FROM trashed_files")
    }
    assert marked == {row.id: 100 + i for i, row in enumerate(rows)}


async def test_audit_cleanup_and_notification_batches_are_idempotent(pool: asyncpg.Pool) -> None:
    simulator = DeletionSimulator(random.Random(5))
    events = [simulator.next_event() for _ in range(4)]
    audit = [
        queries.AuditEntry(
            e.event_id, e.event_type, e.data.user_id, "files.deleted", "FILE_EVENTS", i, "{}"
        )
        for i, e in enumerate(events)
    ]
    cleanup = [
        queries.CleanupEntry(e.event_id, e.data.file_id, e.data.user_id, e.data.file_path, 1)
        for e in events
    ]
    notes = [queries.Notification(e.event_id, e.data.user_id, e.data.file_id, "m") for e in events]
    # A delivery repeated within the batch is stored once.
    assert await queries.append_audit_entries(pool, [*audit[:3], audit[0]]) == 3
    assert await queries.append_audit_entries(pool, audit) == 1  # events[3], the new one
    assert await queries.enqueue_cleanups(pool, [*cleanup, cleanup[1]]) == 4
    assert await queries.enqueue_cleanups(pool, cleanup) == 0
    assert await queries.add_notifications(pool, notes) == 4
    assert await queries.add_notifications(pool, notes[:2]) == 0
    for table in ("audit_log", "cleanup_queue", "user_notifications"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 4


async def test_analytics_batches_count_each_event_once_per_type_and_user(
    pool: asyncpg.Pool,
) -> None:
    simulator = DeletionSimulator(random.Random(6))
    deleted = [simulator.next_event() for _ in range(5)]
    events = [
        queries.CountedEvent(e.event_id, "FileDeletedEvent", e.data.user_id, i, e.data.file_size)
        for i, e in enumerate(deleted)
    ] + [queries.CountedEvent(deleted[0].data.file_id, "FilePurgedEvent", "u-1", 9, 0)]
    first = await queries.count_events(pool, [*events[:3], events[0], events[5]])
    second = await queries.count_events(pool, events)  # the first three again, and two new
    assert first == {"FileDeletedEvent": 3, "FilePurgedEvent": 1}
    assert second == {"FileDeletedEvent": 2}  # events[3] and events[4]
    # The same totals as counting them one at a time (count_event) would give.
    by_type = {c.event_type: (c.events, c.bytes) for c in await queries.event_counts(pool)}
    assert by_type == {
        "FileDeletedEvent": (5, sum(e.data.file_size for e in deleted)),
        "FilePurgedEvent": (1, 0),
    }
    per_user = await pool.fetch(
        "SELECT user_id, events, bytes FROM analytics_user_counts"
        " WHERE event_type = 'FileDeletedEvent'"
    )
    expected: dict[str, tuple[int, int]] = {}
    for e in deleted:
        n, size = expected.get(e.data.user_id, (0, 0))
        expected[e.data.user_id] = (n + 1, size + e.data.file_size)
    assert {r["user_id"]: (r["events"], r["bytes"]) for r in per_user} == expected
