"""A rolling upgrade on a real nats-server, in the order `generator compat` prints.

The change: FileDeletedEvent's `data` gains an optional `checksum` (info.version 2.0.0 →
2.1.0). Payloads are closed, so `compat` calls it consumers-first and names the consumers of
the message and its producer. Each scenario starts with old producers and consumers on one
stream, then upgrades them step by step while deletions keep flowing:

- in the printed order (every consumer of the message, then the producer): 0 dead letters;
- in the opposite order: every old consumer dead-letters every new deletion (schema-invalid);
  after the upgrade, a dead-letter replay hands each to the consumer that gave up, and every
  deletion ends up handled exactly once by every consumer, none lost.

The old services run the committed `generated` package; the new ones a package generated from
the edited spec into a temporary directory. The table printed at the end is the issue's figures.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from generator import compat
from generator.build import build
from generator.load import load_text
from generator.render import render
from handwritten.runtime import dlq
from handwritten.runtime.consume import run_consumer
from handwritten.runtime.contract import ConsumerEndpoint, Delivery
from tests.support import specs
from tests.support.harness import FAST, provisioned, wait_until
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration

SPEC = specs.SPECS["filetrash"]
DLQ_STREAM = "FILE_EVENTS_DLQ"
PER_PHASE = 40
NEW_SPEC_EDITS = (
    (
        "        deletedAt:\n          $ref: '#/components/schemas/Timestamp'\n",
        "        deletedAt:\n          $ref: '#/components/schemas/Timestamp'\n"
        "        checksum:\n          type: string\n          minLength: 8\n",
    ),
    ("  version: 2.0.0\n", "  version: 2.1.0\n"),
)
FIGURES: list[tuple[str, ...]] = []


def new_spec_text() -> str:
    text = SPEC.read_text(encoding="utf-8")
    for before, after in NEW_SPEC_EDITS:
        assert before in text
        text = text.replace(before, after, 1)
    return text


@cache
def new_package() -> ModuleType:
    """The edited spec's package, generated as `rolling_new` into the tests' scratch folder."""
    doc, _ = build(load_text(new_spec_text(), "asyncapi/asyncapi.yaml"))
    root = specs._scratch() / "rolling_new"
    for rel, text in render(doc).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return importlib.import_module("rolling_new")


@cache
def plan() -> compat.Report:
    old_spec = load_text(SPEC.read_text(encoding="utf-8"), "old.yaml")
    new_spec = load_text(new_spec_text(), "asyncapi/asyncapi.yaml")
    return compat.compare(
        compat.Side(old_spec, build(old_spec)[0]), compat.Side(new_spec, build(new_spec)[0])
    )


def package(version: str) -> dict[str, ModuleType]:
    if version == "old":
        names = ("generated.models", "generated.consumers", "generated.publishers")
        return {n.rsplit(".", 1)[1]: importlib.import_module(n) for n in names}
    new_package()
    names = ("rolling_new.models", "rolling_new.consumers", "rolling_new.publishers")
    return {n.rsplit(".", 1)[1]: importlib.import_module(n) for n in names}


@dataclass
class Recorder:
    """Every consumer's handler: counts each deletion it handled, keyed by event id."""

    handled: Counter[str] = field(default_factory=Counter)

    async def on_file_deleted_event(self, event: Any, delivery: Delivery) -> None:
        self.handled[str(event.event_id)] += 1

    async def on_file_placed_in_trash_event(self, event: Any, delivery: Delivery) -> None:
        return None

    async def on_file_purged_event(self, event: Any, delivery: Delivery) -> None:
        return None


def deletion(models: ModuleType, new: bool) -> Any:
    data: dict[str, Any] = {
        "fileId": str(uuid.uuid4()),
        "fileName": "report.pdf",
        "filePath": "/users/user-001/report.pdf",
        "fileSize": 1024,
        "mimeType": "application/pdf",
        "userId": "user-001",
        "deletedAt": "2026-12-03T10:00:00Z",
    }
    if new:
        data["checksum"] = "sha256:0123456789abcdef"
    payload = {
        "eventId": str(uuid.uuid4()),
        "eventType": "FileDeletedEvent",
        "timestamp": "2026-12-03T10:00:00Z",
        "data": data,
    }
    return models.FileDeletedEvent.model_validate_json(json.dumps(payload))


