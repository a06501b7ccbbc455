"""The trash-processor: FileDeletedEvent -> a row in `trashed_files` -> FilePlacedInTrashEvent.

Effectively once. The consume loop acks a deletion only after this handler returns, so a crash
anywhere in between brings the deletion back; every step is therefore safe to repeat:

1. INSERT ... ON CONFLICT (original_event_id) DO NOTHING: a repeated deletion (redelivered, or
   published again under another Nats-Msg-Id) finds the row it produced the first time.
2. The trash event is built from the STORED row, with ids derived from the deletion's eventId
   (`ids.trash_id`, `ids.trash_event_id`) and the row's own `stored_at` as its timestamp, so a
   re-sent event is identical to the first, field for field, and carries the same Nats-Msg-Id:
   JetStream drops the copy within the stream's duplicate window.
3. Once JetStream has acknowledged the trash event its sequence is written to the row; a later
   repetition sees it and publishes nothing, even after the duplicate window has passed.

Batches (`handle_batch`, what the consume loop uses) take the same three steps for many
deletions at once: one INSERT of all their rows (one round trip, one commit), their trash
events published concurrently and awaited together, one UPDATE recording every sequence. A
deletion whose step fails is reported alone (`BatchResult`) and retried alone; if the batch
fails as a whole the loop replays it one deletion at a time through `on_file_deleted_event`.
The fault points keep their meaning: `after-insert` fires once the batch's rows are
committed and before any of its events is published, `after-publish` once all its events are
acknowledged and before any sequence is recorded or any deletion acked.

Logs: a batch of one is told step by step, as the article tells it; a larger batch gets one
line per step with a `count` (repeats and duplicates are still named one by one).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final
from uuid import UUID

import asyncpg

from generated.consumers import TRASH_PROCESSOR, TrashProcessorHandler
from generated.models import FileDeletedEvent, FilePlacedInTrashEvent, TrashEntry
from generated.publishers import PublishFilePlacedInTrash
from handwritten.filetrash import ids
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.filetrash.faults import NO_FAULTS, FaultInjector
from handwritten.runtime import tracing
from handwritten.runtime.contract import (
    BatchResult,
    Delivery,
    Publish,
    PublishMany,
    PublishResult,
    trusted,
)
from handwritten.runtime.logging import short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("trash-processor")

DEFAULT_RETENTION: Final = timedelta(days=30)
RETENTION_ENV: Final = "FILETRASH_RETENTION_DAYS"
RETENTION_OPTION: Final = "retention"
"""`ServiceResources.options` key of the retention (`filetrash run --retention-days`)."""
FAULTS_OPTION: Final = "faults"
"""`ServiceResources.options` key of the fault hooks (FILETRASH_FAULT, for the fault tests)."""


class InvalidRetention(ValueError):
    """The retention (`--retention-days` or FILETRASH_RETENTION_DAYS) is not a positive number."""


def retention_from(
    days: float | str | None, *, environ: Mapping[str, str] | None = None
) -> timedelta:
    """`days` when given, else FILETRASH_RETENTION_DAYS, else 30 days."""
    env = os.environ if environ is None else environ
    source = "--retention-days"
    if days is None:
        days = env.get(RETENTION_ENV) or None
        source = RETENTION_ENV
    if days is None:
        return DEFAULT_RETENTION
    try:
        value = float(days)
    except ValueError:
        value = 0.0
    if not value > 0 or value > 36500:
        raise InvalidRetention(f"{source} must be a number of days in (0, 36500], not {days!r}")
    return timedelta(days=value)


def new_trash_entry(
    event: FileDeletedEvent, retention: timedelta, delivery: Delivery | None = None
) -> queries.NewTrashEntry:
    """The row a deletion produces: trashed when deleted, expiring `retention` later, with the
    deletion's trace context.

    The deletion's id is kept as `ids.fast` makes it (equal to the event's, see `ids.uuid5`):
    both ids derived from it format it, and PostgreSQL gets its bytes, at a fraction of the
    cost of a standard UUID."""
    file = event.data
    original_event_id = ids.fast(event.event_id)
    return queries.NewTrashEntry(  # positional: one is made per deletion
        ids.trash_id(original_event_id),
        file.file_id,
        file.file_name,
        file.file_path,
        file.file_size,
        file.mime_type,
        file.user_id,
        file.deleted_at,
        file.deleted_at + retention,
        original_event_id,
        tracing.traceparent(delivery.headers) if delivery else None,
    )


def placed_in_trash_event(row: queries.TrashRow) -> FilePlacedInTrashEvent:
    """The trash event of a stored row; a pure function of the row, so retries agree.

    Built without validating (`contract.trusted`): every value comes from the validated
    deletion it answers or from the row PostgreSQL returned, with the types the model holds.
    tests/app/test_trash_event.py holds it, field for field and byte for byte, to
    `validated_trash_event`."""
    return trusted(
        FilePlacedInTrashEvent,
        {
            "event_id": ids.trash_event_id(row.original_event_id),
            "event_type": "FilePlacedInTrashEvent",
            "timestamp": row.stored_at,
            "data": trusted(
                TrashEntry,
                {
                    "trash_id": row.id,
                    "file_id": row.file_id,
                    "file_name": row.file_name,
                    "user_id": row.user_id,
                    "trashed_at": row.trashed_at,
                    "expires_at": row.expires_at,
                    "original_event_id": row.original_event_id,
                },
            ),
        },
    )


def validated_trash_event(row: queries.TrashRow) -> FilePlacedInTrashEvent:
    """`placed_in_trash_event(row)` through the model's validating constructor."""
    return FilePlacedInTrashEvent(
        event_id=ids.trash_event_id(row.original_event_id),
        event_type="FilePlacedInTrashEvent",
        timestamp=row.stored_at,
        data=TrashEntry(
            trash_id=row.id,
            file_id=row.file_id,
            file_name=row.file_name,
            user_id=row.user_id,
            trashed_at=row.trashed_at,
            expires_at=row.expires_at,
            original_event_id=row.original_event_id,
        ),
    )


