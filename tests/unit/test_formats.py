"""The two definitions of each `format` (the generator's, which checks the spec's examples, and
the runtime's, which checks messages on the wire) give the same verdict on one corpus and on
random text; decimal `multipleOf` and ECMA 262 patterns read alike on both sides.
"""

from __future__ import annotations

import json
import string
from datetime import date
from typing import Annotated, Any
from uuid import UUID as UUID_

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import AwareDatetime, Field, ValidationError

from generator import formats
from handwritten.runtime import wire
from handwritten.runtime.contract import EventModel

# Digits that are digits to Python's `str.isdigit` and `\d`, but not to JSON Schema's formats.
ARABIC_ONE = "\u0661"  # ١
FULLWIDTH_ONE = "\uff11"  # １
UUID = "123e4567-e89b-12d3-a456-426614174000"

CORPUS: dict[str, dict[str, bool]] = {
    "date": {
        "2024-02-29": True,  # a leap year
        "2026-02-29": False,  # not one
        "2026-12-31": True,
        "2026-13-01": False,
        "2026-04-31": False,
        "2026-1-01": False,
        "20260101": False,
        "0000-01-01": False,  # year 0: Python cannot hold it
        "": False,
        " 2026-01-01": False,
        "2026-01-01 ": False,
        "2026-01-01\n": False,
        f"2026-0{ARABIC_ONE}-01": False,
        f"2026-0{FULLWIDTH_ONE}-01": False,
        "2026-01-01T00:00:00Z": False,
    },
    "date-time": {
        "2026-01-01T12:30:00Z": True,
        "2026-01-01t12:30:00z": True,  # RFC 3339 allows either case
        "2026-01-01T12:30:00.5+01:00": True,
        "2026-01-01T12:30:00.123456789Z": True,  # nanoseconds: read, the tail dropped
        "2024-02-29T00:00:00-23:59": True,
        "2026-02-29T00:00:00Z": False,
        "2026-01-01T12:30:60Z": False,  # a leap second, which Python cannot hold
        "2026-01-01T24:00:00Z": False,
        "2026-01-01T12:30Z": False,  # no seconds
        "2026-01-01T12:30:00": False,  # no zone
        "2026-01-01T12:30:00+0100": False,
        "2026-01-01T12:30:00+01": False,
        "2026-01-01T12:30:00+24:00": False,
        "2026-01-01T12:30:00+00:60": False,  # RFC 3339 offset minutes are 00-59
        "2026-01-01T12:30:00+05:99": False,
        "2026-01-01 12:30:00Z": False,
        "2026-01-01T12:30:00.Z": False,
        "2026-01-01": False,
        "": False,
        "2026-01-01T12:30:00Z\n": False,
        " 2026-01-01T12:30:00Z": False,
        f"2026-01-01T{ARABIC_ONE}2:30:00Z": False,
        f"2026-01-01T{FULLWIDTH_ONE}2:30:00Z": False,
    },
    "email": {
        "alice@example.com": True,
        "Alice.Smith@Example.COM": True,
        "alice+trash@example.com": True,
        "a@localhost": True,  # no TLD: the HTML definition allows it
        "a..b@example.com": True,  # the HTML definition allows dots anywhere in the local part
        "o'brien@example.com": True,
        "alice@example..com": False,
        "alice@.example.com": False,
        "alice@example.com.": False,
        "alice@-example.com": False,
        "alice@example-.com": False,
        '"alice smith"@example.com': False,  # quoted local parts are refused
        "alice smith@example.com": False,
        "alice@": False,
        "@example.com": False,
        "alice": False,
        "alice@@example.com": False,
        "alice@ex_ample.com": False,
        "alice@[127.0.0.1]": False,
        "élise@example.com": False,
        "alice@exämple.com": False,
        "": False,
        "alice@example.com\n": False,
        " alice@example.com": False,
        f"a@{'a' * 63}.com": True,
        f"a@{'a' * 64}.com": False,
    },
    "hostname": {
        "example.com": True,
        "EXAMPLE.Com": True,
        "localhost": True,
        "a": True,
        "1.2.3.4": True,
        "xn--bcher-kva.example": True,
        "my-host.example": True,
        "a" * 63: True,
        "a" * 64: False,  # labels hold at most 63 characters
        f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}": True,  # 253 characters
        f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}": False,  # 254
        "example.com.": False,  # trailing dot
        ".example.com": False,
        "example..com": False,
        "my_host.example": False,  # underscores
        "-host.example": False,
        "host-.example": False,
        "bücher.example": False,
        "host name": False,
        "": False,
        "example.com\n": False,
        f"host{ARABIC_ONE}.example": False,
        f"host{FULLWIDTH_ONE}.example": False,
    },
    "ipv4": {
        "1.2.3.4": True,
        "0.0.0.0": True,
        "255.255.255.255": True,
        "192.168.10.1": True,
        "256.1.1.1": False,
        "01.2.3.4": False,  # leading zeros (octal to some parsers)
        "1.2.3.04": False,
        "1.2.3": False,
        "1.2.3.4.5": False,
        "1.2.3.": False,
        "1..2.3": False,
        "1.2.3.4/24": False,
        "0x1.2.3.4": False,
        "": False,
        " 1.2.3.4": False,
        "1.2.3.4\n": False,
        f"{ARABIC_ONE}.2.3.4": False,
        f"{FULLWIDTH_ONE}.2.3.4": False,
        "::1": False,
    },
    "ipv6": {
        "::": True,
        "::1": True,
        "1::": True,
        "2001:db8::1": True,
        "2001:DB8::1": True,
        "1:2:3:4:5:6:7:8": True,
        "::ffff:1.2.3.4": True,
        "fe80::1%eth0": False,  # zone ids are refused
        "1:2:3:4:5:6:7:8:9": False,
        "1:2:3:4:5:6:7": False,
        ":::": False,
        "1::2::3": False,
        "12345::": False,
        "g::1": False,
        "::ffff:1.2.3.256": False,
        "::ffff:01.2.3.4": False,
        "1.2.3.4": False,
        "[::1]": False,
        "": False,
        " ::1": False,
        "::1\n": False,
        f"::{ARABIC_ONE}": False,
        f"::{FULLWIDTH_ONE}": False,
    },
    "uri": {
        "https://example.com/a/b?c=d#e": True,
        "HTTPS://EXAMPLE.COM": True,
        "urn:isbn:0451450523": True,
        "mailto:alice@example.com": True,
        "http://[::1]:8080/": True,
        "http://example.com/a%20b": True,
        "http://example.com/%C3%A9": True,
        "s3+https://bucket/key": True,
        "a:": True,  # a scheme and an empty path
        "/path/to/file": False,  # relative references are refused
        "path": False,
        "//example.com/a": False,
        "http://example.com/a b": False,
        "http://example.com/%2": False,
        "http://example.com/%zz": False,
        "http://example.com/é": False,
        "http://example.com/<a>": False,
        "1http://example.com": False,
        ":path": False,
        "": False,
        " http://example.com": False,
        "http://example.com\n": False,
    },
    "uuid": {
        UUID: True,
        UUID.upper(): True,
        "00000000-0000-0000-0000-000000000000": True,
        UUID.replace("-", ""): False,
        f"{{{UUID}}}": False,
        f"urn:uuid:{UUID}": False,
        UUID[:-1]: False,
        UUID + "0": False,
        UUID.replace("e", "g", 1): False,
        "123e4567-e89b-12d3-a456_426614174000": False,
        "": False,
        f" {UUID}": False,
        f"{UUID}\n": False,
        UUID.replace("1", ARABIC_ONE, 1): False,
        UUID.replace("1", FULLWIDTH_ONE, 1): False,
    },
}

