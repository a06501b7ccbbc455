"""The five services against real servers: the article's integration patterns (competing
consumers, fan-out, message filter, content-based router), resuming, and effectively-once
processing of the trash-processor, including a crash between its steps."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from generated.consumers import ENDPOINTS
from generated.publishers import PublishFileDeleted
from handwritten.filetrash import ids, reconcile
from handwritten.filetrash.db import MIGRATIONS, queries
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.filetrash.purge import purge_expired
from handwritten.filetrash.trash_processor import TrashProcessor
from handwritten.runtime.contract import Delivery, PublishResult
from handwritten.runtime.deadletter import REASON_HEADER
from handwritten.runtime.migrate import load_migrations, migrate
from handwritten.runtime.registry import SERVICES
from tests.app.service_harness import (
    Servers,
    ServiceProcess,
    running,
    wait_until,
)
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

STREAM = "FILE_EVENTS"
DLQ = "FILE_EVENTS_DLQ"


async def trash_events(servers: Servers, deletion_ids: list[uuid.UUID]) -> reconcile.EventTally:
    messages = await reconcile.scan(servers.js, stream=STREAM, subject="files.trashed")
    return reconcile.tally(messages, [ids.trash_event_id(i) for i in deletion_ids])


async def dead_letters(servers: Servers) -> list[reconcile.StoredMessage]:
    return await reconcile.scan(servers.js, stream=DLQ, subject="dlq.files.>")


APP_SERVICES = {
    "trash-processor": "handwritten.filetrash.trash_processor",
    "audit-logger": "handwritten.filetrash.audit_logger",
    "analytics-service": "handwritten.filetrash.analytics",
    "cleanup-service": "handwritten.filetrash.cleanup",
    "notification-service": "handwritten.filetrash.notification",
}


def test_every_consumer_of_the_spec_is_a_discovered_service_of_the_app() -> None:
    assert set(SERVICES) == set(ENDPOINTS) == set(APP_SERVICES)
    for name, definition in SERVICES.items():
        assert definition.endpoint is ENDPOINTS[name]
        assert definition.migrations == MIGRATIONS, "the app's services need its tables"
        assert sys.modules[APP_SERVICES[name]].SERVICE is definition


async def test_the_apps_migrations_apply_cleanly(database_url: str) -> None:
    labels = [m.label for m in load_migrations(MIGRATIONS)]
    assert labels[0] == "0001_trash"
    assert await migrate(database_url, MIGRATIONS) == labels
    assert await migrate(database_url, MIGRATIONS) == []


async def test_competing_consumers_store_every_event_once_and_share_the_work(
    servers: Servers,
) -> None:
    async with running(servers, "trash-processor", "trash-processor") as (one, two):
        published = await servers.publish(40, rate=200)
        deletions = [p.event.event_id for p in published]

        async def all_stored() -> bool:
            counts = await servers.counts(deletions)
            return counts.trash_events_marked == len(deletions)

        await wait_until(all_stored, what="40 rows with their trash events")
    counts = await servers.counts(deletions)
    assert counts.trashed_rows == 40
    assert one.handler.stored + two.handler.stored == 40
    assert one.handler.stored > 0 and two.handler.stored > 0, "both instances did work"
    assert one.stats.handled + two.stats.handled == 40
    tally = await trash_events(servers, deletions)
    assert (tally.distinct, tally.copies) == (40, 40)


async def test_fan_out_trash_processor_and_audit_logger_each_see_every_deletion(
    servers: Servers,
) -> None:
    async with running(servers, "trash-processor", "audit-logger") as (trash, audit):
        published = await servers.publish(15)
        deletions = [p.event.event_id for p in published]

        async def both_done() -> bool:
            counts = await servers.counts(deletions)
            return counts.trash_events_marked == 15 and counts.audit_rows == 15

        await wait_until(both_done, what="15 trash rows and 15 audit rows")
    assert trash.stats.handled == 15 and audit.stats.handled == 15
    rows = await servers.pool.fetch("SELECT event_id, subject, stream_seq, payload FROM audit_log")
    by_id = {row["event_id"]: row for row in rows}
    for p in published:
        row = by_id[p.event.event_id]
        assert (row["subject"], row["stream_seq"]) == ("files.deleted", p.result.seq)
        assert json.loads(row["payload"]) == p.event.model_dump(mode="json", by_alias=True)


async def test_message_filter_and_content_based_router(servers: Servers) -> None:
    """cleanup sees only deletions, notification only trash events, analytics all three types
    and routes each to its own handler; an unknown eventType on files.> is dead-lettered."""
    names = (
        "trash-processor",
        "cleanup-service",
        "notification-service",
        "analytics-service",
    )
    async with running(servers, *names) as (trash, cleanup, notify, analytics):
        published = await servers.publish(12)
        deletions = [p.event.event_id for p in published]

        async def trashed() -> bool:
            return (await servers.counts(deletions)).trash_events_marked == 12

        await wait_until(trashed, what="12 trash events")
        # Expire everything: 12 FilePurgedEvents on files.purged.
        report = await purge_expired(
            servers.pool, servers.publisher, now=datetime.now(UTC) + timedelta(days=31)
        )
        assert report.purged == 12
        unknown_id = str(uuid.uuid4())
        await servers.publisher.publish(
            "files.renamed",
            json.dumps({"eventId": unknown_id, "eventType": "FileRenamedEvent"}).encode(),
            msg_id=unknown_id,
        )

        async def analytics_done() -> bool:
            return analytics.stats.handled == 36 and analytics.stats.dead_lettered == 1

        await wait_until(analytics_done, what="analytics: 36 events counted, 1 dead letter")

        async def others_done() -> bool:
            counts = await servers.counts(deletions)
            return counts.cleanup_rows == 12 and counts.notification_rows == 12

        await wait_until(others_done, what="12 cleanup rows and 12 notifications")

    # Message filter: the server sent each consumer only its subjects.
    assert (cleanup.stats.fetched, cleanup.stats.dead_lettered) == (12, 0)
    assert (notify.stats.fetched, notify.stats.dead_lettered) == (12, 0)
    assert trash.stats.fetched == 12
    assert analytics.stats.fetched == 12 + 12 + 12 + 1
    # Content-based router: each type reached its own handler and its own counter.
    assert analytics.handler.counted == {
        "FileDeletedEvent": 12,
        "FilePlacedInTrashEvent": 12,
        "FilePurgedEvent": 12,
    }
    counted = {c.event_type: c.events for c in await queries.event_counts(servers.pool)}
    assert counted == analytics.handler.counted
    bytes_trashed = sum(p.event.data.file_size for p in published)
    totals = {c.event_type: c.bytes for c in await queries.event_counts(servers.pool)}
    assert totals["FileDeletedEvent"] == bytes_trashed
    per_user = await servers.pool.fetch(
        "SELECT user_id, events FROM analytics_user_counts WHERE event_type = 'FileDeletedEvent'"
    )
    expected_per_user: dict[str, int] = {}
    for p in published:
        expected_per_user[p.event.data.user_id] = expected_per_user.get(p.event.data.user_id, 0) + 1
    assert {r["user_id"]: r["events"] for r in per_user} == expected_per_user
    # The unknown type went to the analytics dead-letter subject, and only there.
    letters = await dead_letters(servers)
    assert [(m.subject, m.headers[REASON_HEADER]) for m in letters] == [
        ("dlq.files.analytics-service", "unknown-event-type")
    ]
    notes = await servers.pool.fetch("SELECT message FROM user_notifications")
    assert all("was moved to trash; it will be deleted for good on" in r["message"] for r in notes)


async def test_a_stopped_service_catches_up_without_affecting_the_others(
    servers: Servers,
) -> None:
    async with running(servers, "trash-processor") as (trash,):
        async with running(servers, "audit-logger") as (first_audit,):
            first = [p.event.event_id for p in await servers.publish(5, seed=1)]

            async def first_audited() -> bool:
                return (await servers.counts(first)).audit_rows == 5

            await wait_until(first_audited, what="5 audit rows")
        # audit-logger is stopped now; the trash-processor goes on alone.
        second = [p.event.event_id for p in await servers.publish(5, seed=2)]
        everything = first + second

        async def state() -> object:
            return (await servers.counts(everything), trash.stats, first_audit.stats)

        async def trash_done() -> bool:
            return (await servers.counts(everything)).trash_events_marked == 10

        await wait_until(trash_done, what="the trash-processor to process all 10", state=state)
        assert (await servers.counts(everything)).audit_rows == 5
        async with running(servers, "audit-logger") as (audit,):

            async def caught_up() -> bool:
                return (await servers.counts(everything)).audit_rows == 10

            async def audit_state() -> object:
                return (await state(), audit.stats)

            await wait_until(
                caught_up, what="the restarted audit-logger to catch up", state=audit_state
            )
        assert audit.stats.handled == 5, "it resumed after its last ack, not from the start"
    assert trash.stats.handled == 10


class RecordingPublish:
    """A `Publish` that keeps every payload before handing it to the real one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[str, bytes, str]] = []

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        self.sent.append((subject, payload, msg_id))
        result: PublishResult = await self.inner.publish(
            subject, payload, msg_id=msg_id, headers=headers
        )
        return result