class TrashProcessor:
    """Implements `generated.consumers.TrashProcessorHandler` and `contract.BatchHandler`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: Publish,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        faults: FaultInjector = NO_FAULTS,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, not {retention}")
        self._pool = pool
        self._js = js
        self._many = js if isinstance(js, PublishMany) else None
        """`js` when it publishes batches (a runtime-checkable protocol: checked once here)."""
        self._publish = PublishFilePlacedInTrash(js)
        self._retention = retention
        self._faults = faults
        self.stored = 0
        """Rows this instance inserted (the demo and the tests read it)."""
        self.published = 0
        """Trash events JetStream stored as new because of this instance."""

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        _log_received(event, delivery)
        row, inserted = await queries.store_trashed_file(
            self._pool, new_trash_entry(event, self._retention, delivery)
        )
        if inserted:
            self.stored += 1
            _log_stored(row, event)
        else:
            _log_found(row, delivery)
        self._faults.point("after-insert")

        if row.trash_event_seq is not None:
            _log_already_published(row)
        else:
            headers = tracing.caused_by(delivery.headers, name="trash event")
            await self._publish_trash_event(row, placed_in_trash_event(row), headers)
        # The loop acks right after this returns; a crash before that brings the deletion back.
        _log_processed(event)

    async def _publish_trash_event(
        self,
        row: queries.TrashRow,
        trash_event: FilePlacedInTrashEvent,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        result = await self._publish.publish(trash_event, headers=headers)
        if not result.duplicate:
            self.published += 1
        _log_published(row, trash_event, result)
        self._faults.point("after-publish")
        await queries.mark_trash_event_published(self._pool, row.id, result.seq)

    async def handle_batch(self, items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> BatchResult:
        """Store, announce and record many deletions at once; see the module's docstring."""
        if len(items) == 1:
            _log_received(*items[0])
        else:
            _log_received_batch(items)
        failures: dict[int, BaseException] = {}
        entries: list[tuple[int, queries.NewTrashEntry]] = []
        for index, (event, delivery) in enumerate(items):
            try:
                entries.append((index, new_trash_entry(event, self._retention, delivery)))
            except (ValueError, OverflowError) as error:  # e.g. an expiry past year 9999
                failures[index] = error
        async with self._pool.acquire() as conn:
            unsent = await self._store_batch(conn, items, entries, failures)
            self._faults.point("after-insert")
            recorded = await self._announce_batch(
                unsent, failures, single=len(items) == 1, causes=[d.headers for _, d in items]
            )
            self._faults.point("after-publish")
            await queries.mark_trash_events_published(conn, recorded)
        succeeded = len(items) - len(failures)
        if len(items) == 1 and succeeded:
            _log_processed(items[0][0])
        elif succeeded:
            log.info(
                "✅ %d messages processed successfully",
                succeeded,
                extra={"step": "processed", "count": succeeded},
            )
        return BatchResult(failures)

    async def _store_batch(
        self,
        conn: queries.Connection,
        items: Sequence[tuple[FileDeletedEvent, Delivery]],
        entries: Sequence[tuple[int, queries.NewTrashEntry]],
        failures: dict[int, BaseException],
    ) -> list[tuple[queries.TrashRow, list[int]]]:
        """Insert the batch's rows; the rows whose event is still to be published, each with
        the items it answers (a deletion delivered twice in one batch is published once)."""
        stored = await queries.store_trashed_files(conn, [entry for _, entry in entries])
        unsent: dict[UUID, tuple[queries.TrashRow, list[int]]] = {}
        inserted: list[tuple[queries.TrashRow, FileDeletedEvent]] = []
        for (index, entry), outcome in zip(entries, stored, strict=True):
            if outcome is None:
                failures[index] = queries.TrashEntryGone(entry.original_event_id)
                continue
            row, new = outcome
            if new:
                inserted.append((row, items[index][0]))
            else:
                _log_found(row, items[index][1])
            if row.trash_event_seq is None:
                unsent.setdefault(row.id, (row, []))[1].append(index)
            else:
                _log_already_published(row)
        self.stored += len(inserted)
        if len(items) == 1 and inserted:
            _log_stored(*inserted[0])
        elif inserted:
            _log_stored_batch(len(inserted))
        return list(unsent.values())

    async def _publish_all(
        self,
        trash_events: Sequence[FilePlacedInTrashEvent],
        headers: Sequence[Mapping[str, str]],
    ) -> Sequence[PublishResult | BaseException]:
        """Publish concurrently and wait for every PubAck: in one go through `publish_many`
        when the publisher has it, else one task per event."""
        if self._many is None:
            return await asyncio.gather(
                *(
                    self._publish.publish(event, headers=h)
                    for event, h in zip(trash_events, headers, strict=True)
                ),
                return_exceptions=True,
            )
        message = self._publish.message
        return await self._many.publish_many(
            [message(event, headers=h) for event, h in zip(trash_events, headers, strict=True)]
        )

    async def _announce_batch(
        self,
        unsent: Sequence[tuple[queries.TrashRow, list[int]]],
        failures: dict[int, BaseException],
        *,
        single: bool,
        causes: Sequence[Mapping[str, str]],
    ) -> list[tuple[UUID, int]]:
        """Publish the trash events concurrently and wait for every PubAck; (trash id,
        sequence) of those JetStream acknowledged. A failed publish fails its items only.
        Each trash event carries the trace of the deletion it answers (`causes`, by item)."""
        trash_events = [placed_in_trash_event(row) for row, _ in unsent]
        headers = [
            tracing.caused_by(causes[indexes[0]], name="trash event") for _, indexes in unsent
        ]
        results = await self._publish_all(trash_events, headers)
        recorded: list[tuple[UUID, int]] = []
        fresh: list[PublishResult] = []
        for (row, indexes), trash_event, result in zip(unsent, trash_events, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                for index in indexes:
                    failures[index] = result
                continue
            recorded.append((row.id, result.seq))
            if not result.duplicate:
                self.published += 1
            if result.duplicate or single:
                _log_published(row, trash_event, result)
            else:
                fresh.append(result)
        if fresh:
            _log_published_batch(fresh)
        return recorded


# --- the story in the log -------------------------------------------------------------------


def _log_received(event: FileDeletedEvent, delivery: Delivery) -> None:
    file = event.data
    log.info(
        "📥 Received FileDeletedEvent: %s (file: %s, user: %s) [seq: %d]",
        short_id(event.event_id),
        file.file_name,
        short_id(file.user_id),
        delivery.stream_seq,
        extra={
            "step": "received",
            "count": 1,
            "event_id": str(event.event_id),
            "stream_seq": delivery.stream_seq,
            "delivery": delivery.num_delivered,
        },
    )


def _log_received_batch(items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> None:
    sequences = [delivery.stream_seq for _, delivery in items]
    log.info(
        "📥 Received %d FileDeletedEvents [seq: %d..%d]",
        len(items),
        min(sequences),
        max(sequences),
        extra={"step": "received", "count": len(items)},
    )


def _log_stored(row: queries.TrashRow, event: FileDeletedEvent) -> None:
    log.info(
        "💾 Stored in trashed_files table: %s (from %s)",
        short_id(row.id),
        short_id(event.event_id),
        extra={
            "step": "stored",
            "count": 1,
            "trash_id": str(row.id),
            "event_id": str(event.event_id),
        },
    )


def _log_stored_batch(count: int) -> None:
    log.info(
        "💾 Stored %d rows in trashed_files table", count, extra={"step": "stored", "count": count}
    )


def _log_found(row: queries.TrashRow, delivery: Delivery) -> None:
    log.info(
        "♻️  Already in trashed_files: %s (a repeat of %s, delivery %d)",
        short_id(row.id),
        short_id(row.original_event_id),
        delivery.num_delivered,
        extra={
            "step": "found",
            "count": 1,
            "trash_id": str(row.id),
            "event_id": str(row.original_event_id),
        },
    )


def _log_already_published(row: queries.TrashRow) -> None:
    trash_event_id = ids.trash_event_id(row.original_event_id)
    log.info(
        "⏭️  FilePlacedInTrashEvent %s was published before [seq: %d]",
        short_id(trash_event_id),
        row.trash_event_seq,
        extra={"step": "already-published", "count": 1, "trash_event_id": str(trash_event_id)},
    )


def _log_published(
    row: queries.TrashRow, trash_event: FilePlacedInTrashEvent, result: PublishResult
) -> None:
    log.info(
        "📤 Published FilePlacedInTrashEvent: %s [seq: %d] (for %s)%s",
        short_id(trash_event.event_id),
        result.seq,
        short_id(row.original_event_id),
        " (duplicate: JetStream kept the first)" if result.duplicate else "",
        extra={
            "step": "published",
            "count": 1,
            "trash_event_id": str(trash_event.event_id),
            "seq": result.seq,
            "duplicate": result.duplicate,
        },
    )


def _log_published_batch(results: Sequence[PublishResult]) -> None:
    sequences = [result.seq for result in results]
    log.info(
        "📤 Published %d FilePlacedInTrashEvents [seq: %d..%d]",
        len(results),
        min(sequences),
        max(sequences),
        extra={"step": "published", "count": len(results), "duplicate": False},
    )


def _log_processed(event: FileDeletedEvent) -> None:
    log.info(
        "✅ Message processed successfully: %s",
        short_id(event.event_id),
        extra={"step": "processed", "count": 1, "event_id": str(event.event_id)},
    )


def _trash_processor(resources: ServiceResources) -> TrashProcessorHandler:
    return TrashProcessor(
        resources.pool,
        resources.js,
        retention=resources.option(RETENTION_OPTION, timedelta, DEFAULT_RETENTION),
        faults=resources.option(FAULTS_OPTION, FaultInjector, NO_FAULTS),
    )


SERVICE: Service[TrashProcessorHandler] = Service(
    endpoint=TRASH_PROCESSOR,
    make_handler=_trash_processor,
    title="File Trash Subscriber",
    just_recipe="dev-subscriber",
    migrations=MIGRATIONS,
)
