"""The publisher: simulated file deletions, as the file service would announce them.

Realistic enough to read in a log: a few dozen users, files whose extension matches their
media type, folders that fit the kind of file, sizes in a plausible range for each kind.
Everything random comes from one `random.Random`, so `--seed` replays the same deletions
(with the same event ids: JetStream and the services then see them as repeats).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from generated.models import DeletedFile, FileDeletedEvent
from generated.publishers import PublishFileDeleted
from handwritten.runtime import tracing
from handwritten.runtime.contract import Publish, PublishResult
from handwritten.runtime.logging import short_id

log = logging.getLogger("publisher")


@dataclass(frozen=True, slots=True)
class FileKind:
    """A kind of file: the names it takes, its extension and media type, where it lives."""

    stems: tuple[str, ...]
    extension: str
    mime_type: str
    folders: tuple[str, ...]
    min_size: int
    max_size: int


KB = 1024
MB = 1024 * KB
GB = 1024 * MB

FILE_KINDS: tuple[FileKind, ...] = (
    FileKind(
        ("report", "invoice", "contract", "resume", "paper"),
        "pdf",
        "application/pdf",
        ("documents", "work", "downloads"),
        40 * KB,
        25 * MB,
    ),
    FileKind(
        ("notes", "todo", "readme", "meeting-notes"),
        "txt",
        "text/plain",
        ("documents", "desktop"),
        0,
        200 * KB,
    ),
    FileKind(
        ("budget", "expenses", "forecast"),
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ("documents", "work"),
        10 * KB,
        8 * MB,
    ),
    FileKind(
        ("proposal", "letter", "draft"),
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ("documents", "work"),
        12 * KB,
        10 * MB,
    ),
    FileKind(
        ("slides", "pitch-deck", "all-hands"),
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ("work", "documents"),
        200 * KB,
        80 * MB,
    ),
    FileKind(
        ("screenshot", "diagram", "logo"),
        "png",
        "image/png",
        ("pictures", "desktop"),
        20 * KB,
        6 * MB,
    ),
    FileKind(
        ("photo", "IMG_4821", "holiday", "portrait"),
        "jpg",
        "image/jpeg",
        ("pictures", "camera"),
        300 * KB,
        12 * MB,
    ),
    FileKind(("icon", "chart"), "svg", "image/svg+xml", ("pictures", "work"), 1 * KB, 500 * KB),
    FileKind(
        ("backup", "archive", "project"),
        "zip",
        "application/zip",
        ("backups", "downloads"),
        1 * MB,
        4 * GB,
    ),
    FileKind(("logs", "dump"), "tar.gz", "application/gzip", ("backups", "work"), 100 * KB, 2 * GB),
    FileKind(
        ("podcast", "voice-memo", "song"),
        "mp3",
        "audio/mpeg",
        ("music", "recordings"),
        1 * MB,
        120 * MB,
    ),
    FileKind(
        ("recording", "clip", "demo"), "mp4", "video/mp4", ("videos", "camera"), 5 * MB, 3 * GB
    ),
    FileKind(
        ("export", "contacts", "data"),
        "csv",
        "text/csv",
        ("documents", "downloads"),
        1 * KB,
        50 * MB,
    ),
    FileKind(
        ("config", "package", "response"),
        "json",
        "application/json",
        ("code", "downloads"),
        100,
        2 * MB,
    ),
    FileKind(("main", "script", "analysis"), "py", "text/x-python", ("code",), 200, 300 * KB),
)


def _uuid4(rng: random.Random) -> UUID:
    """A version-4 UUID from `rng` (uuid.uuid4 uses os.urandom and cannot be seeded)."""
    return UUID(int=rng.getrandbits(128), version=4)


class DeletionSimulator:
    """Makes FileDeletedEvents for a fixed population of users, all from one seeded rng."""

    def __init__(self, rng: random.Random, *, users: int = 24) -> None:
        if users < 1:
            raise ValueError("at least one user is needed")
        self._rng = rng
        self.users: tuple[str, ...] = tuple(str(_uuid4(rng)) for _ in range(users))

    def file_name(self, kind: FileKind) -> str:
        rng = self._rng
        stem = rng.choice(kind.stems)
        roll = rng.random()
        if roll < 0.25:
            stem = f"{stem}-{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}"
        elif roll < 0.40:
            stem = f"{stem} ({rng.randint(1, 9)})"
        elif roll < 0.50:
            stem = f"{stem}_v{rng.randint(2, 7)}"
        return f"{stem}.{kind.extension}"

    def file_size(self, kind: FileKind) -> int:
        """Log-uniform between the kind's bounds: most files small, a few large."""
        low = max(kind.min_size, 1)
        size = int(math.exp(self._rng.uniform(math.log(low), math.log(kind.max_size))))
        return 0 if kind.min_size == 0 and self._rng.random() < 0.05 else size

    def next_event(self, now: datetime | None = None) -> FileDeletedEvent:
        rng = self._rng
        moment = datetime.now(UTC) if now is None else now
        deleted_at = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        kind = rng.choice(FILE_KINDS)
        user = rng.choice(self.users)
        name = self.file_name(kind)
        folder = rng.choice(kind.folders)
        return FileDeletedEvent(
            event_id=_uuid4(rng),
            event_type="FileDeletedEvent",
            timestamp=deleted_at + timedelta(milliseconds=rng.randint(1, 40)),
            data=DeletedFile(
                file_id=_uuid4(rng),
                file_name=name,
                file_path=f"/users/{user}/{folder}/{name}",
                file_size=self.file_size(kind),
                mime_type=kind.mime_type,
                user_id=user,
                deleted_at=deleted_at,
            ),
        )


