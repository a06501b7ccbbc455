"""W3C trace context through the OpenTelemetry API, with no SDK configured (as in production
without one): a caused message carries its cause's trace, a first message starts one, and the
logs of a handled message name its trace."""

from __future__ import annotations

import json
import logging
import re

from handwritten.runtime import tracing
from handwritten.runtime.logging import JsonFormatter

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_caused_message_carries_its_cause_s_trace() -> None:
    headers = tracing.caused_by({"traceparent": PARENT, "tracestate": "k=v", "other": "x"})
    assert headers["traceparent"] == PARENT  # no SDK: no new span, the context travels
    assert "other" not in headers


def test_a_first_message_starts_a_trace() -> None:
    first, second = tracing.caused_by(None), tracing.caused_by({"traceparent": "garbage"})
    for headers in (first, second):
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
    assert first["traceparent"] != second["traceparent"]


def test_the_message_being_handled_is_the_cause_by_default() -> None:
    with tracing.handling({"traceparent": PARENT}):
        assert tracing.caused_by()["traceparent"] == PARENT
        assert tracing.log_fields() == {
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
        }
    assert tracing.log_fields() == {}


def test_json_log_lines_name_the_trace_of_the_message_being_handled() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "handled", None, None)
    with tracing.handling({"traceparent": PARENT}):
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


def test_without_an_sdk_the_short_cut_gives_what_the_api_gives(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`caused_by` skips the OpenTelemetry API when no SDK is configured (it runs per event);
    the API, asked anyway, carries the cause's context unchanged just the same."""
    cause = {"traceparent": PARENT, "tracestate": "k=v"}
    assert not tracing._spans_made()
    short_cut = tracing.caused_by(cause)
    monkeypatch.setattr(tracing, "_spans_made", lambda: True)
    assert tracing.caused_by(cause) == short_cut == cause
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", tracing.caused_by(None)["traceparent"])


def test_json_log_lines_of_a_batch_name_each_of_its_traces_once() -> None:
    other = "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "handled", None, None)
    with tracing.handling_batch(
        [{"traceparent": PARENT}, None, {"traceparent": other}, {"traceparent": PARENT}]
    ):
        first = json.loads(JsonFormatter().format(record))
        again = json.loads(JsonFormatter().format(record))
    assert first["trace_ids"] == again["trace_ids"] == [PARENT[3:35], other[3:35]]
    assert "trace_ids" not in json.loads(JsonFormatter().format(record))


def test_whether_an_sdk_is_configured_is_asked_once_a_second_and_kept_once_found(  # type: ignore[no-untyped-def]
    monkeypatch,
) -> None:
    """`_spans_made` runs per event: it asks the API at most every `_RECHECK` seconds while no
    SDK is there, and never again once one is (the API sets a provider only once)."""
    from opentelemetry import trace

    monkeypatch.setattr(tracing, "_sdk_found", False)
    monkeypatch.setattr(tracing, "_sdk_checked_at", -tracing._RECHECK)
    asked: list[object] = []
    provider: object = trace.get_tracer_provider()

    def asking() -> object:
        asked.append(provider)
        return provider

    monkeypatch.setattr(tracing.trace, "get_tracer_provider", asking)
    assert not tracing._spans_made() and not tracing._spans_made()
    assert len(asked) == 1

    class Sdk(trace.TracerProvider):
        def get_tracer(self, *args: object, **kwargs: object) -> trace.Tracer:
            return trace.NoOpTracer()

    provider = Sdk()
    monkeypatch.setattr(tracing, "_RECHECK", 0.0)
    assert tracing._spans_made()
    provider = trace.NoOpTracerProvider()
    assert tracing._spans_made() and len(asked) == 2


def test_a_message_s_traceparent_is_read_only_when_well_formed() -> None:
    assert tracing.traceparent({"traceparent": PARENT, "other": "x"}) == PARENT
    assert tracing.traceparent({"traceparent": PARENT.upper()}) is None
    assert tracing.traceparent({"traceparent": PARENT + "-extra"}) is None
    assert tracing.traceparent({"other": "x"}) is None
    assert tracing.traceparent({}) is None
    assert tracing.traceparent(None) is None
