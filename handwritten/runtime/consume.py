"""The consume loop: batched pulls from an existing durable, decode, dispatch, settle.

Delivery semantics (at least once — handlers must be idempotent):

- A message is acked only after its handler returned, with a double ack (`ack_sync`): the
  server confirms it. An ack that stays unconfirmed (the server restarted in between) is
  counted and logged; JetStream redelivers that message after its ack wait.
- A handler that raises is retried: the message is nak'ed with a growing delay. On its last
  delivery (`num_delivered >= max_deliver` of the consumer) it is dead-lettered instead.
- Bytes that are no valid event, or a handler raising `PermanentError`, are dead-lettered at
  once. A dead letter is termed only after the DLQ stream confirmed the copy; if the copy
  fails, the message is nak'ed (or, on its last delivery, held with +WPI and retried) — nothing
  leaves the stream uncopied.
- Messages are processed concurrently, at most `batch_size` at a time; a new pull asks for as
  many as there are free slots. A slow or failing message holds one slot, never the others.
- Every pull is a fresh request that expires after `fetch_timeout`, so a pull request lost in
  a server restart or reconnect costs at most that long; pull errors are logged and the pull
  is re-issued. (nats-py issue #504: a pull *subscription* does not re-issue lost pull
  requests by itself; a loop of short fetches does not depend on that.)
- While a handler runs, +WPI keeps its message: with a consumer `backoff` JetStream waits only
  backoff[0] (1 s in the spec) for the first ack, not `ack_wait`, so a slow handler would
  otherwise see its message redelivered to another instance while it still works on it.
- Each pull also has a watchdog (twice its expiry plus a grace): the loop never waits on one
  fetch forever, whatever nats-py does after a reconnect.
- On stop: no new pulls; messages already fetched are handled and settled; then return.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo
from pydantic import ValidationError

from handwritten.runtime.contract import ConsumerEndpoint, Delivery, PermanentError
from handwritten.runtime.deadletter import DeadLetterFailed, DeadLetterReason, dead_letter, one_line
from handwritten.runtime.errors import CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, is_jetstream_error
from handwritten.runtime.jetstream import JetStreamPublisher
from handwritten.runtime.shutdown import install_shutdown, uninstall_shutdown

log = logging.getLogger(__name__)

H = TypeVar("H")
E = TypeVar("E")

EVENT_TYPE_FIELD: Final = "eventType"

FETCH_GRACE = 2.0
"""Seconds beyond twice the pull expiry after which a fetch counts as hung."""

CONFIG_MAX_AGE = 30.0
"""Seconds the consumer's config (max_deliver, ack wait) is trusted before it is read again."""

_FETCH_TAKES_HEARTBEAT: Final = (
    "heartbeat" in inspect.signature(JetStreamContext.PullSubscription.fetch).parameters
)


class ConsumerMissing(Exception):
    """The durable consumer (or its stream) does not exist: the loop never creates one."""


class ConsumerNotPullBased(Exception):
    """The durable exists but is a push consumer (it has a deliver_subject)."""


@dataclass(frozen=True)
class ConsumeSettings:
    """How the loop pulls and retries.

    - `batch_size`: most messages in flight at once (and per pull); 1 processes in order.
    - `fetch_timeout`: lifetime (expiry) of each pull request, in seconds.
    - `heartbeat`: idle heartbeat asked for each pull; capped at a quarter of `fetch_timeout`
      (the server refuses more than half) and ignored by nats-py versions without it.
    - `nak_delay_base`, `nak_delay_max`: a failed delivery n is retried after
      min(base * 2**(n-1), max) seconds.
    - `in_progress_every`: while a handler runs, tell JetStream it is still being worked on
      (+WPI) this often. None: half the consumer's shortest ack wait (with a `backoff`, the first
      ack wait is backoff[0], not ack_wait), so a slow handler is never redelivered elsewhere
      while it still runs. 0 turns it off.
    - `ack_timeout`, `ack_attempts`: each confirmed ack or term waits this long, this often.
    """

    batch_size: int = 64
    fetch_timeout: float = 1.0
    heartbeat: float | None = 0.5
    nak_delay_base: float = 0.5
    nak_delay_max: float = 30.0
    in_progress_every: float | None = None
    ack_timeout: float = 2.0
    ack_attempts: int = 5

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.fetch_timeout <= 0:
            raise ValueError("fetch_timeout must be positive")
        if self.nak_delay_base < 0 or self.nak_delay_max < 0:
            raise ValueError("nak delays must not be negative")
        if self.ack_attempts < 1 or self.ack_timeout <= 0:
            raise ValueError("ack_attempts must be at least 1 and ack_timeout positive")

    @property
    def pull_heartbeat(self) -> float | None:
        """The heartbeat actually requested: the server refuses one above half the expiry."""
        if not self.heartbeat or self.heartbeat <= 0:
            return None
        return min(self.heartbeat, self.fetch_timeout / 4)

    def nak_delay(self, num_delivered: int) -> float:
        exponent = min(max(num_delivered, 1) - 1, 32)
        return float(min(self.nak_delay_base * 2**exponent, self.nak_delay_max))


