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

CONFIRM_RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    TimeoutError,
)
"""Errors after which an unconfirmed ack is sent again (the server answers a repeated ack too)."""


class Confirmations:
    """Double acks in bulk: each ack (or term) goes out with a reply subject on one inbox of
    ours, and the server's answers resolve futures that are awaited together — one
    subscription for all of them instead of a request, a timer and a task per ack."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._sent = 0
        self._sub: Any = None

    async def start(self) -> Confirmations:
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_answer)
        return self

    async def send(self, msgs: Sequence[Msg], payload: bytes, *, timeout: float) -> list[bool]:
        """Send `payload` to each message's ack subject; whether the server confirmed each
        within `timeout`."""
        loop = asyncio.get_running_loop()
        futures: list[tuple[str, asyncio.Future[None]]] = []
        try:
            for msg in msgs:
                self._sent += 1
                token = str(self._sent)
                future: asyncio.Future[None] = loop.create_future()
                self._waiting[token] = future
                futures.append((token, future))
                await self._nc.publish(msg.reply, payload, reply=f"{self._prefix}.{token}")
            await asyncio.wait([future for _, future in futures], timeout=timeout)
        finally:
            for token, future in futures:
                if not future.done():
                    self._waiting.pop(token, None)
                    future.cancel()
        return [not future.cancelled() for _, future in futures]

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_answer(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) + 1 :], None)
        if future is not None and not future.done():
            future.set_result(None)
