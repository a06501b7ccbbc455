"""The analytics-service: counts per event type and per user, and bytes trashed.

It reads `files.>` (message filter) and the generated dispatcher routes each event on its
`eventType` to one of the typed methods below (content-based router); an unknown type never
reaches them, the consume loop dead-letters it. The processed event id is recorded in the same
transaction as the counters, so a redelivered event is counted once.

A fetched batch (`handle_batch`) is counted in one transaction of three statements, whatever
its size; each event is still routed on its type (`_measure`) for its user and its bytes. It
is logged as one line per event type; a batch of one as the single event it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from uuid import UUID

import asyncpg

from generated.consumers import ANALYTICS_SERVICE, AnalyticsServiceEvent, AnalyticsServiceHandler
from generated.models import FileDeletedEvent, FilePlacedInTrashEvent, FilePurgedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import BatchResult, Delivery
from handwritten.runtime.logging import log_batch_count, short_id
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
        _log_counted(event_id, event_type, user_id, delivery, size, counted)

    async def handle_batch(
        self, items: Sequence[tuple[AnalyticsServiceEvent, Delivery]]
    ) -> BatchResult:
        """Count a whole batch at once: one statement, whatever the mix of types."""
        events = []
        for event, delivery in items:
            user_id, size = _measure(event)
            events.append(
                queries.CountedEvent(  # positional: one is made per event
                    event.event_id, event.event_type, user_id, delivery.stream_seq, size
                )
            )
        new = await queries.count_events(self._pool, events)
        for event_type, count in new.items():
            self.counted[event_type] = self.counted.get(event_type, 0) + count
        if len(items) == 1:
            e, delivery = events[0], items[0][1]
            _log_counted(
                e.event_id,
                e.event_type,
                e.user_id,
                delivery,
                e.bytes_trashed,
                bool(new),
            )
        else:
            _log_counted_batch(items, events, new)
        return BatchResult()


def _measure(event: AnalyticsServiceEvent) -> tuple[str, int]:
    """(user, bytes trashed) of an event, by its type."""
    match event:
        case FileDeletedEvent():
            return event.data.user_id, event.data.file_size
        case FilePlacedInTrashEvent() | FilePurgedEvent():
            return event.data.user_id, 0


def _log_counted(
    event_id: UUID, event_type: str, user_id: str, delivery: Delivery, size: int, counted: bool
) -> None:
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


def _log_counted_batch(
    items: Sequence[tuple[AnalyticsServiceEvent, Delivery]],
    events: Sequence[queries.CountedEvent],
    new: dict[str, int],
) -> None:
    sequences = [delivery.stream_seq for _, delivery in items]
    first, last = min(sequences), max(sequences)
    for event_type, count in sorted(new.items()):
        size = sum(e.bytes_trashed for e in events if e.event_type == event_type)
        trashed = f" ({human_bytes(size)} trashed)" if size else ""
        log.info(
            "📊 Counted %s: %d events%s [seq: %d..%d]",
            event_type,
            count,
            trashed,
            first,
            last,
            extra={"step": "counted", "count": count, "event_type": event_type},
        )
    log_batch_count(
        log,
        "📊 Already counted: %d events",
        len(items) - sum(new.values()),
        sequences,
        "already-counted",
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
