"""The dead-letter tooling's pure parts: ranges, which streams hold dead letters, the summary,
and the CLI's refusals (before any server is needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from generated.consumers import ENDPOINTS
from generated.topology import STREAMS
from handwritten.cli import main
from handwritten.runtime import dlq
from handwritten.runtime.deadletter import CONSUMER_HEADER, REASON_HEADER


def test_ranges() -> None:
    assert dlq.parse_range(None) == (1, None)
    assert dlq.parse_range("7") == (7, 7)
    assert dlq.parse_range("3-9") == (3, 9)
    assert dlq.parse_range("3-") == (3, None)
    for bad in ("x", "9-3", "0-2", "1-y"):
        with pytest.raises(dlq.DlqError, match="--seq"):
            dlq.parse_range(bad)


def test_the_spec_dead_letter_stream_is_found() -> None:
    subjects = {name: list(config.subjects or ()) for name, config in STREAMS.items()}
    assert dlq.dead_letter_streams(ENDPOINTS, subjects) == ["FILE_EVENTS_DLQ"]


def letter(seq: int, consumer: str, reason: str) -> dlq.DeadLetter:
    return dlq.DeadLetter(
        stream="DLQ",
        seq=seq,
        subject=f"dlq.files.{consumer}",
        time=datetime(2026, 12, 3, 10, 0, seq, tzinfo=UTC),
        headers={CONSUMER_HEADER: consumer, REASON_HEADER: reason},
        data=b"{}",
    )


def test_summary_per_consumer_and_reason() -> None:
    groups = dlq.summarise(
        [
            letter(1, "b", "schema-invalid"),
            letter(2, "a", "max-deliver"),
            letter(3, "b", "schema-invalid"),
        ]
    )
    assert [(g.consumer, g.reason, g.count) for g in groups] == [
        ("a", "max-deliver", 1),
        ("b", "schema-invalid", 2),
    ]
    b = groups[1]
    assert b.oldest is not None and b.oldest.seq == 1
    assert b.newest is not None and b.newest.seq == 3
    text = dlq.render_list(groups)
    assert "#1 2026-12-03 10:00:01" in text and "#3 2026-12-03 10:00:03" in text
    assert dlq.render_list([]) == "no dead letters\n"


def test_replay_of_an_unknown_consumer_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "replay", "--consumer", "no-such-durable"]) == 2
    err = capsys.readouterr().err
    assert "no-such-durable" in err and "Traceback" not in err