CASES = [
    pytest.param(
        name,
        text,
        verdict,
        id=f"{name}-{text!r}",
    )
    for name, corpus in CORPUS.items()
    for text, verdict in corpus.items()
]


def both(name: str, text: str) -> tuple[bool, bool]:
    """The generator's and the runtime's verdict on `text`."""
    return formats.FORMATS[name](text), wire.FORMATS[name][0](text)


def test_both_sides_define_the_same_formats() -> None:
    assert set(formats.FORMATS) == set(wire.FORMATS) == set(CORPUS)
    assert all(isinstance(what, str) and what for _, what in wire.FORMATS.values())


@pytest.mark.parametrize(("name", "text", "verdict"), CASES)
def test_corpus(name: str, text: str, verdict: bool) -> None:
    assert both(name, text) == (verdict, verdict)


def test_corpus_has_both_verdicts_for_every_format() -> None:
    for name, corpus in CORPUS.items():
        assert set(corpus.values()) == {True, False}, name


ALPHABETS: dict[str, str] = {
    "date": string.digits + "-",
    "date-time": string.digits + "-:.+TtZz ",
    "email": string.ascii_letters[:6] + string.digits[:3] + ".@-+_\"' ",
    "hostname": "ab09-._",
    "ipv4": "0125.",
    "ipv6": "0af:.%",
    "uri": "ah:/%2fz?#[]. -",
    "uuid": "0aF-g",
}
"""The characters each format is made of, plus a few that are not, so that random strings
built from them are often close to valid and sometimes valid."""

_TRICKY = st.sampled_from(["", " ", "\n", ARABIC_ONE, FULLWIDTH_ONE, "é", "\x00"])
_SAMPLES = st.sampled_from(sorted({t for corpus in CORPUS.values() for t in corpus}))


