"""The pull transport of the consume loop: pull requests to one durable, answered on an inbox
of our own, messages handed over as they arrive.

Why not nats-py's pull subscription: it does not re-issue lost pull requests by itself
(nats-py issue #504), its `fetch` waits for a full batch once the backlog is drained, and it
drops what it held when the server refuses a request. Here one request is outstanding at a
time; it expires after the fetch timeout, so a request lost in a server restart or reconnect
costs at most that long, and a refusal is raised by the next fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any, Final, Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import Header

from handwritten.runtime.natsio import subscribe_inline

PULL_GRACE = 0.5
"""Seconds past a pull request's expiry to wait for the server's 408 before the request counts
as lost (and the next fetch sends a new one)."""

_STATUS: Final = Header.STATUS.value
_DESCRIPTION: Final = Header.DESCRIPTION.value


class PullRefused(Exception):
    """The server ended a pull request with an error status (409 consumer deleted, 400 bad
    request, ...); the loop logs it, checks that the consumer still exists and pulls again."""

    def __init__(self, status: str, description: str) -> None:
        super().__init__(f"pull request refused: {status} {description}".rstrip())
        self.status = status
        self.description = description


class Pull(Protocol):
    """Where the loop gets messages from (a `StreamingPull`; a fake in unit tests)."""

    async def fetch(
        self, batch: int, timeout: float, heartbeat: float | None = None
    ) -> list[Msg]: ...

    def waiting(self) -> list[Msg]:
        """Messages that arrived but were not handed over yet."""
        ...


class StreamingPull:
    """Pull requests to one durable, answered on an inbox of our own; messages are handed over
    as they arrive.

    `fetch(batch, ...)` returns what has arrived (at most `batch`) as soon as there is any.
    When nothing is waiting and no request is outstanding it sends one for `batch` messages
    that expires after `timeout`; the server fills it as messages come, and the next fetches
    take them. So the batch a fetch returns is whatever piled up since the last one: one
    message at a low rate, a full batch under load. One request is outstanding at a time: the
    loop never holds more messages than it asked for.

    `linger`: once the first message of a request is in, wait up to this long for the rest of
    its batch before handing over what came (0: hand over at once). Under load the server sends
    a request's messages in one burst that takes a moment to read; lingering makes them one
    batch instead of several small ones, at the price of at most `linger` of latency.

    A request ends when it has delivered its batch, with the server's 408 (expired) or 404,
    or, if neither comes (lost in a reconnect), `PULL_GRACE` after its expiry. Any other status
    (409 consumer deleted, 503 no responders, ...) ends it with an error that the next fetch
    raises.
    """

    def __init__(self, nc: Client, stream: str, durable: str, *, linger: float = 0.0) -> None:
        self._nc = nc
        self._linger = linger
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._queue: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        self._remaining = 0
        """Messages the outstanding request may still bring; 0 when none is outstanding."""
        self._deadline = 0.0
        self._error: Exception | None = None

    async def start(self) -> StreamingPull:
        self._sub = await subscribe_inline(self._nc, self._inbox, self._on_message)
        return self

    @property
    def outstanding(self) -> bool:
        """Whether a request may still bring messages (it is neither done nor lost)."""
        if self._remaining and time.monotonic() >= self._deadline:
            self._remaining = 0  # lost: no 408 came after its expiry
        return self._remaining > 0

    async def fetch(self, batch: int, timeout: float, heartbeat: float | None = None) -> list[Msg]:
        if not self._queue and self._error is None:
            if not self.outstanding:
                await self._request(batch, timeout, heartbeat)
            await self._wait()
            if self._linger > 0 and self._queue:
                await self._wait(until=min(batch, self._remaining + len(self._queue)))
        if self._queue:
            queue = self._queue
            return [queue.popleft() for _ in range(min(batch, len(queue)))]
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise nats.errors.TimeoutError  # the request ran out with nothing for us

    def waiting(self) -> list[Msg]:
        return list(self._queue)

    async def finish(self) -> list[Msg]:
        """What the last request still brings before it runs out (the loop stopped pulling):
        handled rather than left to wait out an ack wait in nobody's hands."""
        while self.outstanding and self._error is None:
            await self._wait(until_done=True)
        taken = list(self._queue)
        self._queue.clear()
        return taken

    async def close(self) -> None:
        """Unsubscribe; whatever arrived but was never handed over is nak'ed, so that it is
        redelivered (to another instance) at once rather than after its ack wait."""
        leftovers = list(self._queue)
        self._queue.clear()
        for msg in leftovers:
            with contextlib.suppress(Exception):
                await msg.nak()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _request(self, batch: int, timeout: float, heartbeat: float | None) -> None:
        request: dict[str, int] = {"batch": batch, "expires": int(timeout * 1_000_000_000)}
        if heartbeat:
            request["idle_heartbeat"] = int(heartbeat * 1_000_000_000)
        self._remaining = batch
        self._deadline = time.monotonic() + timeout + PULL_GRACE
        try:
            await self._nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)
        except BaseException:
            self._remaining = 0
            raise

    async def _wait(self, *, until: int = 1, until_done: bool = False) -> None:
        """Until `until` messages are queued (or, `until_done`, the request ended), an error,
        or the request's deadline; lingering (`until` > 1) for at most `linger`."""
        deadline = self._deadline
        if until > 1:
            deadline = min(deadline, time.monotonic() + self._linger)
        while self.outstanding and self._error is None and (until_done or len(self._queue) < until):
            self._arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()

    def _on_message(self, msg: Msg) -> None:
        if msg.reply:  # a message of the stream (status messages have no reply subject)
            self._queue.append(msg)
            if self._remaining:
                self._remaining -= 1
            self._arrived.set()
            return
        status = (msg.headers or {}).get(_STATUS, "")
        if status == "100":
            return  # idle heartbeat: the request is alive
        self._remaining = 0
        if status == "503":
            self._error = nats.errors.NoRespondersError()
        elif status not in ("404", "408"):
            self._error = PullRefused(status, (msg.headers or {}).get(_DESCRIPTION, ""))
        self._arrived.set()
