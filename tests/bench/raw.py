"""The hand-tuned raw pipelines the benchmark holds each filetrash service against.

Written straight on nats-py and asyncpg, with nothing of filetrash imported: no validation
beyond what the work itself needs (a field that is missing or unparsable dead-letters its
message), no framework, no logging per message. The same guarantees as the filetrash services:

- **Batched pulls of our own**: pull requests on `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>`
  answered on our own inbox, several messages requested ahead (`--window`), handed over in
  batches of at most `--batch`, up to `--concurrency` batches in flight.
- **One statement per batch, idempotent**: `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
  NOTHING` (the analytics counters in the same statement, so one transaction), rows in key
  order so that overlapping batches cannot deadlock.
- **The trash-processor's trash events** are built from the stored rows with the spec's
  deterministic ids (uuid5 under the spec's namespace, the deletion's eventId as
  `Nats-Msg-Id` source), all published at once, their PubAcks awaited, their sequences
  written back to the rows in one UPDATE — a repeat finds the row and republishes the same
  event (deduplicated), or nothing once the sequence is recorded.
- **Confirmed acks, last**: a message is acked only after its batch committed (and its trash
  event was acknowledged by JetStream); each ack carries a reply subject and the batch waits
  for the server to confirm every one (AckSync semantics).
- **Dead letters**: a message whose body cannot be read, or that the database refuses on its
  own (a batch refused as a whole is retried one message at a time to find it), is copied to
  `dlq.files.<durable>` with the spec's headers and termed only after the copy's PubAck.
  Anything else (database or NATS unavailable) is nak'ed for redelivery.

    python -m tests.bench.raw SERVICE NATS_URL DATABASE_URL [--batch 128] [--concurrency 3]

SERVICE is trash-processor, audit-logger, analytics-service, cleanup-service or
notification-service. Prints `ready` on stderr once it pulls; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

STREAM = "FILE_EVENTS"
TRASHED_SUBJECT = "files.trashed"
RETENTION = timedelta(days=30)
NAMESPACE_BYTES = bytes.fromhex("d485e81cbb5b5936b9e2e15401e87b48")
"""The spec's uuid5 namespace (`urn:filetrash:file-trash-service`), as bytes."""

PULL_EXPIRES = 1.0
CONFIRM_TIMEOUT = 10.0
NAK_DELAY = 1.0
RETRYABLE_SQLSTATES = ("40001", "40P01")  # serialization failure, deadlock
NAK = f'-NAK {{"delay": {int(NAK_DELAY * 1e9)}}}'.encode()


