"""Dead letters for messages whose deliveries ran out without the loop seeing them fail.

The consume loop dead-letters a message on its last delivery when the handler fails. But when
the handler crashes the *process* on every delivery (or an ack is lost), no delivery ever
fails in the loop's hands: JetStream delivers the message `max_deliver` times, then stops and
only publishes the core-NATS advisory `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.
<consumer>`. Without this watcher such a message stays in the stream, neither acked nor
dead-lettered, and nobody is told.

`MaxDeliveriesWatcher` listens to that advisory while the loop runs, reads the message back
by its stream sequence and stores it on the endpoint's dead-letter subject with reason
`max-deliver` through `deadletter.store_dead_letter`: the same headers and the same
Nats-Msg-Id (`dlq:<stream>:<consumer>:<seq>`) as the loop, so the DLQ keeps one copy if the
loop dead-lettered it too or several instances of the durable got the advisory. (A message the
loop dead-lettered and termed gives no advisory: a term is not a max-deliveries.)

Errors here are logged and never stop the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from handwritten.runtime.contract import ConsumerEndpoint, Publish
from handwritten.runtime.deadletter import store_dead_letter
from handwritten.runtime.errors import NO_MESSAGE_FOUND, STREAM_NOT_FOUND, is_jetstream_error

log = logging.getLogger(__name__)

ADVISORY_PREFIX: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

MAX_DELIVERIES_DETAIL: Final = (
    "reported by the server's MAX_DELIVERIES advisory: the consumer's deliveries ran out "
    "without a handled failure (process crashed or ack lost)"
)


def max_deliveries_subject(stream: str, durable: str) -> str:
    return f"{ADVISORY_PREFIX}.{stream}.{durable}"


class MaxDeliveriesWatcher:
    """Dead-letters what the server reports in MAX_DELIVERIES advisories for one durable.

    `start()` subscribes, `close()` unsubscribes and waits for the copies under way.
    `handle_advisory(payload)` does the work for one advisory (tests call it directly).
    `publisher`: where dead letters go (default: the JetStream context).
    """

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        endpoint: ConsumerEndpoint[Any, Any],
        *,
        publisher: Publish | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._endpoint = endpoint
        self._publisher: Publish | JetStreamContext = publisher if publisher is not None else js
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[bool]] = set()
        self.dead_lettered = 0
        """Copies stored (duplicates included: the DLQ then already had the message)."""

    @property
    def subject(self) -> str:
        return max_deliveries_subject(self._endpoint.stream, self._endpoint.durable)

    async def start(self) -> MaxDeliveriesWatcher:
        self._sub = await self._nc.subscribe(self.subject, cb=self._on_advisory)
        return self

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as error:
                log.debug("unsubscribing from %s failed: %s", self.subject, error)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_advisory(self, msg: Msg) -> None:
        # The subscription's callback runs one message at a time: do the work beside it.
        task = asyncio.create_task(self.handle_advisory(msg.data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle_advisory(self, payload: bytes) -> bool:
        """Dead-letter the message one advisory names; whether a copy was stored. Never
        raises: every failure is logged."""
        endpoint = self._endpoint
        try:
            advisory = json.loads(payload)
            stream = str(advisory["stream"])
            consumer = str(advisory["consumer"])
            seq = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries") or 0)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as error:
            log.warning("%s: unreadable MAX_DELIVERIES advisory (%s)", endpoint.durable, error)
            return False
        if (stream, consumer) != (endpoint.stream, endpoint.durable):
            return False
        try:
            try:
                original = await self._js.get_msg(stream, seq)
            except Exception as error:
                if is_jetstream_error(error, NO_MESSAGE_FOUND, STREAM_NOT_FOUND):
                    log.warning(
                        "%s: %s #%d ran out of deliveries but is gone from the stream "
                        "(deleted or aged out); nothing to dead-letter",
                        endpoint.durable,
                        stream,
                        seq,
                    )
                    return False
                raise
            await store_dead_letter(
                self._publisher,
                original.data or b"",
                endpoint=endpoint,
                stream=stream,
                subject=original.subject or "",
                stream_seq=seq,
                deliveries=deliveries,
                reason="max-deliver",
                detail=MAX_DELIVERIES_DETAIL,
            )
        except Exception as error:
            log.error(
                "%s: could not dead-letter %s #%d after its MAX_DELIVERIES advisory: %s %s",
                endpoint.durable,
                stream,
                seq,
                type(error).__name__,
                error,
            )
            return False
        self.dead_lettered += 1
        return True