async def test_a_re_sent_trash_event_is_identical_to_the_first(servers: Servers) -> None:
    """The trash event is built from the stored row, so a retry after a crash between the
    publish and the bookkeeping sends the same bytes with the same Nats-Msg-Id."""
    import random

    recorder = RecordingPublish(servers.publisher)
    processor = TrashProcessor(servers.pool, recorder, retention=timedelta(days=7))
    event = DeletionSimulator(random.Random(5)).next_event()
    delivery = Delivery("files.deleted", STREAM, 1, "trash-processor", 1)
    await processor.on_file_deleted_event(event, delivery)
    # As if the process died after the publish, before recording it: the row says "unsent".
    await servers.pool.execute("UPDATE trashed_files SET trash_event_seq = NULL")
    await processor.on_file_deleted_event(event, delivery)
    await processor.on_file_deleted_event(event, delivery)  # recorded now: nothing is sent
    assert len(recorder.sent) == 2
    assert recorder.sent[0] == recorder.sent[1]
    subject, payload, msg_id = recorder.sent[0]
    sent = json.loads(payload)
    assert subject == "files.trashed"
    assert msg_id == sent["eventId"] == str(ids.trash_event_id(event.event_id))
    assert sent["data"]["trashId"] == str(ids.trash_id(event.event_id))
    row = await servers.pool.fetchrow("SELECT * FROM trashed_files")
    assert row["id"] == ids.trash_id(event.event_id)
    assert row["expires_at"] - row["trashed_at"] == timedelta(days=7)
    assert (processor.stored, processor.published) == (1, 1)


