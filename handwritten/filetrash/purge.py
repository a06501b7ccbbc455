"""The purge job: trash entries past `expires_at` are deleted for good, each with a
FilePurgedEvent on `files.purged`.

Safe to repeat and to run concurrently. Each batch is one transaction:

1. lock up to `batch_size` expired rows with `FOR UPDATE SKIP LOCKED` (a concurrent purge
   takes other rows, never the same ones);
2. publish a FilePurgedEvent for each and wait for every PubAck;
3. delete those rows and commit.

A crash before the commit leaves the rows in place, so the next run publishes their events
again — with the same ids (`ids.purge_event_id`), which JetStream drops as duplicates within
the stream's duplicate window. An event is only ever published for a row that is then deleted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from generated.models import FilePurgedEvent, PurgedFile
from generated.publishers import PublishFilePurged
from handwritten.filetrash import ids
from handwritten.filetrash.db import queries
from handwritten.runtime import tracing
from handwritten.runtime.contract import Publish, PublishResult
from handwritten.runtime.logging import short_id

log = logging.getLogger("purge")

DEFAULT_BATCH_SIZE = 100


def purged_event(row: queries.TrashRow, purged_at: datetime) -> FilePurgedEvent:
    return FilePurgedEvent(
        event_id=ids.purge_event_id(row.id),
        event_type="FilePurgedEvent",
        timestamp=purged_at,
        data=PurgedFile(
            trash_id=row.id,
            file_id=row.file_id,
            file_name=row.file_name,
            file_path=row.file_path,
            user_id=row.user_id,
            purged_at=purged_at,
            original_event_id=row.original_event_id,
        ),
    )


@dataclass(slots=True)
class PurgeReport:
    """What one purge run did."""

    purged: int = 0
    events_published: int = 0
    events_duplicate: int = 0
    batches: int = 0
    event_ids: list[str] = field(default_factory=list)


async def purge_expired(
    pool: asyncpg.Pool,
    js: Publish,
    *,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PurgeReport:
    """Purge every entry that expired at `now` (default: the current time), batch by batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cutoff = datetime.now(UTC) if now is None else now
    if cutoff.tzinfo is None:
        raise ValueError("now must carry a time zone")
    publisher = PublishFilePurged(js)
    report = PurgeReport()
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await queries.lock_expired(conn, cutoff, batch_size)
            if not rows:
                break
            events = [purged_event(row, cutoff) for row in rows]
            results: list[PublishResult] = await asyncio.gather(
                *(
                    publisher.publish(event, headers=_trace_of(row))
                    for row, event in zip(rows, events, strict=True)
                )
            )
            await queries.delete_trashed(conn, [row.id for row in rows])
        report.batches += 1
        for row, event, result in zip(rows, events, results, strict=True):
            report.purged += 1
            report.event_ids.append(str(event.event_id))
            if result.duplicate:
                report.events_duplicate += 1
            else:
                report.events_published += 1
            log.info(
                "🔥 Purged %s (file: %s, user: %s, expired %s) → FilePurgedEvent %s [seq: %d]%s",
                short_id(row.id),
                row.file_name,
                short_id(row.user_id),
                row.expires_at.isoformat(timespec="seconds"),
                short_id(event.event_id),
                result.seq,
                " (duplicate)" if result.duplicate else "",
                extra={"step": "purged", "trash_id": str(row.id), "event_id": str(event.event_id)},
            )
        if len(rows) < batch_size:
            break
    return report


def _trace_of(row: queries.TrashRow) -> dict[str, str]:
    """The purge continues the trace of the deletion that put the file in the trash."""
    cause = {tracing.TRACEPARENT: row.traceparent} if row.traceparent else {}
    return tracing.caused_by(cause, name="purge event")
