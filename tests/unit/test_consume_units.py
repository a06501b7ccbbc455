"""The consume loop's pure parts: why a message is dead-lettered, retry delays, the dead-letter
headers, ack-wait arithmetic, logging formats and the shutdown signal."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import uuid
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig
from pydantic import ValidationError

from generated.consumers import ANALYTICS_SERVICE, AUDIT_LOGGER, TRASH_PROCESSOR
from handwritten.runtime.consume import ConsumeSettings, classify_invalid
from handwritten.runtime.contract import ConsumerEndpoint
from handwritten.runtime.deadletter import (
    DETAIL_MAX_CHARS,
    dead_letter_headers,
    dead_letter_msg_id,
    one_line,
)
from handwritten.runtime.durable import shortest_ack_wait
from handwritten.runtime.logging import JsonFormatter, TextFormatter, setup_logging, short_id
from handwritten.runtime.shutdown import install_shutdown

VALID = {
    "eventId": "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
    "eventType": "FileDeletedEvent",
    "timestamp": "2026-01-02T03:04:05Z",
    "data": {
        "fileId": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "fileName": "report.pdf",
        "filePath": "/files/user-001/report.pdf",
        "fileSize": 1024,
        "mimeType": "application/pdf",
        "userId": "user-001",
        "deletedAt": "2026-01-02T03:04:05Z",
    },
}


def refusal(endpoint: ConsumerEndpoint[Any, Any], data: bytes) -> tuple[str, str]:
    with pytest.raises(ValidationError) as error:
        endpoint.decode(data)
    return classify_invalid(error.value, data, endpoint.event_types)


def with_(**changes: Any) -> bytes:
    document = json.loads(json.dumps(VALID))
    for key, value in changes.items():
        if key == "data":
            document["data"].update(value)
        else:
            document[key] = value
    return json.dumps(document).encode()


def test_the_valid_example_decodes() -> None:
    assert TRASH_PROCESSOR.decode(json.dumps(VALID).encode()).data.file_size == 1024


@pytest.mark.parametrize("endpoint", [TRASH_PROCESSOR, ANALYTICS_SERVICE])
@pytest.mark.parametrize(
    "data", [b"not json", b"", b'{"eventType": ', b"\xff\xfe", b"{'single': 'quotes'}"]
)
def test_bytes_that_are_not_json_are_invalid_json(
    endpoint: ConsumerEndpoint[Any, Any], data: bytes
) -> None:
    reason, detail = refusal(endpoint, data)
    assert reason == "invalid-json"
    assert detail.startswith("Invalid JSON")


@pytest.mark.parametrize("endpoint", [TRASH_PROCESSOR, AUDIT_LOGGER, ANALYTICS_SERVICE])
def test_an_event_type_the_operation_does_not_receive_is_unknown(
    endpoint: ConsumerEndpoint[Any, Any],
) -> None:
    reason, detail = refusal(endpoint, with_(eventType="FileRestoredEvent"))
    assert reason == "unknown-event-type"
    assert '"FileRestoredEvent"' in detail and "FileDeletedEvent" in detail


def test_a_trashed_event_is_unknown_to_the_trash_processor() -> None:
    """FilePlacedInTrashEvent exists in the spec, but not for this operation."""
    reason, _ = refusal(TRASH_PROCESSOR, with_(eventType="FilePlacedInTrashEvent"))
    assert reason == "unknown-event-type"


@pytest.mark.parametrize("endpoint", [TRASH_PROCESSOR, ANALYTICS_SERVICE])
@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"data": {"fileSize": -1}}, "fileSize"),
        ({"data": {"fileSize": "1024"}}, "fileSize"),  # strict: no strings for integers
        ({"data": {"filePath": "relative/path"}}, "filePath"),
        ({"timestamp": "2026-01-02T03:04:05"}, "timestamp"),  # no time zone
        ({"extra": 1}, "extra"),
        ({"eventId": "not-a-uuid"}, "eventId"),
    ],
)
def test_a_schema_violation_is_schema_invalid_and_names_the_field(
    endpoint: ConsumerEndpoint[Any, Any], changes: dict[str, Any], where: str
) -> None:
    reason, detail = refusal(endpoint, with_(**changes))
    assert reason == "schema-invalid"
    assert where in detail


@pytest.mark.parametrize("data", [b"[]", b"42", b'"text"', b"{}", b'{"eventType": null}'])
def test_json_that_is_no_event_object_is_schema_invalid(data: bytes) -> None:
    reason, detail = refusal(TRASH_PROCESSOR, data)
    assert reason == "schema-invalid"
    assert detail


def test_a_missing_event_type_is_schema_invalid_not_unknown() -> None:
    document = json.loads(json.dumps(VALID))
    del document["eventType"]
    reason, _ = refusal(ANALYTICS_SERVICE, json.dumps(document).encode())
    assert reason == "schema-invalid"


def test_several_problems_are_counted_in_one_line() -> None:
    reason, detail = refusal(TRASH_PROCESSOR, with_(data={"fileSize": -1, "userId": ""}))
    assert reason == "schema-invalid"
    assert "(and 1 more)" in detail and "\n" not in detail


def test_nak_delays_double_from_the_base_up_to_the_max() -> None:
    settings = ConsumeSettings(nak_delay_base=0.5, nak_delay_max=30.0)
    assert [settings.nak_delay(n) for n in (1, 2, 3, 4, 5, 6, 7, 8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
    ]
    assert settings.nak_delay(0) == 0.5
    assert settings.nak_delay(10_000) == 30.0


def test_the_pull_heartbeat_stays_below_what_the_server_accepts() -> None:
    """The server refuses an idle heartbeat above half the pull's expiry."""
    assert ConsumeSettings(fetch_timeout=1.0, heartbeat=0.5).pull_heartbeat == 0.25
    assert ConsumeSettings(fetch_timeout=30.0, heartbeat=5.0).pull_heartbeat == 5.0
    assert ConsumeSettings(heartbeat=None).pull_heartbeat is None
    assert ConsumeSettings(heartbeat=0).pull_heartbeat is None


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"fetch_timeout": 0},
        {"nak_delay_base": -1},
        {"ack_attempts": 0},
    ],
)
def test_nonsense_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConsumeSettings(**bad)


