"""The publisher's pure parts. Reading JetStream's answers: the PubAcks nats-server writes are
read by a regular expression on the hot path, everything else by `json.loads`; both readings
must agree on every PubAck, and anything the expression does not take must still be read
right. And the size check, which measures headers exactly only near the server's limit."""

from __future__ import annotations

import json

import nats.js.errors
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from handwritten.runtime.contract import PublishResult
from handwritten.runtime.jetstream import _PLAIN_PUB_ACK, _pub_ack, headers_size, too_large


def _answer(data: bytes, headers: dict[str, str] | None = None) -> PublishResult | Exception:
    return _pub_ack(Msg(None, subject="_INBOX.x.1.0", data=data, headers=headers))


def test_the_pub_acks_nats_server_writes_take_the_fast_reading() -> None:
    written = {  # as nats-server 2.10-2.12 writes them
        b'{"stream":"FILE_EVENTS", "seq":1}': PublishResult("FILE_EVENTS", 1, False),
        b'{"stream":"FILE_EVENTS", "seq":7,"duplicate": true}': PublishResult(
            "FILE_EVENTS", 7, True
        ),
        b'{"stream":"S-1_a", "domain":"hub", "seq":18446744073709551615}': PublishResult(
            "S-1_a", 18446744073709551615, False
        ),
        b'{"stream":"S","seq":2,"duplicate":false}': PublishResult("S", 2, False),
    }
    for data, expected in written.items():
        assert _PLAIN_PUB_ACK.fullmatch(data), data
        assert _answer(data) == expected


def test_other_answers_are_read_as_json() -> None:
    other = {
        b'{"stream":"S", "seq":3, "val":"x"}': PublishResult("S", 3, False),
        b'{"stream":"a\\u0062", "seq":4}': PublishResult("ab", 4, False),
        b'{"seq":5, "stream":"S"}': PublishResult("S", 5, False),
    }
    for data, expected in other.items():
        assert not _PLAIN_PUB_ACK.fullmatch(data), data
        assert _answer(data) == expected
    refused = _answer(
        b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}'
    )
    assert isinstance(refused, nats.js.errors.APIError) and refused.err_code == 10077
    assert isinstance(_answer(b"", {"Status": "503"}), nats.js.errors.NoStreamResponseError)
    assert isinstance(_answer(b"not json"), nats.errors.Error)
    assert isinstance(_answer(b'{"stream":"S"}'), nats.errors.Error)  # no seq: unreadable


_NAME = st.text(alphabet=st.sampled_from('abcXYZ019_-.$é "\\'), min_size=1, max_size=12)


@given(
    stream=_NAME,
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    duplicate=st.sampled_from([None, True, False]),
    domain=st.none() | _NAME,
    spaced=st.booleans(),
)
def test_both_readings_agree(
    stream: str, seq: int, duplicate: bool | None, domain: str | None, spaced: bool
) -> None:
    fields: dict[str, object] = {"stream": stream}
    if domain is not None:
        fields["domain"] = domain
    fields["seq"] = seq
    if duplicate is not None:
        fields["duplicate"] = duplicate
    data = json.dumps(fields, separators=(", ", ": ") if spaced else (",", ":")).encode()
    assert _answer(data) == PublishResult(stream, seq, bool(duplicate))


@given(
    payload=st.integers(min_value=0, max_value=300),
    headers=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=40), max_size=6),
    limit=st.integers(min_value=0, max_value=600),
)
def test_a_message_is_too_large_exactly_when_its_bytes_exceed_the_limit(
    payload: int, headers: dict[str, str], limit: int
) -> None:
    """`too_large` skips measuring the headers far below the limit: it must still refuse
    exactly what exceeds it, and nothing else."""
    refused = too_large("s", b"x" * payload, headers, limit)
    exceeds = bool(limit) and payload + headers_size(headers) > limit
    assert (refused is not None) == exceeds
    if refused is not None:
        assert (refused.payload, refused.headers, refused.limit) == (
            payload,
            headers_size(headers),
            limit,
        )
