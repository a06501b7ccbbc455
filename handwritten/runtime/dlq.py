"""Dead-letter tooling (`filetrash dlq list|show|replay`): read the dead-letter streams and
redrive their messages, as SQS redrives a dead-letter queue.

How a replay reaches only the consumer that gave up: it runs that consumer's own endpoint
(decode with the models of the spec as it is now, then its handler, the one `filetrash run
DURABLE` starts) on the dead letter, in this process. Two other ways were weighed:
- republishing to the original subject would reach every durable that filters it: a fan-out
  consumer that already handled the message would get it again, and no filter can exclude a
  header. It would also need a new Nats-Msg-Id (the original's is in the duplicate window or
  long gone), so the copy is a new event for everyone.
- a per-consumer replay subject needs a subject in the original stream and a second filter on
  every durable (`filter_subjects`): a topology change to every consumer, for a tool.
The handler gets the original's Delivery (its subject, stream and sequence from the dead
letter's headers, one more delivery), so its idempotency works as for a redelivery; what it
publishes keeps its Nats-Msg-Ids, so a replay of something already half done stores nothing
twice. A dead letter is deleted from its stream only after the handler returned (its work is
durably done, as before an ack); one that fails again or is still refused stays, and says why.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from pydantic import ValidationError

from handwritten.runtime.addresses import subject_matches
from handwritten.runtime.consume import classify_invalid, read_parameters
from handwritten.runtime.contract import ConsumerEndpoint, Delivery, PermanentError
from handwritten.runtime.deadletter import (
    CONSUMER_HEADER,
    DELIVERIES_HEADER,
    DETAIL_HEADER,
    REASON_HEADER,
    SEQUENCE_HEADER,
    STREAM_HEADER,
    SUBJECT_HEADER,
    TRUNCATED_HEADER,
)

NO_MESSAGE_FOUND = 10037
"""JetStream's err_code for a get past the last message (or a deleted one)."""
STREAM_NOT_FOUND = 10059


class DlqError(Exception):
    """Something the user asked for that cannot be done (an unknown sequence or durable)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream: str
    """The dead-letter stream it is stored in."""
    seq: int
    subject: str
    time: datetime | None
    headers: Mapping[str, str]
    data: bytes

    @property
    def consumer(self) -> str:
        return self.headers.get(CONSUMER_HEADER, "?")

    @property
    def reason(self) -> str:
        return self.headers.get(REASON_HEADER, "?")

    @property
    def detail(self) -> str:
        return self.headers.get(DETAIL_HEADER, "")

    @property
    def origin(self) -> tuple[str, str, int]:
        """The stream, subject and sequence of the original message."""
        seq = self.headers.get(SEQUENCE_HEADER, "0")
        return (
            self.headers.get(STREAM_HEADER, "?"),
            self.headers.get(SUBJECT_HEADER, "?"),
            int(seq) if seq.isdigit() else 0,
        )


def dead_letter_streams(
    endpoints: Mapping[str, ConsumerEndpoint[Any, Any]],
    stream_subjects: Mapping[str, Sequence[str]],
) -> list[str]:
    """The streams that capture some endpoint's dead-letter subject."""
    found = {
        name
        for endpoint in endpoints.values()
        for name, subjects in stream_subjects.items()
        if any(subject_matches(pattern, endpoint.dead_letter_subject) for pattern in subjects)
    }
    return sorted(found)