def test_the_shortest_ack_wait_follows_the_backoff_when_there_is_one() -> None:
    assert shortest_ack_wait(ConsumerConfig(ack_wait=30.0, backoff=[1.0, 5.0, 15.0])) == 1.0
    assert shortest_ack_wait(ConsumerConfig(ack_wait=7.0)) == 7.0
    assert shortest_ack_wait(ConsumerConfig()) == 30.0


def jetstream_msg(
    data: bytes = b"payload", *, seq: int = 42, delivered: int = 3, subject: str = "files.deleted"
) -> Msg:
    reply = f"$JS.ACK.FILE_EVENTS.trash-processor.{delivered}.{seq}.17.1767322800000000000.5"
    return Msg(_client=None, subject=subject, reply=reply, data=data)  # type: ignore[arg-type]


def test_dead_letter_headers_carry_where_the_message_came_from() -> None:
    headers = dead_letter_headers(
        jetstream_msg(),
        consumer="trash-processor",
        reason="max-deliver",
        detail="handler failed 3 times:\n  RuntimeError: boom",
    )
    assert headers == {
        "Filetrash-Dlq-Reason": "max-deliver",
        "Filetrash-Dlq-Detail": "handler failed 3 times: RuntimeError: boom",
        "Filetrash-Dlq-Stream": "FILE_EVENTS",
        "Filetrash-Dlq-Subject": "files.deleted",
        "Filetrash-Dlq-Sequence": "42",
        "Filetrash-Dlq-Consumer": "trash-processor",
        "Filetrash-Dlq-Deliveries": "3",
    }
    assert dead_letter_msg_id("FILE_EVENTS", 42, "trash-processor") == (
        "dlq:FILE_EVENTS:trash-processor:42"
    )
    assert dead_letter_msg_id("FILE_EVENTS", 42, "audit-logger") != dead_letter_msg_id(
        "FILE_EVENTS", 42, "trash-processor"
    ), "two consumers dead-lettering one message keep one dead letter each"


def test_an_empty_detail_falls_back_to_the_reason() -> None:
    headers = dead_letter_headers(
        jetstream_msg(), consumer="c", reason="permanent-error", detail=" \n "
    )
    assert headers["Filetrash-Dlq-Detail"] == "permanent-error"


