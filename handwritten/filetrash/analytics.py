"""The analytics-service: counts per event type and per user, and bytes trashed.

It reads `files.>` (message filter) and the generated dispatcher routes each event on its
`eventType` to one of the typed methods below (content-based router); an unknown type never
reaches them, the consume loop dead-letters it. The processed event id is recorded in the same
transaction as the counters, so a redelivered event is counted once.
"""

from __future__ import annotations

import logging
from uuid import UUID

import asyncpg

from generated.consumers import ANALYTICS_SERVICE, AnalyticsServiceHandler
from generated.models import FileDeletedEvent, FilePlacedInTrashEvent, FilePurgedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import Delivery
from handwritten.runtime.logging import short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("analytics-service")


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class AnalyticsService:
    """Implements `generated.consumers.AnalyticsServiceHandler`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.counted: dict[str, int] = {}

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        await self._count(
            event.event_id, event.event_type, event.data.user_id, delivery, event.data.file_size
        )

    async def on_file_placed_in_trash_event(
        self, event: FilePlacedInTrashEvent, delivery: Delivery
    ) -> None:
        await self._count(event.event_id, event.event_type, event.data.user_id, delivery, 0)

    async def on_file_purged_event(self, event: FilePurgedEvent, delivery: Delivery) -> None:
        await self._count(event.event_id, event.event_type, event.data.user_id, delivery, 0)

    async def _count(
        self, event_id: UUID, event_type: str, user_id: str, delivery: Delivery, size: int
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            counted = await queries.count_event(
                conn,
                event_id=event_id,
                event_type=event_type,
                user_id=user_id,
                stream_seq=delivery.stream_seq,
                bytes_trashed=size,
            )
        if counted:
            self.counted[event_type] = self.counted.get(event_type, 0) + 1
        trashed = f", {human_bytes(size)} trashed" if size else ""
        log.info(
            "📊 %s %s: %s (user: %s%s) [seq: %d]",
            "Counted" if counted else "Already counted",
            event_type,
            short_id(event_id),
            short_id(user_id),
            trashed,
            delivery.stream_seq,
            extra={
                "step": "counted" if counted else "already-counted",
                "event_id": str(event_id),
                "event_type": event_type,
            },
        )


def _analytics(resources: ServiceResources) -> AnalyticsServiceHandler:
    return AnalyticsService(resources.pool)


SERVICE: Service[AnalyticsServiceHandler] = Service(
    endpoint=ANALYTICS_SERVICE,
    make_handler=_analytics,
    title="Analytics Service",
    just_recipe="dev-analytics",
    migrations=MIGRATIONS,
)
