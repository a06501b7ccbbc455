"""How much of each stream's limits the backlog of each durable has used, before it is spent.

A `discard: new` stream refuses publishes once a limit is reached, and `max_age` removes a
message however many consumers still need it. Both are visible in advance: for every durable,
the oldest message it still needs (the one after its ack floor, matching its filter) has an
age, a fraction of `max_age`; the messages it still needs (pending and unacknowledged) are a
fraction of the message limit that applies to them (`max_msgs_per_subject` when the filter is
one subject, else `max_msgs`); and the stream as a whole uses a fraction of `max_bytes`,
`max_msgs` and, for its fullest subject, `max_msgs_per_subject`. `read_headroom` reads them
all; `HeadroomMonitor` logs a warning at `warn_at` (0.8 by default) and an error when a
message a durable still needed was removed (by `max_age`, or a purge) before it acknowledged
it: in an interest stream nothing else removes such a message, so that is data lost to the
durable, said out loud.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo

from handwritten.runtime.addresses import subject_matches, wildcard_tokens
from handwritten.runtime.errors import NO_MESSAGE_FOUND, is_jetstream_error

log = logging.getLogger(__name__)

WARN_AT = 0.8
"""Share of a limit at which headroom is reported as a warning."""
WARN_ENV = "FILETRASH_HEADROOM_WARN"
INTERVAL_ENV = "FILETRASH_HEADROOM_INTERVAL"
INTERVAL = 60.0
"""Seconds between two checks of a running service."""


@dataclass(frozen=True, slots=True)
class Usage:
    """One limit of one stream, and how much of it is used (`durable` None: the stream)."""

    stream: str
    durable: str | None
    limit: str
    used: float
    allowed: float
    detail: str = ""

    @property
    def share(self) -> float:
        return self.used / self.allowed if self.allowed > 0 else 0.0

    def describe(self) -> str:
        who = f"{self.stream} {self.durable}" if self.durable else f"{self.stream} (stream)"
        used, allowed = _figure(self.limit, self.used), _figure(self.limit, self.allowed)
        what = f" ({self.detail})" if self.detail else ""
        return f"{who}: {self.limit} {self.share:.1%} used, {used} of {allowed}{what}"


def _figure(limit: str, value: float) -> str:
    if limit == "max_age":
        return _duration(value)
    if limit == "max_bytes":
        return f"{value / 2**20:,.1f} MiB"
    return f"{int(value):,}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


def warn_at() -> float:
    """The warning threshold: `FILETRASH_HEADROOM_WARN` (a share, 0 < x <= 1) or 0.8."""
    raw = os.environ.get(WARN_ENV)
    if not raw:
        return WARN_AT
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError(f"{WARN_ENV} must be a share between 0 and 1, not {raw!r}")
    return value


def interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    return float(raw) if raw else INTERVAL


@dataclass(frozen=True, slots=True)
class OldestNeeded:
    """The oldest message `durable` still needs: its stream sequence and age in seconds."""

    stream: str
    durable: str
    seq: int
    age: float
    ack_floor: int


async def _oldest_needed(
    js: JetStreamContext, stream: str, consumer: ConsumerInfo
) -> OldestNeeded | None:
    pending = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
    if pending == 0:
        return None
    floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
    subject = consumer.config.filter_subject or None
    try:
        msg = await js.get_msg(stream, seq=floor + 1, next=True, subject=subject)
    except Exception as error:
        if is_jetstream_error(error, NO_MESSAGE_FOUND):
            return None
        raise
    age = time.time() - msg.time.timestamp() if msg.time is not None else 0.0
    return OldestNeeded(stream, consumer.name, int(msg.seq or 0), age, floor)


async def read_headroom(
    js: JetStreamContext, streams: Iterable[str], durables: Iterable[str] | None = None
) -> tuple[list[Usage], list[OldestNeeded]]:
    """Every limit of `streams` with its usage, and each durable's oldest needed message;
    with `durables`, only theirs (a service reads its own durable: its NATS role may read no
    other's info)."""
    only = None if durables is None else tuple(durables)
    usages: list[Usage] = []
    oldest: list[OldestNeeded] = []
    for name in streams:
        info = await js.stream_info(name)
        usages.extend(_stream_usage(info))
        config = info.config
        per_subject = config.max_msgs_per_subject or -1
        counts: dict[str, int] = {}
        if per_subject > 0:
            with_subjects = await js.stream_info(name, subjects_filter=">")
            counts = dict(with_subjects.state.subjects or {})
            if counts:
                subject, count = max(counts.items(), key=lambda item: item[1])
                usages.append(
                    Usage(name, None, "max_msgs_per_subject", count, per_subject, subject)
                )
        if only is None:
            consumers = await js.consumers_info(name)
        else:
            consumers = [await js.consumer_info(name, durable) for durable in only]
        for consumer in consumers:
            if not consumer.config.durable_name:
                continue
            needed = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
            subject = consumer.config.filter_subject or ""
            if per_subject > 0 and subject and not wildcard_tokens(subject):
                usages.append(
                    Usage(name, consumer.name, "max_msgs_per_subject", needed, per_subject)
                )
            elif per_subject > 0:
                # A wildcard filter: its backlog on the fullest subject it reads is at most
                # that subject's count and at most everything it still needs.
                fullest = max(
                    (n for s, n in counts.items() if subject_matches(subject or ">", s)), default=0
                )
                usages.append(
                    Usage(
                        name,
                        consumer.name,
                        "max_msgs_per_subject",
                        min(needed, fullest),
                        per_subject,
                        "fullest subject it reads, at most",
                    )
                )
            elif (config.max_msgs or -1) > 0:
                usages.append(Usage(name, consumer.name, "max_msgs", needed, config.max_msgs or 0))
            first = await _oldest_needed(js, name, consumer)
            if first is None:
                continue
            oldest.append(first)
            if (config.max_age or 0) > 0:
                usages.append(
                    Usage(
                        name,
                        consumer.name,
                        "max_age",
                        first.age,
                        float(config.max_age or 0),
                        f"oldest needed: #{first.seq}",
                    )
                )
    return usages, oldest


def _stream_usage(info: StreamInfo) -> list[Usage]:
    config, state = info.config, info.state
    name = config.name or ""
    usages = []
    if (config.max_bytes or -1) > 0:
        usages.append(Usage(name, None, "max_bytes", state.bytes, config.max_bytes or 0))
    if (config.max_msgs or -1) > 0:
        usages.append(Usage(name, None, "max_msgs", state.messages, config.max_msgs or 0))
    return usages


def report(usages: Sequence[Usage], threshold: float) -> list[Usage]:
    """Log every usage at or past `threshold` as a warning; return them."""
    over = [u for u in usages if u.share >= threshold]
    for usage in over:
        log.warning(
            "⚠️ headroom: %s",
            usage.describe(),
            extra={
                "step": "headroom",
                "stream": usage.stream,
                "durable": usage.durable,
                "limit": usage.limit,
                "share": round(usage.share, 4),
            },
        )
    return over


class HeadroomMonitor:
    """Checks `streams` every `every` seconds and logs what `report` and `expired` find."""

    def __init__(
        self,
        js: JetStreamContext,
        streams: Sequence[str],
        *,
        every: float,
        threshold: float,
        durables: Sequence[str] | None = None,
    ) -> None:
        self.js = js
        self.durables = None if durables is None else tuple(durables)
        self.streams = tuple(streams)
        self.every = every
        self.threshold = threshold
        self.previous: dict[tuple[str, str], OldestNeeded] = {}
        self.removed: list[OldestNeeded] = []
        """Messages a durable needed that were removed before it acknowledged them."""

    async def check(self) -> list[Usage]:
        usages, oldest = await read_headroom(self.js, self.streams, self.durables)
        now = {(o.stream, o.durable): o for o in oldest}
        for key, before in self.previous.items():
            after = now.get(key)
            if after is not None and after.seq == before.seq:
                continue
            if await self._acknowledged_or_present(before):
                continue
            self.removed.append(before)
            log.error(
                "❌ headroom: %s %s: message #%d, which it had not acknowledged, was removed "
                "from the stream (max_age or a purge) — the durable will never see it",
                before.stream,
                before.durable,
                before.seq,
                extra={
                    "step": "headroom-lost",
                    "stream": before.stream,
                    "durable": before.durable,
                    "seq": before.seq,
                },
            )
        self.previous = now
        return report(usages, self.threshold)

    async def _acknowledged_or_present(self, needed: OldestNeeded) -> bool:
        try:
            consumer = await self.js.consumer_info(needed.stream, needed.durable)
        except Exception:
            return True  # the durable is gone: nothing to say about its messages
        floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
        delivered = consumer.delivered.stream_seq if consumer.delivered else 0
        if floor >= needed.seq or delivered >= needed.seq:
            return True
        try:
            await self.js.get_msg(needed.stream, seq=needed.seq)
        except Exception as error:
            return not is_jetstream_error(error, NO_MESSAGE_FOUND)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Check until `stop`; a failed check is logged and tried again next time."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception as error:
                log.warning("headroom check failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every)
