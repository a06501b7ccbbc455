"""How a message leaves the consume loop's hands (runtime/consume.py): acked, each ack
confirmed by the server; nak'ed with a growing delay; held in progress while a stream its
handler publishes to is full; or dead-lettered, then termed once the copy is stored. And the
+WPI that keeps a running handler's messages from being redelivered elsewhere.

The rules (the loop's docstring has them all): an ack only after the handler returned; a term
only after the dead-letter stream confirmed the copy; if the copy fails, a nak (or, on the
last delivery, +WPI and another try) — nothing leaves the stream uncopied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from handwritten.runtime.acks import CONFIRM_RETRYABLE, Confirmations
from handwritten.runtime.contract import ConsumerEndpoint
from handwritten.runtime.deadletter import DeadLetterFailed, DeadLetterReason, dead_letter, one_line
from handwritten.runtime.durable import DurableConfig, shortest_ack_wait
from handwritten.runtime.jetstream import JetStreamPublisher, StreamFull
from handwritten.runtime.roles import PermissionRefused

if TYPE_CHECKING:
    from handwritten.runtime.consume import ConsumeSettings, ConsumeStats

log = logging.getLogger(__name__)

T = TypeVar("T")


Failure = TypeVar("Failure", bound=BaseException)


def _behind(error: BaseException, kind: type[Failure]) -> Failure | None:
    """The `kind` error behind `error` (itself, its cause or context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def stream_full(error: BaseException) -> StreamFull | None:
    """The `StreamFull` behind `error` (itself, its cause or context), if any."""
    return _behind(error, StreamFull)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class Settle:
    """Settles one loop's messages, counting in the loop's `stats`."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        endpoint: ConsumerEndpoint[Any, Any],
        settings: ConsumeSettings,
        stats: ConsumeStats,
        stop: asyncio.Event,
        durable: DurableConfig,
    ) -> None:
        self.nc = nc
        self.endpoint = endpoint
        self.settings = settings
        self.stats = stats
        self.stop = stop
        self.durable = durable
        self.publisher = JetStreamPublisher(js, timeout=settings.ack_timeout, attempts=3)
        self.background: set[asyncio.Task[None]] = set()
        """+WPI sends under way (`_ProgressTimer`'s)."""
        self.confirmations: Confirmations | None = None

    async def close(self) -> None:
        if self.confirmations is not None:
            await self.confirmations.close()
            self.confirmations = None

    async def ack(self, msgs: Sequence[Msg]) -> None:
        """Ack messages whose work is done, together, each confirmed by the server."""
        if not msgs:
            return
        for msg, confirmed in zip(msgs, await self.confirm_all(msgs, Msg.Ack.Ack), strict=True):
            if confirmed:
                self.stats.acked += 1
                continue
            self.stats.ack_unconfirmed += 1
            meta = msg.metadata
            log.warning(
                "%s: ack of %s #%d not confirmed; JetStream redelivers it after the ack wait",
                self.endpoint.durable,
                meta.stream,
                meta.sequence.stream,
            )

    def progress_interval(self) -> float | None:
        every = self.settings.in_progress_every
        if every is None:
            return shortest_ack_wait(self.durable.current) / 2
        return every if every > 0 else None

    async def while_in_progress(self, msgs: Sequence[Msg], work: Awaitable[T]) -> T:
        """Run the handler, sending +WPI for its messages every interval until it finishes.

        A timer rather than a task per message: most handlers finish before it ever fires.
        """
        interval = self.progress_interval()
        if interval is None:
            return await work
        timer = _ProgressTimer(self, msgs, interval)
        try:
            return await work
        finally:
            timer.cancel()

    async def send_progress(self, msgs: Sequence[Msg]) -> None:
        for msg in msgs:
            try:
                await msg.in_progress()
                self.stats.in_progress_sent += 1
            except Exception as error:
                log.debug("in-progress for a running handler failed: %s", error)

    async def hold(self, msg: Msg, full: StreamFull, held: int) -> None:
        """Keep `msg` in progress while a stream its handler publishes to is full."""
        self.stats.held_stream_full += 1
        delay = min(self.settings.nak_delay_base * 2 ** min(held - 1, 16), self.settings.pause_max)
        if held == 1 or held % 30 == 0:
            meta = msg.metadata
            log.warning(
                "⏳ %s: %s #%d waits: %s; held, retried in place every %.1fs (no delivery spent)",
                self.endpoint.durable,
                meta.stream,
                meta.sequence.stream,
                one_line(str(full), 200),
                delay,
                extra={
                    "step": "held-stream-full",
                    "durable": self.endpoint.durable,
                    "stream": full.stream,
                    "limit": full.limit,
                },
            )
        await self.while_in_progress((msg,), sleep_unless(self.stop, max(delay, 0.05)))

    async def failed(self, msg: Msg, error: BaseException) -> None:
        """A transient failure: retry later, or dead-letter it if this was the last delivery."""
        if _behind(error, PermissionRefused) is not None:
            # The server refused the service's role: the connection's hook is stopping the
            # service and the command says why in one line. The message goes back untouched
            # (no warning, no dead letter: nothing is wrong with it).
            await self.nak(msg, 0)
            return
        meta = msg.metadata
        try:
            max_deliver = (await self.durable.refresh()).max_deliver or -1
        except Exception:
            max_deliver = self.durable.current.max_deliver or -1
        description = one_line(f"{type(error).__name__}: {error}", 300)
        if 0 < max_deliver <= meta.num_delivered:
            await self.give_up(
                msg,
                "max-deliver",
                f"handler failed {meta.num_delivered} times: {description}",
            )
            return
        delay = self.settings.nak_delay(meta.num_delivered)
        log.warning(
            "⚠️ %s: %s #%d failed on delivery %d of %s (%s); retry in %.1fs",
            self.endpoint.durable,
            meta.stream,
            meta.sequence.stream,
            meta.num_delivered,
            max_deliver if max_deliver > 0 else "∞",
            description,
            delay,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        await self.nak(msg, delay)

    async def nak(self, msg: Msg, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
            self.stats.naked += 1
        except Exception as error:
            # JetStream redelivers it after the ack wait anyway.
            log.warning("%s: nak failed (%s)", self.endpoint.durable, error)
            self.stats.naked += 1

    async def give_up(self, msg: Msg, reason: DeadLetterReason, detail: str) -> None:
        """Dead-letter, then term; if the dead letter cannot be stored, keep the original."""
        meta = msg.metadata
        while True:
            try:
                await dead_letter(
                    self.publisher, msg, endpoint=self.endpoint, reason=reason, detail=detail
                )
                break
            except DeadLetterFailed as error:
                self.stats.dead_letter_failures += 1
                max_deliver = self.durable.current.max_deliver or -1
                last = 0 < max_deliver <= meta.num_delivered
                if not last:
                    delay = self.settings.nak_delay(meta.num_delivered)
                    log.error("%s: %s; nak'ed, retry in %.1fs", self.endpoint.durable, error, delay)
                    await self.nak(msg, delay)
                    return
                if self.stop.is_set():
                    # A nak would not bring it back (max_deliver reached): it stays unacked
                    # in the stream, reported by the consumer's MAX_DELIVERIES advisory.
                    log.error(
                        "%s: %s; stopping with %s #%d unsettled on its last delivery",
                        self.endpoint.durable,
                        error,
                        meta.stream,
                        meta.sequence.stream,
                    )
                    return
                log.error(
                    "%s: %s; holding the message and trying again", self.endpoint.durable, error
                )
                try:
                    await msg.in_progress()
                    self.stats.in_progress_sent += 1
                except Exception:
                    log.debug("in-progress while holding a dead letter failed", exc_info=True)
                await sleep_unless(self.stop, 1.0)
        reasons = self.stats.dead_letter_reasons
        reasons[reason] = reasons.get(reason, 0) + 1
        if await self.confirm(msg, msg.Ack.Term):
            self.stats.dead_lettered += 1
        else:
            # Redelivered after the ack wait; the repeat dead letter is then a duplicate.
            self.stats.dead_lettered += 1
            log.warning(
                "%s: term of %s #%d not confirmed; it may be dead-lettered again (deduplicated)",
                self.endpoint.durable,
                meta.stream,
                meta.sequence.stream,
            )

    async def confirm(self, msg: Msg, payload: bytes) -> bool:
        """Send an ack or term and wait for the server to confirm it (a double ack)."""
        [confirmed] = await self.confirm_all((msg,), payload)
        return confirmed

    async def confirm_all(self, msgs: Sequence[Msg], payload: bytes) -> list[bool]:
        """Send an ack (or term) for each message, all at once, and wait for the server to
        confirm them together (double acks); whether each was confirmed.

        The unconfirmed are sent again after a pause, up to `ack_attempts` times: the server
        answers a repeated ack of the same delivery too.
        """
        if self.confirmations is None:
            self.confirmations = await Confirmations(self.nc).start()
        confirmed = [False] * len(msgs)
        todo = list(range(len(msgs)))
        delay = 0.1
        for attempt in range(self.settings.ack_attempts):
            try:
                answers = await self.confirmations.send(
                    [msgs[i] for i in todo], payload, timeout=self.settings.ack_timeout
                )
            except CONFIRM_RETRYABLE as error:
                log.debug("acks not confirmed yet (%s); retrying", type(error).__name__)
                answers = [False] * len(todo)
            except Exception as error:
                log.warning("%s: ack failed (%s)", self.endpoint.durable, error)
                return confirmed
            for i, answered in zip(todo, answers, strict=True):
                confirmed[i] = answered
            todo = [i for i in todo if not confirmed[i]]
            if not todo or attempt + 1 == self.settings.ack_attempts:
                break
            log.debug("%d acks not confirmed yet; retrying", len(todo))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        return confirmed


class _ProgressTimer:
    """Sends +WPI for `msgs` every `interval` seconds until cancelled.

    An object rather than a closure that schedules itself again: such a closure refers to
    itself, a reference cycle that holds the batch's messages until the garbage collector
    runs — for a busy consumer, most of the objects it has to traverse."""

    __slots__ = ("_handle", "_interval", "_msgs", "_settle")

    def __init__(self, settle: Settle, msgs: Sequence[Msg], interval: float) -> None:
        self._settle = settle
        self._msgs = msgs
        self._interval = interval
        self._handle = asyncio.get_running_loop().call_later(interval, self._tick)

    def _tick(self) -> None:
        settle = self._settle
        progress = asyncio.ensure_future(settle.send_progress(self._msgs))
        settle.background.add(progress)
        progress.add_done_callback(settle.background.discard)
        self._handle = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def cancel(self) -> None:
        self._handle.cancel()  # drops its reference to `_tick`: no cycle is left
