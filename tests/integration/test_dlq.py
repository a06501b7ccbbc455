"""`filetrash dlq` against a real nats-server: dead letters listed per consumer and reason,
shown one by one, and replayed to the consumer that gave up only, each removed from the DLQ
once handled; those still refused stay, with why."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from generated.consumers import AUDIT_LOGGER, TRASH_PROCESSOR
from generated.models import FileDeletedEvent
from handwritten.cli import main
from handwritten.runtime import dlq
from handwritten.runtime.consume import run_consumer
from handwritten.runtime.contract import Delivery, PermanentError
from tests.support.harness import FAST, provisioned, wait_until
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

DLQ_STREAM = "FILE_EVENTS_DLQ"
EXAMPLE: dict[str, Any] = {
    "eventId": "",
    "eventType": "FileDeletedEvent",
    "timestamp": "2026-11-20T10:15:30.123Z",
    "data": {
        "fileId": "6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
        "fileName": "report.pdf",
        "filePath": "/users/user-001/documents/report.pdf",
        "fileSize": 2457600,
        "mimeType": "application/pdf",
        "userId": "user-001",
        "deletedAt": "2026-11-20T10:15:30.100Z",
    },
}


def deletion(**extra: Any) -> tuple[str, bytes]:
    payload = copy.deepcopy(EXAMPLE)
    payload["eventId"] = str(uuid.uuid4())
    payload["data"].update(extra)
    return payload["eventId"], json.dumps(payload).encode()


class Recorder:
    """A handler that records what it handled; it refuses the ids in `refuse` for good."""

    def __init__(self, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.handled: Counter[str] = Counter()
        self.refuse = set(refuse)

    async def on_file_deleted_event(self, event: FileDeletedEvent, delivery: Delivery) -> None:
        if str(event.event_id) in self.refuse:
            raise PermanentError("the storage path is on a retired volume")
        self.handled[str(event.event_id)] += 1


async def test_list_show_and_replay_to_the_consumer_that_gave_up(
    nats_server: NatsServer, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with provisioned(nats_server.url) as servers:
        good, refused, unknown = deletion(), deletion(), deletion(checksum="abcd1234")
        trash = Recorder(refuse={refused[0]})
        audit = Recorder()
        for event_id, body in (good, refused, unknown):
            await servers.publisher.publish("files.deleted", body, msg_id=event_id)
        stop = asyncio.Event()
        runs = [
            asyncio.create_task(
                run_consumer(servers.nc, endpoint, handler, settings=FAST, stop=stop)
            )
            for endpoint, handler in ((TRASH_PROCESSOR, trash), (AUDIT_LOGGER, audit))
        ]

        async def dead_letters() -> int:
            info = await servers.js.stream_info(DLQ_STREAM)
            return int(info.state.messages)

        await wait_until(lambda: _ge(dead_letters, 3), what="three dead letters")
        stop.set()
        await asyncio.gather(*runs)
        assert trash.handled == Counter({good[0]: 1})
        assert audit.handled == Counter({good[0]: 1, refused[0]: 1})

        clean_env.setenv("NATS_URL", nats_server.url)
        assert await asyncio.to_thread(main, ["dlq", "list"]) == 0
        listed = capsys.readouterr().out
        assert "audit-logger" in listed and "schema-invalid" in listed
        rows = {tuple(line.split()[:3]) for line in listed.splitlines()[1:]}
        assert ("trash-processor", "permanent-error", "1") in rows
        assert ("trash-processor", "schema-invalid", "1") in rows
        assert ("audit-logger", "schema-invalid", "1") in rows

        letters = [x async for x in dlq.read_dead_letters(servers.js, DLQ_STREAM)]
        permanent = next(x for x in letters if x.reason == "permanent-error")
        assert await asyncio.to_thread(main, ["dlq", "show", str(permanent.seq)]) == 0
        shown = capsys.readouterr().out
        assert "trash-processor gave up: permanent-error" in shown
        assert "retired volume" in shown and refused[0] in shown
        assert await asyncio.to_thread(main, ["dlq", "show", "999"]) == 2
        assert "no dead letter #999" in capsys.readouterr().err

        # The volume is back: only the trash-processor gets its dead letter again.
        trash.refuse.clear()
        dry = await dlq.replay(servers.js, TRASH_PROCESSOR, trash, stream=DLQ_STREAM, dry_run=True)
        assert dry.would_replay == [permanent.seq]
        assert [why.split(":")[0] for _, why in dry.kept] == ["still refused"]
        assert await dead_letters() == 3
        done = await dlq.replay(servers.js, TRASH_PROCESSOR, trash, stream=DLQ_STREAM)
        assert done.replayed == [permanent.seq]
        assert trash.handled == Counter({good[0]: 1, refused[0]: 1})
        assert audit.handled == Counter({good[0]: 1, refused[0]: 1})  # untouched
        assert await dead_letters() == 2
        again = await dlq.replay(servers.js, TRASH_PROCESSOR, trash, stream=DLQ_STREAM)
        assert again.replayed == [] and trash.handled[refused[0]] == 1


async def _ge(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_list_before_provisioning_says_what_to_do(
    nats_server: NatsServer, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("NATS_URL", nats_server.url)
    assert await asyncio.to_thread(main, ["dlq", "list"]) == 2
    err = capsys.readouterr().err
    assert "FILE_EVENTS_DLQ does not exist: run `filetrash provision`" in err
    assert "Traceback" not in err
