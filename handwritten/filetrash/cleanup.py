"""The cleanup-service: queues each deleted file's storage path for the blob store.

Message filter: its durable reads `files.deleted` only, so the server never sends it the
trash or purge events. One queue entry per deletion event, however often it is delivered.
A fetched batch is queued with one statement (`handle_batch`) and logged in one line per
outcome; a batch of one is logged as the single event it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from generated.consumers import CLEANUP_SERVICE, CleanupServiceHandler
from generated.models import FileDeletedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import BatchResult, Delivery
from handwritten.runtime.logging import log_batch_count, short_id
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
        _log_queued(event, delivery, queued)

    async def handle_batch(self, items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> BatchResult:
        """Every deletion of the batch into the cleanup queue, in one statement."""
        queued = await queries.enqueue_cleanups(
            self._pool,
            [
                queries.CleanupEntry(  # positional: one is made per event
                    event.event_id,
                    event.data.file_id,
                    event.data.user_id,
                    event.data.file_path,
                    event.data.file_size,
                )
                for event, _ in items
            ],
        )
        self.queued += queued
        if len(items) == 1:
            event, delivery = items[0]
            _log_queued(event, delivery, queued == 1)
        else:
            _log_queued_batch(items, queued)
        return BatchResult()


def _log_queued(event: FileDeletedEvent, delivery: Delivery, queued: bool) -> None:
    log.info(
        "🧹 %s %s (event: %s) [seq: %d]",
        "Queued for cleanup:" if queued else "Already queued:",
        event.data.file_path,
        short_id(event.event_id),
        delivery.stream_seq,
        extra={
            "step": "queued" if queued else "already-queued",
            "event_id": str(event.event_id),
        },
    )


def _log_queued_batch(items: Sequence[tuple[FileDeletedEvent, Delivery]], queued: int) -> None:
    sequences = [delivery.stream_seq for _, delivery in items]
    log_batch_count(log, "🧹 Queued for cleanup: %d files", queued, sequences, "queued")
    log_batch_count(
        log, "🧹 Already queued: %d files", len(items) - queued, sequences, "already-queued"
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
