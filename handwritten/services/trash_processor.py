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
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

import asyncpg

from generated.models import FileDeletedEvent, FilePlacedInTrashEvent, TrashEntry
from generated.publishers import PublishFilePlacedInTrash
from handwritten.db import queries
from handwritten.runtime.contract import Delivery, Publish
from handwritten.runtime.logging import short_id
from handwritten.services import ids
from handwritten.services.faults import NO_FAULTS, FaultInjector

log = logging.getLogger("trash-processor")

DEFAULT_RETENTION: Final = timedelta(days=30)
RETENTION_ENV: Final = "FILETRASH_RETENTION_DAYS"


def new_trash_entry(event: FileDeletedEvent, retention: timedelta) -> queries.NewTrashEntry:
    """The row a deletion produces: trashed when deleted, expiring `retention` later."""
    file = event.data
    return queries.NewTrashEntry(
        id=ids.trash_id(event.event_id),
        file_id=file.file_id,
        file_name=file.file_name,
        file_path=file.file_path,
        file_size=file.file_size,
        mime_type=file.mime_type,
        user_id=file.user_id,
        trashed_at=file.deleted_at,
        expires_at=file.deleted_at + retention,
        original_event_id=event.event_id,
    )


def placed_in_trash_event(row: queries.TrashRow) -> FilePlacedInTrashEvent:
    """The trash event of a stored row; a pure function of the row, so retries agree."""
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
    """Implements `generated.consumers.TrashProcessorHandler`."""

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
        self._publish = PublishFilePlacedInTrash(js)
        self._retention = retention
        self._faults = faults
        self.stored = 0
        """Rows this instance inserted (the demo and the tests read it)."""
        self.published = 0
        """Trash events JetStream stored as new because of this instance."""

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        file = event.data
        log.info(
            "📥 Received FileDeletedEvent: %s (file: %s, user: %s) [seq: %d]",
            short_id(event.event_id),
            file.file_name,
            short_id(file.user_id),
            delivery.stream_seq,
            extra={
                "step": "received",
                "event_id": str(event.event_id),
                "stream_seq": delivery.stream_seq,
                "delivery": delivery.num_delivered,
            },
        )
        row, inserted = await queries.store_trashed_file(
            self._pool, new_trash_entry(event, self._retention)
        )
        if inserted:
            self.stored += 1
            log.info(
                "💾 Stored in trashed_files table: %s (from %s)",
                short_id(row.id),
                short_id(event.event_id),
                extra={"step": "stored", "trash_id": str(row.id), "event_id": str(event.event_id)},
            )
        else:
            log.info(
                "♻️  Already in trashed_files: %s (a repeat of %s, delivery %d)",
                short_id(row.id),
                short_id(event.event_id),
                delivery.num_delivered,
                extra={"step": "found", "trash_id": str(row.id), "event_id": str(event.event_id)},
            )
        self._faults.point("after-insert")

        trash_event = placed_in_trash_event(row)
        if row.trash_event_seq is not None:
            log.info(
                "⏭️  FilePlacedInTrashEvent %s was published before [seq: %d]",
                short_id(trash_event.event_id),
                row.trash_event_seq,
                extra={"step": "already-published", "trash_event_id": str(trash_event.event_id)},
            )
        else:
            await self._publish_trash_event(row, trash_event)
        # The loop acks right after this returns; a crash before that brings the deletion back.
        log.info(
            "✅ Message processed successfully: %s",
            short_id(event.event_id),
            extra={"step": "processed", "event_id": str(event.event_id)},
        )

    async def _publish_trash_event(
        self, row: queries.TrashRow, trash_event: FilePlacedInTrashEvent
    ) -> None:
        result = await self._publish.publish(trash_event)
        if not result.duplicate:
            self.published += 1
        log.info(
            "📤 Published FilePlacedInTrashEvent: %s [seq: %d] (for %s)%s",
            short_id(trash_event.event_id),
            result.seq,
            short_id(row.original_event_id),
            " (duplicate: JetStream kept the first)" if result.duplicate else "",
            extra={
                "step": "published",
                "trash_event_id": str(trash_event.event_id),
                "seq": result.seq,
                "duplicate": result.duplicate,
            },
        )
        self._faults.point("after-publish")
        await queries.mark_trash_event_published(self._pool, row.id, result.seq)
