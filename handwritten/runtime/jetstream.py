"""Publishing to JetStream with the guarantees the generated publishers promise.

A publish is done only when JetStream's PubAck says where the message is stored. When no
PubAck comes (the server restarts, JetStream is still recovering), we cannot know whether the
message was stored, so we publish again with the same `Nats-Msg-Id`: the stream's duplicate
window stores it at most once and answers `duplicate=True` for the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from handwritten.runtime.contract import PublishResult
from handwritten.runtime.errors import JETSTREAM_UNAVAILABLE, is_jetstream_error

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"

RETRY_DELAY_FIRST = 0.2
RETRY_DELAY_MAX = 2.0


class PublishFailed(Exception):
    """No PubAck after every attempt; the message may or may not be stored (retry with the same
    msg id to find out: a stored one is answered as a duplicate)."""


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
    """Publishes and waits for the PubAck; satisfies `contract.Publish`.

    `timeout` bounds each attempt; `attempts` counts them all, with a short growing pause
    between them (0.2 s, 0.4 s, ... up to 2 s), enough to ride out a broker restart.
    """

    def __init__(self, js: JetStreamContext, *, timeout: float = 5.0, attempts: int = 5) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self._js = js
        self._timeout = timeout
        self._attempts = attempts

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
        all_headers = {**(headers or {}), MSG_ID_HEADER: msg_id}
        delay = RETRY_DELAY_FIRST
        for attempt in range(1, self._attempts + 1):
            try:
                ack = await self._js.publish(
                    subject, payload, timeout=self._timeout, headers=dict(all_headers)
                )
            except Exception as error:
                if not _retryable(error) or attempt == self._attempts:
                    if _retryable(error):
                        raise PublishFailed(
                            f"no PubAck for {subject} (msg id {msg_id}) after "
                            f"{self._attempts} attempts: {type(error).__name__} {error}".rstrip()
                        ) from error
                    raise
                log.warning(
                    "publish to %s (msg id %s) got no PubAck (%s); retry %d of %d in %.1fs",
                    subject,
                    msg_id,
                    type(error).__name__,
                    attempt,
                    self._attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX)
                continue
            return PublishResult(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate))
        raise AssertionError("unreachable")  # pragma: no cover
