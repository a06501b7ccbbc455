"""Every SQL statement the services run, as small typed functions over an asyncpg connection.

The tables are created by the migrations next to this module. Each write is idempotent
against redelivery: it is keyed on the id of the event that caused it, and returns whether it
changed anything, so that a service can tell a first delivery from a repeated one.

The rows and entries made for each event handled are NamedTuples: as immutable as a frozen
dataclass, and made at half its cost (which sets each field through `object.__setattr__`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypeVar
from uuid import UUID


class Connection(Protocol):
    """The part of `asyncpg.Connection` (and `asyncpg.Pool`) these queries use."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


# --- trashed_files ------------------------------------------------------------------------


class TrashRow(NamedTuple):
    """A row of `trashed_files`, as stored (timestamps in UTC, as PostgreSQL returns them)."""

    id: UUID
    file_id: UUID
    file_name: str
    file_path: str
    file_size: int
    mime_type: str
    user_id: str
    trashed_at: datetime
    expires_at: datetime
    original_event_id: UUID
    stored_at: datetime
    trash_event_seq: int | None
    traceparent: str | None
    """The deletion's W3C trace context, for the trash and purge events (0006)."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TrashRow:
        return cls(*(record[name] for name in _TRASH_ROW_FIELDS))


_TRASH_ROW_FIELDS = TrashRow._fields

_TRASH_COLUMNS = ", ".join(_TRASH_ROW_FIELDS)


class NewTrashEntry(NamedTuple):
    """The row a deletion is to become."""

    id: UUID
    file_id: UUID
    file_name: str
    file_path: str
    file_size: int
    mime_type: str
    user_id: str
    trashed_at: datetime
    expires_at: datetime
    original_event_id: UUID
    traceparent: str | None = None

    def stored(self, stored_at: datetime) -> TrashRow:
        """The row this entry became when inserted at `stored_at` (no trash event yet), its
        timestamps in UTC as PostgreSQL returns them, so that it equals the row read back."""
        return TrashRow(  # positional: one is made per row stored, keywords cost a third more
            *self[:7],  # id .. user_id
            self.trashed_at.astimezone(UTC),
            self.expires_at.astimezone(UTC),
            self.original_event_id,
            stored_at,
            None,  # trash_event_seq
            self.traceparent,
        )


async def store_trashed_file(conn: Connection, entry: NewTrashEntry) -> tuple[TrashRow, bool]:
    """The row for `entry.original_event_id`, inserted now (True) or found from before (False).

    A concurrent insert of the same event waits on the unique index and then finds nothing to
    do, so the SELECT that follows sees the committed row.
    """
    record = await conn.fetchrow(
        f"""
        INSERT INTO trashed_files (id, file_id, file_name, file_path, file_size, mime_type,
                                   user_id, trashed_at, expires_at, original_event_id,
                                   traceparent)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (original_event_id) DO NOTHING
        RETURNING {_TRASH_COLUMNS}
        """,
        entry.id,
        entry.file_id,
        entry.file_name,
        entry.file_path,
        entry.file_size,
        entry.mime_type,
        entry.user_id,
        entry.trashed_at,
        entry.expires_at,
        entry.original_event_id,
        entry.traceparent,
    )
    if record is not None:
        return TrashRow.from_record(record), True
    record = await conn.fetchrow(
        f"SELECT {_TRASH_COLUMNS} FROM trashed_files WHERE original_event_id = $1",
        entry.original_event_id,
    )
    if record is None:
        # Only possible if the row was inserted and purged in between: a deletion event
        # redelivered after its trash entry expired. Nothing is left to describe it.
        raise TrashEntryGone(entry.original_event_id)
    return TrashRow.from_record(record), False


async def store_trashed_files(
    conn: Connection, entries: Sequence[NewTrashEntry]
) -> list[tuple[TrashRow, bool] | None]:
    """For each entry, in order: (its row, True) if inserted now, (its row, False) if found
    from before (or an earlier entry of the same batch inserted it), None if it was purged.

    One statement inserts the whole batch — a single round trip and a single commit in the
    common case; only entries already stored cost a second one, to read them. Rows go in in
    `original_event_id` order, so two batches that overlap take the unique index's locks in
    the same order and wait for each other instead of deadlocking. A conflicting insert waits
    for the other transaction; the SELECT that follows is a new statement and sees its row.
    """
    if not entries:
        return []
    first: dict[UUID, NewTrashEntry] = {}
    for entry in entries:
        first.setdefault(entry.original_event_id, entry)
    batch = sorted(first.values(), key=lambda e: e.original_event_id.int)
    records = await conn.fetch(
        """
        INSERT INTO trashed_files (id, file_id, file_name, file_path, file_size, mime_type,
                                   user_id, trashed_at, expires_at, original_event_id,
                                   traceparent)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                             $10::uuid[], $11::text[])
        ON CONFLICT (original_event_id) DO NOTHING
        RETURNING original_event_id, stored_at
        """,
        *zip(*batch, strict=True),  # a column per field, in the order of the unnest
    )
    # An inserted row is the entry as given plus the two columns PostgreSQL filled in.
    inserted = {key: first[key].stored(stored_at) for key, stored_at in records}
    found: dict[UUID, TrashRow] = {}
    missing = [e.original_event_id for e in batch if e.original_event_id not in inserted]
    if missing:
        records = await conn.fetch(
            f"SELECT {_TRASH_COLUMNS} FROM trashed_files WHERE original_event_id = ANY($1::uuid[])",
            missing,
        )
        found = {row.original_event_id: row for row in map(TrashRow.from_record, records)}
    outcome: list[tuple[TrashRow, bool] | None] = []
    for entry in entries:
        key = entry.original_event_id
        if key in inserted:
            outcome.append((inserted[key], first.get(key) is entry))
        elif key in found:
            outcome.append((found[key], False))
        else:
            outcome.append(None)
    return outcome


class TrashEntryGone(Exception):
    """The trash entry of a deletion existed once but was purged before a redelivery."""

    def __init__(self, original_event_id: UUID) -> None:
        super().__init__(
            f"the trash entry of event {original_event_id} was already purged; "
            "the redelivered deletion has nothing left to do"
        )
        self.original_event_id = original_event_id


async def mark_trash_event_published(conn: Connection, trash_id: UUID, seq: int) -> None:
    """Remember the stream sequence of the entry's FilePlacedInTrashEvent."""
    await conn.execute(
        "UPDATE trashed_files SET trash_event_seq = $2 WHERE id = $1 AND trash_event_seq IS NULL",
        trash_id,
        seq,
    )