async def test_the_same_event_under_two_msg_ids_is_stored_and_announced_once(
    servers: Servers,
) -> None:
    import random

    event = DeletionSimulator(random.Random(9)).next_event()
    publish = PublishFileDeleted(servers.publisher)
    first = await publish.publish(event, msg_id="copy-1")
    second = await publish.publish(event, msg_id="copy-2")
    assert not first.duplicate and not second.duplicate and first.seq != second.seq
    async with running(servers, "trash-processor", "audit-logger") as (trash, audit):

        async def both_handled() -> bool:
            return trash.stats.acked == 2 and audit.stats.acked == 2

        await wait_until(both_handled, what="both copies handled by both services")
    counts = await servers.counts([event.event_id])
    assert (counts.trashed_rows, counts.audit_rows) == (1, 1)
    tally = await trash_events(servers, [event.event_id])
    assert (tally.distinct, tally.copies) == (1, 1)


@pytest.mark.parametrize("fault", ["after-insert", "after-publish"])
async def test_a_crash_between_steps_is_recovered_by_redelivery_effectively_once(
    servers: Servers, tmp_path: Path, fault: str
) -> None:
    """The trash-processor dies (os._exit) after the INSERT or after the publish, before the
    ack; restarted without the fault it gets the deletion again: one row, one trash event."""
    crashing = ServiceProcess(
        "trash-processor", servers.env(FILETRASH_FAULT=fault), tmp_path / "crash.log"
    )
    published = await servers.publish(1, seed=11)
    deletions = [p.event.event_id for p in published]
    try:
        assert await crashing.wait_exit(timeout=30) == 137, crashing.output()
    finally:
        crashing.kill()
    assert f"fault injected at {fault}" in crashing.output()
    counts = await servers.counts(deletions)
    assert (counts.trashed_rows, counts.trash_events_marked) == (1, 0)
    stream_before = await trash_events(servers, deletions)
    assert stream_before.copies == (1 if fault == "after-publish" else 0)

    recovering = ServiceProcess("trash-processor", servers.env(), tmp_path / "recover.log")
    try:

        async def recovered() -> bool:
            return (await servers.counts(deletions)).trash_events_marked == 1

        await wait_until(recovered, timeout=30, what="the redelivered deletion to complete")
    finally:
        assert await recovering.terminate() == 0, recovering.output()
    counts = await servers.counts(deletions)
    assert counts.trashed_rows == 1
    tally = await trash_events(servers, deletions)
    assert (tally.distinct, tally.copies) == (1, 1)
    lines = [json.loads(line) for line in recovering.output().splitlines() if line.startswith("{")]
    steps = [line.get("step") for line in lines]
    assert "found" in steps and "stored" not in steps
    if fault == "after-publish":
        assert any(line.get("step") == "published" and line["duplicate"] for line in lines)


async def test_a_service_refuses_to_start_before_provisioning(
    nats_server: NatsServer, database_url: str, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FILETRASH_")},
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
    }
    process = ServiceProcess("audit-logger", env, tmp_path / "audit.log")
    try:
        assert await process.wait_exit(timeout=30) == 2, process.output()
    finally:
        process.kill()
    assert "run `filetrash provision`" in process.output()