async def read_dead_letters(
    js: JetStreamContext,
    stream: str,
    *,
    first: int = 1,
    last: int | None = None,
    subject: str = ">",
) -> AsyncIterator[DeadLetter]:
    """The messages of the dead-letter stream on `subject` from sequence `first`, oldest first
    (deleted ones skipped: the server looks for the next one on the subject)."""
    seq = first
    while last is None or seq <= last:
        try:
            raw = await js.get_msg(stream, seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError as error:
            if error.err_code == NO_MESSAGE_FOUND:
                return
            if error.err_code == STREAM_NOT_FOUND:
                raise DlqError(
                    f"stream {stream} does not exist: run `filetrash provision`"
                ) from None
            raise
        if raw.seq is None or (last is not None and raw.seq > last):
            return
        yield DeadLetter(
            stream=stream,
            seq=raw.seq,
            subject=raw.subject or "",
            time=_time(raw.time),
            headers=dict(raw.headers or {}),
            data=raw.data or b"",
        )
        seq = raw.seq + 1


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


@dataclass
class Group:
    consumer: str
    reason: str
    count: int = 0
    oldest: DeadLetter | None = None
    newest: DeadLetter | None = None


def summarise(letters: Sequence[DeadLetter]) -> list[Group]:
    """Counts, oldest and newest per consumer and reason."""
    groups: dict[tuple[str, str], Group] = {}
    for letter in letters:
        group = groups.setdefault(
            (letter.consumer, letter.reason), Group(letter.consumer, letter.reason)
        )
        group.count += 1
        group.oldest = group.oldest or letter
        group.newest = letter
    return [groups[key] for key in sorted(groups)]


def render_list(groups: Sequence[Group]) -> str:
    if not groups:
        return "no dead letters\n"
    rows = [("consumer", "reason", "count", "oldest", "newest")]
    for g in groups:
        rows.append((g.consumer, g.reason, str(g.count), _when(g.oldest), _when(g.newest)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i == 2 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def _when(letter: DeadLetter | None) -> str:
    if letter is None:
        return "-"
    at = letter.time.strftime("%Y-%m-%d %H:%M:%S") if letter.time else "?"
    return f"#{letter.seq} {at}"


def render_show(letter: DeadLetter) -> str:
    stream, subject, seq = letter.origin
    lines = [
        f"dead letter {letter.stream} #{letter.seq} on {letter.subject}",
        f"why: {letter.consumer} gave up: {letter.reason} — {letter.detail}",
        f"from: {stream} #{seq} on {subject}, after "
        f"{letter.headers.get(DELIVERIES_HEADER, '?')} deliveries",
        "headers:",
        *(f"  {k}: {v}" for k, v in sorted(letter.headers.items())),
        "payload:",
    ]
    try:
        lines.append(json.dumps(json.loads(letter.data), indent=2, ensure_ascii=False))
    except ValueError:
        lines.append(repr(letter.data))
    if TRUNCATED_HEADER in letter.headers:
        lines.append(
            f"(cut short: the original has {letter.headers[TRUNCATED_HEADER]} bytes, "
            f"in {stream} at #{seq})"
        )
    return "\n".join(lines) + "\n"


@dataclass
class ReplayReport:
    replayed: list[int] = field(default_factory=list)
    """Dead-letter sequences handled again and removed from the DLQ."""
    would_replay: list[int] = field(default_factory=list)
    """--dry-run: the ones the consumer's models accept now."""
    kept: list[tuple[int, str]] = field(default_factory=list)
    """Still refused or failed again, with why; they stay in the DLQ."""

    def render(self, durable: str, dry_run: bool) -> str:
        lines = []
        if dry_run:
            lines.append(
                f"dry run: {len(self.would_replay)} dead letter(s) of {durable} would be "
                f"replayed, {len(self.kept)} would stay"
            )
        else:
            lines.append(
                f"{len(self.replayed)} dead letter(s) of {durable} replayed and removed from "
                f"the DLQ, {len(self.kept)} kept"
            )
        for seq, why in self.kept:
            lines.append(f"  kept #{seq}: {why}")
        return "\n".join(lines) + "\n"


def parse_range(text: str | None) -> tuple[int, int | None]:
    """`A-B`, `A-` or `A`: the dead-letter sequences to replay."""
    if not text:
        return 1, None
    first, sep, last = text.partition("-")
    try:
        low = int(first)
        high = (int(last) if last else None) if sep else low
    except ValueError:
        raise DlqError(f"--seq {text!r}: write A-B, A- or A (dead-letter sequences)") from None
    if low < 1 or (high is not None and high < low):
        raise DlqError(f"--seq {text!r}: an empty range")
    return low, high


async def replay(
    js: JetStreamContext,
    endpoint: ConsumerEndpoint[Any, Any],
    handler: Any,
    *,
    stream: str,
    reason: str | None = None,
    first: int = 1,
    last: int | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Hands each selected dead letter of `endpoint.durable` to its handler again."""
    report = ReplayReport()
    letters = read_dead_letters(
        js, stream, first=first, last=last, subject=endpoint.dead_letter_subject
    )
    async for letter in letters:
        if letter.consumer != endpoint.durable or (reason and letter.reason != reason):
            continue
        data = letter.data
        origin_stream, origin_subject, origin_seq = letter.origin
        if TRUNCATED_HEADER in letter.headers:
            try:
                original = await js.get_msg(origin_stream, origin_seq)
            except nats.js.errors.NotFoundError:
                report.kept.append((letter.seq, "cut short, and the original left its stream"))
                continue
            data = original.data or b""
        parameters = read_parameters(endpoint, origin_subject)
        if isinstance(parameters, str):
            report.kept.append((letter.seq, f"invalid-subject: {parameters}"))
            continue
        try:
            event = endpoint.decode(data)
        except ValidationError as error:
            why, detail = classify_invalid(error, data, endpoint.event_types)
            report.kept.append((letter.seq, f"still refused: {why}: {detail}"))
            continue
        if dry_run:
            report.would_replay.append(letter.seq)
            continue
        deliveries = letter.headers.get(DELIVERIES_HEADER, "0")
        delivery = Delivery(
            subject=origin_subject,
            stream=origin_stream,
            stream_seq=origin_seq,
            consumer=endpoint.durable,
            num_delivered=(int(deliveries) if deliveries.isdigit() else 0) + 1,
            headers=letter.headers,
            parameters=parameters,
            payload=data,
        )
        try:
            await endpoint.dispatch(handler, event, delivery)
        except PermanentError as error:
            report.kept.append((letter.seq, f"permanent-error again: {error}"))
            continue
        except Exception as error:
            report.kept.append((letter.seq, f"failed again: {type(error).__name__}: {error}"))
            continue
        await js.delete_msg(stream, letter.seq)
        report.replayed.append(letter.seq)
    return report


async def find(
    js: JetStreamContext, streams: Sequence[str], seq: int, stream: str | None
) -> DeadLetter:
    """The dead letter at `seq` (of `stream`, or of the only dead-letter stream)."""
    if stream is None:
        if len(streams) != 1:
            raise DlqError(
                f"several dead-letter streams ({', '.join(streams)}): name one with --stream"
            )
        stream = streams[0]
    async for letter in read_dead_letters(js, stream, first=seq, last=seq):
        return letter
    raise DlqError(f"no dead letter #{seq} in {stream}")
