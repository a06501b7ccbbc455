"""Below nats-py's public API, where its per-message costs show: a subscription's messages
handed to a function as nats-py's reader parses them, and small publishes written as one piece.

The consume loop's own traffic is two to three small messages per event: the delivery on the
inbox of its pull requests, its ack, the server's confirmation of the ack (and, for a service
that publishes, its message and the PubAck). Through nats-py's public API each message
received goes through `Client._process_msg` (a coroutine that also parses the header block
and checks for JetStream flow control), an `asyncio.Queue` read by a task per subscription,
which awaits the callback (a coroutine per message), and each `publish` validates, formats
and buffers its message on its own. `python -m tests.bench.natsio_micro` measures what this
module saves (docs/bench.md, "Fourth pass" and "Fifth pass"): per message received, about
1 µs without headers and 2 µs with a `Nats-Msg-Id`; 1.4 µs per ack and 4.8 µs per message
with headers sent.

All of it relies on attributes of nats-py that are not its public API (in nats-py 2.9 as in
2.16): `Subscription._pending_queue`, `_pending_size`, `_received`, `_max_msgs`, `_jsi` and
`_future`; `Client._send_command`, `_flush_pending`, `_flush_queue`, `_pending_data_size`,
`_max_pending_size`, `_process_msg`, `_process_headers`, `_build_message`, `_subs` and
`stats`. With a nats-py that lacks them, the same calls go through the public API, with the
same results; tests/integration/test_natsio.py fails when the installed nats-py takes that
slower path, and tests/unit/test_natsio_units.py holds what is written to what nats-py's own
`publish` writes, and the header blocks read to what nats-py reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

_CLIENT_INTERNALS: Final = (
    "_send_command",
    "_flush_pending",
    "_flush_queue",
    "_pending_data_size",
    "_max_pending_size",
)
_UNSAFE_SUBJECT: Final = re.compile(r"[ \t\r\n]")
"""What nats-py refuses in a subject: it would split or end the protocol line (injection)."""
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name nats-py accepts: an HTTP token."""

BadHeaderError: Final[type[nats.errors.Error]] = getattr(
    nats.errors, "BadHeaderError", nats.errors.Error
)
"""nats-py's error for a header name that is not a token (2.11 and older have none: their base Error)."""


async def subscribe_inline(
    nc: Client, subject: str, on_message: Callable[[Msg], None]
) -> Subscription:
    """Subscribe `subject`; `on_message(msg)` is called for each message, in order, as nats-py's
    reader parses it (inline), instead of from a queue and a task of the subscription.

    `on_message` runs inside nats-py's reader: it must not block, and it cannot await (it is a
    plain function). An exception it raises is logged and the next message is handed over as
    usual, as nats-py does with a callback's exception.
    """

    async def from_the_queue(msg: Msg) -> None:  # nats-py without the internals used here
        on_message(msg)

    sub = await nc.subscribe(subject, cb=from_the_queue)
    queue = getattr(sub, "_pending_queue", None)
    if isinstance(queue, asyncio.Queue) and isinstance(getattr(sub, "_pending_size", None), int):
        sub._pending_queue = _Inline(sub, on_message)  # type: ignore[assignment]
        # What nats-py queued before the swap (nothing in practice: the subject is an inbox
        # nobody was told of yet) is handed over first.
        while not queue.empty():
            sub._pending_queue.put_nowait(queue.get_nowait())
        if all(hasattr(sub, name) for name in _SUBSCRIPTION_INTERNALS):
            read_inline(nc)
    return sub


def read_inline(nc: Client) -> bool:
    """Have the connection's reader hand the messages of inline subscriptions over itself, in
    fewer steps than nats-py's `_process_msg`; whether it does (once installed, it stays).

    nats-py's reader passes every message it parses to `Client._process_msg`, a coroutine that
    counts it, parses its header block, builds the `Msg`, checks for JetStream flow control and
    an old-style request, counts its bytes as pending and puts it on the subscription's queue
    (for an inline subscription, `_Inline`, which hands it over at once). For an inline
    subscription most of that is moot; the connection's `_process_msg` is replaced (on the
    instance: other connections keep nats-py's) by `_InlineReader`, which does the rest:
    counts the message in the connection's and the subscription's statistics, parses its
    headers (`parse_headers`, nats-py's rules with each distinct header name checked once),
    builds the `Msg` as nats-py does and hands it over. Any other message — another
    subscription's, one with a status line (a pull's 404 or 408), a subscription with a message
    limit, a JetStream push subscription or an old-style request — takes nats-py's own way.
    """
    if isinstance(nc.__dict__.get("_process_msg"), _InlineReader):
        return True
    if not all(hasattr(nc, name) for name in _READER_INTERNALS):
        return False
    nc._process_msg = _InlineReader(nc)  # type: ignore[method-assign]
    return True


