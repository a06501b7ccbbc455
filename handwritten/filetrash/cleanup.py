"""The cleanup-service: queues each deleted file's storage path for the blob store.

Message filter: its durable reads `files.deleted` only, so the server never sends it the
trash or purge events. One queue entry per deletion event, however often it is delivered.
"""

from __future__ import annotations

import logging

import asyncpg

from generated.consumers import CLEANUP_SERVICE, CleanupServiceHandler
from generated.models import FileDeletedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import Delivery
from handwritten.runtime.logging import short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("cleanup-service")


class CleanupService:
    """Implements `generated.consumers.CleanupServiceHandler`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.queued = 0

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        file = event.data
        queued = await queries.enqueue_cleanup(
            self._pool,
            event_id=event.event_id,
            file_id=file.file_id,
            user_id=file.user_id,
            file_path=file.file_path,
            file_size=file.file_size,
        )
        if queued:
            self.queued += 1
        log.info(
            "🧹 %s %s (event: %s) [seq: %d]",
            "Queued for cleanup:" if queued else "Already queued:",
            file.file_path,
            short_id(event.event_id),
            delivery.stream_seq,
            extra={
                "step": "queued" if queued else "already-queued",
                "event_id": str(event.event_id),
            },
        )


def _cleanup(resources: ServiceResources) -> CleanupServiceHandler:
    return CleanupService(resources.pool)


SERVICE: Service[CleanupServiceHandler] = Service(
    endpoint=CLEANUP_SERVICE,
    make_handler=_cleanup,
    title="Cleanup Service",
    just_recipe="dev-cleanup",
    migrations=MIGRATIONS,
)
