"""The two yardsticks the benchmark holds filetrash against, each run as its own process.

- `ceiling`: a raw nats-py pull consumer that fetches in batches and acks, nothing else: no
  decoding, no database. No consumer of this durable can be faster.
- `naive`: the article's loop, written directly with nats-py and asyncpg: one message at a
  time — insert the row, publish the trash event and wait for its PubAck, record its
  sequence in the row (as filetrash does), ack. It is given
  batched fetches (so the pull is not what holds it back); only the processing is serial.

Both bind to the trash-processor durable the harness provisioned (the ceiling to any
durable given with --durable), print `ready` on stderr
once they pull, and stop on SIGTERM:

    python -m tests.bench.workers ceiling NATS_URL [--batch 256] [--durable trash-processor]
    python -m tests.bench.workers naive NATS_URL DATABASE_URL [--batch 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from datetime import datetime, timedelta

import asyncpg
import nats
import nats.errors
import nats.js.errors

STREAM = "FILE_EVENTS"
DURABLE = "trash-processor"
TRASHED_SUBJECT = "files.trashed"
RETENTION = timedelta(days=30)
NAMESPACE = uuid.UUID("d485e81c-bb5b-5936-b9e2-e15401e87b48")

FETCH_EXPIRY = 1.0

INSERT = """
INSERT INTO trashed_files (id, file_id, file_name, file_path, file_size, mime_type, user_id,
                           trashed_at, expires_at, original_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (original_event_id) DO NOTHING
RETURNING stored_at
"""
MARK = "UPDATE trashed_files SET trash_event_seq = $2 WHERE id = $1 AND trash_event_seq IS NULL"


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _pull(
    sub: nats.js.JetStreamContext.PullSubscription, batch: int
) -> list[nats.aio.msg.Msg]:
    try:
        # No idle heartbeat: nats-py 2.16 sends it without an expiry when its queue already
        # held messages, which the server refuses (400 heartbeat value too large).
        return await sub.fetch(batch, timeout=FETCH_EXPIRY)
    except (nats.errors.TimeoutError, nats.js.errors.FetchTimeoutError, TimeoutError):
        return []


async def ceiling(nats_url: str, batch: int, durable: str = DURABLE) -> int:
    stop = _stop_on_sigterm()
    nc = await nats.connect(nats_url, name="bench ceiling")
    js = nc.jetstream()
    sub = await js.pull_subscribe_bind(durable=durable, stream=STREAM)
    print("ready", file=sys.stderr, flush=True)
    acked = 0
    while not stop.is_set():
        for msg in await _pull(sub, batch):
            await msg.ack()
            acked += 1
    await nc.flush()
    await nc.close()
    print(f"acked={acked}", file=sys.stderr, flush=True)
    return 0


async def naive(nats_url: str, database_url: str, batch: int) -> int:
    stop = _stop_on_sigterm()
    nc = await nats.connect(nats_url, name="bench naive")
    js = nc.jetstream()
    conn = await asyncpg.connect(database_url)
    sub = await js.pull_subscribe_bind(durable=DURABLE, stream=STREAM)
    print("ready", file=sys.stderr, flush=True)
    handled = 0
    while not stop.is_set():
        for msg in await _pull(sub, batch):
            event = json.loads(msg.data)
            file = event["data"]
            event_id = uuid.UUID(event["eventId"])
            trash_id = uuid.uuid5(NAMESPACE, f"trash:{event_id}")
            deleted_at = datetime.fromisoformat(file["deletedAt"])
            expires_at = deleted_at + RETENTION
            stored_at = await conn.fetchval(
                INSERT,
                trash_id,
                uuid.UUID(file["fileId"]),
                file["fileName"],
                file["filePath"],
                file["fileSize"],
                file["mimeType"],
                file["userId"],
                deleted_at,
                expires_at,
                event_id,
            )
            trash_event_id = str(uuid.uuid5(NAMESPACE, f"trashed:{event_id}"))
            trash_event = {
                "eventId": trash_event_id,
                "eventType": "FilePlacedInTrashEvent",
                "timestamp": (stored_at or datetime.now(deleted_at.tzinfo)).isoformat(),
                "data": {
                    "trashId": str(trash_id),
                    "fileId": file["fileId"],
                    "fileName": file["fileName"],
                    "userId": file["userId"],
                    "trashedAt": deleted_at.isoformat(),
                    "expiresAt": expires_at.isoformat(),
                    "originalEventId": str(event_id),
                },
            }
            pub_ack = await js.publish(
                TRASHED_SUBJECT,
                json.dumps(trash_event).encode(),
                headers={"Nats-Msg-Id": trash_event_id},
            )
            await conn.execute(MARK, trash_id, pub_ack.seq)
            await msg.ack()
            handled += 1
    await conn.close()
    await nc.flush()
    await nc.close()
    print(f"handled={handled}", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.workers", description=__doc__)
    kinds = parser.add_subparsers(dest="kind", required=True)
    top = kinds.add_parser("ceiling", help="fetch in batches and ack, nothing else")
    top.add_argument("nats_url")
    top.add_argument("--batch", type=int, default=256)
    top.add_argument("--durable", default=DURABLE, help="the durable to drain")
    article = kinds.add_parser("naive", help="one message at a time: insert, publish, ack")
    article.add_argument("nats_url")
    article.add_argument("database_url")
    article.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    if args.kind == "ceiling":
        return asyncio.run(ceiling(args.nats_url, args.batch, args.durable))
    return asyncio.run(naive(args.nats_url, args.database_url, args.batch))


if __name__ == "__main__":
    sys.exit(main())