def _near(name: str) -> st.SearchStrategy[str]:
    """Strings from the format's alphabet, and corpus strings with a piece spliced in."""
    built = st.text(alphabet=ALPHABETS[name], max_size=48)
    spliced = st.builds(
        lambda text, index, piece: text[:index] + piece + text[index + 1 :],
        st.sampled_from(sorted(CORPUS[name])),
        st.integers(min_value=0, max_value=48),
        st.one_of(_TRICKY, st.text(alphabet=ALPHABETS[name], max_size=3)),
    )
    return st.one_of(built, spliced)


@pytest.mark.parametrize("name", sorted(CORPUS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_text_gets_one_verdict(name: str, data: st.DataObject) -> None:
    text = data.draw(st.one_of(st.text(max_size=64), _near(name), _SAMPLES))
    generator_says, runtime_says = both(name, text)
    assert generator_says is runtime_says, text


def test_alphabets_reach_valid_strings() -> None:
    """Guards the property test: each alphabet can spell a valid value of its format."""
    spelt = {
        "date": "2024-02-29",
        "date-time": "2024-02-29T00:00:00Z",
        "email": "a@b",
        "hostname": "a.b",
        "ipv4": "1.2.0.5",
        "ipv6": "a::f",
        "uri": "a:/z",
        "uuid": "0aF00000-0000-0000-0000-000000000000",
    }
    for name, text in spelt.items():
        assert set(text) <= set(ALPHABETS[name]), name
        assert both(name, text) == (True, True), name


# -- decimal multipleOf ---------------------------------------------------------------------
MULTIPLES: list[tuple[int | float, int | float, bool]] = [
    (19.99, 0.01, True),  # 19.99 / 0.01 in binary floats is 1998.9999999999998
    (0.3, 0.1, True),
    (10, 2.5, True),
    (10.0, 2.5, True),
    (7.5, 2.5, True),
    (0, 0.01, True),
    (-19.99, 0.01, True),
    (1e300, 0.01, True),
    (1e-9, 0.01, False),
    (0.015, 0.01, False),
    (19.999, 0.01, False),
    (10, 3, False),
    (10, 0.3, False),
    (1, 1e-20, True),
    (10**40, 7, False),
    (7 * 10**40, 7, True),
    (2**64 + 1, 0.5, True),
    (2**64 + 1, 2, False),
    (10**30, 10**29, True),
]


@pytest.mark.parametrize(("value", "divisor", "verdict"), MULTIPLES)
def test_is_multiple_of(value: int | float, divisor: int | float, verdict: bool) -> None:
    assert formats.is_multiple_of(value, divisor) is verdict


def _wire_says(value: int | float, rule: dict[str, Any]) -> bool:
    try:
        wire.conform(value, rule)
    except wire.WireError:
        return False
    return True


@pytest.mark.parametrize(("value", "divisor", "verdict"), MULTIPLES)
def test_the_runtime_reads_multiple_of_alike(
    value: int | float, divisor: int | float, verdict: bool
) -> None:
    rule = {"type": "number", "multipleOf": repr(divisor)}
    assert _wire_says(value, rule) is verdict


@settings(max_examples=400, deadline=None)
@given(
    value=st.one_of(
        st.integers(min_value=-(10**25), max_value=10**25),
        st.decimals(min_value=-10000, max_value=10000, places=3).map(float),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    divisor=st.sampled_from([1, 2, 7, 0.5, 0.1, 0.01, 0.25, 2.5, 1e-5]),
)
def test_multiple_of_agrees_on_random_numbers(value: int | float, divisor: int | float) -> None:
    rule = {"type": "number", "multipleOf": repr(divisor)}
    assert _wire_says(value, rule) is formats.is_multiple_of(value, divisor)


# -- ECMA 262 patterns ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "spelt"),
    [
        (r"\d", "[0-9]"),
        (r"^\d+$", "^[0-9]+$"),
        (r"\w", "[A-Za-z0-9_]"),
        (r"[\d]", "[0-9]"),
        (r"[a\dz]", "[a0-9z]"),
        (r"[\w-]", "[A-Za-z0-9_-]"),
        (r"\D", "[^0-9]"),
        (r"\W", "[^A-Za-z0-9_]"),
        (r"[\D]", r"[\D]"),  # a negated class inside a class stays as it is
        (r"\\d", r"\\d"),  # an escaped backslash, then the letter d
        (r"\\\d", r"\\[0-9]"),
        (r"\.\s\b", r"\.\s\b"),
        (r"[\]\d]", r"[\]0-9]"),
        (r"[a]\d", "[a][0-9]"),
        ("\\", "\\"),
    ],
)
def test_ascii_classes(pattern: str, spelt: str) -> None:
    assert formats.ascii_classes(pattern) == spelt


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("^a$", "a", True),
        ("^a$", "a\n", False),  # Python's `$` also matches before a final newline
        ("a$", "ba", True),
        ("[$]", "$", True),
        (r"\$", "a$b", True),
        (r"^\d+$", "123", True),
        (r"^\d+$", ARABIC_ONE, False),  # `\d` is ASCII in ECMA 262
        (r"^\d+$", FULLWIDTH_ONE, False),
        (r"^\w+$", "é", False),
        (r"^\D$", ARABIC_ONE, True),
        (r"^\\d$", "\\d", True),
        ("b", "abc", True),  # `pattern` is a search, not a full match
    ],
)
def test_ecma_regex(pattern: str, text: str, found: bool) -> None:
    assert (formats.ecma_regex(pattern).search(text) is not None) is found