_SUBSCRIPTION_INTERNALS: Final = ("_received", "_max_msgs", "_jsi", "_future")
_READER_INTERNALS: Final = ("_process_msg", "_process_headers", "_build_message", "_subs", "stats")

_HEADER_NAMES_KEPT: Final = 512
"""Header names whose check is remembered (per process; a stream's messages share a few)."""
_header_names: dict[bytes, str | None] = {}
_UNSEEN: Final = object()


def _header_name(raw: bytes) -> str | None:
    """What nats-py makes of a header line's name: stripped, ASCII, no white space inside;
    None when it skips the line. Remembered for the first `_HEADER_NAMES_KEPT` names."""
    name = _header_names.get(raw, _UNSEEN)
    if name is not _UNSEEN:
        return name  # type: ignore[return-value]
    try:
        name = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        name = None
    else:
        if _WHITE_SPACE.search(name):
            name = None
    if len(_header_names) < _HEADER_NAMES_KEPT:
        _header_names[raw] = name
    return name


_WHITE_SPACE: Final = re.compile(r"\s")
"""What `str.isspace` calls white space (nats-py skips a name with any inside)."""


def parse_headers(block: bytes) -> dict[str, str] | None:
    """A `NATS/1.0` header block without a status as nats-py 2.16 reads it (`Client.
    _process_headers` with `_parse_header_lines`): a line `Name: value` per header, the name
    stripped and skipped unless ASCII without white space inside, the value stripped and
    decoded as UTF-8 with replacement characters, a later header of a name replacing an
    earlier; None when no header is left. tests/unit/test_natsio_units.py holds it to nats-py's
    own reading."""
    headers: dict[str, str] = {}
    for line in block[_HEADER_LINES_START:].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            key = _header_name(name)
            if key is not None:
                headers[key] = value.strip().decode("utf-8", "replace")
    return headers or None


_HEADER_LINES_START: Final = len(b"NATS/1.0\r\n")
_STATUS_AT: Final = len(b"NATS/1.0")


def nats_reads_headers_like_this() -> bool:
    """Whether the installed nats-py reads header blocks as `parse_headers` does: 2.16's own
    parser, not `email.parser` (2.15 and older) nor the optional `fast_mail_parser`."""
    import nats.aio.client as client_module

    return hasattr(Client, "_parse_header_lines") and not getattr(
        client_module, "parse_email", None
    )


_MSG_FIELDS: Final = (
    "_client",
    "subject",
    "reply",
    "data",
    "headers",
    "_metadata",
    "_ackd",
    "_sid",
)


def _msg_is_positional(nc: Client) -> bool:
    """Whether the connection's messages are nats-py's `Msg` with the fields `_new_msg` fills
    by position."""
    return getattr(nc, "msg_class", None) is Msg and (
        tuple(field.name for field in dataclasses.fields(Msg)) == _MSG_FIELDS
    )


