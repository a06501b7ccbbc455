"""`filetrash dlq replay` through the CLI, with the app's trash-processor and PostgreSQL: a
deletion it gave up on (max-deliver while the database was down) is handled again, stored once,
and leaves the DLQ; the audit-logger, which had handled it, is not asked again."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from generated.consumers import TRASH_PROCESSOR
from handwritten.cli import main
from handwritten.runtime import dlq
from handwritten.runtime.deadletter import store_dead_letter
from handwritten.runtime.servers import ServerUrls
from tests.app.service_harness import provisioned

pytestmark = pytest.mark.integration

DLQ_STREAM = "FILE_EVENTS_DLQ"


def deletion() -> tuple[str, str, bytes]:
    event_id, file_id = str(uuid.uuid4()), str(uuid.uuid4())
    payload = {
        "eventId": event_id,
        "eventType": "FileDeletedEvent",
        "timestamp": "2026-12-03T10:00:00Z",
        "data": {
            "fileId": file_id,
            "fileName": "report.pdf",
            "filePath": "/users/user-001/report.pdf",
            "fileSize": 10,
            "mimeType": "application/pdf",
            "userId": "user-001",
            "deletedAt": "2026-12-03T10:00:00Z",
        },
    }
    return event_id, file_id, json.dumps(payload).encode()


async def test_replay_through_the_cli(
    server_env: ServerUrls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server_env.database_url is not None
    async with provisioned(server_env.nats_url, server_env.database_url) as servers:
        event_id, file_id, body = deletion()
        stored = await servers.publisher.publish("files.deleted", body, msg_id=event_id)
        await store_dead_letter(
            servers.js,
            body,
            endpoint=TRASH_PROCESSOR,
            stream=stored.stream,
            subject="files.deleted",
            stream_seq=stored.seq,
            deliveries=5,
            reason="max-deliver",
            detail="handler failed 5 times: database unavailable",
        )

        audit_before = await servers.js.consumer_info("FILE_EVENTS", "audit-logger")
        replay = ["dlq", "replay", "--consumer", "trash-processor"]
        assert await asyncio.to_thread(main, [*replay, "--dry-run"]) == 0
        assert "1 dead letter(s) of trash-processor would be replayed" in capsys.readouterr().out
        assert await asyncio.to_thread(main, replay) == 0
        assert "1 dead letter(s) of trash-processor replayed" in capsys.readouterr().out
        rows = await servers.pool.fetchval(
            "SELECT count(*) FROM trashed_files WHERE file_id = $1", uuid.UUID(file_id)
        )
        assert rows == 1
        assert [x async for x in dlq.read_dead_letters(servers.js, DLQ_STREAM)] == []
        # Nothing was republished to files.deleted: the audit-logger has the one message it had.
        audit_after = await servers.js.consumer_info("FILE_EVENTS", "audit-logger")
        assert audit_after.num_pending == audit_before.num_pending == 1
        assert await asyncio.to_thread(main, replay) == 0
        assert "0 dead letter(s)" in capsys.readouterr().out
