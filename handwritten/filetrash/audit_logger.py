"""The audit-logger: every FileDeletedEvent into `audit_log`, beside the trash-processor.

Fan-out: it has its own durable on `files.deleted`, so it sees every deletion whatever the
trash-processor does, and catches up from its own position after a restart. The unique event
id makes a redelivery a no-op.
"""

from __future__ import annotations

import logging

import asyncpg

from generated.consumers import AUDIT_LOGGER, AuditLoggerHandler
from generated.models import FileDeletedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import Delivery
from handwritten.runtime.logging import short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("audit-logger")


class AuditLogger:
    """Implements `generated.consumers.AuditLoggerHandler`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.appended = 0

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        added = await queries.append_audit_entry(
            self._pool,
            event_id=event.event_id,
            event_type=event.event_type,
            user_id=event.data.user_id,
            subject=delivery.subject,
            stream=delivery.stream,
            stream_seq=delivery.stream_seq,
            payload=event.model_dump(mode="json", by_alias=True),
        )
        if added:
            self.appended += 1
        log.info(
            "📝 %s FileDeletedEvent: %s (file: %s, user: %s) [seq: %d]",
            "Audited" if added else "Already audited",
            short_id(event.event_id),
            event.data.file_name,
            short_id(event.data.user_id),
            delivery.stream_seq,
            extra={
                "step": "audited" if added else "already-audited",
                "event_id": str(event.event_id),
            },
        )


def _audit_logger(resources: ServiceResources) -> AuditLoggerHandler:
    return AuditLogger(resources.pool)


SERVICE: Service[AuditLoggerHandler] = Service(
    endpoint=AUDIT_LOGGER,
    make_handler=_audit_logger,
    title="Audit Logger",
    just_recipe="dev-audit-logger",
    migrations=MIGRATIONS,
)