def uuid5(name: str) -> str:
    """`str(uuid.uuid5(NAMESPACE, name))`, without building UUID objects."""
    digest = bytearray(hashlib.sha1(NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def stream_seq(msg: Msg) -> int:
    """The stream sequence from the ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>...` (or the form with domain and account hash, two tokens more)."""
    tokens = msg.reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def deliveries(msg: Msg) -> int:
    tokens = msg.reply.split(".")
    return int(tokens[4] if len(tokens) == 9 else tokens[6])


def _refused(error: asyncpg.PostgresError) -> bool:
    """Refused for the data itself (classes 22 data exception, 23 integrity): it would be
    refused again at every redelivery."""
    return (getattr(error, "sqlstate", "") or "")[:2] in ("22", "23")


class Undeliverable(Exception):
    """A message this pipeline can never process: dead-letter it (reason, detail)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


# --- transport: pulls, confirmed acks, PubAcks --------------------------------------------------


class Puller:
    """Pull requests to one durable on our own inbox, `window` messages asked for ahead."""

    def __init__(self, nc: Client, durable: str, window: int, batch: int) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{durable}"
        self._inbox = nc.new_inbox()
        self._window = window
        self._batch = batch
        self.queue: deque[Msg] = deque()
        self.arrived = asyncio.Event()
        self._owed = 0
        """Messages our requests may still bring."""

    async def start(self) -> None:
        await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def top_up(self, held: int) -> None:
        """Ask for more when what is owed, queued and in hand leaves room in the window."""
        room = self._window - self._owed - len(self.queue) - held
        if room >= self._batch:
            self._owed += room
            request = {"batch": room, "expires": int(PULL_EXPIRES * 1e9)}
            await self._nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)

    async def _on_message(self, msg: Msg) -> None:
        if msg.reply:
            self.queue.append(msg)
            self._owed -= 1
        else:  # a status: 408 expired / 409 (the rest of the request is void) / 404
            headers = msg.headers or {}
            pending = headers.get("Nats-Pending-Messages")
            self._owed = max(0, self._owed - int(pending)) if pending else 0
        self.arrived.set()


class Replies:
    """Answers to our requests (confirmed acks, PubAcks) on one inbox: each group of requests
    gets a token, each answer a slot; a group's future resolves once all its slots answered."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._groups: dict[str, tuple[list[bytes | None], list[int], asyncio.Future[None]]] = {}
        self._next = 0

    async def start(self) -> None:
        await self._nc.subscribe(f"{self._prefix}.>", cb=self._on_answer)

    def group(self, size: int) -> tuple[str, list[bytes | None], asyncio.Future[None]]:
        self._next += 1
        token = str(self._next)
        answers: list[bytes | None] = [None] * size
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._groups[token] = (answers, [size], future)
        return f"{self._prefix}.{token}", answers, future

    def forget(self, inbox: str) -> None:
        self._groups.pop(inbox.rsplit(".", 1)[1], None)

    async def _on_answer(self, msg: Msg) -> None:
        _, token, slot = msg.subject.rsplit(".", 2)
        group = self._groups.get(token)
        if group is None:
            return
        answers, left, future = group
        index = int(slot)
        if answers[index] is None:
            answers[index] = msg.data
            left[0] -= 1
            if left[0] == 0:
                del self._groups[token]
                if not future.done():
                    future.set_result(None)

    async def ask(
        self, sends: Sequence[tuple[str, bytes, dict[str, str] | None]], timeout: float
    ) -> list[bytes | None]:
        """Publish each (subject, payload, headers) with a reply subject of ours; the answers
        in order (None where none came within `timeout`)."""
        if not sends:
            return []
        inbox, answers, future = self.group(len(sends))
        publish = self._nc.publish
        for i, (subject, payload, headers) in enumerate(sends):
            await publish(subject, payload, reply=f"{inbox}.{i}", headers=headers)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(future, timeout)
        self.forget(inbox)
        return answers


async def confirmed(replies: Replies, msgs: Sequence[Msg], verb: bytes) -> int:
    """Ack (or term) each message with a reply subject; how many the server confirmed."""
    answers = await replies.ask([(m.reply, verb, None) for m in msgs], CONFIRM_TIMEOUT)
    return sum(a is not None for a in answers)


def pub_ack_seq(answer: bytes | None) -> int | None:
    """The stream sequence of a PubAck, None for an error or no answer."""
    if answer is None:
        return None
    reply = json.loads(answer)
    return None if "error" in reply else int(reply["seq"])


# --- the services' work ------------------------------------------------------------------------


@dataclass
class Work:
    """What one service does with a batch: read each message (or raise Undeliverable), then
    do the batch's work on a connection; `store` returns the indexes that failed."""

    durable: str
    read: Callable[[Msg], Any]
    store: Callable[[asyncpg.Connection, Replies, list[Any]], Awaitable[set[int]]]


def _json(msg: Msg) -> dict[str, Any]:
    try:
        event = json.loads(msg.data)
    except ValueError as error:
        raise Undeliverable("invalid-json", str(error)) from None
    if not isinstance(event, dict):
        raise Undeliverable("schema-invalid", "not an object")
    return event


def _fields(msg: Msg, read: Callable[[dict[str, Any]], tuple[Any, ...]]) -> tuple[Any, ...]:
    event = _json(msg)
    try:
        return read(event)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Undeliverable("schema-invalid", f"{type(error).__name__}: {error}") from None


# trash-processor


TRASH_INSERT = """
WITH ins AS (
    INSERT INTO trashed_files (id, file_id, file_name, file_path, file_size, mime_type, user_id,
                               trashed_at, expires_at, original_event_id, traceparent)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[],
                         $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[],
                         $10::uuid[], $11::text[])
    ON CONFLICT (original_event_id) DO NOTHING
    RETURNING original_event_id, stored_at, trash_event_seq
)
SELECT original_event_id::text AS oid, stored_at, trash_event_seq FROM ins
UNION ALL
SELECT original_event_id::text, stored_at, trash_event_seq FROM trashed_files
WHERE original_event_id = ANY($10::uuid[])
"""
"""One statement: the rows inserted now, and (from the statement's snapshot, which does not
hold them) those stored before — one round trip and one commit for the whole batch."""

TRASH_FIND = """
SELECT original_event_id::text AS oid, stored_at, trash_event_seq FROM trashed_files
WHERE original_event_id = ANY($1::uuid[])
"""

TRASH_MARK = """
UPDATE trashed_files SET trash_event_seq = ($2::bigint[])[array_position($1::uuid[], id)]
WHERE id = ANY($1::uuid[]) AND trash_event_seq IS NULL
"""
"""Through the primary key: a join on unnest(...) is planned as a scan of the whole table
when the statistics are stale (found by the trash-processor's own EXPLAIN ANALYZE)."""


def _read_deletion(event: dict[str, Any], msg: Msg) -> tuple[Any, ...]:
    file = event["data"]
    event_id = event["eventId"].lower()
    deleted_at = datetime.fromisoformat(file["deletedAt"])
    if deleted_at.tzinfo is None:
        raise ValueError("deletedAt has no time zone")
    traceparent = msg.headers.get("traceparent") if msg.headers else None
    return (
        uuid5(f"trash:{event_id}"),
        file["fileId"],
        file["fileName"],
        file["filePath"],
        file["fileSize"],
        file["mimeType"],
        file["userId"],
        deleted_at,
        deleted_at + RETENTION,
        event_id,
        traceparent,
    )


async def store_trash(conn: asyncpg.Connection, replies: Replies, rows: list[Any]) -> set[int]:
    first: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        first.setdefault(row[9], row)
    batch = sorted(first.values(), key=lambda r: r[9])
    columns = [list(c) for c in zip(*batch, strict=True)]
    stored = {r["oid"]: r for r in await conn.fetch(TRASH_INSERT, *columns)}
    missing = [oid for oid in first if oid not in stored]
    if missing:  # stored meanwhile by a competing batch: its commit is visible now
        stored.update((r["oid"], r) for r in await conn.fetch(TRASH_FIND, missing))
    sends: list[tuple[str, bytes, dict[str, str] | None]] = []
    unsent: list[str] = []
    for row in batch:
        oid = row[9]
        record = stored.get(oid)
        if record is None or record["trash_event_seq"] is not None:
            continue  # purged since (nothing to describe it), or announced before
        trash_event_id = uuid5(f"trashed:{oid}")
        event = {
            "eventId": trash_event_id,
            "eventType": "FilePlacedInTrashEvent",
            "timestamp": record["stored_at"].isoformat(),
            "data": {
                "trashId": row[0],
                "fileId": row[1],
                "fileName": row[2],
                "userId": row[6],
                "trashedAt": row[7].isoformat(),
                "expiresAt": row[8].isoformat(),
                "originalEventId": oid,
            },
        }
        headers = {"Nats-Msg-Id": trash_event_id}
        if row[10]:
            headers["traceparent"] = row[10]
        sends.append((TRASHED_SUBJECT, json.dumps(event).encode(), headers))
        unsent.append(oid)
    answers = await replies.ask(sends, CONFIRM_TIMEOUT)
    marked: list[tuple[str, int]] = []
    failed_oids: set[str] = {oid for oid in first if oid not in stored}
    for oid, answer in zip(unsent, answers, strict=True):
        seq = pub_ack_seq(answer)
        if seq is None:
            failed_oids.add(oid)
        else:
            marked.append((first[oid][0], seq))
    if marked:
        marked.sort()
        await conn.execute(TRASH_MARK, [m[0] for m in marked], [m[1] for m in marked])
    return {i for i, row in enumerate(rows) if row[9] in failed_oids}


# audit-logger

AUDIT_INSERT = """
INSERT INTO audit_log (event_id, event_type, user_id, subject, stream, stream_seq, payload)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                     $7::jsonb[])
ON CONFLICT (event_id) DO NOTHING
"""


def _read_audit(event: dict[str, Any], msg: Msg) -> tuple[Any, ...]:
    return (
        event["eventId"],
        event["eventType"],
        event["data"]["userId"],
        msg.subject,
        STREAM,
        stream_seq(msg),
        msg.data.decode(),
    )


# cleanup-service

CLEANUP_INSERT = """
INSERT INTO cleanup_queue (event_id, file_id, user_id, file_path, file_size)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (event_id) DO NOTHING
"""


def _read_cleanup(event: dict[str, Any], msg: Msg) -> tuple[Any, ...]:
    file = event["data"]
    return (event["eventId"], file["fileId"], file["userId"], file["filePath"], file["fileSize"])


# notification-service

NOTIFY_INSERT = """
INSERT INTO user_notifications (event_id, user_id, trash_id, message)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[])
ON CONFLICT (event_id) DO NOTHING
"""


def _read_notification(event: dict[str, Any], msg: Msg) -> tuple[Any, ...]:
    entry = event["data"]
    expires_on = datetime.fromisoformat(entry["expiresAt"]).astimezone(UTC).date().isoformat()
    message = (
        f"{entry['fileName']} was moved to trash; it will be deleted for good on {expires_on}."
    )
    return (event["eventId"], entry["userId"], entry["trashId"], message)


# analytics-service

ANALYTICS_COUNT = """
WITH new AS (
    INSERT INTO analytics_processed_events (event_id, event_type, user_id, stream_seq)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, event_type, user_id
), sized AS (
    SELECT new.event_type, new.user_id, s.bytes
    FROM new JOIN unnest($1::uuid[], $5::bigint[]) AS s(event_id, bytes) USING (event_id)
), by_type AS (
    INSERT INTO analytics_event_counts AS c (event_type, events, bytes)
    SELECT event_type, count(*), sum(bytes) FROM sized GROUP BY event_type ORDER BY event_type
    ON CONFLICT (event_type)
    DO UPDATE SET events = c.events + EXCLUDED.events, bytes = c.bytes + EXCLUDED.bytes
)
INSERT INTO analytics_user_counts AS c (user_id, event_type, events, bytes)
SELECT user_id, event_type, count(*), sum(bytes) FROM sized
GROUP BY user_id, event_type ORDER BY user_id, event_type
ON CONFLICT (user_id, event_type)
DO UPDATE SET events = c.events + EXCLUDED.events, bytes = c.bytes + EXCLUDED.bytes
"""
"""The processed events and both counters in one statement, so in one transaction: an event
is counted exactly when its processed-event row is new."""

ANALYTICS_TYPES = {"FileDeletedEvent", "FilePlacedInTrashEvent", "FilePurgedEvent"}


def _read_analytics(event: dict[str, Any], msg: Msg) -> tuple[Any, ...]:
    event_type = event.get("eventType")
    if event_type not in ANALYTICS_TYPES:
        raise Undeliverable("unknown-event-type", f"eventType {event_type!r}")
    size = event["data"]["fileSize"] if event_type == "FileDeletedEvent" else 0
    return (event["eventId"], event_type, event["data"]["userId"], stream_seq(msg), size)


def _insert_all(sql: str, key: int = 0) -> Callable[..., Awaitable[set[int]]]:
    async def store(conn: asyncpg.Connection, replies: Replies, rows: list[Any]) -> set[int]:
        first: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            first.setdefault(row[key], row)
        batch = sorted(first.values(), key=lambda r: r[key])
        await conn.execute(sql, *(list(c) for c in zip(*batch, strict=True)))
        return set()

    return store


def _reader(read: Callable[[dict[str, Any], Msg], tuple[Any, ...]]) -> Callable[[Msg], Any]:
    return lambda msg: _fields(msg, lambda event: read(event, msg))


WORK: dict[str, Work] = {
    "trash-processor": Work("trash-processor", _reader(_read_deletion), store_trash),
    "audit-logger": Work("audit-logger", _reader(_read_audit), _insert_all(AUDIT_INSERT)),
    "analytics-service": Work(
        "analytics-service", _reader(_read_analytics), _insert_all(ANALYTICS_COUNT)
    ),
    "cleanup-service": Work("cleanup-service", _reader(_read_cleanup), _insert_all(CLEANUP_INSERT)),
    "notification-service": Work(
        "notification-service", _reader(_read_notification), _insert_all(NOTIFY_INSERT)
    ),
}


# --- the loop ----------------------------------------------------------------------------------


class Pipeline:
    def __init__(
        self, nc: Client, pool: asyncpg.Pool, work: Work, *, batch: int, concurrency: int
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.pool = pool
        self.work = work
        self.batch = batch
        self.concurrency = concurrency
        self.puller = Puller(nc, work.durable, window=batch * (concurrency + 1), batch=batch)
        self.replies = Replies(nc)
        self.held = 0
        self.done = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.room = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        await self.puller.start()
        await self.replies.start()
        await self.puller.top_up(0)
        print("ready", file=sys.stderr, flush=True)
        queue = self.puller.queue
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            if not queue:
                self.puller.arrived.clear()
                arrived = asyncio.ensure_future(self.puller.arrived.wait())
                await asyncio.wait(
                    [arrived, stopping], timeout=PULL_EXPIRES, return_when="FIRST_COMPLETED"
                )
                arrived.cancel()
                await self.puller.top_up(self.held)
                continue
            if len(queue) < self.batch:
                await asyncio.sleep(0.001)  # let the rest of a burst be read
            while len(self.tasks) >= self.concurrency:
                self.room.clear()
                await self.room.wait()
            msgs = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
            self.held += len(msgs)
            task = asyncio.create_task(self.process(msgs))
            self.tasks.add(task)
            task.add_done_callback(self._finished)
            await self.puller.top_up(self.held)
        stopping.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        while queue:  # taken but never handed over: back to the server at once
            await self.nc.publish(queue.popleft().reply, b"-NAK")

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.room.set()
        if not task.cancelled() and task.exception() is not None:
            print(f"batch failed: {task.exception()!r}", file=sys.stderr, flush=True)

    async def process(self, msgs: list[Msg]) -> None:
        try:
            good: list[Msg] = []
            rows: list[Any] = []
            bad: list[tuple[Msg, Undeliverable]] = []
            for msg in msgs:
                try:
                    rows.append(self.work.read(msg))
                    good.append(msg)
                except Undeliverable as error:
                    bad.append((msg, error))
            retry: set[int] = set()
            refused: dict[int, Undeliverable] = {}
            if good:
                retry, refused = await self._store(rows)
            done = [m for i, m in enumerate(good) if i not in retry and i not in refused]
            await confirmed(self.replies, done, b"+ACK")
            self.done += len(done)
            for i in sorted(retry):
                await self.nc.publish(good[i].reply, NAK)
            bad += [(good[i], error) for i, error in refused.items()]
            for msg, error in bad:
                await self._dead_letter(msg, error)
        finally:
            self.held -= len(msgs)

    async def _attempt(self, rows: list[Any]) -> set[int]:
        for attempt in range(3):
            try:
                async with self.pool.acquire() as conn:
                    return await self.work.store(conn, self.replies, rows)
            except asyncpg.PostgresError as error:
                if getattr(error, "sqlstate", None) in RETRYABLE_SQLSTATES and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")

    async def _store(self, rows: list[Any]) -> tuple[set[int], dict[int, Undeliverable]]:
        """The batch's work: (indexes to retry, indexes the database refuses for their data).
        A batch refused for its data is done again one message at a time, to find them."""
        everything = set(range(len(rows)))
        try:
            return await self._attempt(rows), {}
        except asyncpg.PostgresError as error:
            if not _refused(error):
                return everything, {}
        except (OSError, asyncpg.InterfaceError, TimeoutError):
            return everything, {}
        retry: set[int] = set()
        refused: dict[int, Undeliverable] = {}
        for i, row in enumerate(rows):
            try:
                if await self._attempt([row]):
                    retry.add(i)
            except asyncpg.PostgresError as error:
                if _refused(error):
                    refused[i] = Undeliverable("permanent-error", str(error))
                else:
                    retry.add(i)
            except (OSError, asyncpg.InterfaceError, TimeoutError):
                retry.add(i)
        return retry, refused

    async def _dead_letter(self, msg: Msg, error: Undeliverable) -> None:
        seq = stream_seq(msg)
        headers = {
            "Nats-Msg-Id": f"dlq:{STREAM}:{self.work.durable}:{seq}",
            "Filetrash-Dlq-Reason": error.reason,
            "Filetrash-Dlq-Detail": " ".join(str(error).split())[:500] or error.reason,
            "Filetrash-Dlq-Stream": STREAM,
            "Filetrash-Dlq-Subject": msg.subject,
            "Filetrash-Dlq-Sequence": str(seq),
            "Filetrash-Dlq-Consumer": self.work.durable,
            "Filetrash-Dlq-Deliveries": str(deliveries(msg)),
        }
        try:
            await self.js.publish(f"dlq.files.{self.work.durable}", msg.data, headers=headers)
        except Exception as failure:  # not copied: keep the original
            print(f"dead letter failed: {failure!r}", file=sys.stderr, flush=True)
            await self.nc.publish(msg.reply, b"-NAK")
            return
        await confirmed(self.replies, [msg], b"+TERM")


async def serve(
    service: str, nats_url: str, database_url: str, batch: int, concurrency: int
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(nats_url, name=f"bench raw {service}")
    pool = await asyncpg.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    pipeline = Pipeline(nc, pool, WORK[service], batch=batch, concurrency=concurrency)
    try:
        await pipeline.run(stop)
    finally:
        await nc.drain()
        await pool.close()
    print(f"done={pipeline.done}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.raw", description=__doc__)
    parser.add_argument("service", choices=sorted(WORK))
    parser.add_argument("nats_url")
    parser.add_argument("database_url")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    return asyncio.run(
        serve(args.service, args.nats_url, args.database_url, args.batch, args.concurrency)
    )


if __name__ == "__main__":
    sys.exit(main())