@dataclass
class ConsumeStats:
    """Counters of one consumer's work; `run_consumer` updates them as it goes."""

    fetched: int = 0
    handled: int = 0
    acked: int = 0
    naked: int = 0
    dead_lettered: int = 0
    handler_errors: int = 0
    ack_unconfirmed: int = 0
    dead_letter_failures: int = 0
    fetch_errors: int = 0
    in_progress_sent: int = 0

    @property
    def settled(self) -> int:
        """Messages finished one way or another (acked, nak'ed or dead-lettered)."""
        return self.acked + self.ack_unconfirmed + self.naked + self.dead_lettered


def classify_invalid(
    error: ValidationError, data: bytes, event_types: tuple[str, ...]
) -> tuple[DeadLetterReason, str]:
    """Why `decode` refused these bytes: invalid-json, unknown-event-type or schema-invalid,
    with a one-line detail naming the first problem."""
    problems = error.errors(include_url=False)
    json_problem = next((p for p in problems if p["type"] == "json_invalid"), None)
    if json_problem is not None:
        return "invalid-json", one_line(f"Invalid JSON: {json_problem['msg']}")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as parse_error:
        return "invalid-json", one_line(f"Invalid JSON: {parse_error}")
    if isinstance(document, dict) and EVENT_TYPE_FIELD in document:
        event_type = document[EVENT_TYPE_FIELD]
        if isinstance(event_type, str) and event_type not in event_types:
            shown = json.dumps(event_type, ensure_ascii=False)[:100]
            return "unknown-event-type", one_line(
                f"{EVENT_TYPE_FIELD} {shown} is not one of {', '.join(event_types)}"
            )
    if not problems:
        return "schema-invalid", one_line(str(error))
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "(document)"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return "schema-invalid", one_line(f"{where}: {first['msg']}{more}")


def shortest_ack_wait(config: ConsumerConfig) -> float:
    """The shortest time JetStream waits for an ack before redelivering: with a backoff list
    the server uses it instead of ack_wait, first delivery included."""
    waits = [w for w in (config.backoff or []) if w and w > 0]
    if not waits and config.ack_wait:
        waits = [config.ack_wait]
    return min(waits) if waits else 30.0


def _is_missing(error: BaseException) -> bool:
    return is_jetstream_error(error, CONSUMER_NOT_FOUND, STREAM_NOT_FOUND)