# -- the generator's Validator --------------------------------------------------------------
def _valid(schema: dict[str, Any], instance: object) -> bool:
    return bool(formats.Validator(schema, format_checker=formats.format_checker).is_valid(instance))


@pytest.mark.parametrize(
    ("schema", "instance", "valid"),
    [
        ({"type": "number"}, float("nan"), False),
        ({"type": "number"}, float("inf"), False),
        ({"type": "number"}, float("-inf"), False),
        ({"type": "number"}, 1.5, True),
        ({"type": "number"}, 3, True),
        ({"type": "number"}, True, False),
        ({"type": "integer"}, 1.0, True),
        ({"type": "integer"}, 1, True),
        ({"type": "integer"}, 1.5, False),
        ({"type": "integer"}, float("inf"), False),
        ({"type": "integer"}, True, False),
        ({"type": "number", "multipleOf": 0.01}, 19.99, True),
        ({"type": "number", "multipleOf": 0.01}, 19.999, False),
        ({"type": "string", "pattern": "^a$"}, "a\n", False),
        ({"type": "string", "pattern": r"^\d$"}, ARABIC_ONE, False),
        ({"type": "string", "format": "uuid"}, UUID, True),
        ({"type": "string", "format": "uuid"}, UUID.replace("-", ""), False),
        ({"type": "string", "format": "date-time"}, "2026-01-01T12:30Z", False),
        ({"type": "string", "format": "email"}, "a@localhost", True),
    ],
)
def test_validator(schema: dict[str, Any], instance: object, valid: bool) -> None:
    assert _valid(schema, instance) is valid


# --- the formats pydantic parses: pattern and parse on the wire ------------------------------


class _Parsed(EventModel):
    """A field of each format whose value pydantic parses, with its wire rule."""

    date_: Annotated[date, Field(alias="date", json_schema_extra={"x-wire": {"format": "date"}})]
    date_time: Annotated[
        AwareDatetime,
        Field(alias="date-time", json_schema_extra={"x-wire": {"format": "date-time"}}),
    ]
    uuid: Annotated[UUID_, Field(json_schema_extra={"x-wire": {"format": "uuid"}})]


_VALID = {"date": "2024-02-29", "date-time": "2024-02-29T23:59:59Z", "uuid": UUID}


def _model_says(name: str, text: str) -> bool:
    """Whether an event with `text` as its field of format `name` decodes from JSON."""
    try:
        _Parsed.model_validate_json(json.dumps({**_VALID, name: text}))
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(wire.PARSED_STRINGS))
@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_pattern_and_parse_read_the_parsed_formats_as_the_generator_does(
    name: str, data: st.DataObject
) -> None:
    """`EventModel` checks uuid, date and date-time on the wire by a pattern in pydantic's own
    string validation followed by pydantic's parse (wire.PARSED_STRINGS): together they must
    accept exactly what the format's definition accepts."""
    near = st.one_of(_near(name), _SAMPLES, st.sampled_from(sorted(CORPUS[name])))
    text = data.draw(st.one_of(near, _EDGES[name]))
    assert _model_says(name, text) is formats.FORMATS[name](text), text


_EDGES = {
    "date": st.sampled_from(
        ["0000-01-01", "2023-02-29", "2024-02-29", "2024-04-31", "2024-13-01", "2024-00-10"]
    ),
    "date-time": st.builds(
        "{}T{}:{}:{}{}{}".format,
        st.sampled_from(["0000-01-01", "0001-01-01", "2023-02-29", "2024-02-29", "2024-06-31"]),
        st.sampled_from(["00", "23", "24"]),
        st.sampled_from(["00", "59", "60"]),
        st.sampled_from(["00", "59", "60"]),
        st.sampled_from(["", ".1", ".1234567", ".000000001"]),
        st.sampled_from(["Z", "z", "+23:59", "-24:00", "+05:60", ""]),
    ),
    "uuid": st.uuids().map(str) | st.uuids().map(lambda u: u.hex),
}
