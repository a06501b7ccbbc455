"""Scenario 4 — poison messages: about 1% of what arrives on files.deleted is not JSON, breaks
the schema, or has an unknown eventType. Each lands in the dead-letter stream once per
consumer that gave up on it, with its reason; every valid deletion is processed; nothing is
redelivered forever."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.runtime.deadletter import (
    CONSUMER_HEADER,
    REASON_HEADER,
    SEQUENCE_HEADER,
    SUBJECT_HEADER,
)
from tests.faults.harness import (
    DELETION_CONSUMERS,
    Fleet,
    consumer_infos,
    fault_servers,
    reconcile_run,
    scan_dead_letters,
    wait_processed,
    wait_ready,
)
from tests.faults.table import RecordResult
from tests.support.servers import NatsServer

pytestmark = pytest.mark.faults

VALID = 2500
POISON = 30
SEED = 4004


def poison_bodies(rng: random.Random, simulator: DeletionSimulator) -> list[tuple[str, bytes]]:
    """`POISON` bad messages, a third of each kind, each different."""
    bodies: list[tuple[str, bytes]] = []
    for n in range(POISON):
        document = simulator.next_event().model_dump(mode="json", by_alias=True)
        kind = ("invalid-json", "schema-invalid", "unknown-event-type")[n % 3]
        if kind == "invalid-json":
            text = json.dumps(document)
            body = rng.choice(
                [text[: rng.randrange(1, len(text))].encode(), b"\xff\xfe" + text.encode(), b""]
            )
        elif kind == "schema-invalid":
            mutation = rng.choice(["size", "missing", "extra", "uuid", "type"])
            if mutation == "size":
                document["data"]["fileSize"] = -n - 1
            elif mutation == "missing":
                del document["data"]["userId"]
            elif mutation == "extra":
                document["data"]["owner"] = "someone"
            elif mutation == "uuid":
                document["eventId"] = document["eventId"].replace("-", "")
            else:
                document["data"]["fileSize"] = str(document["data"]["fileSize"])
            body = json.dumps(document).encode()
        else:
            document["eventType"] = rng.choice(["FileRestoredEvent", "filedeletedevent", "🗑️"])
            body = json.dumps(document).encode()
        bodies.append((kind, body))
    return bodies


async def test_poison_messages_are_dead_lettered_once_each_and_the_rest_is_processed(
    nats_server: NatsServer, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    rng = random.Random(SEED)
    simulator = DeletionSimulator(random.Random(SEED))
    async with fault_servers(nats_server.url, database_url) as servers:
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [
                fleet.service("trash-processor", label="trash-processor-1"),
                fleet.service("trash-processor", label="trash-processor-2"),
                fleet.service("audit-logger"),
            ]
            await wait_ready(*services)
            poison = poison_bodies(rng, simulator)
            poison_at = set(rng.sample(range(VALID + POISON), POISON))
            publisher = servers.publisher
            deletions = []
            poison_seqs: dict[int, str] = {}
            bad = iter(poison)
            started = time.monotonic()
            for n in range(VALID + POISON):
                if n in poison_at:
                    kind, body = next(bad)
                    result = await publisher.publish("files.deleted", body, msg_id=f"poison-{n}")
                    poison_seqs[result.seq] = kind
                else:
                    event = simulator.next_event()
                    await publisher.publish(
                        "files.deleted",
                        event.model_dump_json(by_alias=True).encode(),
                        msg_id=str(event.event_id),
                    )
                    deletions.append(event.event_id)
            published_in = time.monotonic() - started
            recovery = await wait_processed(servers, deletions, timeout=90)
            for process in services:
                assert await process.terminate() == 0, process.tail()
            infos = await consumer_infos(servers.js)
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
        letters = await scan_dead_letters(servers.js)
    record_result(
        "4 poison messages",
        published=outcome.published + POISON,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        poison=POISON,
        consumers_dead_lettering=len(DELETION_CONSUMERS),
        dead_letter_reasons=dict(sorted(outcome.dead_letter_reasons.items())),
        publish_s=round(published_in, 1),
    )
    # Each poison message, once for each consumer of files.deleted, with its own reason.
    outcome.assert_exact(dead_letters=POISON * len(DELETION_CONSUMERS))
    seen = {
        (m.headers[CONSUMER_HEADER], int(m.headers[SEQUENCE_HEADER])): m.headers[REASON_HEADER]
        for m in letters
    }
    expected = {
        (durable, seq): kind for seq, kind in poison_seqs.items() for durable in DELETION_CONSUMERS
    }
    assert seen == expected
    assert all(m.headers[SUBJECT_HEADER] == "files.deleted" for m in letters)
    assert {m.subject for m in letters} == {f"dlq.files.{d}" for d in DELETION_CONSUMERS}
    for durable, info in infos.items():
        assert info.num_pending == info.num_ack_pending == info.num_redelivered == 0, durable
