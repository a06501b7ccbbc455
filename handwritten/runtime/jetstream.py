"""Publishing to JetStream with the guarantees the generated publishers promise.

A publish is done only when JetStream's PubAck says where the message is stored. When no
PubAck comes (the server restarts, JetStream is still recovering), we cannot know whether the
message was stored, so we publish again with the same `Nats-Msg-Id`: the stream's duplicate
window stores it at most once and answers `duplicate=True` for the repeat.

How long to go on: a broker restart takes a second or two, but a clustered stream whose
leader died has no leader for as long as the election takes (several seconds), and meanwhile
its subject has no responders at all, so each attempt fails at once. The retries therefore
last at least `retry_for` seconds, however fast the attempts fail. "No responders" can also
mean that no stream captures the subject: that is asked of JetStream once, and answered with
`NoStreamCaptures` at once instead of retrying.

A full stream: a `discard: new` stream at one of its limits refuses the message (err_code
10077) instead of dropping older ones. Retrying would only wait for consumers to make room
while the caller believes the message is on its way, so the stream is asked which limit was
reached and `StreamFull` is raised at once, naming it; the caller decides (stop, slow down,
retry later with the same msg id). The same err_code for another reason (a store closing in a
restart) is retried as before. A server out of storage altogether (10047, 10028, 10023) is
`StreamFull` as well.

Size: the server closes the connection of a client that sends more than its `max_payload`
(payload and headers together), and nats-py checks the payload alone. So the size is checked
here, before sending: `PayloadTooLarge` says by how much, and the connection stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, Header, StreamInfo

from handwritten.runtime.addresses import wildcard_tokens
from handwritten.runtime.contract import OutgoingMessage, PublishResult
from handwritten.runtime.errors import (
    INSUFFICIENT_RESOURCES,
    JETSTREAM_UNAVAILABLE,
    MEMORY_RESOURCES_EXCEEDED,
    STORAGE_RESOURCES_EXCEEDED,
    STREAM_STORE_FAILED,
    describe_api_error,
    is_jetstream_error,
)
from handwritten.runtime.natsio import BadHeaderError, publish_all, subscribe_inline
from handwritten.runtime.roles import PermissionRefused, refused_publish

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"

RETRY_DELAY_FIRST = 0.2
RETRY_DELAY_MAX = 2.0
RETRY_FOR = 30.0
"""Seconds a publish goes on retrying: longer than a JetStream leader election."""


class PublishFailed(Exception):
    """No PubAck after every attempt; the message may or may not be stored (retry with the same
    msg id to find out: a stored one is answered as a duplicate)."""


class NoStreamCaptures(PublishFailed):
    """No stream captures the subject: nothing was stored, and retrying will not help."""


class StreamFull(PublishFailed):
    """The stream refused the message because it is full (`discard: new` at a limit, or the
    server out of storage): nothing was stored, and nothing older was dropped to make room.
    Publishing again with the same msg id succeeds once consumers have made room."""

    def __init__(
        self, subject: str, stream: str | None, limit: str, used: int | None, allowed: int | None
    ) -> None:
        where = f"stream {stream}" if stream else "JetStream"
        figures = f" ({used} of {allowed})" if used is not None and allowed is not None else ""
        super().__init__(
            f"{where} is full: {limit} reached{figures}; the message to {subject} was refused "
            "and nothing was dropped; start or scale the consumers that are behind "
            "(`filetrash headroom` shows which), then publish again"
        )
        self.subject = subject
        self.stream = stream
        self.limit = limit
        self.used = used
        self.allowed = allowed


_STORE_OVERHEAD = 512
"""Bytes a stored message takes beyond its payload (subject, headers, record), generously."""

_SERVER_FULL = (STORAGE_RESOURCES_EXCEEDED, MEMORY_RESOURCES_EXCEEDED, INSUFFICIENT_RESOURCES)


class WildcardSubject(ValueError):
    """A publish to a subject with a wildcard token (`*`, `>`): JetStream stores a message on
    one concrete subject, so nothing was sent."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"cannot publish to {subject}: its {' and '.join(wildcard_tokens(subject))} token "
            "is a wildcard, and a message goes to one concrete subject; fill every parameter "
            "(the generated publishers take them as keyword arguments); nothing was sent"
        )
        self.subject = subject


