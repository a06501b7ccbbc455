"""Below nats-py's public API, where its per-message costs show: a subscription's messages
handed to a function as nats-py's reader parses them, and small publishes written as one piece.

The consume loop's own traffic is two to three small messages per event: the delivery on the
inbox of its pull requests, its ack, the server's confirmation of the ack (and, for a service
that publishes, its message and the PubAck). Through nats-py's public API each message
received goes through an `asyncio.Queue` read by a task per subscription, which awaits the
callback (a coroutine per message), and each `publish` validates, formats and buffers its
message on its own. `python -m tests.bench.natsio_micro` measures what this module saves:
about 0.8 µs per message received, 1.4 µs per ack and 1.9 µs per message with headers sent;
the trash-processor spent 13 % less CPU per event once its trash events went out in one piece
(docs/bench.md, "Fourth pass").

Both rely on attributes of nats-py that are not its public API: `Subscription._pending_queue`
and `_pending_size`, `Client._send_command`, `_flush_pending`, `_flush_queue`,
`_pending_data_size` and `_max_pending_size` (in nats-py 2.9 as in 2.16). With a nats-py
that lacks them, the same calls go through the public API, with the same results;
tests/integration/test_natsio.py fails when the installed nats-py takes that slower path, and
tests/unit/test_natsio_units.py holds what is written to what nats-py's own `publish` writes.
"""

from __future__ import annotations

import asyncio
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
_LINE_BREAKS_TO_SPACES: Final = str.maketrans({"\r": " ", "\n": " "})

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
    return sub


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
        name = name.strip()
        if not name:
            continue
        if not _HEADER_NAME.fullmatch(name):
            raise BadHeaderError(name)
        lines.append(f"{name}: {value.strip().translate(_LINE_BREAKS_TO_SPACES)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


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
