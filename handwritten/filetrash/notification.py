"""The notification-service: tells the user a file went to the trash, and until when.

Message filter: its durable reads `files.trashed` only. One notification per trash event,
however often it is delivered. A fetched batch is stored with one statement (`handle_batch`)
and logged in one line per outcome; a batch of one is logged as the single event it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC

import asyncpg

from generated.consumers import NOTIFICATION_SERVICE, NotificationServiceHandler
from generated.models import FilePlacedInTrashEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import BatchResult, Delivery
from handwritten.runtime.logging import log_batch_count, short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("notification-service")


def notification_text(event: FilePlacedInTrashEvent) -> str:
    """`report.pdf was moved to trash; it will be deleted for good on 2026-12-20.` (UTC date)"""
    entry = event.data
    expires_on = entry.expires_at.astimezone(UTC).date().isoformat()
    return f"{entry.file_name} was moved to trash; it will be deleted for good on {expires_on}."


class NotificationService:
    """Implements `generated.consumers.NotificationServiceHandler`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.notified = 0

    async def on_file_placed_in_trash_event(
        self, event: FilePlacedInTrashEvent, delivery: Delivery
    ) -> None:
        message = notification_text(event)
        added = await queries.add_notification(
            self._pool,
            event_id=event.event_id,
            user_id=event.data.user_id,
            trash_id=event.data.trash_id,
            message=message,
        )
        if added:
            self.notified += 1
        _log_notified(event, delivery, message, added)

    async def handle_batch(
        self, items: Sequence[tuple[FilePlacedInTrashEvent, Delivery]]
    ) -> BatchResult:
        """A notification for every trash event of the batch, in one statement."""
        notes = [
            queries.Notification(  # positional: one is made per event
                event.event_id, event.data.user_id, event.data.trash_id, notification_text(event)
            )
            for event, _ in items
        ]
        added = await queries.add_notifications(self._pool, notes)
        self.notified += added
        if len(items) == 1:
            event, delivery = items[0]
            _log_notified(event, delivery, notes[0].message, added == 1)
        else:
            _log_notified_batch(items, added)
        return BatchResult()


def _log_notified(
    event: FilePlacedInTrashEvent, delivery: Delivery, message: str, added: bool
) -> None:
    log.info(
        "🔔 %s user %s: %s [seq: %d]",
        "Notified" if added else "Already notified",
        short_id(event.data.user_id),
        message,
        delivery.stream_seq,
        extra={
            "step": "notified" if added else "already-notified",
            "event_id": str(event.event_id),
        },
    )


def _log_notified_batch(
    items: Sequence[tuple[FilePlacedInTrashEvent, Delivery]], added: int
) -> None:
    sequences = [delivery.stream_seq for _, delivery in items]
    users = len({event.data.user_id for event, _ in items})
    first, last = min(sequences), max(sequences)
    if added:
        log.info(
            "🔔 Notified users of %d files in the trash (%d users) [seq: %d..%d]",
            added,
            users,
            first,
            last,
            extra={"step": "notified", "count": added},
        )
    log_batch_count(
        log,
        "🔔 Already notified: %d trash events",
        len(items) - added,
        sequences,
        "already-notified",
    )


def _notification(resources: ServiceResources) -> NotificationServiceHandler:
    return NotificationService(resources.pool)


SERVICE: Service[NotificationServiceHandler] = Service(
    endpoint=NOTIFICATION_SERVICE,
    make_handler=_notification,
    title="Notification Service",
    just_recipe="dev-notification",
    migrations=MIGRATIONS,
)
