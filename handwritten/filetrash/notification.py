"""The notification-service: tells the user a file went to the trash, and until when.

Message filter: its durable reads `files.trashed` only. One notification per trash event,
however often it is delivered.
"""

from __future__ import annotations

import logging
from datetime import UTC

import asyncpg

from generated.consumers import NOTIFICATION_SERVICE, NotificationServiceHandler
from generated.models import FilePlacedInTrashEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import Delivery
from handwritten.runtime.logging import short_id
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


def _notification(resources: ServiceResources) -> NotificationServiceHandler:
    return NotificationService(resources.pool)


SERVICE: Service[NotificationServiceHandler] = Service(
    endpoint=NOTIFICATION_SERVICE,
    make_handler=_notification,
    title="Notification Service",
    just_recipe="dev-notification",
    migrations=MIGRATIONS,
)