async def mark_trash_events_published(
    conn: Connection, published: Sequence[tuple[UUID, int]]
) -> None:
    """`mark_trash_event_published` for a whole batch of (trash id, sequence), in one
    statement; rows locked in id order, as every batch does.

    The rows are found through the primary key (`id = ANY(...)`), whatever the planner thinks
    of the table's size: a join against `unnest(...)` was planned as a hash join over a
    sequential scan of the whole table while its statistics were stale (a fresh or fast
    growing table), so every batch read every row. Each row's sequence is looked up by its
    position in the id array (a batch is a few hundred ids at most).
    """
    if not published:
        return
    ordered = sorted(published, key=lambda published: published[0].int)
    await conn.execute(
        """
        UPDATE trashed_files
        SET trash_event_seq = ($2::bigint[])[array_position($1::uuid[], id)]
        WHERE id = ANY($1::uuid[]) AND trash_event_seq IS NULL
        """,
        [trash_id for trash_id, _ in ordered],
        [seq for _, seq in ordered],
    )


async def lock_expired(conn: Connection, now: datetime, limit: int) -> list[TrashRow]:
    """Expired entries no other purge holds, locked until the caller's transaction ends."""
    records = await conn.fetch(
        f"""
        SELECT {_TRASH_COLUMNS} FROM trashed_files
        WHERE expires_at <= $1
        ORDER BY expires_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
        """,
        now,
        limit,
    )
    return [TrashRow.from_record(record) for record in records]


async def delete_trashed(conn: Connection, ids: Sequence[UUID]) -> int:
    status = await conn.execute("DELETE FROM trashed_files WHERE id = ANY($1::uuid[])", list(ids))
    return _affected(status)


# --- audit_log ----------------------------------------------------------------------------


async def append_audit_entry(
    conn: Connection,
    *,
    event_id: UUID,
    event_type: str,
    user_id: str,
    subject: str,
    stream: str,
    stream_seq: int,
    payload: str,
) -> bool:
    """Add the event (`payload`: its JSON text) to the audit log; False when it is already
    there."""
    status = await conn.execute(
        """
        INSERT INTO audit_log (event_id, event_type, user_id, subject, stream, stream_seq, payload)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
        ON CONFLICT (event_id) DO NOTHING
        """,
        event_id,
        event_type,
        user_id,
        subject,
        stream,
        stream_seq,
        payload,
    )
    return _affected(status) == 1


class AuditEntry(NamedTuple):
    """One row of `audit_log`; `payload` is the event as JSON text."""

    event_id: UUID
    event_type: str
    user_id: str
    subject: str
    stream: str
    stream_seq: int
    payload: str


class _ByEvent(Protocol):
    @property
    def event_id(self) -> UUID: ...


_Row = TypeVar("_Row", bound=_ByEvent)