def require_concrete(subject: str) -> None:
    """Raise `WildcardSubject` when `subject` has a `*` or `>` token."""
    if wildcard_tokens(subject):
        raise WildcardSubject(subject)


class PayloadTooLarge(Exception):
    """Payload and headers together exceed the server's max_payload: nothing was sent."""

    def __init__(self, subject: str, payload: int, headers: int, limit: int) -> None:
        super().__init__(
            f"a message of {payload + headers} bytes ({payload} payload, {headers} headers) to "
            f"{subject} is larger than the server's max_payload of {limit} bytes; nothing was "
            "sent"
        )
        self.payload = payload
        self.headers = headers
        self.limit = limit


def headers_size(headers: Mapping[str, str]) -> int:
    """Bytes the headers take on the wire (`NATS/1.0`, one `Key: value` line each, a blank
    line), as nats-py writes them."""
    lines = sum(len(k.strip().encode()) + len(v.strip().encode()) + 4 for k, v in headers.items())
    return len(b"NATS/1.0\r\n") + lines + 2


def too_large(
    subject: str, payload: bytes, headers: Mapping[str, str], limit: int
) -> PayloadTooLarge | None:
    """`PayloadTooLarge` when payload and headers exceed the server's `limit` (0: unknown).

    Headers are measured exactly only near the limit: a character takes at most 4 bytes in
    UTF-8, so far below it their length in characters settles it (0.75 µs instead of 1.6 for
    the exact size, once per message published)."""
    if not limit:
        return None
    characters = sum(map(len, headers)) + sum(map(len, headers.values()))
    if len(payload) + 4 * characters + 4 * len(headers) + 12 <= limit:
        return None  # 12: `NATS/1.0` and the blank line; 4 per header: `: ` and CRLF
    size = headers_size(headers)
    if len(payload) + size <= limit:
        return None
    return PayloadTooLarge(subject, len(payload), size, limit)


def _retryable(error: BaseException) -> bool:
    """True for failures that say nothing about the message itself: no answer, nobody listening
    yet, JetStream busy recovering. A stream's refusal (wrong subject, too large) is final."""
    if isinstance(
        error,
        nats.errors.TimeoutError
        | nats.errors.NoRespondersError
        | nats.js.errors.NoStreamResponseError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.OutboundBufferLimitError
        | nats.errors.StaleConnectionError
        | asyncio.TimeoutError,
    ):
        return True
    if isinstance(error, nats.js.errors.ServiceUnavailableError):
        return True
    return is_jetstream_error(error, JETSTREAM_UNAVAILABLE)


