"""W3C trace context across services, through the OpenTelemetry API only.

A message caused by another carries the cause's `traceparent` (and `tracestate`): with an
OpenTelemetry SDK configured, as a child span of it; without one the API makes no spans, and
the cause's context travels unchanged, at no cost. A message that starts a flow (nothing caused
it) gets a new trace. While a handler runs, its message's trace is the current one, and the JSON
logs carry its `trace_id` and `span_id`, so one request can be followed across services.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import propagate, trace

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_CURRENT: ContextVar[Mapping[str, str] | None] = ContextVar("filetrash_trace", default=None)
_BATCH: ContextVar[_BatchTraces | None] = ContextVar("filetrash_batch_traces", default=None)
_TRACER = trace.get_tracer("filetrash")


def carried(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The trace context headers among `headers`, when the traceparent is well formed."""
    if not headers or not _TRACEPARENT.fullmatch(headers.get(TRACEPARENT, "")):
        return {}
    return {k: headers[k] for k in (TRACEPARENT, TRACESTATE) if k in headers}


def traceparent(headers: Mapping[str, str] | None) -> str | None:
    """The `traceparent` among `headers`, when it is well formed."""
    value = headers.get(TRACEPARENT) if headers else None
    return value if value is not None and _TRACEPARENT.fullmatch(value) else None


def new_traceparent() -> str:
    """A new trace, sampled. Random as OpenTelemetry's SDK makes its ids (`random`, not
    `secrets`: an id must be unique, not unguessable, and this runs for every event)."""
    trace_id = random.getrandbits(128) or 1  # all zeros is the invalid id
    span_id = random.getrandbits(64) or 1
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def _spans_made() -> bool:
    """Whether an OpenTelemetry SDK is configured. Without one the API makes no spans and a
    cause's context travels unchanged, so `caused_by` can skip the API (it runs per event).

    Asking the API costs 2 µs (an environment lookup and an ABC isinstance), so the answer is
    kept: for good once an SDK is there (the API sets a provider once only), else for
    `_RECHECK` seconds — an SDK configured later is seen within that."""
    global _sdk_checked_at, _sdk_found
    if _sdk_found:
        return True
    now = time.monotonic()
    if now - _sdk_checked_at < _RECHECK:
        return False
    _sdk_checked_at = now
    _sdk_found = not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider
    )
    return _sdk_found


_RECHECK = 1.0
_sdk_checked_at = -_RECHECK
_sdk_found = False


def caused_by(cause: Mapping[str, str] | None = None, *, name: str = "publish") -> dict[str, str]:
    """Trace headers for a message caused by one with headers `cause` (by default the message
    being handled now); a new trace when there is none."""
    parent = carried(cause if cause is not None else _CURRENT.get())
    if not _spans_made():
        return parent or {TRACEPARENT: new_traceparent()}
    headers: dict[str, str] = {}
    with _TRACER.start_as_current_span(
        name, context=propagate.extract(parent), kind=trace.SpanKind.PRODUCER
    ):
        propagate.inject(headers)
    return carried(headers) or parent or {TRACEPARENT: new_traceparent()}


@contextmanager
def handling(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Makes the trace of the message being handled the current one (for logs and `caused_by`)."""
    token = _CURRENT.set(carried(headers) or None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


@contextmanager
def handling_batch(headers: Sequence[Mapping[str, str] | None]) -> Iterator[None]:
    """The traces of a batch being handled: its log lines name them all (`trace_ids`)."""
    token = _BATCH.set(_BatchTraces(headers))
    try:
        yield
    finally:
        _BATCH.reset(token)


class _BatchTraces:
    """A batch's trace ids, read from its headers only when a log line asks (JSON logs):
    with text logs nobody does, and the batch pays nothing per message."""

    __slots__ = ("_headers", "_ids")

    def __init__(self, headers: Sequence[Mapping[str, str] | None]) -> None:
        self._headers = headers
        self._ids: list[str] | None = None

    def ids(self) -> list[str]:
        if self._ids is None:
            found = (m.group(1) for h in self._headers if (m := _match(h)))
            self._ids = list(dict.fromkeys(found))
        return self._ids


def _match(headers: Mapping[str, str] | None) -> re.Match[str] | None:
    return _TRACEPARENT.fullmatch(headers.get(TRACEPARENT, "")) if headers else None


def log_fields() -> dict[str, Any]:
    """`trace_id` and `span_id` of the current message (or `trace_ids` of the current batch),
    for the JSON logs."""
    match = _match(_CURRENT.get())
    if match:
        return {"trace_id": match.group(1), "span_id": match.group(2)}
    batch = _BATCH.get()
    ids = batch.ids() if batch is not None else None
    return {"trace_ids": list(ids)} if ids else {}
