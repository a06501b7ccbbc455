"""The demo's five services as the benchmark sees them: which durable each consumes, what is
published for it before a run, what it must have done once its durable is drained, and the
commands of the contenders that do its work.

Contenders (each its own process, bound to the service's durable):

- `ceiling` — nats-py's `fetch` and `ack`, nothing else (`tests/bench/workers.py`): the
  ceiling of nats-py's public pull API (pulls of one's own can go past it);
- `raw` — the hand-tuned nats-py + asyncpg pipeline with the same guarantees
  (`tests/bench/raw.py`);
- `faststream` — an idiomatic FastStream 0.7 app doing the same work
  (`tests/bench/faststream_app.py`);
- `filetrash` — `python -m handwritten.cli run SERVICE`, as shipped;
- for the trash-processor only, on request: `naive` (the article's one-at-a-time loop) and
  `filetrash ×2` (two competing processes).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC

from generated.models import FileDeletedEvent, FilePlacedInTrashEvent, TrashEntry
from handwritten.filetrash import ids
from handwritten.filetrash.publisher import DeletionSimulator

DELETED = "files.deleted"
TRASHED = "files.trashed"
RETENTION_DAYS = 30

Event = tuple[str, str, bytes]
"""(subject, Nats-Msg-Id, payload) of a pre-published event."""

CONTENDERS = ("ceiling", "raw", "faststream", "filetrash")
EXTRA_CONTENDERS = ("naive", "filetrash ×2")
"""Run only when asked for (`--contender`), and for the trash-processor only."""


@dataclass(frozen=True)
class BenchService:
    name: str
    durable: str
    tables: tuple[str, ...]
    """Emptied before every run."""
    events: Callable[[int, int], list[Event]]
    """n events to pre-publish, from a seed."""
    checks: dict[str, str]
    """name → SQL counting what the service must have done; each must equal n."""
    keep_trash_events: bool = False
    """Whether a second durable keeps the trash events the service publishes, to count them."""

    def commands(self, contender: str, nats_url: str, database_url: str) -> list[list[str]] | None:
        """The processes of a contender, None if it does not exist for this service."""
        python = sys.executable
        service = [python, "-m", "handwritten.cli", "run", self.name]
        bench = [nats_url, database_url]
        if contender == "ceiling":
            return [
                [
                    python,
                    "-m",
                    "tests.bench.workers",
                    "ceiling",
                    nats_url,
                    "--durable",
                    self.durable,
                ]
            ]
        if contender == "raw":
            return [[python, "-m", "tests.bench.raw", self.name, *bench]]
        if contender == "faststream":
            return [[python, "-m", "tests.bench.faststream_app", self.name, *bench]]
        if contender == "filetrash":
            return [service]
        if self.name != "trash-processor":
            return None
        if contender == "naive":
            return [[python, "-m", "tests.bench.workers", "naive", *bench]]
        if contender == "filetrash ×2":
            return [service, service]
        return None


def deletion_events(count: int, seed: int) -> list[FileDeletedEvent]:
    simulator = DeletionSimulator(random.Random(seed))
    return [simulator.next_event() for _ in range(count)]


def _wire(event: FileDeletedEvent | FilePlacedInTrashEvent) -> bytes:
    return event.model_dump_json(by_alias=True, exclude_none=True).encode()


def deletions(count: int, seed: int) -> list[Event]:
    """Simulated deletions, serialised as the generated publisher does."""
    return [(DELETED, str(e.event_id), _wire(e)) for e in deletion_events(count, seed)]


def trash_events(count: int, seed: int) -> list[Event]:
    """The trash events the trash-processor would publish for simulated deletions."""
    from datetime import timedelta

    out: list[Event] = []
    for deletion in deletion_events(count, seed):
        file = deletion.data
        event = FilePlacedInTrashEvent(
            event_id=ids.trash_event_id(deletion.event_id),
            event_type="FilePlacedInTrashEvent",
            timestamp=deletion.timestamp.astimezone(UTC),
            data=TrashEntry(
                trash_id=ids.trash_id(deletion.event_id),
                file_id=file.file_id,
                file_name=file.file_name,
                user_id=file.user_id,
                trashed_at=file.deleted_at,
                expires_at=file.deleted_at + timedelta(days=RETENTION_DAYS),
                original_event_id=deletion.event_id,
            ),
        )
        out.append((TRASHED, str(event.event_id), _wire(event)))
    return out


def mixed_events(count: int, seed: int) -> list[Event]:
    """Half deletions, half trash events (of other deletions): what analytics reads."""
    half = count // 2
    return deletions(count - half, seed) + trash_events(half, seed + 1000)


SERVICES: dict[str, BenchService] = {
    s.name: s
    for s in (
        BenchService(
            "trash-processor",
            "trash-processor",
            ("trashed_files",),
            deletions,
            {
                "rows": "SELECT count(*) FROM trashed_files",
                "rows with trash_event_seq": (
                    "SELECT count(*) FROM trashed_files WHERE trash_event_seq IS NOT NULL"
                ),
            },
            keep_trash_events=True,
        ),
        BenchService(
            "audit-logger",
            "audit-logger",
            ("audit_log",),
            deletions,
            {"rows": "SELECT count(*) FROM audit_log"},
        ),
        BenchService(
            "analytics-service",
            "analytics-service",
            ("analytics_processed_events", "analytics_event_counts", "analytics_user_counts"),
            mixed_events,
            {
                "rows": "SELECT count(*) FROM analytics_processed_events",
                "counted by type": ("SELECT coalesce(sum(events), 0) FROM analytics_event_counts"),
                "counted by user": ("SELECT coalesce(sum(events), 0) FROM analytics_user_counts"),
            },
        ),
        BenchService(
            "cleanup-service",
            "cleanup-service",
            ("cleanup_queue",),
            deletions,
            {"rows": "SELECT count(*) FROM cleanup_queue"},
        ),
        BenchService(
            "notification-service",
            "notification-service",
            ("user_notifications",),
            trash_events,
            {"rows": "SELECT count(*) FROM user_notifications"},
        ),
    )
}
