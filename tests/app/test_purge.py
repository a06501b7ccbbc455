"""The purge job against real servers: expired entries purged once with one FilePurgedEvent
each, nothing else touched, safe to repeat, to crash, and to run twice at once."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from handwritten.filetrash import ids, reconcile
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.filetrash.purge import purge_expired
from handwritten.filetrash.trash_processor import TrashProcessor
from handwritten.runtime.contract import Delivery, Publish, PublishResult
from tests.app.service_harness import REPO_ROOT, Servers

pytestmark = pytest.mark.integration

STREAM = "FILE_EVENTS"
DELIVERY = Delivery("files.deleted", STREAM, 1, "trash-processor", 1)


async def trash(servers: Servers, count: int, *, retention_days: float, seed: int) -> list[UUID]:
    """`count` trash entries kept `retention_days`; returns their trash ids."""
    processor = TrashProcessor(
        servers.pool, servers.publisher, retention=timedelta(days=retention_days)
    )
    simulator = DeletionSimulator(random.Random(seed))
    trash_ids = []
    for _ in range(count):
        event = simulator.next_event()
        await processor.on_file_deleted_event(event, DELIVERY)
        trash_ids.append(ids.trash_id(event.event_id))
    return trash_ids


async def purge_events(servers: Servers) -> list[reconcile.StoredMessage]:
    return await reconcile.scan(servers.js, stream=STREAM, subject="files.purged")


async def remaining(servers: Servers) -> set[UUID]:
    return {row["id"] for row in await servers.pool.fetch("SELECT id FROM trashed_files")}


async def test_expired_entries_are_purged_once_with_one_event_each(servers: Servers) -> None:
    expiring = await trash(servers, 5, retention_days=1, seed=1)
    keeping = await trash(servers, 3, retention_days=30, seed=2)
    now = datetime.now(UTC) + timedelta(days=2)

    report = await purge_expired(servers.pool, servers.publisher, now=now, batch_size=2)
    assert (report.purged, report.events_published, report.batches) == (5, 5, 3)
    assert await remaining(servers) == set(keeping)

    events = await purge_events(servers)
    assert sorted(m.event_id() or "" for m in events) == sorted(
        str(ids.purge_event_id(t)) for t in expiring
    )
    first = json.loads(events[0].data)
    assert first["eventType"] == "FilePurgedEvent"
    assert UUID(first["data"]["trashId"]) in expiring
    assert first["data"]["filePath"].startswith("/users/")

    again = await purge_expired(servers.pool, servers.publisher, now=now)
    assert (again.purged, again.batches) == (0, 0)
    assert len(await purge_events(servers)) == 5


class FailingAfter:
    """Publishes `limit` messages, then fails: a crash in the middle of a batch."""

    def __init__(self, inner: Publish, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        if self.limit <= 0:
            raise ConnectionError("simulated crash before the commit")
        self.limit -= 1
        return await self.inner.publish(subject, payload, msg_id=msg_id, headers=headers)


async def test_a_purge_that_dies_before_its_commit_is_redone_without_duplicate_events(
    servers: Servers,
) -> None:
    expiring = await trash(servers, 4, retention_days=1, seed=3)
    now = datetime.now(UTC) + timedelta(days=2)
    with pytest.raises(ConnectionError):
        await purge_expired(servers.pool, FailingAfter(servers.publisher, 2), now=now)
    assert await remaining(servers) == set(expiring), "rolled back: every row is still there"
    assert len(await purge_events(servers)) == 2

    report = await purge_expired(servers.pool, servers.publisher, now=now)
    assert (report.purged, report.events_duplicate, report.events_published) == (4, 2, 2)
    assert await remaining(servers) == set()
    tally = reconcile.tally(await purge_events(servers), [ids.purge_event_id(t) for t in expiring])
    assert (tally.distinct, tally.copies) == (4, 4)


async def test_two_purges_at_once_share_the_rows_and_emit_each_event_once(
    servers: Servers,
) -> None:
    expiring = await trash(servers, 60, retention_days=1, seed=4)
    now = datetime.now(UTC) + timedelta(days=2)
    one, two = await asyncio.gather(
        purge_expired(servers.pool, servers.publisher, now=now, batch_size=5),
        purge_expired(servers.pool, servers.publisher, now=now, batch_size=5),
    )
    assert one.purged + two.purged == 60
    assert one.purged > 0 and two.purged > 0, "both purges took rows"
    assert one.events_duplicate == two.events_duplicate == 0
    assert not set(one.event_ids) & set(two.event_ids)
    assert await remaining(servers) == set()
    tally = reconcile.tally(await purge_events(servers), [ids.purge_event_id(t) for t in expiring])
    assert (tally.distinct, tally.copies, tally.unexpected) == (60, 60, 0)


async def test_the_purge_command(servers: Servers) -> None:
    await trash(servers, 3, retention_days=1, seed=5)
    keeping = await trash(servers, 2, retention_days=400, seed=6)
    when = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "handwritten.cli",
        "purge",
        "--now",
        when,
        env=servers.env(),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    text = output.decode()
    assert process.returncode == 0, text
    assert "3 entries purged" in text
    assert text.count("🔥 Purged") == 3
    assert await remaining(servers) == set(keeping)
