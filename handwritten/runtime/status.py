"""`filetrash status`: the system as the spec defines it, live.

Per stream: messages, bytes, oldest and newest, and the use of each limit. Per durable: pending,
ack pending, redelivered, waiting pulls (each running instance keeps one open), last activity,
dead letters by reason, and its headroom: how much of each of its stream's limits the messages
it still needs (from the oldest one it has not acked on) already take — at 100% the stream
starts dropping what the durable has not processed. And the drift of the live topology from
the spec (what `filetrash provision --plan` would change).

Everything is read through the JetStream API as JSON (stream and consumer info, message get),
so the numbers are the server's, not a client's idea of them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client
from nats.js.api import StreamConfig

from handwritten.runtime.addresses import subject_matches
from handwritten.runtime.contract import ConsumerBinding, ConsumerEndpoint
from handwritten.runtime.deadletter import REASON_HEADER
from handwritten.runtime.headroom import read_headroom
from handwritten.runtime.provision import format_bytes, format_duration, provision

API = "$JS.API"
DLQ_SCAN_LIMIT = 2000
"""Dead letters read per durable to count their reasons; past it the counts say `≥`."""

EXIT_OK, EXIT_DRIFT, EXIT_LAG = 0, 4, 5


@dataclass
class StreamStatus:
    name: str
    exists: bool
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    oldest: str | None = None
    newest: str | None = None
    limits: dict[str, float] = field(default_factory=dict)
    """max_bytes, max_msgs, max_age (seconds): only those the stream sets."""
    use: dict[str, float] = field(default_factory=dict)
    """Fraction of each limit in use now."""


@dataclass
class ConsumerStatus:
    durable: str
    stream: str
    exists: bool
    pending: int = 0
    ack_pending: int = 0
    redelivered: int = 0
    waiting_pulls: int = 0
    last_active: str | None = None
    oldest_needed_seq: int | None = None
    headroom_used: dict[str, float] = field(default_factory=dict)
    """Fraction of each of the stream's limits that the messages this durable still needs take
    (handwritten/runtime/headroom.py: the per-subject limit for a one-subject filter, the age
    of the oldest message it still needs against max_age)."""
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    reasons_complete: bool = True

    @property
    def worst_headroom(self) -> float:
        return max(self.headroom_used.values(), default=0.0)


@dataclass
class SystemStatus:
    streams: list[StreamStatus]
    consumers: list[ConsumerStatus]
    drift: list[str]
    read_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at,
            "streams": [asdict(s) for s in self.streams],
            "consumers": [
                {**asdict(c), "worst_headroom_used": c.worst_headroom} for c in self.consumers
            ],
            "drift": self.drift,
        }


async def _api(nc: Client, subject: str, request: Mapping[str, Any] | None = None) -> Any:
    reply = await nc.request(f"{API}.{subject}", json.dumps(request or {}).encode(), timeout=5)
    return json.loads(reply.data)


def _when(text: str | None) -> datetime | None:
    """A server timestamp (RFC 3339, nanoseconds); None for none or the zero time."""
    if not text or text.startswith("0001-"):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def read_status(
    nc: Client,
    streams: Mapping[str, StreamConfig],
    consumers: Mapping[str, ConsumerBinding],
    endpoints: Mapping[str, ConsumerEndpoint[Any, Any]],
) -> SystemStatus:
    now = datetime.now(UTC)
    stream_status: dict[str, StreamStatus] = {}
    for name in streams:
        info = await _api(nc, f"STREAM.INFO.{name}")
        if "error" in info:
            stream_status[name] = StreamStatus(name, exists=False)
            continue
        state, live = info["state"], info["config"]
        status = StreamStatus(
            name,
            exists=True,
            messages=state.get("messages", 0),
            bytes=state.get("bytes", 0),
            first_seq=state.get("first_seq", 0),
            last_seq=state.get("last_seq", 0),
            oldest=state.get("first_ts"),
            newest=state.get("last_ts"),
        )
        for key, value in (
            ("max_bytes", live.get("max_bytes", -1)),
            ("max_msgs", live.get("max_msgs", -1)),
            ("max_age", live.get("max_age", 0) / 1e9),
            ("max_msgs_per_subject", live.get("max_msgs_per_subject", -1)),
        ):
            if value and value > 0:
                status.limits[key] = float(value)
        oldest = _when(status.oldest) if status.messages else None
        used_now = {
            "max_bytes": status.bytes,
            "max_msgs": status.messages,
            "max_age": (now - oldest).total_seconds() if oldest else 0.0,
        }  # the fullest subject's share comes from read_headroom below
        for key, limit in status.limits.items():
            if key in used_now:
                status.use[key] = used_now[key] / limit
        stream_status[name] = status
    present = [name for name, s in stream_status.items() if s.exists]
    usages, oldest_needed = await read_headroom(nc.jetstream(), present)
    for usage in usages:
        if usage.durable is None:  # the stream's own limits, its fullest subject included
            stream_status[usage.stream].use[usage.limit] = usage.share
    consumer_status = []
    for durable, binding in consumers.items():
        found = await _consumer(nc, durable, binding, endpoints, streams)
        found.headroom_used = {
            u.limit: u.share
            for u in usages
            if u.durable == durable and u.stream == binding.stream and u.share > 0
        }
        found.oldest_needed_seq = next(
            (o.seq for o in oldest_needed if o.durable == durable and o.stream == binding.stream),
            None,
        )
        consumer_status.append(found)
    plan = await provision(nc.jetstream(), streams, consumers, apply=False)
    drift = (
        [line for line in plan.render().splitlines() if line.strip()] if plan.has_changes else []
    )
    return SystemStatus(
        list(stream_status.values()), consumer_status, drift, now.isoformat(timespec="seconds")
    )


async def _consumer(
    nc: Client,
    durable: str,
    binding: ConsumerBinding,
    endpoints: Mapping[str, ConsumerEndpoint[Any, Any]],
    streams: Mapping[str, StreamConfig],
) -> ConsumerStatus:
    info = await _api(nc, f"CONSUMER.INFO.{binding.stream}.{durable}")
    if "error" in info:
        return ConsumerStatus(durable, binding.stream, exists=False)
    delivered, floor = info.get("delivered", {}), info.get("ack_floor", {})
    status = ConsumerStatus(
        durable,
        binding.stream,
        exists=True,
        pending=info.get("num_pending", 0),
        ack_pending=info.get("num_ack_pending", 0),
        redelivered=info.get("num_redelivered", 0),
        waiting_pulls=info.get("num_waiting", 0),
        last_active=delivered.get("last_active") or floor.get("last_active"),
    )
    endpoint = endpoints.get(durable)
    if endpoint is not None:
        await _dead_letters(nc, status, endpoint.dead_letter_subject, streams)
    return status


async def _dead_letters(
    nc: Client, status: ConsumerStatus, subject: str, streams: Mapping[str, StreamConfig]
) -> None:
    dlq = next(
        (
            n
            for n, c in streams.items()
            if any(subject_matches(p, subject) for p in c.subjects or [])
        ),
        None,
    )
    if dlq is None:
        return
    info = await _api(nc, f"STREAM.INFO.{dlq}", {"subjects_filter": subject})
    status.dead_letters = int(info.get("state", {}).get("subjects", {}).get(subject, 0))
    seq = 1
    for _ in range(min(status.dead_letters, DLQ_SCAN_LIMIT)):
        found = await _api(nc, f"STREAM.MSG.GET.{dlq}", {"seq": seq, "next_by_subj": subject})
        message = found.get("message")
        if not message:
            break
        reason = _header(message.get("hdrs"), REASON_HEADER) or "unknown"
        status.dead_letter_reasons[reason] = status.dead_letter_reasons.get(reason, 0) + 1
        seq = int(message["seq"]) + 1
    status.reasons_complete = status.dead_letters <= DLQ_SCAN_LIMIT


def _header(encoded: str | None, name: str) -> str | None:
    if not encoded:
        return None
    for line in base64.b64decode(encoded).decode(errors="replace").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def verdict(status: SystemStatus, *, max_pending: int | None, max_headroom: float) -> int:
    """EXIT_LAG when a durable lags past `max_pending`, or its needed messages take more than
    `max_headroom` of a stream limit; else EXIT_DRIFT when the topology drifted from the spec
    (a stream or durable missing included)."""
    for consumer in status.consumers:
        if consumer.exists and consumer.worst_headroom > max_headroom:
            return EXIT_LAG
        if max_pending is not None and consumer.pending + consumer.ack_pending > max_pending:
            return EXIT_LAG
    return EXIT_DRIFT if status.drift else EXIT_OK


def render(status: SystemStatus) -> str:
    lines = [f"filetrash status at {status.read_at}", "", "STREAMS"]
    lines.append(f"  {'name':<22}{'messages':>10}{'bytes':>12}  {'oldest':<22}use of limits")
    for s in status.streams:
        if not s.exists:
            lines.append(f"  {s.name:<22}missing — run `filetrash provision`")
            continue
        use = (
            ", ".join(f"{_limit(k, s.limits[k])} {v:.0%}" for k, v in s.use.items()) or "no limits"
        )
        oldest = (s.oldest or "—")[:19] if s.messages else "—"
        lines.append(f"  {s.name:<22}{s.messages:>10,}{_size(s.bytes):>12}  {oldest:<22}{use}")
    lines += ["", "CONSUMERS"]
    lines.append(
        f"  {'durable':<24}{'pending':>9}{'ack pend':>9}{'redeliv':>9}{'pulls':>6}  "
        f"{'headroom used':<16}{'dead letters':<26}last active"
    )
    for c in status.consumers:
        if not c.exists:
            lines.append(f"  {c.durable:<24}missing on {c.stream} — run `filetrash provision`")
            continue
        letters = ", ".join(f"{r} {n}" for r, n in sorted(c.dead_letter_reasons.items()))
        letters = f"{c.dead_letters}" + (
            f" ({letters}{'' if c.reasons_complete else ', …'})" if letters else ""
        )
        headroom = f"{c.worst_headroom:.0%}" if c.headroom_used else "—"
        warn = " ⚠️" if c.worst_headroom >= 0.8 else ""
        lines.append(
            f"  {c.durable:<24}{c.pending:>9,}{c.ack_pending:>9,}{c.redelivered:>9,}"
            f"{c.waiting_pulls:>6}  {headroom + warn:<16}{letters:<26}{(c.last_active or '—')[:19]}"
        )
    lines += ["", "DRIFT FROM THE SPEC"]
    lines += [f"  {line}" for line in status.drift] or ["  none: the live topology is the spec's"]
    return "\n".join(lines)


def _size(count: int) -> str:
    """Bytes, rounded for a table: `1.2 MiB`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _limit(key: str, value: float) -> str:
    if key == "max_bytes":
        return format_bytes(int(value))
    if key == "max_age":
        return format_duration(value)
    per = "/subject" if key == "max_msgs_per_subject" else ""
    return f"{int(value):,} msgs{per}"