def _each_event_once(rows: Sequence[_Row]) -> list[_Row]:
    """A batch's rows for one statement: each event once (its first row), in event id order, so
    that overlapping batches lock rows in one order and wait for each other, never deadlock.

    Ordered by `UUID.int`, the order of the UUIDs themselves and of PostgreSQL's `uuid`, but
    compared in C: `UUID.__lt__` is Python, and a batch of 256 makes 2,000 comparisons."""
    return sorted({r.event_id: r for r in reversed(rows)}.values(), key=lambda r: r.event_id.int)


async def append_audit_entries(conn: Connection, entries: Sequence[AuditEntry]) -> int:
    """`append_audit_entry` for a batch, in one statement: how many events were added now
    (the others were there before, or twice in the batch). Rows go in in event id order, so
    that two overlapping batches wait for each other instead of deadlocking.

    The batch inserts here count their rows from the command tag rather than returning them
    (`RETURNING event_id`), which would have PostgreSQL send, and asyncpg decode, a row per
    event only to be counted."""
    batch = _each_event_once(entries)
    if not batch:
        return 0
    status = await conn.execute(
        """
        INSERT INTO audit_log (event_id, event_type, user_id, subject, stream, stream_seq, payload)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bigint[], $7::jsonb[])
        ON CONFLICT (event_id) DO NOTHING
        """,
        *zip(*batch, strict=True),  # a column per field, in the order of the unnest
    )
    return _affected(status)


# --- analytics ----------------------------------------------------------------------------


async def count_event(
    conn: Connection,
    *,
    event_id: UUID,
    event_type: str,
    user_id: str,
    stream_seq: int,
    bytes_trashed: int,
) -> bool:
    """Count one event; False (and nothing counted) when it was counted before.

    Call it inside a transaction: the processed-event row and the counters commit together.
    """
    status = await conn.execute(
        """
        INSERT INTO analytics_processed_events (event_id, event_type, user_id, stream_seq)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (event_id) DO NOTHING
        """,
        event_id,
        event_type,
        user_id,
        stream_seq,
    )
    if _affected(status) == 0:
        return False
    await conn.execute(
        """
        INSERT INTO analytics_event_counts AS c (event_type, events, bytes) VALUES ($1, 1, $2)
        ON CONFLICT (event_type)
        DO UPDATE SET events = c.events + 1, bytes = c.bytes + EXCLUDED.bytes
        """,
        event_type,
        bytes_trashed,
    )
    await conn.execute(
        """
        INSERT INTO analytics_user_counts AS c (user_id, event_type, events, bytes)
        VALUES ($1, $2, 1, $3)
        ON CONFLICT (user_id, event_type)
        DO UPDATE SET events = c.events + 1, bytes = c.bytes + EXCLUDED.bytes
        """,
        user_id,
        event_type,
        bytes_trashed,
    )
    return True


class CountedEvent(NamedTuple):
    """One event for the analytics counters."""

    event_id: UUID
    event_type: str
    user_id: str
    stream_seq: int
    bytes_trashed: int


async def count_events(conn: Connection, events: Sequence[CountedEvent]) -> dict[str, int]:
    """`count_event` for a batch: how many events of each type were counted now (the others
    were counted before, or are twice in the batch).

    One statement, so one transaction and one round trip: the processed-event rows, and from
    those inserted now the per-type and the per-user counters, each in key order, so that
    concurrent batches lock the counters in one order and never deadlock."""
    batch = _each_event_once(events)
    if not batch:
        return {}
    records = await conn.fetch(
        """
        WITH new AS (
            INSERT INTO analytics_processed_events (event_id, event_type, user_id, stream_seq)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id, event_type, user_id
        ), sized AS (
            SELECT new.event_type, new.user_id, s.bytes
            FROM new JOIN unnest($1::uuid[], $5::bigint[]) AS s (event_id, bytes) USING (event_id)
        ), by_type AS (
            INSERT INTO analytics_event_counts AS c (event_type, events, bytes)
            SELECT event_type, count(*), sum(bytes) FROM sized
            GROUP BY event_type ORDER BY event_type
            ON CONFLICT (event_type)
            DO UPDATE SET events = c.events + EXCLUDED.events, bytes = c.bytes + EXCLUDED.bytes
        ), by_user AS (
            INSERT INTO analytics_user_counts AS c (user_id, event_type, events, bytes)
            SELECT user_id, event_type, count(*), sum(bytes) FROM sized
            GROUP BY user_id, event_type ORDER BY user_id, event_type
            ON CONFLICT (user_id, event_type)
            DO UPDATE SET events = c.events + EXCLUDED.events, bytes = c.bytes + EXCLUDED.bytes
        )
        SELECT event_type, count(*) FROM new GROUP BY event_type
        """,
        *zip(*batch, strict=True),  # a column per field, in the order of the unnest
    )
    return {event_type: count for event_type, count in records}


