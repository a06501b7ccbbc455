"""The durable consumer the loop reads from: found, never created or changed (`bind_consumer`),
and its config as the server has it (max_deliver, ack wait, backoff), read again now and then
(`DurableConfig`): an operator may edit the durable while services run."""

from __future__ import annotations

import logging
import time
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo

from handwritten.runtime.contract import ConsumerEndpoint
from handwritten.runtime.errors import CONSUMER_NOT_FOUND, STREAM_NOT_FOUND, is_jetstream_error

log = logging.getLogger(__name__)

CONFIG_MAX_AGE = 30.0
"""Seconds the consumer's config (max_deliver, ack wait) is trusted before it is read again."""


class ConsumerMissing(Exception):
    """The durable consumer (or its stream) does not exist: the loop never creates one."""


class ConsumerNotPullBased(Exception):
    """The durable exists but is a push consumer (it has a deliver_subject)."""


async def bind_consumer(js: JetStreamContext, endpoint: ConsumerEndpoint[Any, Any]) -> ConsumerInfo:
    """Read the existing durable's info; never create or change it."""
    info = await _read_info(js, endpoint)
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


class DurableConfig:
    """The durable's config as last read; `refresh` reads it again once it is
    `CONFIG_MAX_AGE` old (or at once, `force`), and raises `ConsumerMissing` when the durable
    or its stream is gone."""

    def __init__(
        self, js: JetStreamContext, endpoint: ConsumerEndpoint[Any, Any], info: ConsumerInfo
    ) -> None:
        self._js = js
        self._endpoint = endpoint
        self.current: ConsumerConfig = info.config
        self._read_at = time.monotonic()

    async def refresh(self, *, force: bool = False) -> ConsumerConfig:
        if force or time.monotonic() - self._read_at > CONFIG_MAX_AGE:
            info = await _read_info(self._js, self._endpoint)
            self.current = info.config
            self._read_at = time.monotonic()
        return self.current


def shortest_ack_wait(config: ConsumerConfig) -> float:
    """The shortest time JetStream waits for an ack before redelivering: with a backoff list
    the server uses it instead of ack_wait, first delivery included."""
    waits = [w for w in (config.backoff or []) if w and w > 0]
    if not waits and config.ack_wait:
        waits = [config.ack_wait]
    return min(waits) if waits else 30.0


async def _read_info(js: JetStreamContext, endpoint: ConsumerEndpoint[Any, Any]) -> ConsumerInfo:
    """The durable's info from the server; `ConsumerMissing` when it or its stream is gone."""
    try:
        info: ConsumerInfo = await js.consumer_info(endpoint.stream, endpoint.durable)
    except nats.js.errors.NotFoundError as error:
        if _is_missing(error):
            raise ConsumerMissing(_missing_message(endpoint, error)) from None
        raise
    return info


def _is_missing(error: BaseException) -> bool:
    return is_jetstream_error(error, CONSUMER_NOT_FOUND, STREAM_NOT_FOUND)


def _missing_message(endpoint: ConsumerEndpoint[Any, Any], error: BaseException) -> str:
    what = (
        f"stream {endpoint.stream}"
        if getattr(error, "err_code", None) == STREAM_NOT_FOUND
        else f"durable consumer {endpoint.durable} on stream {endpoint.stream}"
    )
    return f"{what} does not exist: run `filetrash provision` to create the spec's topology"