def test_details_are_one_line_and_bounded() -> None:
    assert one_line("a\r\nb\tc   d") == "a b c d"
    long = one_line("x" * 10_000)
    assert len(long) == DETAIL_MAX_CHARS and long.endswith("…")


def test_short_ids_keep_eight_characters() -> None:
    value = uuid.UUID("3f2a9c1e-0000-4000-8000-000000000000")
    assert short_id(value) == "3f2a9c1e..."
    assert short_id("user-001") == "user-001"
    assert short_id("user-00123") == "user-001..."


def record(message: str, **extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord("trash-processor", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_json_logs_are_one_object_per_line_with_the_extra_fields() -> None:
    line = JsonFormatter().format(record("stored\nin trash", step="stored", seq=7))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "stored in trash"
    assert (entry["level"], entry["logger"], entry["step"], entry["seq"]) == (
        "INFO",
        "trash-processor",
        "stored",
        7,
    )
    assert entry["time"].endswith("+00:00")


def test_json_logs_carry_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        entry = record("failed")
        entry.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(entry))
    assert "RuntimeError: boom" in parsed["exception"]


def test_text_logs_are_one_short_line() -> None:
    line = TextFormatter().format(record("✅ trash-processor ready"))
    assert line.endswith("INFO  trash-processor: ✅ trash-processor ready")


def test_setup_logging_replaces_its_own_handler_and_refuses_unknown_formats() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    try:
        setup_logging("json", "debug")
        setup_logging("text", "INFO")
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
        assert root.level == logging.INFO
        with pytest.raises(ValueError):
            setup_logging("xml")  # type: ignore[arg-type]
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


async def test_sigterm_sets_the_stop_event_once() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    install_shutdown(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 5)
        # The handler removed itself: a second signal would get the default behaviour.
        assert not loop.remove_signal_handler(signal.SIGTERM)
        assert not loop.remove_signal_handler(signal.SIGINT)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGINT)


class FakeSubscription:
    """Stands in for a PullSubscription: each fetch plays the next scripted step."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.fetches = 0

    def waiting(self) -> list[Any]:
        return []

    async def fetch(self, batch: int = 1, timeout: float | None = 5, heartbeat: Any = None) -> Any:
        self.fetches += 1
        step = self.steps.pop(0) if self.steps else []
        if step == "hang":
            await asyncio.Event().wait()
        if isinstance(step, BaseException):
            raise step
        return step


class FakeJetStream:
    def __init__(self, info_error: BaseException | None = None) -> None:
        self.info_error = info_error
        self.info_calls = 0

    async def consumer_info(self, stream: str, durable: str) -> Any:
        self.info_calls += 1
        if self.info_error is not None:
            raise self.info_error
        return consumer_info_for_tests()


def consumer_info_for_tests() -> Any:
    from nats.js.api import ConsumerInfo

    return ConsumerInfo(
        name="trash-processor",
        stream_name="FILE_EVENTS",
        config=ConsumerConfig(durable_name="trash-processor", ack_wait=5.0, max_deliver=5),
        created=None,  # type: ignore[arg-type]
    )


def loop_under_test(js: FakeJetStream, stop: asyncio.Event, **settings: Any) -> Any:
    from handwritten.runtime.consume import ConsumeStats, _Consumer

    return _Consumer(
        nc=None,  # type: ignore[arg-type]
        js=js,  # type: ignore[arg-type]
        endpoint=TRASH_PROCESSOR,
        handler=None,
        info=consumer_info_for_tests(),
        settings=ConsumeSettings(**{"fetch_timeout": 0.05, **settings}),
        stop=stop,
        stats=ConsumeStats(),
    )


async def test_a_pull_that_hangs_is_abandoned_and_pulled_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against nats-py fetch stalls (issues #504, #933): the loop must never wait on
    one pull forever."""
    import handwritten.runtime.consume as consume

    monkeypatch.setattr(consume, "FETCH_GRACE", 0.1)
    stop = asyncio.Event()
    sub = FakeSubscription("hang", "hang")
    loop = loop_under_test(FakeJetStream(), stop)
    task = asyncio.create_task(loop.run(sub))
    deadline = asyncio.get_running_loop().time() + 5
    while sub.fetches < 3:
        assert asyncio.get_running_loop().time() < deadline, "the loop stopped pulling"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [r.getMessage() for r in caplog.records].count(
        "trash-processor: a pull hung past its expiry; pulling again"
    ) == 2