class _InlineReader:
    """A connection's `_process_msg` for inline subscriptions (`read_inline`)."""

    __slots__ = ("_build", "_client", "_fast_headers", "_nats_process_msg")

    def __init__(self, nc: Client) -> None:
        client: Any = nc
        self._client = client
        self._nats_process_msg = client._process_msg
        self._build = self._new_msg if _msg_is_positional(nc) else client._build_message
        self._fast_headers = nats_reads_headers_like_this()

    def _new_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> Msg:
        """`Client._build_message`, with the fields given by position (half the cost)."""
        return Msg(self._client, subject.decode(), reply.decode(), data, headers, None, False, sid)

    async def __call__(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        client = self._client
        sub: Any = client._subs.get(sid)
        if (
            sub is None
            or type(sub._pending_queue) is not _Inline
            or sub._max_msgs > 0
            or sub._jsi is not None
            or sub._future is not None
            or (headers and not self._reads_headers(headers))
        ):
            await self._nats_process_msg(sid, subject, reply, data, headers)
            return
        stats = client.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        msg = self._build(sid, subject, reply, data, parse_headers(headers) if headers else None)
        sub._pending_queue.hand_over(msg)

    def _reads_headers(self, headers: bytes) -> bool:
        """Whether `parse_headers` reads this block as nats-py would: the installed nats-py's
        own rules, no status line (a space after `NATS/1.0` where a line break would be)."""
        return (
            self._fast_headers
            and len(headers) > _HEADER_LINES_START
            and headers[_STATUS_AT] == _NO_STATUS
        )


_NO_STATUS: Final = ord("\r")
"""The byte after `NATS/1.0` in a header block without a status line (with one: a space)."""


def is_inline(sub: Subscription) -> bool:
    """Whether `subscribe_inline` could hand this subscription's messages over inline."""
    return isinstance(getattr(sub, "_pending_queue", None), _Inline)


class _Inline:
    """Stands in for a subscription's `asyncio.Queue`: nats-py's reader puts each message here,
    and it goes to the function at once. Empty by construction, so nats-py's drain and
    unsubscribe find nothing left to wait for; the subscription's own task waits in `get`
    until nats-py cancels it."""

    __slots__ = ("_on_message", "_sub")

    def __init__(self, sub: Subscription, on_message: Callable[[Msg], None]) -> None:
        self._sub = sub
        self._on_message = on_message

    def put_nowait(self, msg: Msg) -> None:
        # nats-py counted the message's bytes as pending in the subscription (its slow-consumer
        # limit); its task would subtract them when it took the message off the queue.
        self._sub._pending_size -= len(msg.data)
        self.hand_over(msg)

    def hand_over(self, msg: Msg) -> None:
        try:
            self._on_message(msg)
        except Exception:
            log.exception("handling a message on %s failed", msg.subject)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def full(self) -> bool:
        return False

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None

    async def get(self) -> Msg:
        """Never returns: nothing waits in this queue (nats-py cancels its task when the
        subscription ends)."""
        never: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        return await never

    def get_nowait(self) -> Msg:
        raise asyncio.QueueEmpty


Outgoing = tuple[str, str, bytes, Mapping[str, str] | None]
"""A message to publish: (subject, reply subject or "", payload, headers or None)."""


def pub_commands(messages: Sequence[Outgoing], max_payload: int) -> bytes:
    """The NATS protocol's command for each (subject, reply, payload, headers), one after the
    other, byte for byte as nats-py's `publish` writes them: `PUB <subject> <reply> <size>`,
    or with headers `HPUB <subject> <reply> <header size> <total size>` and a `NATS/1.0`
    header block (names trimmed, values trimmed and their line breaks made spaces). Refused as
    nats-py refuses them: an empty subject, or a subject or reply with white space
    (BadSubjectError); a header name that is not a token (BadHeaderError); a payload over
    `max_payload` (MaxPayloadError)."""
    commands = []
    for subject, reply, payload, headers in messages:
        if not subject or _UNSAFE_SUBJECT.search(subject) or _UNSAFE_SUBJECT.search(reply):
            raise nats.errors.BadSubjectError
        if len(payload) > max_payload:
            raise nats.errors.MaxPayloadError
        if headers is None:
            commands.append(f"PUB {subject} {reply} {len(payload)}\r\n".encode())
        else:
            block = _header_block(headers)
            size = len(block)
            commands.append(f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode())
            commands.append(block)
        commands.append(payload)
        commands.append(b"\r\n")
    return b"".join(commands)


def _header_block(headers: Mapping[str, str]) -> bytes:
    lines = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        name = _sent_header_name(name)
        if not name:
            continue
        value = value.strip()
        if "\r" in value or "\n" in value:  # rare: `str.translate` would cost 0.8 µs a value
            value = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


_sent_header_names: dict[str, str] = {}


def _sent_header_name(name: str) -> str:
    """The name as nats-py writes it (stripped; "" when nothing is left, and the header is
    left out), or BadHeaderError when it is not a token. The accepted are remembered for the
    first `_HEADER_NAMES_KEPT` names: a service sends the same few with every message."""
    kept = _sent_header_names.get(name)
    if kept is not None:
        return kept
    stripped = name.strip()
    if stripped and not _HEADER_NAME.fullmatch(stripped):
        raise BadHeaderError(stripped)
    if len(_sent_header_names) < _HEADER_NAMES_KEPT:
        _sent_header_names[name] = stripped
    return stripped


async def publish_all(nc: Client, messages: Sequence[Outgoing]) -> None:
    """Publish each (subject, reply, payload, headers) as `nc.publish` does one by one, but
    handed to nats-py's outgoing buffer as one piece: all are buffered, or none (an error is
    raised before anything is written: closed, draining, a bad subject or header, no room to
    buffer while reconnecting)."""
    if not messages:
        return
    if not all(hasattr(nc, name) for name in _CLIENT_INTERNALS):
        for subject, reply, payload, headers in messages:
            await nc.publish(subject, payload, reply=reply, headers=dict(headers or {}) or None)
        return
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise nats.errors.ConnectionDrainingError
    command = pub_commands(messages, nc.max_payload)
    client: Any = nc  # its internals (module docstring)
    if not nc.is_connected and (
        client._max_pending_size <= 0
        or client._pending_data_size + len(command) > client._max_pending_size
    ):
        raise nats.errors.OutboundBufferLimitError
    nc.stats["out_msgs"] += len(messages)
    nc.stats["out_bytes"] += sum(len(message[2]) for message in messages)
    await client._send_command(command)
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()