class JetStreamPublisher:
    """Publishes and waits for the PubAck; satisfies `contract.Publish` and `PublishMany`.

    `timeout` bounds each attempt. A publish without PubAck is retried, with a short growing
    pause between attempts (0.2 s, 0.4 s, ... up to 2 s), until it has made `attempts` attempts
    *and* `retry_for` seconds have passed: enough to ride out a broker restart or a leader
    election.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        timeout: float = 5.0,
        attempts: int = 5,
        retry_for: float = RETRY_FOR,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if retry_for < 0:
            raise ValueError("retry_for must not be negative")
        self._js = js
        self._timeout = timeout
        self._attempts = attempts
        self._retry_for = retry_for
        self._captured: set[str] = set()
        """Subjects JetStream said a stream captures."""
        self._inbox: _PubAckInbox | None = None
        """Where `publish_many`'s PubAcks come, made at its first use."""

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> PublishResult:
        if not msg_id:
            raise ValueError("msg_id must not be empty: it is what makes a retry safe")
        require_concrete(subject)
        all_headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
        if (large := too_large(subject, payload, all_headers, self._max_payload())) is not None:
            raise large
        delay = RETRY_DELAY_FIRST
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                ack = await self._js.publish(
                    subject, payload, timeout=self._timeout, headers=dict(all_headers)
                )
            except Exception as error:
                if (refused := self._refused(subject)) is not None:
                    raise refused from None  # the server refused the role: no retry
                if (full := await self._full(subject, len(payload), error)) is not None:
                    raise full from error
                if not _retryable(error):
                    raise
                if isinstance(
                    error, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError
                ):
                    await self._require_stream(subject, error)
                elapsed = time.monotonic() - started
                if attempt >= self._attempts and elapsed + delay > self._retry_for:
                    raise PublishFailed(
                        f"no PubAck for {subject} (msg id {msg_id}) after {attempt} attempts "
                        f"in {elapsed:.0f}s: {type(error).__name__} {error}".rstrip()
                    ) from error
                log.warning(
                    "publish to %s (msg id %s) got no PubAck (%s); retry %d in %.1fs",
                    subject,
                    msg_id,
                    type(error).__name__,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
                continue
            return PublishResult(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))

    async def publish_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[PublishResult | Exception]:
        """Send every message at once and wait for their PubAcks together (one reply
        subscription, no request or timer per message). Those without a PubAck are sent again,
        with the same Nats-Msg-Id, for as many attempts and as long as `publish` retries;
        item i is message i's result, or `PublishFailed` (`NoStreamCaptures`) at the end, or
        the stream's refusal. A message with a wildcard subject raises `WildcardSubject` before
        any of them is sent: that is a bug in the caller, not a failure of one message."""
        for subject in {message.subject for message in messages}:
            require_concrete(subject)
        results: list[PublishResult | Exception | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        delay = RETRY_DELAY_FIRST
        started = time.monotonic()
        attempt = 0
        while todo:
            attempt += 1
            failed = await self._publish_round(messages, todo, results)
            elapsed = time.monotonic() - started
            giving_up = attempt >= self._attempts and elapsed + delay > self._retry_for
            retry = []
            full_subjects: dict[str, StreamFull | None] = {}
            for index, error in failed:
                message = messages[index]
                if (refused := self._refused(message.subject)) is not None:
                    results[index] = refused  # the server refused the role: no retry
                    continue
                full = await self._full(message.subject, len(message.payload), error)
                if full is None and isinstance(error, nats.errors.TimeoutError):
                    # No answer at all: ask the stream whether the subject is at a limit (a
                    # refusal lost in a reconnect looks the same as one never sent).
                    if message.subject not in full_subjects:
                        full_subjects[message.subject] = await self._full_by_state(
                            message.subject, len(message.payload)
                        )
                    full = full_subjects[message.subject]
                if full is not None:
                    results[index] = full
                    continue
                if not _retryable(error):
                    results[index] = error
                    continue
                if isinstance(
                    error, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError
                ):
                    try:
                        await self._require_stream(message.subject, error)
                    except NoStreamCaptures as missing:
                        results[index] = missing
                        continue
                if giving_up:
                    results[index] = PublishFailed(
                        f"no PubAck for {message.subject} (msg id {message.msg_id}) after "
                        f"{attempt} attempts in {elapsed:.0f}s: {type(error).__name__} {error}"
                    )
                    continue
                retry.append(index)
            if retry:
                log.warning(
                    "%d publishes got no PubAck (%s); retry %d in %.1fs",
                    len(retry),
                    type(failed[0][1]).__name__,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
            todo = retry
        return [r if r is not None else PublishFailed("not attempted") for r in results]

    async def _publish_round(
        self,
        messages: Sequence[OutgoingMessage],
        todo: Sequence[int],
        results: list[PublishResult | Exception | None],
    ) -> list[tuple[int, Exception]]:
        """One attempt at the messages `todo`; fills `results` for the acknowledged ones and
        returns the others with their error."""
        inbox = await self._pub_acks()
        sending: list[tuple[int, str, bytes, dict[str, str]]] = []
        failed: list[tuple[int, Exception]] = []
        limit = self._max_payload()
        for index in todo:
            message = messages[index]
            headers = {**(message.headers or {}), MSG_ID_HEADER: message.msg_id}
            if (large := too_large(message.subject, message.payload, headers, limit)) is not None:
                failed.append((index, large))
                continue
            sending.append((index, message.subject, message.payload, headers))
        answers = await inbox.publish([s[1:] for s in sending], timeout=self._timeout)
        for (index, *_), answer in zip(sending, answers, strict=True):
            if isinstance(answer, PublishResult):
                results[index] = answer
            else:
                failed.append((index, answer if answer is not None else nats.errors.TimeoutError()))
        return failed

    def _refused(self, subject: str) -> PermissionRefused | None:
        """The server's refusal of a publish to `subject` on this connection, if it sent one."""
        return refused_publish(getattr(self._js, "_nc", None), subject)

    async def _pub_acks(self) -> _PubAckInbox:
        if self._inbox is None:
            client = getattr(self._js, "_nc", None)  # nats-py keeps the connection private
            if not isinstance(client, Client):
                raise TypeError("publish_many needs a nats-py JetStreamContext")
            self._inbox = await _PubAckInbox(client).start()
        return self._inbox

    def _max_payload(self) -> int:
        """The connected server's max_payload (0 when not known yet)."""
        client = getattr(self._js, "_nc", None)  # nats-py keeps the connection private
        return int(getattr(client, "max_payload", 0) or 0)

    async def _full(self, subject: str, size: int, error: Exception) -> StreamFull | None:
        """`StreamFull` when `error` is a full stream's refusal, else None (retry or raise)."""
        if is_jetstream_error(error, *_SERVER_FULL):
            assert isinstance(error, nats.js.errors.APIError)
            return StreamFull(subject, None, describe_api_error(error), None, None)
        if not is_jetstream_error(error, STREAM_STORE_FAILED):
            return None
        return await self._full_by_state(subject, size)

    async def _full_by_state(self, subject: str, size: int) -> StreamFull | None:
        """`StreamFull` if the stream capturing `subject` is at a limit for it, else None.
        A message that was stored after all is published again with its msg id: a duplicate."""
        try:
            stream = await self._js.find_stream_name_by_subject(subject)
            info = await self._js.stream_info(stream, subjects_filter=subject)
        except Exception:
            return None
        return full_limit(info, subject, size)

    async def _require_stream(self, subject: str, error: Exception) -> None:
        """Nobody answered: raise `NoStreamCaptures` if no stream captures `subject`; return
        if one does (its leader is being elected) or if JetStream cannot say right now."""
        if subject in self._captured:
            return
        try:
            await self._js.find_stream_name_by_subject(subject)
        except nats.js.errors.NotFoundError:
            raise NoStreamCaptures(
                f"no stream captures {subject}: nothing was stored; create the spec's streams "
                "with `filetrash provision`"
            ) from error
        except Exception:
            return
        self._captured.add(subject)


_REFUSED_MESSAGE: Final = (
    nats.errors.BadSubjectError,
    BadHeaderError,
    nats.errors.MaxPayloadError,
)
"""What `publish_all` refuses a batch for because of one of its messages."""


class _PubAckInbox:
    """PubAcks in bulk: the messages published together form a group, each goes out with a
    reply subject `<inbox>.<group>.<index>` on one inbox of ours, and the group's one future
    resolves when JetStream has answered every one — without nats-py's `publish_async`, which
    adds a semaphore, a random token, a future and a `PubAck` dataclass per message, and loses
    a refusal with status 503 (a full stream's err_code 10077) in its reply handler: here the
    refusal is that message's answer."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._groups: dict[str, _Answers] = {}
        self._sent = 0
        self._loop = asyncio.get_running_loop()
        """Read once: Python 3.11's get_running_loop makes a getpid syscall at each call."""

    async def start(self) -> _PubAckInbox:
        await subscribe_inline(self._nc, f"{self._prefix}.*.*", self._on_answer)
        return self

    async def publish(
        self, sends: Sequence[tuple[str, bytes, dict[str, str]]], *, timeout: float
    ) -> list[PublishResult | Exception | None]:
        """Publish each (subject, payload, headers); item i is message i's PubAck, the error
        it was answered (or not even sent) with, or None when no answer came in `timeout`."""
        if not sends:
            return []
        self._sent += 1
        token = str(self._sent)
        group = _Answers(len(sends), self._loop.create_future())
        self._groups[token] = group
        try:
            reply = f"{self._prefix}.{token}."
            try:
                await publish_all(
                    self._nc,
                    [(s, f"{reply}{index}", p, h) for index, (s, p, h) in enumerate(sends)],
                )
            except _REFUSED_MESSAGE:  # nothing was sent: one by one, to tell which and why
                await self._publish_each(sends, reply, group)
            except Exception as error:  # not even sent (closed, reconnecting, buffer full)
                for index in range(len(sends)):
                    group.answered(index, error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await group.done
        finally:
            del self._groups[token]
            group.done.cancel()
        return group.answers

    async def _publish_each(
        self, sends: Sequence[tuple[str, bytes, dict[str, str]]], reply: str, group: _Answers
    ) -> None:
        """The batch one message at a time, after `publish_all` refused it for one of them:
        that one fails alone, the others go."""
        for index, (subject, payload, headers) in enumerate(sends):
            try:
                await self._nc.publish(subject, payload, reply=f"{reply}{index}", headers=headers)
            except _REFUSED_MESSAGE as refused:  # this message only
                group.answered(index, refused)
            except Exception as error:  # not even sent (reconnecting, buffer full)
                for unsent in range(index, len(sends)):
                    group.answered(unsent, error)
                return

    def _on_answer(self, msg: Msg) -> None:
        token, _, index = msg.subject[len(self._prefix) + 1 :].partition(".")
        group = self._groups.get(token)
        if group is None or not index.isdigit():
            return
        group.answered(int(index), _pub_ack(msg))


class _Answers:
    """The answers to messages published together, and a future done when all came."""

    __slots__ = ("answers", "done", "left")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.answers: list[PublishResult | Exception | None] = [None] * size
        self.left = size
        self.done = done

    def answered(self, index: int, answer: PublishResult | Exception) -> None:
        if 0 <= index < len(self.answers) and self.answers[index] is None:
            self.answers[index] = answer
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(None)


def _pub_ack(msg: Msg) -> PublishResult | Exception:
    """What JetStream answered to a publish: where it stored it, or why it did not.

    A PubAck as nats-server writes it is read with one regular expression (1.4 µs instead of
    4.3 for `json.loads` and picking its keys: a trash-processor reads one per event); any
    other answer — an error, fields this does not know — goes through `json.loads`.
    tests/unit/test_publish_units.py holds the two readings to the same results."""
    if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
        return nats.js.errors.NoStreamResponseError()
    plain = _PLAIN_PUB_ACK.fullmatch(msg.data)
    if plain is not None:
        stream, seq, duplicate = plain.groups()
        return PublishResult(stream.decode(), int(seq), duplicate == b"true")
    try:
        answer = json.loads(msg.data)
        error = answer.get("error")
        if error is not None:
            return _api_error(error)
        return PublishResult(
            stream=answer["stream"], seq=answer["seq"], duplicate=bool(answer.get("duplicate"))
        )
    except (ValueError, KeyError, TypeError, AttributeError) as problem:
        return nats.errors.Error(f"unreadable PubAck {msg.data[:200]!r}: {problem}")


_PLAIN_PUB_ACK: Final = re.compile(
    rb'\{\s*"stream"\s*:\s*"([A-Za-z0-9_-]+)"\s*,\s*(?:"domain"\s*:\s*"[A-Za-z0-9_-]*"\s*,\s*)?'
    rb'"seq"\s*:\s*([0-9]{1,20})\s*(?:,\s*"duplicate"\s*:\s*(true|false)\s*)?\}'
)
"""`{"stream":"FILE_EVENTS", "seq":42}`, with `"domain"` before the sequence and
`"duplicate": true` after it when the server adds them, and nothing else: a name with other
characters (JSON escapes among them) is read by `json.loads`."""
_STATUS: Final = Header.STATUS.value
_NO_RESPONDERS: Final = "503"


def _api_error(error: dict[str, Any]) -> Exception:
    """The nats-py error for a JetStream error answer (`from_error` raises it rather than
    returning it)."""
    try:
        nats.js.errors.APIError.from_error(error)
    except nats.js.errors.APIError as raised:
        return raised
    return nats.js.errors.APIError(**error)  # pragma: no cover (from_error always raises)


def full_limit(info: StreamInfo, subject: str, size: int) -> StreamFull | None:
    """`StreamFull` naming the limit a `discard: new` stream has reached for a message of
    `size` bytes to `subject` (`info` read with that subject as filter), else None."""
    config, state = info.config, info.state
    if config.discard != DiscardPolicy.NEW:
        return None
    stream = config.name
    per_subject = config.max_msgs_per_subject or -1
    if per_subject > 0 and config.discard_new_per_subject:
        count = (state.subjects or {}).get(subject, 0)
        if count >= per_subject:
            return StreamFull(subject, stream, "max_msgs_per_subject", count, per_subject)
    max_msgs = config.max_msgs or -1
    if max_msgs > 0 and state.messages >= max_msgs:
        return StreamFull(subject, stream, "max_msgs", state.messages, max_msgs)
    max_bytes = config.max_bytes or -1
    if max_bytes > 0 and state.bytes + size + _STORE_OVERHEAD > max_bytes:
        return StreamFull(subject, stream, "max_bytes", state.bytes, max_bytes)
    return None