@pytest.mark.parametrize(
    "error",
    [
        "service-unavailable",
        "no-responders",
        "outbound-buffer-full",
        "unexpected",
    ],
)
async def test_pull_errors_are_survived_and_the_pull_is_reissued(error: str) -> None:
    import nats.errors
    import nats.js.errors

    errors: dict[str, BaseException] = {
        "service-unavailable": nats.js.errors.ServiceUnavailableError(code=503),
        "no-responders": nats.errors.NoRespondersError(),
        "outbound-buffer-full": nats.errors.OutboundBufferLimitError(),
        "unexpected": RuntimeError("surprise"),
    }
    stop = asyncio.Event()
    sub = FakeSubscription(errors[error], errors[error], [])
    js = FakeJetStream()
    loop = loop_under_test(js, stop)
    task = asyncio.create_task(loop.run(sub))
    deadline = asyncio.get_running_loop().time() + 5
    while sub.fetches < 4:
        assert asyncio.get_running_loop().time() < deadline, "the loop stopped pulling"
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert loop.stats.fetch_errors == 2
    assert js.info_calls == 2, "each failed pull checks whether the consumer still exists"


async def test_a_pull_failing_because_the_consumer_is_gone_raises_consumer_missing() -> None:
    import nats.js.errors

    from handwritten.runtime.durable import ConsumerMissing

    gone = nats.js.errors.NotFoundError(code=404, err_code=10014, description="consumer not found")
    sub = FakeSubscription(nats.js.errors.ServiceUnavailableError(code=503))
    loop = loop_under_test(FakeJetStream(info_error=gone), asyncio.Event())
    with pytest.raises(ConsumerMissing, match="filetrash provision"):
        await asyncio.wait_for(loop.run(sub), 5)


class RecordingSubscription(FakeSubscription):
    """A FakeSubscription that remembers how many messages each pull asked for, and when."""

    def __init__(self, *steps: Any) -> None:
        super().__init__(*steps)
        self.pulls: list[tuple[int, float]] = []

    async def fetch(self, batch: int = 1, timeout: float | None = 5, heartbeat: Any = None) -> Any:
        self.pulls.append((batch, asyncio.get_running_loop().time()))
        await asyncio.sleep(0.001)
        return await super().fetch(batch, timeout, heartbeat)