@dataclass(frozen=True, slots=True)
class TypeCount:
    event_type: str
    events: int
    bytes: int


async def event_counts(conn: Connection) -> list[TypeCount]:
    records = await conn.fetch(
        "SELECT event_type, events, bytes FROM analytics_event_counts ORDER BY event_type"
    )
    return [TypeCount(r["event_type"], r["events"], r["bytes"]) for r in records]


# --- cleanup_queue ------------------------------------------------------------------------


async def enqueue_cleanup(
    conn: Connection,
    *,
    event_id: UUID,
    file_id: UUID,
    user_id: str,
    file_path: str,
    file_size: int,
) -> bool:
    """Queue a storage path for reclaiming; False when this event queued it before."""
    status = await conn.execute(
        """
        INSERT INTO cleanup_queue (event_id, file_id, user_id, file_path, file_size)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (event_id) DO NOTHING
        """,
        event_id,
        file_id,
        user_id,
        file_path,
        file_size,
    )
    return _affected(status) == 1


class CleanupEntry(NamedTuple):
    """One row of `cleanup_queue`."""

    event_id: UUID
    file_id: UUID
    user_id: str
    file_path: str
    file_size: int


async def enqueue_cleanups(conn: Connection, entries: Sequence[CleanupEntry]) -> int:
    """`enqueue_cleanup` for a batch, in one statement (rows in event id order): how many
    events were queued now."""
    batch = _each_event_once(entries)
    if not batch:
        return 0
    status = await conn.execute(
        """
        INSERT INTO cleanup_queue (event_id, file_id, user_id, file_path, file_size)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
        ON CONFLICT (event_id) DO NOTHING
        """,
        *zip(*batch, strict=True),  # a column per field, in the order of the unnest
    )
    return _affected(status)


# --- user_notifications -------------------------------------------------------------------


async def add_notification(
    conn: Connection, *, event_id: UUID, user_id: str, trash_id: UUID, message: str
) -> bool:
    """Store a notification for the user; False when this event stored it before."""
    status = await conn.execute(
        """
        INSERT INTO user_notifications (event_id, user_id, trash_id, message)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (event_id) DO NOTHING
        """,
        event_id,
        user_id,
        trash_id,
        message,
    )
    return _affected(status) == 1


class Notification(NamedTuple):
    """One row of `user_notifications`."""

    event_id: UUID
    user_id: str
    trash_id: UUID
    message: str


async def add_notifications(conn: Connection, notes: Sequence[Notification]) -> int:
    """`add_notification` for a batch, in one statement (rows in event id order): how many
    events' notifications were stored now."""
    batch = _each_event_once(notes)
    if not batch:
        return 0
    status = await conn.execute(
        """
        INSERT INTO user_notifications (event_id, user_id, trash_id, message)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[])
        ON CONFLICT (event_id) DO NOTHING
        """,
        *zip(*batch, strict=True),  # a column per field, in the order of the unnest
    )
    return _affected(status)


# --- reconciliation (demo and tests) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What the services stored for one set of deletions (a demo run, a test)."""

    trashed_rows: int
    trash_events_marked: int
    audit_rows: int
    analytics_by_type: Mapping[str, int]
    cleanup_rows: int
    notification_rows: int


async def count_run(
    conn: Connection, deletion_ids: Iterable[UUID], trash_event_ids: Iterable[UUID]
) -> RunCounts:
    """Rows each service wrote for these deletions (and the trash events derived from them)."""
    deletions = list(deletion_ids)
    trash_events = list(trash_event_ids)
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM trashed_files WHERE original_event_id = ANY($1::uuid[])),
          (SELECT count(*) FROM trashed_files
             WHERE original_event_id = ANY($1::uuid[]) AND trash_event_seq IS NOT NULL),
          (SELECT count(*) FROM audit_log WHERE event_id = ANY($1::uuid[])),
          (SELECT count(*) FROM cleanup_queue WHERE event_id = ANY($1::uuid[])),
          (SELECT count(*) FROM user_notifications WHERE event_id = ANY($2::uuid[]))
        """,
        deletions,
        trash_events,
    )
    by_type = await conn.fetch(
        """
        SELECT event_type, count(*) AS n FROM analytics_processed_events
        WHERE event_id = ANY($1::uuid[]) GROUP BY event_type ORDER BY event_type
        """,
        deletions + trash_events,
    )
    return RunCounts(
        trashed_rows=row[0],
        trash_events_marked=row[1],
        audit_rows=row[2],
        analytics_by_type={r["event_type"]: r["n"] for r in by_type},
        cleanup_rows=row[3],
        notification_rows=row[4],
    )


def _affected(status: str) -> int:
    """The row count of a command tag such as `INSERT 0 1` or `DELETE 3`."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0