def _missing_message(endpoint: ConsumerEndpoint[Any, Any], error: BaseException) -> str:
    what = (
        f"stream {endpoint.stream}"
        if getattr(error, "err_code", None) == STREAM_NOT_FOUND
        else f"durable consumer {endpoint.durable} on stream {endpoint.stream}"
    )
    return f"{what} does not exist: run `filetrash provision` to create the spec's topology"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake as soon as `stop` is set."""
    if seconds <= 0 or stop.is_set():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


_CONFIRM_RETRYABLE = (
    nats.errors.TimeoutError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    TimeoutError,
)


class _Consumer:
    """The state of one run of the loop: subscription, in-flight tasks, cached config."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        endpoint: ConsumerEndpoint[Any, Any],
        handler: Any,
        info: ConsumerInfo,
        settings: ConsumeSettings,
        stop: asyncio.Event,
        stats: ConsumeStats,
    ) -> None:
        self.nc = nc
        self.js = js
        self.endpoint = endpoint
        self.handler = handler
        self.settings = settings
        self.stop = stop
        self.stats = stats
        self.config = info.config
        self.config_read_at = time.monotonic()
        self.publisher = JetStreamPublisher(js, timeout=settings.ack_timeout, attempts=3)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.background: set[asyncio.Task[None]] = set()

    # -- the pull loop ---------------------------------------------------------------------

    async def run(self, sub: JetStreamContext.PullSubscription) -> None:
        stopped = asyncio.ensure_future(self.stop.wait())
        error_delay = 0.1
        try:
            while not self.stop.is_set():
                free = self.settings.batch_size - len(self.in_flight)
                if free <= 0:
                    await asyncio.wait({stopped, *self.in_flight}, return_when="FIRST_COMPLETED")
                    continue
                pulled_at = time.monotonic()
                try:
                    msgs = await self._fetch(sub, free)
                except (nats.js.errors.FetchTimeoutError, nats.errors.TimeoutError, TimeoutError):
                    error_delay = 0.1
                    continue  # nothing to do within the expiry (or the request was lost)
                except nats.errors.ConnectionClosedError:
                    if self.nc.is_closed:
                        raise
                    await _sleep_unless(self.stop, error_delay)
                    continue
                except Exception as error:
                    self.stats.fetch_errors += 1
                    await self._on_fetch_error(error, error_delay)
                    error_delay = min(error_delay * 2, 5.0)
                    continue
                error_delay = 0.1
                if msgs:
                    self.stats.fetched += len(msgs)
                    self._start_batch(msgs)
                elif time.monotonic() - pulled_at < self.settings.fetch_timeout / 2:
                    # An empty answer long before the expiry (a refused or cut-short pull):
                    # pause briefly rather than spin on the server.
                    await _sleep_unless(self.stop, min(0.1, self.settings.fetch_timeout / 2))
        finally:
            stopped.cancel()

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
        """One pull, bounded by a watchdog: a fetch that outlives its own expiry by far is
        abandoned (its late messages wait in the subscription for the next pull)."""
        timeout = self.settings.fetch_timeout
        heartbeat = self.settings.pull_heartbeat
        if heartbeat is not None and _FETCH_TAKES_HEARTBEAT:
            pull = sub.fetch(batch, timeout=timeout, heartbeat=heartbeat)
        else:
            pull = sub.fetch(batch, timeout=timeout)
        watchdog = asyncio.timeout(timeout * 2 + FETCH_GRACE)
        try:
            async with watchdog:
                msgs: list[Msg] = await pull
        except TimeoutError:
            if watchdog.expired():
                log.warning("%s: a pull hung past its expiry; pulling again", self.endpoint.durable)
            raise
        return msgs

    async def _on_fetch_error(self, error: Exception, delay: float) -> None:
        """Log a failed pull, find out whether the consumer is gone, and wait a little.

        A pull to a consumer that no longer exists answers 503 (no responders), just like one
        to a server whose JetStream is still starting; only consumer info tells them apart.
        """
        log.warning(
            "%s: pull failed (%s: %s); pulling again in %.1fs",
            self.endpoint.durable,
            type(error).__name__,
            one_line(str(error), 200),
            delay,
        )
        try:
            await self.refresh_config(force=True)
        except ConsumerMissing:
            raise
        except Exception as info_error:
            log.debug("consumer info failed too: %s", info_error)
        await _sleep_unless(self.stop, delay)

    async def refresh_config(self, *, force: bool = False) -> ConsumerConfig:
        if force or time.monotonic() - self.config_read_at > CONFIG_MAX_AGE:
            try:
                info = await self.js.consumer_info(self.endpoint.stream, self.endpoint.durable)
            except nats.js.errors.NotFoundError as error:
                if _is_missing(error):
                    raise ConsumerMissing(_missing_message(self.endpoint, error)) from None
                raise
            self.config = info.config
            self.config_read_at = time.monotonic()
        return self.config

    def _start_batch(self, msgs: list[Msg]) -> None:
        """Handle a fetched batch, each message on its own; a batch handler would go here."""
        for msg in msgs:
            task = asyncio.ensure_future(self._process(msg))
            self.in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.error(
                "%s: settling a message failed unexpectedly",
                self.endpoint.durable,
                exc_info=error,
            )

    async def wait_in_flight(self) -> None:
        while self.in_flight:
            await asyncio.wait(set(self.in_flight))

    # -- one message -----------------------------------------------------------------------

    async def _process(self, msg: Msg) -> None:
        meta = msg.metadata
        try:
            event = self.endpoint.decode(msg.data)
        except ValidationError as error:
            reason, detail = classify_invalid(error, msg.data, self.endpoint.event_types)
            await self._give_up(msg, reason, detail)
            return
        except Exception as error:
            await self._failed(msg, error)
            return
        delivery = Delivery(
            subject=msg.subject,
            stream=meta.stream,
            stream_seq=meta.sequence.stream,
            consumer=meta.consumer,
            num_delivered=meta.num_delivered,
            headers=dict(msg.headers or {}),
        )
        try:
            await self._while_in_progress(
                msg, self.endpoint.dispatch(self.handler, event, delivery)
            )
        except PermanentError as error:
            self.stats.handler_errors += 1
            await self._give_up(msg, "permanent-error", f"{type(error).__name__}: {error}")
            return
        except Exception as error:
            self.stats.handler_errors += 1
            await self._failed(msg, error)
            return
        self.stats.handled += 1
        if await self._confirm(msg, msg.Ack.Ack):
            self.stats.acked += 1
            log.debug("%s: %s #%d acked", self.endpoint.durable, meta.stream, meta.sequence.stream)
        else:
            self.stats.ack_unconfirmed += 1
            log.warning(
                "%s: ack of %s #%d not confirmed; JetStream redelivers it after the ack wait",
                self.endpoint.durable,
                meta.stream,
                meta.sequence.stream,
            )

    def _progress_interval(self) -> float | None:
        every = self.settings.in_progress_every
        if every is None:
            return shortest_ack_wait(self.config) / 2
        return every if every > 0 else None

    async def _while_in_progress(self, msg: Msg, work: Awaitable[None]) -> None:
        """Run the handler, sending +WPI every interval until it finishes.

        A timer rather than a task per message: most handlers finish before it ever fires.
        """
        interval = self._progress_interval()
        if interval is None:
            await work
            return
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def tick() -> None:
            nonlocal timer
            progress = asyncio.ensure_future(self._send_progress(msg))
            self.background.add(progress)
            progress.add_done_callback(self.background.discard)
            timer = loop.call_later(interval, tick)

        timer = loop.call_later(interval, tick)
        try:
            await work
        finally:
            timer.cancel()

    async def _send_progress(self, msg: Msg) -> None:
        try:
            await msg.in_progress()
            self.stats.in_progress_sent += 1
        except Exception as error:
            log.debug("in-progress for a running handler failed: %s", error)

    async def _failed(self, msg: Msg, error: BaseException) -> None:
        """A transient failure: retry later, or dead-letter it if this was the last delivery."""
        meta = msg.metadata
        try:
            max_deliver = (await self.refresh_config()).max_deliver or -1
        except Exception:
            max_deliver = self.config.max_deliver or -1
        description = one_line(f"{type(error).__name__}: {error}", 300)
        if 0 < max_deliver <= meta.num_delivered:
            await self._give_up(
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
        await self._nak(msg, delay)

    async def _nak(self, msg: Msg, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
            self.stats.naked += 1
        except Exception as error:
            # JetStream redelivers it after the ack wait anyway.
            log.warning("%s: nak failed (%s)", self.endpoint.durable, error)
            self.stats.naked += 1

    async def _give_up(self, msg: Msg, reason: DeadLetterReason, detail: str) -> None:
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
                max_deliver = self.config.max_deliver or -1
                last = 0 < max_deliver <= meta.num_delivered
                if not last:
                    delay = self.settings.nak_delay(meta.num_delivered)
                    log.error("%s: %s; nak'ed, retry in %.1fs", self.endpoint.durable, error, delay)
                    await self._nak(msg, delay)
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
                await _sleep_unless(self.stop, 1.0)
        if await self._confirm(msg, msg.Ack.Term):
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

    async def _confirm(self, msg: Msg, payload: bytes) -> bool:
        """Send an ack or term and wait for the server to confirm it (a double ack).

        Retried on timeouts: the server answers a repeated ack of the same delivery too.
        """
        delay = 0.1
        for attempt in range(self.settings.ack_attempts):
            try:
                await self.nc.request(msg.reply, payload, timeout=self.settings.ack_timeout)
                return True
            except _CONFIRM_RETRYABLE as error:
                if attempt + 1 < self.settings.ack_attempts:
                    log.debug("ack not confirmed yet (%s); retrying", type(error).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
            except Exception as error:
                log.warning("%s: ack failed (%s)", self.endpoint.durable, error)
                return False
        return False


async def bind_consumer(js: JetStreamContext, endpoint: ConsumerEndpoint[Any, Any]) -> ConsumerInfo:
    """Read the existing durable's info; never create or change it."""
    try:
        info: ConsumerInfo = await js.consumer_info(endpoint.stream, endpoint.durable)
    except nats.js.errors.NotFoundError as error:
        if _is_missing(error):
            raise ConsumerMissing(_missing_message(endpoint, error)) from None
        raise
    if info.config.deliver_subject:
        raise ConsumerNotPullBased(
            f"durable consumer {endpoint.durable} on stream {endpoint.stream} is a push consumer "
            f"(deliver_subject {info.config.deliver_subject}); the spec declares a pull consumer: "
            "delete it and run `filetrash provision`"
        )
    filters = [f for f in info.config.filter_subjects or [info.config.filter_subject or ""] if f]
    if filters != [endpoint.filter_subject]:
        log.warning(
            "%s filters %s, the spec says %s: `filetrash provision --plan` shows the drift",
            endpoint.durable,
            ", ".join(filters) or "nothing",
            endpoint.filter_subject,
        )
    return info


async def run_consumer(
    nc: Client,
    endpoint: ConsumerEndpoint[H, E],
    handler: H,
    *,
    settings: ConsumeSettings = ConsumeSettings(),  # frozen: one shared default is safe
    stop: asyncio.Event | None = None,
    stats: ConsumeStats | None = None,
) -> ConsumeStats:
    """Consume `endpoint`'s durable with `handler` until `stop` is set; return the counters.

    Raises `ConsumerMissing` when the durable or its stream does not exist (at start, or when
    it disappears while running), and `nats.errors.ConnectionClosedError` when the connection
    is closed under it. Messages already fetched are handled and settled before it returns.
    """
    stop = stop if stop is not None else asyncio.Event()
    stats = stats if stats is not None else ConsumeStats()
    js = nc.jetstream()
    info = await bind_consumer(js, endpoint)
    sub = await js.pull_subscribe_bind(durable=endpoint.durable, stream=endpoint.stream)
    consumer = _Consumer(nc, js, endpoint, handler, info, settings, stop, stats)
    log.info(
        '✅ %s ready. Listening for %s on "%s"',
        endpoint.durable,
        ", ".join(endpoint.event_types),
        endpoint.filter_subject,
        extra={"step": "ready", "durable": endpoint.durable},
    )
    try:
        await consumer.run(sub)
    finally:
        await consumer.wait_in_flight()
        try:
            await sub.unsubscribe()
            await nc.flush(timeout=math.ceil(settings.ack_timeout))  # naks are fire-and-forget
        except Exception as error:
            log.debug("closing the pull subscription failed: %s", error)
    return stats


async def serve(
    endpoint: ConsumerEndpoint[H, E],
    handler: H,
    *,
    nats_url: str,
    settings: ConsumeSettings = ConsumeSettings(),  # frozen: one shared default is safe
    stop: asyncio.Event | None = None,
) -> ConsumeStats:
    """Run one consumer as a process would: connect, stop on SIGTERM/SIGINT, drain, close."""
    from handwritten.runtime.connect import connect_nats

    stop = stop if stop is not None else asyncio.Event()
    install_shutdown(stop)
    try:
        nc = await connect_nats(nats_url, name=endpoint.durable)
        try:
            stats = await run_consumer(nc, endpoint, handler, settings=settings, stop=stop)
        finally:
            try:
                await nc.drain()
            except Exception as error:
                log.debug("drain failed (%s); closing", error)
                await nc.close()
    finally:
        uninstall_shutdown()
    log.info(
        "👋 %s stopped: %d acked, %d retried, %d dead-lettered",
        endpoint.durable,
        stats.acked,
        stats.naked,
        stats.dead_lettered,
    )
    return stats
