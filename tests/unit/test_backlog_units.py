"""The pure parts of issue 11: which limit a full stream reached, and headroom arithmetic."""

from __future__ import annotations

import pytest
from nats.js.api import DiscardPolicy, StreamConfig, StreamInfo, StreamState

from handwritten.runtime.addresses import subject_matches
from handwritten.runtime.headroom import Usage
from handwritten.runtime.jetstream import StreamFull, full_limit
from handwritten.runtime.settle import stream_full


def info(config: StreamConfig, **state: object) -> StreamInfo:
    fields = {"messages": 0, "bytes": 0, "first_seq": 1, "last_seq": 0, "consumer_count": 0}
    return StreamInfo(config=config, state=StreamState(**{**fields, **state}))  # type: ignore[arg-type]


def test_a_full_subject_names_its_limit() -> None:
    config = StreamConfig(
        name="S",
        discard=DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_msgs_per_subject=3,
    )
    full = full_limit(info(config, messages=5, subjects={"a.b": 3, "a.c": 2}), "a.b", 10)
    assert isinstance(full, StreamFull)
    assert (full.stream, full.limit, full.used, full.allowed) == ("S", "max_msgs_per_subject", 3, 3)
    assert "stream S is full: max_msgs_per_subject reached (3 of 3)" in str(full)
    assert full_limit(info(config, messages=5, subjects={"a.b": 3, "a.c": 2}), "a.c", 10) is None


def test_bytes_and_messages() -> None:
    config = StreamConfig(name="S", discard=DiscardPolicy.NEW, max_bytes=10_000, max_msgs=100)
    by_bytes = full_limit(info(config, messages=10, bytes=9_800), "x", 100)
    assert by_bytes is not None and by_bytes.limit == "max_bytes"
    by_count = full_limit(info(config, messages=100, bytes=10), "x", 100)
    assert by_count is not None and by_count.limit == "max_msgs"
    assert full_limit(info(config, messages=10, bytes=10), "x", 100) is None


def test_discard_old_is_never_full() -> None:
    config = StreamConfig(name="S", discard=DiscardPolicy.OLD, max_msgs=1)
    assert full_limit(info(config, messages=1), "x", 1) is None


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("files.>", "files.deleted", True),
        ("files.>", "files", False),
        ("files.*", "files.deleted", True),
        ("files.*", "files.a.b", False),
        ("files.deleted", "files.deleted", True),
        ("files.deleted", "files.trashed", False),
        (">", "a.b.c", True),
    ],
)
def test_subjects_match(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


def test_usage_describes_share() -> None:
    usage = Usage("S", "d", "max_age", 5 * 86400, 7 * 86400)
    assert usage.share == pytest.approx(5 / 7)
    assert usage.describe() == "S d: max_age 71.4% used, 5.0d of 7.0d"


def test_stream_full_is_found_behind_other_errors() -> None:
    full = StreamFull("a.b", "S", "max_msgs_per_subject", 3, 3)
    try:
        try:
            raise full
        except StreamFull as error:
            raise RuntimeError("publishing the trash event failed") from error
    except RuntimeError as wrapped:
        assert stream_full(wrapped) is full
    assert stream_full(ValueError("x")) is None
