"""The FastStream 0.7 contenders: each filetrash service's work, written the way a good
FastStream user would write it, with nothing of filetrash imported.

Per service: its own Pydantic models of the payloads (camelCase aliases, closed, typed), a
batch pull subscriber bound to the service's durable (`PullSub(batch=True)`), the batch's rows
in one idempotent statement (the same SQL as the raw pipeline, `tests/bench/raw.py`), and
manual acks (`AckPolicy.MANUAL`), confirmed by the server (`ack_sync`), sent only after the
commit and, for the trash-processor, after every trash event's PubAck — the trash events
published through the broker's JetStream publisher with the spec's deterministic
`Nats-Msg-Id`, their sequences written back to the rows.

One patch (`_fetch_timeouts_as_nats_errors`): a timeout mismatch between FastStream 0.7.8
and nats-py 2.16 that otherwise stalls a run for an ack wait now and then.

What FastStream does not give and this app does not add: dead letters. A message that fails
validation fails its whole batch, which stays unacked and is redelivered after the ack wait
(up to the durable's max_deliver); the benchmark publishes none.

    python -m tests.bench.faststream_app SERVICE NATS_URL DATABASE_URL [--batch 64]

Prints `ready` on stderr once its subscriber runs; stops on SIGTERM (FastStream's own handler).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, timedelta
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID, uuid5

import asyncpg
import nats.errors
import nats.js
from faststream import AckPolicy, Context, ContextRepo, FastStream
from faststream.message import StreamMessage
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tests.bench.raw import (
    ANALYTICS_COUNT,
    AUDIT_INSERT,
    CLEANUP_INSERT,
    NOTIFY_INSERT,
    TRASH_MARK,
)

NAMESPACE = UUID("d485e81c-bb5b-5936-b9e2-e15401e87b48")
RETENTION = timedelta(days=30)
STREAM = JStream("FILE_EVENTS", declare=False)
PULL_TIMEOUT = 0.5
"""Seconds to fill a batch (FastStream's default is 5): the last partial batch of a burst
waits this long."""


def _fetch_timeouts_as_nats_errors() -> None:
    """Work around a mismatch between FastStream 0.7.8 and nats-py 2.16, as a user who met it
    would: FastStream's batch pull loop ends a batch on `nats.errors.TimeoutError`, but
    nats-py raises the builtin `TimeoutError` when a fetch's time runs out right after its
    no-wait probe. Unpatched, the loop task dies there (FastStream's supervisor restarts it)
    and the messages it had fetched for the batch wait out the ack wait: 30 s lost, seen in
    about one run in three with a 0.5 s batch timeout on a busy machine."""
    pull_subscription = nats.js.JetStreamContext.PullSubscription
    fetch = pull_subscription.fetch

    async def fetch_or_nats_timeout(self: Any, *args: Any, **kwargs: Any) -> list[Msg]:
        try:
            return await fetch(self, *args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as error:
            raise nats.errors.TimeoutError from error

    pull_subscription.fetch = fetch_or_nats_timeout  # type: ignore[method-assign]


# --- the payloads ------------------------------------------------------------------------------


class Payload(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


UserId = Annotated[str, Field(min_length=1, max_length=64)]
FileName = Annotated[str, Field(min_length=1, max_length=255)]


class DeletedFile(Payload):
    file_id: UUID
    file_name: FileName
    file_path: str = Field(min_length=2, max_length=4096)
    file_size: int = Field(ge=0, le=1 << 40)
    mime_type: str = Field(min_length=3, max_length=255)
    user_id: UserId
    deleted_at: AwareDatetime


class FileDeleted(Payload):
    event_id: UUID
    event_type: Literal["FileDeletedEvent"]
    timestamp: AwareDatetime
    data: DeletedFile


class TrashEntry(Payload):
    trash_id: UUID
    file_id: UUID
    file_name: FileName
    user_id: UserId
    trashed_at: AwareDatetime
    expires_at: AwareDatetime
    original_event_id: UUID


class FilePlacedInTrash(Payload):
    event_id: UUID
    event_type: Literal["FilePlacedInTrashEvent"]
    timestamp: AwareDatetime
    data: TrashEntry


class PurgedFile(Payload):
    trash_id: UUID
    file_id: UUID
    file_name: FileName
    file_path: str = Field(min_length=2, max_length=4096)
    user_id: UserId
    purged_at: AwareDatetime
    original_event_id: UUID


class FilePurged(Payload):
    event_id: UUID
    event_type: Literal["FilePurgedEvent"]
    timestamp: AwareDatetime
    data: PurgedFile


FileEvent = Annotated[
    FileDeleted | FilePlacedInTrash | FilePurged, Field(discriminator="event_type")
]

Pool = Annotated[asyncpg.Pool, Context("pool")]
Batch = Annotated[StreamMessage[list[Msg]], Context("message")]


async def ack_confirmed(message: StreamMessage[list[Msg]]) -> None:
    """Every message of the batch acked, and each ack confirmed by the server."""
    await asyncio.gather(*(m.ack_sync() for m in message.raw_message))


# --- the services ------------------------------------------------------------------------------

TRASH_INSERT = """
INSERT INTO trashed_files (id, file_id, file_name, file_path, file_size, mime_type, user_id,
                           trashed_at, expires_at, original_event_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                     $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::uuid[])
ON CONFLICT (original_event_id) DO NOTHING
RETURNING id, file_id, file_name, user_id, trashed_at, expires_at, original_event_id,
          stored_at, trash_event_seq
"""
TRASH_FIND = """
SELECT id, file_id, file_name, user_id, trashed_at, expires_at, original_event_id, stored_at,
       trash_event_seq
FROM trashed_files WHERE original_event_id = ANY($1::uuid[])
"""


T = TypeVar("T")


def once_each(items: Iterable[T], event_id: Callable[[T], UUID]) -> list[T]:
    """Each event of a batch once, in event id order (one row per key in a statement; locks
    taken in one order by overlapping batches)."""
    return sorted({event_id(item): item for item in items}.values(), key=event_id)


def build(service: str, nats_url: str, database_url: str, batch: int) -> FastStream:
    broker = NatsBroker(nats_url)
    app = FastStream(broker)

    @app.on_startup
    async def connect(context: ContextRepo) -> None:
        context.set_global("pool", await asyncpg.create_pool(database_url, min_size=2))

    @app.after_startup
    async def ready() -> None:
        print("ready", file=sys.stderr, flush=True)

    @app.on_shutdown
    async def disconnect(pool: Pool) -> None:
        await pool.close()

    def subscriber(subject: str, durable: str) -> Any:
        return broker.subscriber(
            subject,
            stream=STREAM,
            durable=durable,
            pull_sub=PullSub(batch_size=batch, timeout=PULL_TIMEOUT, batch=True),
            ack_policy=AckPolicy.MANUAL,
        )

    if service == "trash-processor":
        trashed = broker.publisher("files.trashed", stream=STREAM)

        @subscriber("files.deleted", "trash-processor")
        async def place_in_trash(events: list[FileDeleted], message: Batch, pool: Pool) -> None:
            unique = once_each(events, lambda e: e.event_id)
            trash_ids = [uuid5(NAMESPACE, f"trash:{e.event_id}") for e in unique]
            rows = await pool.fetch(
                TRASH_INSERT,
                trash_ids,
                [e.data.file_id for e in unique],
                [e.data.file_name for e in unique],
                [e.data.file_path for e in unique],
                [e.data.file_size for e in unique],
                [e.data.mime_type for e in unique],
                [e.data.user_id for e in unique],
                [e.data.deleted_at for e in unique],
                [e.data.deleted_at + RETENTION for e in unique],
                [e.event_id for e in unique],
            )
            if len(rows) < len(unique):  # some were stored before: announce them as stored
                rows = await pool.fetch(TRASH_FIND, [e.event_id for e in unique])
            unsent = [row for row in rows if row["trash_event_seq"] is None]
            acks = await asyncio.gather(
                *(
                    trashed.publish(
                        trash_event(row),
                        headers={
                            "Nats-Msg-Id": str(
                                uuid5(NAMESPACE, f"trashed:{row['original_event_id']}")
                            )
                        },
                    )
                    for row in unsent
                )
            )
            marks = sorted((row["id"], ack.seq) for row, ack in zip(unsent, acks, strict=True))
            await pool.execute(TRASH_MARK, [m[0] for m in marks], [m[1] for m in marks])
            await ack_confirmed(message)

    elif service == "audit-logger":

        @subscriber("files.deleted", "audit-logger")
        async def audit(events: list[FileDeleted], message: Batch, pool: Pool) -> None:
            raws = message.raw_message
            unique = once_each(zip(events, raws, strict=True), lambda p: p[0].event_id)
            await pool.execute(
                AUDIT_INSERT,
                [e.event_id for e, _ in unique],
                [e.event_type for e, _ in unique],
                [e.data.user_id for e, _ in unique],
                [m.subject for _, m in unique],
                [m.metadata.stream for _, m in unique],
                [m.metadata.sequence.stream for _, m in unique],
                [e.model_dump_json() for e, _ in unique],
            )
            await ack_confirmed(message)

    elif service == "analytics-service":

        @subscriber("files.>", "analytics-service")
        async def count(events: list[FileEvent], message: Batch, pool: Pool) -> None:
            raws = message.raw_message
            unique = once_each(zip(events, raws, strict=True), lambda p: p[0].event_id)
            await pool.execute(
                ANALYTICS_COUNT,
                [e.event_id for e, _ in unique],
                [e.event_type for e, _ in unique],
                [e.data.user_id for e, _ in unique],
                [m.metadata.sequence.stream for _, m in unique],
                [e.data.file_size if isinstance(e, FileDeleted) else 0 for e, _ in unique],
            )
            await ack_confirmed(message)

    elif service == "cleanup-service":

        @subscriber("files.deleted", "cleanup-service")
        async def queue_cleanup(events: list[FileDeleted], message: Batch, pool: Pool) -> None:
            unique = once_each(events, lambda e: e.event_id)
            await pool.execute(
                CLEANUP_INSERT,
                [e.event_id for e in unique],
                [e.data.file_id for e in unique],
                [e.data.user_id for e in unique],
                [e.data.file_path for e in unique],
                [e.data.file_size for e in unique],
            )
            await ack_confirmed(message)

    elif service == "notification-service":

        @subscriber("files.trashed", "notification-service")
        async def notify(events: list[FilePlacedInTrash], message: Batch, pool: Pool) -> None:
            unique = once_each(events, lambda e: e.event_id)
            await pool.execute(
                NOTIFY_INSERT,
                [e.event_id for e in unique],
                [e.data.user_id for e in unique],
                [e.data.trash_id for e in unique],
                [notification_text(e) for e in unique],
            )
            await ack_confirmed(message)

    else:
        raise SystemExit(f"unknown service {service!r}")
    return app


def trash_event(row: asyncpg.Record) -> FilePlacedInTrash:
    return FilePlacedInTrash(
        event_id=uuid5(NAMESPACE, f"trashed:{row['original_event_id']}"),
        event_type="FilePlacedInTrashEvent",
        timestamp=row["stored_at"],
        data=TrashEntry(
            trash_id=row["id"],
            file_id=row["file_id"],
            file_name=row["file_name"],
            user_id=row["user_id"],
            trashed_at=row["trashed_at"],
            expires_at=row["expires_at"],
            original_event_id=row["original_event_id"],
        ),
    )


def notification_text(event: FilePlacedInTrash) -> str:
    expires_on = event.data.expires_at.astimezone(UTC).date().isoformat()
    return (
        f"{event.data.file_name} was moved to trash; it will be deleted for good on {expires_on}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.faststream_app")
    parser.add_argument(
        "service",
        choices=(
            "trash-processor",
            "audit-logger",
            "analytics-service",
            "cleanup-service",
            "notification-service",
        ),
    )
    parser.add_argument("nats_url")
    parser.add_argument("database_url")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    _fetch_timeouts_as_nats_errors()
    app = build(args.service, args.nats_url, args.database_url, args.batch)
    asyncio.run(app.run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
