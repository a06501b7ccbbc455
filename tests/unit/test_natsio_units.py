"""The commands `publish_all` writes in one piece: byte for byte what nats-py's `publish`
writes for each message, with and without headers, and refused where nats-py refuses (no
protocol injection). The header blocks the inline reader parses: read as nats-py reads them."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from handwritten.runtime.natsio import (
    BadHeaderError,
    Outgoing,
    nats_reads_headers_like_this,
    parse_headers,
    pub_commands,
)

_subjects = st.text(
    st.characters(blacklist_characters=" \t\r\n", blacklist_categories=("Cs",)), min_size=1
)
_header_names = st.text(
    st.sampled_from("!#$%&'*+-.^_`|~0123456789abcXYZ"), min_size=1, max_size=12
).map(lambda name: f" {name}" if len(name) % 3 == 0 else name)  # some with space to trim
_header_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_messages = st.lists(
    st.tuples(
        _subjects,
        _subjects | st.just(""),
        st.binary(max_size=64),
        st.none() | st.dictionaries(_header_names, _header_values, max_size=3),
    ),
    max_size=6,
)


def _written_by_nats_py(messages: list[Outgoing]) -> bytes:
    """What nats-py's publish path hands to its outgoing buffer for each message."""
    nc = Client()
    written: list[bytes] = []

    async def capture(command: bytes, priority: bool = False) -> None:
        written.append(command)

    nc._send_command = capture  # type: ignore[method-assign]

    async def publish_each() -> None:
        for subject, reply, payload, headers in messages:
            await nc._send_publish(subject, reply, payload, len(payload), headers)

    asyncio.run(publish_each())
    return b"".join(written)


@given(_messages)
def test_the_commands_are_nats_pys_own(messages: list[Outgoing]) -> None:
    assert pub_commands(messages, max_payload=1024) == _written_by_nats_py(messages)


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("", "_INBOX.a"),
        ("$JS.ACK.S.c.1.2.3.4.0", "_INBOX.a\r\nPUB evil 0"),
        ("files.deleted\r\nPUB evil 0\r\n", "_INBOX.a"),
        ("two words", "_INBOX.a"),
        ("tab\there", "_INBOX.a"),
        ("a", "line\nbreak"),
    ],
)
def test_a_subject_that_would_break_the_protocol_line_is_refused(subject: str, reply: str) -> None:
    good: Outgoing = ("ok", "_INBOX.ok", b"+ACK", None)
    with pytest.raises(nats.errors.BadSubjectError):
        pub_commands([good, (subject, reply, b"+ACK", None)], max_payload=1024)


@pytest.mark.parametrize("name", ["Bad Name", "Name:", "Line\r\nPUB evil 0", "ünïcode"])
def test_a_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    for _ in range(2):  # every time: names are remembered only once accepted
        with pytest.raises(BadHeaderError):
            pub_commands([("a", "", b"x", {"Nats-Msg-Id": "1", name: "v"})], max_payload=1024)


def test_a_header_value_cannot_end_its_line() -> None:
    command = pub_commands([("a", "", b"x", {"Trace": " one\r\nPUB evil 0\r\n "})], 1024)
    assert command == b"HPUB a  36 37\r\nNATS/1.0\r\nTrace: one  PUB evil 0\r\n\r\nx\r\n"


def test_a_payload_over_the_servers_limit_is_refused() -> None:
    assert pub_commands([("a", "", b"x" * 8, None)], max_payload=8)
    with pytest.raises(nats.errors.MaxPayloadError):
        pub_commands([("a", "", b"x" * 9, {"H": "v"})], max_payload=8)


_header_lines = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(
                [b"Nats-Msg-Id", b" traceparent ", b"a b", b"x\x1c", b"caf\xc3\xa9", b"", b"K"]
            )
            | st.binary(max_size=8).filter(lambda b: b":" not in b and b"\r\n" not in b),
            st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),
        ).map(lambda line: line[0] + b":" + line[1]),
        st.binary(max_size=10).filter(lambda b: b"\r\n" not in b),  # with no colon, or empty
    ),
    max_size=5,
)


@pytest.mark.skipif(
    not nats_reads_headers_like_this(), reason="the installed nats-py reads headers otherwise"
)
@given(_header_lines)
def test_a_header_block_is_read_as_nats_py_reads_it(lines: list[bytes]) -> None:
    block = b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    by_nats_py = asyncio.run(Client()._process_headers(block))
    assert parse_headers(block) == by_nats_py
    assert parse_headers(block) == by_nats_py  # again: names checked before are remembered