def test_simulated_deletions_are_realistic_and_reproducible() -> None:
    import random

    from handwritten.filetrash.publisher import FILE_KINDS

    by_extension = {kind.extension: kind for kind in FILE_KINDS}
    one = DeletionSimulator(random.Random(42))
    two = DeletionSimulator(random.Random(42))
    events = [one.next_event() for _ in range(200)]
    assert [e.event_id for e in events] == [two.next_event().event_id for _ in range(200)]
    assert len({e.data.user_id for e in events}) > 10, "many users"
    for event in events:
        file = event.data
        kind = next(k for ext, k in by_extension.items() if file.file_name.endswith(f".{ext}"))
        assert file.mime_type == kind.mime_type
        assert (
            file.file_path
            == f"/users/{file.user_id}/{file.file_path.split('/')[3]}/{file.file_name}"
        )
        assert file.file_size <= kind.max_size


def test_fault_points_are_parsed_strictly() -> None:
    from handwritten.filetrash.faults import FaultSpecInvalid, parse_faults

    assert parse_faults("") == {}
    assert parse_faults("after-insert") == {"after-insert": 1.0}
    assert parse_faults("after-insert:0.25, after-publish") == {
        "after-insert": 0.25,
        "after-publish": 1.0,
    }
    for bad in ("after-commit", "after-insert:2", "after-insert:x"):
        with pytest.raises(FaultSpecInvalid):
            parse_faults(bad)


def test_retention_comes_from_the_option_then_the_environment() -> None:
    from handwritten.filetrash.trash_processor import InvalidRetention, retention_from

    assert retention_from(None, environ={}) == timedelta(days=30)
    assert retention_from(None, environ={"FILETRASH_RETENTION_DAYS": "7"}) == timedelta(days=7)
    assert retention_from("0.5", environ={"FILETRASH_RETENTION_DAYS": "7"}) == timedelta(hours=12)
    for bad in ("0", "-1", "soon"):
        with pytest.raises(InvalidRetention):
            retention_from(bad, environ={})


def test_the_notification_names_the_file_and_the_day_it_goes() -> None:
    from generated.models import FilePlacedInTrashEvent, TrashEntry
    from handwritten.filetrash.notification import notification_text

    when = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)
    event = FilePlacedInTrashEvent(
        event_id=uuid.uuid4(),
        event_type="FilePlacedInTrashEvent",
        timestamp=when,
        data=TrashEntry(
            trash_id=uuid.uuid4(),
            file_id=uuid.uuid4(),
            file_name="report.pdf",
            user_id="user-001",
            trashed_at=when,
            expires_at=when + timedelta(days=30),
            original_event_id=uuid.uuid4(),
        ),
    )
    assert notification_text(event) == (
        "report.pdf was moved to trash; it will be deleted for good on 2026-12-20."
    )


async def test_the_audit_log_keeps_each_event_as_it_was_sent(servers: Servers) -> None:
    """The audit row holds the bytes the event arrived as (`Delivery.payload`), not the event
    serialised again: a timestamp sent as `…17.5+02:00` stays so, where pydantic would write
    `…17.500000+02:00`. A delivery without its bytes falls back to the serialised event."""
    import random

    from handwritten.filetrash.audit_logger import AuditLogger

    simulator = DeletionSimulator(random.Random(8))
    events = [simulator.next_event() for _ in range(3)]
    sent = [
        json.dumps(
            {**e.model_dump(mode="json", by_alias=True), "timestamp": "2026-12-03T19:15:17.5+02:00"}
        ).encode()
        for e in events
    ]
    logger = AuditLogger(servers.pool)
    batch = [
        (e, Delivery("files.deleted", STREAM, n + 1, "audit-logger", 1, payload=raw))
        for n, (e, raw) in enumerate(zip(events[:2], sent[:2], strict=True))
    ]
    await logger.handle_batch(batch)
    await logger.on_file_deleted_event(
        events[2], Delivery("files.deleted", STREAM, 3, "audit-logger", 1, payload=sent[2])
    )
    await logger.on_file_deleted_event(  # a repeat without its bytes: already there
        events[2], Delivery("files.deleted", STREAM, 3, "audit-logger", 2)
    )
    rows = await servers.pool.fetch("SELECT event_id, payload FROM audit_log")
    stored = {row["event_id"]: json.loads(row["payload"]) for row in rows}
    assert stored == {e.event_id: json.loads(raw) for e, raw in zip(events, sent, strict=True)}
    assert logger.appended == 3
