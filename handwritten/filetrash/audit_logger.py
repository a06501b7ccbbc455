"""The audit-logger: every FileDeletedEvent into `audit_log`, beside the trash-processor.

Fan-out: it has its own durable on `files.deleted`, so it sees every deletion whatever the
trash-processor does, and catches up from its own position after a restart. The unique event
id makes a redelivery a no-op. A fetched batch goes in with one statement (`handle_batch`),
and is logged as one line per outcome; a batch of one is logged as the single event it is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from generated.consumers import AUDIT_LOGGER, AuditLoggerHandler
from generated.models import FileDeletedEvent
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.runtime.contract import BatchResult, Delivery
from handwritten.runtime.logging import log_batch_count, short_id
from handwritten.runtime.registry import Service, ServiceResources

log = logging.getLogger("audit-logger")


def as_sent(event: FileDeletedEvent, delivery: Delivery) -> str:
    """The event as JSON text, as it was sent: the bytes it was decoded from (valid UTF-8
    JSON, or it would not have decoded), or, for a delivery made without them, the event
    serialised as its publisher does."""
    if delivery.payload:
        return delivery.payload.decode()
    return event.model_dump_json(by_alias=True)


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
            payload=as_sent(event, delivery),
        )
        if added:
            self.appended += 1
        _log_audited(event, delivery, added)

    async def handle_batch(self, items: Sequence[tuple[FileDeletedEvent, Delivery]]) -> BatchResult:
        """Every deletion of the batch into the audit log, in one statement."""
        added = await queries.append_audit_entries(
            self._pool,
            [
                queries.AuditEntry(  # positional: one is made per event
                    event.event_id,
                    event.event_type,
                    event.data.user_id,
                    delivery.subject,
                    delivery.stream,
                    delivery.stream_seq,
                    as_sent(event, delivery),
                )
                for event, delivery in items
            ],
        )
        self.appended += added
        if len(items) == 1:
            event, delivery = items[0]
            _log_audited(event, delivery, added == 1)
        else:
            _log_audited_batch(items, added)
        return BatchResult()


def _log_audited(event: FileDeletedEvent, delivery: Delivery, added: bool) -> None:
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


def _log_audited_batch(items: Sequence[tuple[FileDeletedEvent, Delivery]], added: int) -> None:
    sequences = [delivery.stream_seq for _, delivery in items]
    log_batch_count(log, "📝 Audited FileDeletedEvent: %d events", added, sequences, "audited")
    log_batch_count(
        log,
        "📝 Already audited FileDeletedEvent: %d events",
        len(items) - added,
        sequences,
        "already-audited",
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