async def test_while_every_handler_fails_one_message_is_pulled_at_a_time_less_and_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database outage: every message fetched would fail and spend one of its deliveries."""
    caplog.set_level(logging.INFO, logger="handwritten.runtime.consume")
    stop = asyncio.Event()
    sub = RecordingSubscription()
    loop = loop_under_test(
        FakeJetStream(),
        stop,
        batch_size=16,
        nak_delay_base=0.02,
        pause_max=0.08,
        pause_after_failures=3,
    )
    loop._outcome(succeeded=0, failed=2, error=RuntimeError("database down"))
    assert not loop.failing
    loop._outcome(succeeded=0, failed=1, error=RuntimeError("database down"))
    assert loop.failing
    assert "3 handler failures in a row (last: RuntimeError: database down)" in caplog.text
    task = asyncio.create_task(loop.run(sub))
    while len(sub.pulls) < 5:
        await asyncio.sleep(0.01)
    loop._outcome(succeeded=1, failed=0, error=None)  # the database is back
    pulls_before = len(sub.pulls)
    while len(sub.pulls) < pulls_before + 2:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    probes = sub.pulls[:5]
    assert [batch for batch, _ in probes] == [1] * 5
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(probes)]
    assert gaps[0] >= 0.035 and gaps[-1] >= 0.07, f"growing pauses up to pause_max: {gaps}"
    assert sub.pulls[-1][0] == 16, "full pulls again once a handler succeeded"
    assert loop.stats.pauses >= 5
    assert "succeeded again; pulling at full speed" in caplog.text


def test_the_pause_can_be_turned_off() -> None:
    loop = loop_under_test(FakeJetStream(), asyncio.Event(), pause_after_failures=0)
    loop._outcome(succeeded=0, failed=1000, error=RuntimeError("down"))
    assert not loop.failing


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.FILE_EVENTS.trash-processor.3.1234.77.1764780000000000000.5",
        "$JS.ACK._.ACCHASH.FILE_EVENTS.trash-processor.3.1234.77.1764780000000000000.5.tok",
        "$JS.ACK.hub.ACCHASH.FILE_EVENTS.trash-processor.3.1234.77.1764780000000000000.5",
    ],
)
def test_a_delivery_reads_what_nats_py_reads_from_the_ack_subject(reply: str) -> None:
    from nats.aio.msg import Msg

    from handwritten.runtime.consume import _delivery

    msg = Msg(None, subject="files.deleted", reply=reply, headers={"a": "b"})  # type: ignore[arg-type]
    delivery = _delivery(msg, {})
    meta = msg.metadata
    assert (delivery.stream, delivery.consumer) == (meta.stream, meta.consumer)
    assert (
        (delivery.stream_seq, delivery.num_delivered)
        == (1234, 3)
        == (
            meta.sequence.stream,
            meta.num_delivered,
        )
    )
    assert delivery.headers == {"a": "b"}  # nats-py's own dict: made for this message alone
    bare = _delivery(Msg(None, subject="files.deleted", reply=reply), {})  # type: ignore[arg-type]
    assert bare.headers == {} and not hasattr(bare.headers, "__setitem__")


def test_a_message_without_an_ack_subject_is_no_delivery() -> None:
    from nats.aio.msg import Msg
    from nats.errors import NotJSMessageError

    from handwritten.runtime.consume import _delivery

    with pytest.raises(NotJSMessageError):
        _delivery(Msg(None, subject="x", reply="_INBOX.abc"), {})  # type: ignore[arg-type]


def test_the_cli_runs_a_service_with_the_loop_s_default_batches() -> None:
    """`filetrash run`'s --concurrency default is written out in the CLI (it does not import
    the loop to build its parser): it must stay the loop's; --batch-size leaves it to the loop,
    which sizes batches for batch handlers and in-flight messages for the others."""
    from handwritten import cli

    args = cli.build_parser().parse_args(["run", "trash-processor"])
    settings = ConsumeSettings(batch_size=args.batch_size, concurrency=args.concurrency)
    assert settings == ConsumeSettings()
    assert (settings.batch_for(True), settings.batch_for(False)) == (256, 64)
    assert ConsumeSettings(batch_size=8).batch_for(True) == 8


def test_a_service_process_settles_the_garbage_collector_once_set_up() -> None:
    """In a process of its own (as `filetrash run` runs it), what is alive at set-up is
    frozen and the youngest generation is collected far less often than Python's 700."""
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from handwritten.runtime.run import GC_YOUNG_THRESHOLD, settle_garbage_collector\n"
        "before = gc.get_threshold()\n"
        "settle_garbage_collector()\n"
        "print(before[0], gc.get_threshold()[0], GC_YOUNG_THRESHOLD, gc.get_freeze_count() > 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    default, settled, threshold, frozen = done.stdout.split()
    assert (default, settled, frozen) == ("700", threshold, "True")
    assert int(threshold) >= 10 * 700


def test_the_loop_s_deliveries_are_the_named_tuple_with_every_field() -> None:
    """`new_delivery` makes a `Delivery` without its `__new__`: it must take every field
    there is, in order, and give what the constructor gives, as immutable."""
    import inspect

    from handwritten.runtime.contract import Delivery, new_delivery

    names = list(Delivery._fields)
    assert list(inspect.signature(new_delivery).parameters) == names
    values = ("orders.eu.placed", "ORDERS", 7, "billing", 2, {"a": "b"}, {"region": "eu"}, b"{}")
    made = new_delivery(*values)
    assert made == Delivery(*values) and type(made) is Delivery
    assert [getattr(made, name) for name in names] == list(values)
    with pytest.raises(AttributeError):
        made.stream = "OTHER"  # type: ignore[misc]
    bare = Delivery("files.deleted", "FILES", 1, "c", 1)
    with pytest.raises(TypeError):
        bare.headers["x"] = "y"  # type: ignore[index]  # the shared empty mapping stays empty