@dataclass(frozen=True, slots=True)
class PublishedDeletion:
    event: FileDeletedEvent
    result: PublishResult


def describe_published(event: FileDeletedEvent, result: PublishResult) -> str:
    """`📤 Published FileDeletedEvent: 04d05b5f... (file: screenshot.png, user: a1b2c3d4...) [seq: 23]`"""
    return (
        f"📤 Published FileDeletedEvent: {short_id(event.event_id)} "
        f"(file: {event.data.file_name}, user: {short_id(event.data.user_id)}) [seq: {result.seq}]"
        + (" (duplicate: JetStream kept the first)" if result.duplicate else "")
    )


def log_published(event: FileDeletedEvent, result: PublishResult) -> None:
    log.info(
        "%s",
        describe_published(event, result),
        extra={
            "step": "published",
            "event_id": str(event.event_id),
            "seq": result.seq,
            "duplicate": result.duplicate,
        },
    )


async def publish_deletions(
    js: Publish,
    simulator: DeletionSimulator,
    *,
    count: int | None,
    rate: float = 1.0,
    stop: asyncio.Event | None = None,
    on_published: Callable[[FileDeletedEvent, PublishResult], None] = log_published,
) -> list[PublishedDeletion]:
    """Publish `count` deletions (None: until `stop`) at `rate` per second (0: at once).

    The pace follows a fixed schedule from the start, so a slow PubAck does not slow the
    average rate down; each publish waits for its PubAck before the next one.
    """
    if rate < 0:
        raise ValueError("rate must be 0 (as fast as possible) or positive")
    if count is not None and count < 0:
        raise ValueError("count must not be negative")
    publisher = PublishFileDeleted(js)
    published: list[PublishedDeletion] = []
    started = time.monotonic()
    index = 0
    while count is None or index < count:
        if stop is not None and stop.is_set():
            break
        if rate > 0 and index > 0:
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                    except TimeoutError:
                        pass
                    else:
                        break
        event = simulator.next_event()
        result = await publisher.publish(event, headers=tracing.caused_by(name="deletion"))
        published.append(PublishedDeletion(event, result))
        on_published(event, result)
        index += 1
    return published


def deletion_ids(published: Sequence[PublishedDeletion]) -> list[UUID]:
    return [p.event.event_id for p in published]
