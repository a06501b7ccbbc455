"""The consume loop: batched pulls from an existing durable, decode, dispatch, settle.

The pull transport lives in `runtime/pull.py` (`StreamingPull`); how a message is settled
(acked, nak'ed, held, dead-lettered) and kept in progress in `runtime/settle.py` (`Settle`),
with the acks confirmed by the server in `runtime/acks.py` (`Confirmations`); the durable and
its config in `runtime/durable.py`. This module is the loop itself.

Delivery semantics (at least once — handlers must be idempotent):

- A message is acked only after its handler returned, with a double ack (`ack_sync`): the
  server confirms it. An ack that stays unconfirmed (the server restarted in between) is
  counted and logged; JetStream redelivers that message after its ack wait.
- A handler that raises is retried: the message is nak'ed with a growing delay. On its last
  delivery (`num_delivered >= max_deliver` of the consumer) it is dead-lettered instead.
- When every handler fails (`pause_after_failures` in a row, none succeeding), a dependency
  is down, not the messages bad: the loop stops taking new messages — each would only fail
  too and spend one of its deliveries, so that a long database outage would drain the stream
  into the dead-letter stream — and tries one message at a time, less and less often (up to
  `pause_max`), until one succeeds; then it pulls at full speed again.
- Bytes that are no valid event, a subject whose parameter values the channel does not
  accept, or a handler raising `PermanentError`, are dead-lettered at once. A dead letter is termed only after the DLQ stream confirmed the copy; if the copy
  fails, the message is nak'ed (or, on its last delivery, held with +WPI and retried) — nothing
  leaves the stream uncopied.
- A handler with only per-message methods gets each message on its own, at most `batch_size`
  at a time; a new pull asks for as many as there are free slots. A slow or failing message
  holds one slot, never the others.
- A handler that fails because a stream it publishes to is full (`StreamFull`: a
  `discard: new` stream at its limit) is not at fault, and neither is its message: the message
  is held (+WPI) and handled again in place, less and less often (up to `pause_max`), until
  the stream has room — without a nak, so no delivery of its `max_deliver` is spent and it is
  never dead-lettered for it. Only a shutdown naks it.
- A handler that also has `handle_batch` (`contract.BatchHandler`) gets whatever one pull
  brought, up to `batch_size` messages, as one batch, with up to `concurrency` batches at
  once. Each message is still decoded and validated on its own: invalid ones are dead-lettered
  beside the batch, never inside it. The handler reports failures item by item
  (`BatchResult`), and each failed item is settled as a single message would be. If the batch
  raises as a whole, its messages are handled again one by one through the per-message
  method, so the culprit fails alone. Acks of a batch go out together, after the handler
  returned (its rows committed, its publishes acknowledged).
- Pulls stream: a message is handed over as soon as it arrives, not when its pull's batch is
  full, so at a low rate a message waits for nothing and under load batches fill themselves.
  One pull request is outstanding at a time; it expires after `fetch_timeout`, so a request
  lost in a server restart or reconnect costs at most that long, and pull errors are logged
  and the pull re-issued. (nats-py issue #504: a pull *subscription* does not re-issue lost
  pull requests by itself; nats-py's `fetch` waits for a full batch once the backlog is
  drained, and drops what it held when the server refuses a request.)
- While a handler runs, +WPI keeps its messages: with a consumer `backoff` JetStream waits
  only backoff[0] for the first ack, not `ack_wait`, so a slow handler would otherwise see its
  message redelivered to another instance while it still works on it. The same goes for
  messages the open pull brings while every slot is busy: they wait in the loop's hands,
  and get +WPI too until a slot frees.
- Each pull also has a watchdog (twice its expiry plus a grace): the loop never waits on one
  fetch forever, whatever happens after a reconnect.
- On stop: no new pulls; the last pull request is let run out and what it still brings is
  handled; messages already fetched are handled and settled; then return.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from pydantic import ValidationError

from handwritten.runtime import tracing
from handwritten.runtime.addresses import InvalidSubjectParameter, SubjectOutsideAddress
from handwritten.runtime.advisories import MaxDeliveriesWatcher
from handwritten.runtime.contract import (
    NO_ENTRIES,
    BatchResult,
    ConsumerEndpoint,
    Delivery,
    PermanentError,
    new_delivery,
)
from handwritten.runtime.deadletter import DeadLetterReason, one_line
from handwritten.runtime.durable import (
    ConsumerMissing,
    DurableConfig,
    bind_consumer,
)
from handwritten.runtime.pull import Pull, StreamingPull
from handwritten.runtime.settle import Settle, sleep_unless, stream_full
from handwritten.runtime.shutdown import install_shutdown, uninstall_shutdown

log = logging.getLogger(__name__)

H = TypeVar("H")
E = TypeVar("E")

EVENT_TYPE_FIELD: Final = "eventType"

FETCH_GRACE = 2.0
"""Seconds beyond twice the pull expiry after which a fetch counts as hung."""

DEMAND_FLOOR = 16
"""The smallest pull the loop asks for while it has room. It asks for twice what the last pull
brought (at least this, at most `batch_size`): under a backlog that doubles up to the full
batch in a few pulls; in a trickle a pull stays small, so that the request left open for its
expiry does not collect a full batch of messages that all fail, each spending a delivery,
when a dependency goes down before the loop backs off."""


@dataclass(frozen=True)
class ConsumeSettings:
    """How the loop pulls and retries.

    - `batch_size`: most messages per pull. Per-message handlers: also the most messages in
      flight at once (1 processes in order). Batch handlers: the largest batch. None (the
      default): 256 for a batch handler — what a batch costs beside its messages (a
      statement, a commit, a flush, a pull request, a wake-up of nats-server and PostgreSQL)
      is then shared by four times as many as with 64, for a third less CPU per event — and
      64 for per-message handlers, whose in-flight messages all fail, each spending a
      delivery, when a dependency goes down before the loop backs off (`batch_for`). A pull
      asks for twice what the last one brought, from `DEMAND_FLOOR` up to this.
    - `concurrency`: batch handlers only — batches in flight at once, so that one batch is
      decoded while another waits on the database or its PubAcks.
    - `fetch_timeout`: lifetime (expiry) of each pull request, in seconds.
    - `linger`: batch handlers only — once a pull's first message is in, wait at most this
      long for the rest of its burst, so that it makes one batch (`StreamingPull`).
    - `heartbeat`: idle heartbeat asked for each pull; capped at a quarter of `fetch_timeout`
      (the server refuses more than half). Off by default: the loop learns that a request
      was lost from its expiry (`PULL_GRACE`), not from missing heartbeats, so they would
      only be messages for an idle consumer to read and the server to time.
    - `nak_delay_base`, `nak_delay_max`: a failed delivery n is retried after
      min(base * 2**(n-1), max) seconds.
    - `in_progress_every`: while a handler runs, tell JetStream it is still being worked on
      (+WPI) this often. None: half the consumer's shortest ack wait (with a `backoff`, the first
      ack wait is backoff[0], not ack_wait), so a slow handler is never redelivered elsewhere
      while it still runs. 0 turns it off.
    - `ack_timeout`, `ack_attempts`: each confirmed ack or term waits this long, this often.
    - `pause_after_failures`: after this many handler failures in a row, pull one message at
      a time, waiting from `nak_delay_base` up to `pause_max` seconds between them, until a
      handler succeeds. 0 turns it off.
    """

    batch_size: int | None = None
    concurrency: int = 2
    fetch_timeout: float = 1.0
    linger: float = 0.002
    heartbeat: float | None = None
    nak_delay_base: float = 0.5
    nak_delay_max: float = 30.0
    in_progress_every: float | None = None
    ack_timeout: float = 2.0
    ack_attempts: int = 5
    pause_after_failures: int = 8
    pause_max: float = 4.0

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.fetch_timeout <= 0:
            raise ValueError("fetch_timeout must be positive")
        if self.linger < 0:
            raise ValueError("linger must not be negative")
        if self.nak_delay_base < 0 or self.nak_delay_max < 0:
            raise ValueError("nak delays must not be negative")
        if self.ack_attempts < 1 or self.ack_timeout <= 0:
            raise ValueError("ack_attempts must be at least 1 and ack_timeout positive")
        if self.pause_after_failures < 0 or self.pause_max < 0:
            raise ValueError("pause_after_failures and pause_max must not be negative")

    def batch_for(self, takes_batches: bool) -> int:
        """`batch_size`, or its default for a handler that takes batches or not."""
        if self.batch_size is not None:
            return self.batch_size
        return 256 if takes_batches else 64

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
    batches: int = 0
    batch_fallbacks: int = 0
    pauses: int = 0
    held_stream_full: int = 0
    """Times a message was held because a stream its handler publishes to was full."""
    """Waits before a single-message pull while every handler failed."""
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    bound: bool = False
    """The durable was found and the loop pulls from it (readiness)."""
    observe: Callable[[str, float], None] | None = field(default=None, compare=False, repr=False)
    """Called with ("handler" | "batch" | "end_to_end", seconds) as work completes (metrics)."""

    @property
    def in_flight(self) -> int:
        """Fetched and not settled yet."""
        return max(self.fetched - self.settled, 0)

    def timed(self, kind: str, seconds: float) -> None:
        if self.observe is not None:
            self.observe(kind, seconds)

    def handled_event(self, event: Any, msg: Msg) -> None:
        """End-to-end latency: from the event's own `timestamp` when it has an aware one, else
        from when JetStream stored the message."""
        if self.observe is not None:
            self.handled_events(((event, msg),))

    def handled_events(self, handled: Iterable[tuple[Any, Msg]]) -> None:
        """`handled_event` for many, against one clock reading; nothing without metrics."""
        observe = self.observe
        if observe is None:
            return
        now = datetime.now(UTC)
        for event, msg in handled:
            stamp = getattr(event, "timestamp", None)
            if not (isinstance(stamp, datetime) and stamp.tzinfo is not None):
                stamp = msg.metadata.timestamp
            if isinstance(stamp, datetime):
                observe("end_to_end", max((now - stamp).total_seconds(), 0.0))

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


def _delivery(msg: Msg, parameters: dict[str, str]) -> Delivery:
    """Where `msg` came from, read straight from its ack subject: nats-py's `metadata` builds
    two dataclasses and a datetime per message that the loop does not need on its way."""
    tokens = msg.reply.split(".")
    if len(tokens) == _ACK_V1_TOKENS and tokens[0] == "$JS":
        stream, consumer, delivered, sequence = tokens[2], tokens[3], tokens[4], tokens[5]
    elif len(tokens) >= _ACK_V2_TOKENS - 1 and tokens[0] == "$JS":
        stream, consumer = tokens[Msg.Ack.Stream], tokens[Msg.Ack.Consumer]
        delivered, sequence = tokens[Msg.Ack.NumDelivered], tokens[Msg.Ack.StreamSeq]
    else:
        meta = msg.metadata  # raises NotJSMessageError
        stream, consumer = meta.stream, meta.consumer
        delivered, sequence = str(meta.num_delivered), str(meta.sequence.stream)
    return new_delivery(
        msg.subject,
        stream,
        int(sequence),
        consumer,
        int(delivered),
        msg.headers or NO_ENTRIES,  # nats-py makes a dict per message, held by nobody else
        parameters,
        msg.data,
    )


_ACK_V1_TOKENS: Final = 9
"""$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>"""
_ACK_V2_TOKENS: Final = 12
"""$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>...<token>"""


def read_parameters(endpoint: ConsumerEndpoint[Any, Any], subject: str) -> dict[str, str] | str:
    """The parameter values of a delivered subject, or why it can never be handled: a value its
    channel does not accept (not in the enum, not matching the pattern), or a subject outside
    the channel's address. Either way every redelivery would fail the same, so the loop
    dead-letters it as `invalid-subject`."""
    try:
        return endpoint.address.parse(subject)
    except (InvalidSubjectParameter, SubjectOutsideAddress) as error:
        return one_line(str(error))


class _Consumer:
    """The state of one run of the loop: in-flight tasks, cached config, the handler's shape."""

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
        self.endpoint = endpoint
        self.handler = handler
        self.settings = settings
        self.stop = stop
        self.stats = stats
        self.durable = DurableConfig(js, endpoint, info)
        self.settle = Settle(nc, js, endpoint, settings, stats, stop, self.durable)
        handle_batch = getattr(handler, "handle_batch", None)
        self.handle_batch: (
            Callable[[Sequence[tuple[Any, Delivery]]], Awaitable[BatchResult]] | None
        ) = handle_batch if callable(handle_batch) else None
        self.batch_size = settings.batch_for(self.handle_batch is not None)
        self.demand = min(self.batch_size, DEMAND_FLOOR)
        """What the next pull asks for at most: twice what the last one brought."""
        self.in_flight: dict[asyncio.Task[None], int] = {}
        """Running tasks, each with the number of messages it settles."""
        self.in_flight_messages = 0
        self.failures_in_a_row = 0
        """Handler failures since the last success (permanent errors and bad bytes aside)."""
        self.pause = settings.nak_delay_base

    # -- the pull loop ---------------------------------------------------------------------

    def _room(self) -> int:
        """How many messages the next pull may ask for."""
        settings, batch = self.settings, self.batch_size
        if self.handle_batch is None:
            return min(self.demand, batch - self.in_flight_messages)
        if len(self.in_flight) >= settings.concurrency:
            return 0
        return min(self.demand, batch * settings.concurrency - self.in_flight_messages)

    def _brought(self, count: int) -> None:
        """A pull brought `count` messages: ask for twice that next (see `DEMAND_FLOOR`)."""
        self.demand = min(self.batch_size, max(DEMAND_FLOOR, 2 * count))

    async def run(self, sub: Pull) -> None:
        stopped = asyncio.ensure_future(self.stop.wait())
        error_delay = 0.1
        try:
            while not self.stop.is_set():
                free = self._room()
                if self.failing:
                    if self.in_flight:  # first learn how the messages already taken fare
                        await self._wait_for_room(sub, stopped)
                        continue
                    await self._pause()
                    free = 1
                if free <= 0:
                    await self._wait_for_room(sub, stopped)
                    continue
                pulled_at = time.monotonic()
                try:
                    msgs = await self._fetch(sub, free)
                except (nats.js.errors.FetchTimeoutError, nats.errors.TimeoutError, TimeoutError):
                    error_delay = 0.1
                    self._brought(0)
                    continue  # nothing to do within the expiry (or the request was lost)
                except nats.errors.ConnectionClosedError:
                    if self.nc.is_closed:
                        raise
                    await sleep_unless(self.stop, error_delay)
                    continue
                except Exception as error:
                    self.stats.fetch_errors += 1
                    await self._on_fetch_error(error, error_delay)
                    error_delay = min(error_delay * 2, 5.0)
                    continue
                error_delay = 0.1
                self._brought(len(msgs))
                if msgs:
                    self.start(msgs)
                elif time.monotonic() - pulled_at < self.settings.fetch_timeout / 2:
                    # An empty answer long before the expiry (a refused or cut-short pull):
                    # pause briefly rather than spin on the server.
                    await sleep_unless(self.stop, min(0.1, self.settings.fetch_timeout / 2))
        finally:
            stopped.cancel()

    async def _wait_for_room(self, sub: Pull, stopped: asyncio.Future[Any]) -> None:
        """Until a running task finishes. Meanwhile what the open pull still brings waits in
        `sub` with no handler on it: keep it in progress too, or after its ack wait JetStream
        hands it to another instance and the work is done twice. Every half interval, so that
        with the handler's own first +WPI one interval after it starts, no gap reaches the
        ack wait."""
        interval = self.settle.progress_interval()
        every = interval / 2 if interval is not None else None
        while True:
            done, _ = await asyncio.wait(
                {stopped, *self.in_flight}, timeout=every, return_when="FIRST_COMPLETED"
            )
            if done:
                return
            waiting = sub.waiting()
            if waiting:
                await self.settle.send_progress(waiting)

    @property
    def failing(self) -> bool:
        """Whether every recent handler failed: then the loop takes one message at a time."""
        threshold = self.settings.pause_after_failures
        return threshold > 0 and self.failures_in_a_row >= threshold

    async def _pause(self) -> None:
        self.stats.pauses += 1
        await sleep_unless(self.stop, self.pause)
        self.pause = min(max(self.pause * 2, 0.05), self.settings.pause_max)

    def _outcome(self, *, succeeded: int, failed: int, error: BaseException | None) -> None:
        """Count handler outcomes: a success ends a run of failures, failures lengthen it."""
        if succeeded:
            if self.failing:
                log.info(
                    "▶️ %s: a handler succeeded again; pulling at full speed",
                    self.endpoint.durable,
                    extra={"step": "resumed", "durable": self.endpoint.durable},
                )
            self.failures_in_a_row = 0
            self.pause = self.settings.nak_delay_base
            return
        was_failing = self.failing
        self.failures_in_a_row += failed
        if self.failing and not was_failing:
            log.warning(
                "⏸️ %s: %d handler failures in a row (last: %s); taking one message at a "
                "time, at most every %gs, until one succeeds",
                self.endpoint.durable,
                self.failures_in_a_row,
                one_line(f"{type(error).__name__}: {error}", 200),
                self.settings.pause_max,
                extra={"step": "paused", "durable": self.endpoint.durable},
            )

    async def _fetch(self, sub: Pull, batch: int) -> list[Msg]:
        """One pull, bounded by a watchdog: a fetch that outlives its own expiry by far is
        abandoned (its late messages wait for the next fetch)."""
        timeout = self.settings.fetch_timeout
        pull = sub.fetch(batch, timeout=timeout, heartbeat=self.settings.pull_heartbeat)
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
            await self.durable.refresh(force=True)
        except ConsumerMissing:
            raise
        except Exception as info_error:
            log.debug("consumer info failed too: %s", info_error)
        await sleep_unless(self.stop, delay)

    def start(self, msgs: list[Msg]) -> None:
        """Handle fetched messages: as one batch if the handler takes batches, else each on
        its own."""
        self.stats.fetched += len(msgs)
        if self.handle_batch is not None:
            self._track(self._process_batch(msgs), len(msgs))
        else:
            for msg in msgs:
                self._track(self._process(msg), 1)

    def _track(self, work: Awaitable[None], messages: int) -> None:
        task = asyncio.ensure_future(work)
        self.in_flight[task] = messages
        self.in_flight_messages += messages
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight_messages -= self.in_flight.pop(task, 0)
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
        parameters = read_parameters(self.endpoint, msg.subject)
        if isinstance(parameters, str):
            await self.settle.give_up(msg, "invalid-subject", parameters)
            return
        try:
            event = self.endpoint.decode(msg.data)
        except ValidationError as error:
            reason, detail = classify_invalid(error, msg.data, self.endpoint.event_types)
            await self.settle.give_up(msg, reason, detail)
            return
        except Exception as error:
            await self.settle.failed(msg, error)
            return
        await self._handle_one(msg, event, _delivery(msg, parameters))

    async def _handle_one(self, msg: Msg, event: Any, delivery: Delivery) -> None:
        started = time.perf_counter()
        held = 0
        while True:
            try:
                with tracing.handling(delivery.headers):
                    await self.settle.while_in_progress(
                        (msg,), self.endpoint.dispatch(self.handler, event, delivery)
                    )
            except PermanentError as error:
                self.stats.handler_errors += 1
                await self.settle.give_up(
                    msg, "permanent-error", f"{type(error).__name__}: {error}"
                )
                return
            except Exception as error:
                self.stats.handler_errors += 1
                full = stream_full(error)
                if full is not None and not self.stop.is_set():
                    held += 1
                    await self.settle.hold(msg, full, held)
                    continue
                self._outcome(succeeded=0, failed=1, error=error)
                await self.settle.failed(msg, error)
                return
            break
        self.stats.timed("handler", time.perf_counter() - started)
        self._outcome(succeeded=1, failed=0, error=None)
        self.stats.handled += 1
        self.stats.handled_event(event, msg)
        await self.settle.ack((msg,))

    # -- a batch ---------------------------------------------------------------------------

    async def _process_batch(self, msgs: list[Msg]) -> None:
        """Decode each message; the valid ones go to the handler as one batch, the others are
        settled beside it (a bad message never fails or delays its batch)."""
        items: list[tuple[Msg, Any, Delivery]] = []
        aside: list[Awaitable[None]] = []
        for msg in msgs:
            parameters = read_parameters(self.endpoint, msg.subject)
            if isinstance(parameters, str):
                aside.append(self.settle.give_up(msg, "invalid-subject", parameters))
                continue
            try:
                event = self.endpoint.decode(msg.data)
            except ValidationError as error:
                reason, detail = classify_invalid(error, msg.data, self.endpoint.event_types)
                aside.append(self.settle.give_up(msg, reason, detail))
                continue
            except Exception as error:
                aside.append(self.settle.failed(msg, error))
                continue
            items.append((msg, event, _delivery(msg, parameters)))
        alongside = asyncio.gather(*aside) if aside else None
        try:
            if items:
                await self._handle_batch(items)
        finally:
            if alongside is not None:
                await alongside

    async def _handle_batch(self, items: list[tuple[Msg, Any, Delivery]]) -> None:
        assert self.handle_batch is not None
        self.stats.batches += 1
        msgs = [msg for msg, _, _ in items]
        work = self.handle_batch([(event, delivery) for _, event, delivery in items])
        started = time.perf_counter()
        try:
            with tracing.handling_batch([delivery.headers for _, _, delivery in items]):
                result = await self.settle.while_in_progress(msgs, work)
            self.stats.timed("batch", time.perf_counter() - started)
        except Exception as error:
            if len(items) == 1:
                result = BatchResult({0: error})
            else:
                self.stats.batch_fallbacks += 1
                log.warning(
                    "⚠️ %s: a batch of %d failed (%s); handling its messages one by one",
                    self.endpoint.durable,
                    len(items),
                    one_line(f"{type(error).__name__}: {error}", 300),
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                await asyncio.gather(*(self._handle_one(*item) for item in items))
                return
        failures = result.failures if result is not None else {}
        succeeded: list[Msg] = []
        settling: list[Awaitable[None]] = []
        transient: list[BaseException] = []
        for index, msg in enumerate(msgs):
            failure = failures.get(index)
            if failure is None:
                succeeded.append(msg)
                continue
            self.stats.handler_errors += 1
            if isinstance(failure, PermanentError):
                detail = f"{type(failure).__name__}: {failure}"
                settling.append(self.settle.give_up(msg, "permanent-error", detail))
            elif stream_full(failure) is not None and not self.stop.is_set():
                self.stats.handler_errors -= 1  # counted again by the retry in place
                settling.append(self._handle_one(*items[index]))
            else:
                transient.append(failure)
                settling.append(self.settle.failed(msg, failure))
        if succeeded or transient:
            last = transient[-1] if transient else None
            self._outcome(succeeded=len(succeeded), failed=len(transient), error=last)
        self.stats.handled += len(succeeded)
        self.stats.handled_events(
            (event, msg) for index, (msg, event, _) in enumerate(items) if index not in failures
        )
        await asyncio.gather(self.settle.ack(succeeded), *settling)

    # -- settling --------------------------------------------------------------------------


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
    stats.bound = True
    takes_batches = callable(getattr(handler, "handle_batch", None))
    linger = settings.linger if takes_batches else 0.0
    pull = await StreamingPull(nc, endpoint.stream, endpoint.durable, linger=linger).start()
    # Deliveries that ran out without the loop seeing them fail (a crashing process).
    try:
        advisories = await MaxDeliveriesWatcher(nc, js, endpoint).start()
    except BaseException:
        await pull.close()
        raise
    consumer = _Consumer(nc, js, endpoint, handler, info, settings, stop, stats)
    log.info(
        '✅ %s ready. Listening for %s on "%s"',
        endpoint.durable,
        ", ".join(endpoint.event_types),
        endpoint.filter_subject,
        extra={"step": "ready", "durable": endpoint.durable},
    )
    try:
        await consumer.run(pull)
        last = await pull.finish()
        if last:
            consumer.start(last)
    finally:
        stats.bound = False
        await consumer.wait_in_flight()
        await advisories.close()
        try:
            await pull.close()
            await consumer.settle.close()
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
