"""The PUB commands `publish_all` writes in one piece: byte for byte what nats-py's `publish`
writes for each message, and refused where nats-py refuses (no protocol injection)."""

from __future__ import annotations

import nats.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.protocol.command import pub_cmd

from handwritten.runtime.natsio import pub_commands

_subjects = st.text(
    st.characters(blacklist_characters=" \t\r\n", blacklist_categories=("Cs",)), min_size=1
)


@given(st.lists(st.tuples(_subjects, _subjects | st.just(""), st.binary(max_size=64)), max_size=8))
def test_the_commands_are_nats_pys_own(messages: list[tuple[str, str, bytes]]) -> None:
    expected = b"".join(pub_cmd(subject, reply, payload) for subject, reply, payload in messages)
    assert pub_commands(messages, max_payload=1024) == expected


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
    good = ("ok", "_INBOX.ok", b"+ACK")
    with pytest.raises(nats.errors.BadSubjectError):
        pub_commands([good, (subject, reply, b"+ACK")], max_payload=1024)


def test_a_payload_over_the_servers_limit_is_refused() -> None:
    assert pub_commands([("a", "", b"x" * 8)], max_payload=8)
    with pytest.raises(nats.errors.MaxPayloadError):
        pub_commands([("a", "", b"x" * 9)], max_payload=8)
