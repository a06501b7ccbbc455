"""The bench's raw and FastStream trash-processors really do the trash-processor's work: every
row once (a deletion repeated under another Nats-Msg-Id adds nothing), every trash event
once, valid against the spec's generated model and carrying the spec's deterministic ids, its
sequence recorded, every deletion acked; and the raw pipeline dead-letters what it cannot
read (FastStream has no dead letters: see tests/bench/faststream_app.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from generated.models import FilePlacedInTrashEvent
from handwritten.filetrash import ids
from tests.bench.harness import STREAM, Bench, Worker, bench_servers, wait_ready
from tests.bench.raw import uuid5
from tests.bench.services import DELETED, SERVICES, deletions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

GOOD = 20
SERVICE = SERVICES["trash-processor"]


def test_the_raw_uuid5_is_the_specs() -> None:
    import uuid

    for name in ("trash:x", f"trashed:{uuid.uuid4()}", "trash:Ä"):
        assert uuid5(name) == str(uuid.uuid5(ids.NAMESPACE, name))


async def _drained(bench: Bench, worker: Worker, total: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        delivered, _, pending, ack_pending = await bench._progress(SERVICE.durable)
        if delivered >= total and pending == 0 and ack_pending == 0:
            return
        assert worker.alive(), worker.output()[-3000:]
        assert time.monotonic() < deadline, (delivered, pending, ack_pending, worker.output())
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("contender", ["raw", "faststream"])
async def test_a_bench_contender_does_the_trash_processors_work(
    contender: str, tmp_path: Path
) -> None:
    events = deletions(GOOD, seed=3)
    repeat = (DELETED, "another-id-for-the-same-deletion", events[0][2])
    bad = [
        (DELETED, "bad-json", b"{not json"),
        (DELETED, "bad-shape", json.dumps({"eventId": "x", "data": {}}).encode()),
    ]
    published = [*events, repeat, *(bad if contender == "raw" else [])]
    async with bench_servers(tmp_path) as bench:
        await bench.reset(SERVICE)
        await bench.publish(published)
        command = [
            sys.executable,
            "-m",
            f"tests.bench.{'raw' if contender == 'raw' else 'faststream_app'}",
        ]
        worker = Worker(
            [*command, SERVICE.name, bench.nats_url, bench.database_url],
            bench.env(),
            tmp_path / "worker.log",
        )
        try:
            await wait_ready([worker])
            await _drained(bench, worker, len(published))
        finally:
            assert await worker.stop() == 0, worker.output()[-3000:]

        work = await bench.work_done(SERVICE)
        assert work == {
            "rows": GOOD,
            "rows with trash_event_seq": GOOD,
            "trash events": GOOD,
            "pending + unacked": 0,
        }
        # The trash events, read back from the stream: valid, with the spec's ids, and the
        # sequence each row recorded is the sequence its event got.
        sub = await bench.js.pull_subscribe_bind("notification-service", STREAM)
        msgs = await sub.fetch(GOOD, timeout=5)
        seqs = dict(
            (str(r["original_event_id"]), r["trash_event_seq"])
            for r in await bench.pool.fetch(
                "SELECT original_event_id, trash_event_seq FROM trashed_files"
            )
        )
        expected = {event_id for _, event_id, _ in events}
        seen = set()
        for msg in msgs:
            event = FilePlacedInTrashEvent.model_validate_json(msg.data)
            original = event.data.original_event_id
            assert event.event_id == ids.trash_event_id(original)
            assert event.data.trash_id == ids.trash_id(original)
            assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == str(event.event_id)
            assert seqs[str(original)] == msg.metadata.sequence.stream
            seen.add(str(original))
        assert seen == expected

        dead = await bench.js.stream_info("FILE_EVENTS_DLQ")
        if contender == "raw":
            assert dead.state.messages == len(bad)
            reasons = []
            for seq in range(dead.state.first_seq, dead.state.last_seq + 1):
                letter = await bench.js.get_msg("FILE_EVENTS_DLQ", seq)
                assert letter.headers is not None
                reasons.append(letter.headers["Filetrash-Dlq-Reason"])
            assert sorted(reasons) == ["invalid-json", "schema-invalid"]
        else:
            assert dead.state.messages == 0
