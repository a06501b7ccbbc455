"""Acks confirmed by the server (double acks), in bulk: each ack or term goes out with a reply
subject on one inbox of ours, and the server's answers resolve futures awaited together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from handwritten.runtime.natsio import publish_all, subscribe_inline

CONFIRM_RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    TimeoutError,
)
"""Errors after which an unconfirmed ack is sent again (the server answers a repeated ack too)."""


class Confirmations:
    """Double acks in bulk: the acks (or terms) sent together form a group, each goes out with
    a reply subject `<inbox>.<group>.<index>` on one inbox of ours, and the group's one future
    resolves when the server has answered every one — one subscription for all of them, and
    no request, timer, task or future per ack."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._groups: dict[str, _Group] = {}
        self._sent = 0
        self._sub: Any = None

    async def start(self) -> Confirmations:
        self._sub = await subscribe_inline(self._nc, f"{self._prefix}.*.*", self._on_answer)
        return self

    async def send(self, msgs: Sequence[Msg], payload: bytes, *, timeout: float) -> list[bool]:
        """Send `payload` to each message's ack subject; whether the server confirmed each
        within `timeout`."""
        if not msgs:
            return []
        self._sent += 1
        token = str(self._sent)
        group = _Group(len(msgs), asyncio.get_running_loop().create_future())
        self._groups[token] = group
        try:
            reply = f"{self._prefix}.{token}."
            await publish_all(
                self._nc,
                [(msg.reply, f"{reply}{index}", payload, None) for index, msg in enumerate(msgs)],
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await group.done
        finally:
            del self._groups[token]
            group.done.cancel()
        return group.confirmed

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    def _on_answer(self, msg: Msg) -> None:
        token, _, index = msg.subject[len(self._prefix) + 1 :].partition(".")
        group = self._groups.get(token)
        if group is not None and index.isdigit():
            group.answered(int(index))


class _Group:
    """The acks sent together: which the server confirmed, and a future done when all are."""

    __slots__ = ("confirmed", "done", "left")

    def __init__(self, size: int, done: asyncio.Future[None]) -> None:
        self.confirmed = [False] * size
        self.left = size
        self.done = done

    def answered(self, index: int) -> None:
        if 0 <= index < len(self.confirmed) and not self.confirmed[index]:
            self.confirmed[index] = True
            self.left -= 1
            if not self.left and not self.done.done():
                self.done.set_result(None)