class Fleet:
    """The services of one scenario: a producer and the consumers of FileDeletedEvent, each at
    the old or the new version, upgraded one step at a time."""

    def __init__(self, servers: Any, durables: list[str]) -> None:
        self.servers = servers
        self.durables = durables
        self.recorders = {d: Recorder() for d in durables}
        self.versions = dict.fromkeys(durables, "old")
        self.producer_version = "old"
        self.tasks: dict[str, tuple[asyncio.Task[Any], asyncio.Event]] = {}
        self.published: list[str] = []

    def endpoint(self, durable: str, version: str | None = None) -> ConsumerEndpoint[Any, Any]:
        consumers = package(version or self.versions[durable])["consumers"]
        endpoint: ConsumerEndpoint[Any, Any] = consumers.ENDPOINTS[durable]
        return endpoint

    def start(self, durable: str) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            run_consumer(
                self.servers.nc,
                self.endpoint(durable),
                self.recorders[durable],
                settings=FAST,
                stop=stop,
            )
        )
        self.tasks[durable] = (task, stop)

    async def upgrade_consumer(self, durable: str) -> None:
        task, stop = self.tasks.pop(durable)
        stop.set()
        await task
        self.versions[durable] = "new"
        self.start(durable)

    async def publish(self, count: int) -> None:
        modules = package(self.producer_version)
        publisher = modules["publishers"].PublishFileDeleted(self.servers.publisher)
        for _ in range(count):
            event = deletion(modules["models"], new=self.producer_version == "new")
            await publisher.publish(event)
            self.published.append(str(event.event_id))

    async def dead_letters(self) -> list[dlq.DeadLetter]:
        return [x async for x in dlq.read_dead_letters(self.servers.js, DLQ_STREAM)]

    async def settled(self) -> None:
        """Every consumer has handled or dead-lettered everything published so far."""

        async def done() -> bool:
            letters = Counter(x.consumer for x in await self.dead_letters())
            return all(
                sum(self.recorders[d].handled.values()) + letters[d] >= len(self.published)
                for d in self.durables
            )

        await wait_until(done, what="every consumer to settle every deletion")

    async def stop(self) -> None:
        for _task, stop in self.tasks.values():
            stop.set()
        await asyncio.gather(*(task for task, _ in self.tasks.values()))
        self.tasks.clear()


async def rolling_upgrade(nats_server: NatsServer, steps: list[str]) -> dict[str, Any]:
    """Runs old services, then each step ('consumers' or 'producers') with deletions between."""
    report = plan()
    (change,) = report.changes
    async with provisioned(nats_server.url) as servers:
        fleet = Fleet(servers, change.consumers)
        for durable in fleet.durables:
            fleet.start(durable)
        await fleet.publish(PER_PHASE)
        await fleet.settled()
        for step in steps:
            if step == "consumers":
                for durable in fleet.durables:
                    await fleet.upgrade_consumer(durable)
            else:
                fleet.producer_version = "new"
            await fleet.publish(PER_PHASE)
            await fleet.settled()
        dead = await fleet.dead_letters()
        await fleet.stop()
        replayed = 0
        for durable in fleet.durables:
            result = await dlq.replay(
                servers.js,
                fleet.endpoint(durable, "new"),
                fleet.recorders[durable],
                stream=DLQ_STREAM,
            )
            assert result.kept == [], (durable, result.kept[:3])
            replayed += len(result.replayed)
        left = await fleet.dead_letters()
        handled = {d: fleet.recorders[d].handled for d in fleet.durables}
        return {
            "published": len(fleet.published),
            "consumers": len(fleet.durables),
            "dead": len(dead),
            "replayed": replayed,
            "left": len(left),
            "lost": sum(1 for d in handled for e in fleet.published if handled[d][e] == 0),
            "duplicated": sum(1 for d in handled for e in fleet.published if handled[d][e] > 1),
        }


def test_compat_prints_consumers_first_for_the_change() -> None:
    report = plan()
    (change,) = report.changes
    assert change.order is compat.Order.CONSUMERS_FIRST
    assert [s["step"] for s in report.order()] == ["upgrade consumers", "upgrade producers"]
    assert report.problems == []


async def test_upgrade_in_the_printed_order_dead_letters_nothing(nats_server: NatsServer) -> None:
    steps = [s["step"].split()[1] for s in plan().order()]
    assert steps == ["consumers", "producers"]
    figures = await rolling_upgrade(nats_server, steps)
    FIGURES.append(("printed order: consumers, then producer", *map(str, figures.values())))
    assert figures["dead"] == 0
    assert figures["lost"] == 0 and figures["duplicated"] == 0


async def test_the_opposite_order_dead_letters_and_replay_recovers(
    nats_server: NatsServer,
) -> None:
    figures = await rolling_upgrade(nats_server, ["producers", "consumers"])
    FIGURES.append(("opposite: producer, then consumers; replay", *map(str, figures.values())))
    # Every old consumer refused every deletion the new producer sent before it was upgraded.
    assert figures["dead"] == PER_PHASE * figures["consumers"]
    assert figures["replayed"] == figures["dead"] and figures["left"] == 0
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    header = (
        "scenario",
        "published",
        "consumers",
        "dead letters",
        "replayed",
        "left in DLQ",
        "lost",
        "duplicated",
    )
    print("\n| " + " | ".join(header) + " |")
    for row in FIGURES:
        print("| " + " | ".join(row) + " |")
