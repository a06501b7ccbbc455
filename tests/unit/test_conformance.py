"""The generated models accept exactly what the spec's JSON Schemas accept, on every spec of
tests/support/specs.py (filetrash's and an online shop's).

For every JSON message: its examples validate against its schema (`Document.models_schema`,
checked by `generator.formats.Validator`: Draft 2020-12 with the subset's semantics — ECMA
`pattern`s, decimal `multipleOf`, finite numbers, the supported formats) and parse into the
generated models, whose dump validates again and round-trips. A mutation table walked over
every field of every message (recursively; a field that no example has is added to one, with a
value made from its schema) makes payloads that BOTH must reject, and boundary payloads that both
must accept; hypothesis mutates the examples' leaves and checks schema-valid ⇔ model-valid.
There is no known divergence: what pydantic cannot check exactly, the generator refuses or hands
to the runtime's wire rules (handwritten/runtime/wire.py).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from fractions import Fraction
from functools import cache
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, find, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from generator.formats import Validator, ecma_regex, format_checker, is_multiple_of
from generator.ir import Message
from tests.support.specs import SPECS, SpecUnderTest, spec_under_test

Path_ = tuple[str | int, ...]


# -- one spec under test -----------------------------------------------------------------------
class Subject:
    """A spec, its JSON messages, their examples, validators and generated models."""

    def __init__(self, under_test: SpecUnderTest) -> None:
        self.name = under_test.name
        self.under_test = under_test
        self.doc = under_test.doc
        self.schema: dict[str, Any] = json.loads(self.doc.models_schema)
        self.defs: dict[str, Any] = self.schema["$defs"]
        self.messages: list[Message] = [m for m in self.doc.messages if m.is_json]
        self.validators = {m.class_name: self.validator(m.class_name) for m in self.messages}

    def validator(self, class_name: str) -> Draft202012Validator:
        return Validator(
            {**self.schema, "$ref": f"#/$defs/{class_name}"}, format_checker=format_checker
        )

    def examples_of(self, class_name: str) -> list[tuple[str, Any]]:
        return self.under_test.examples(
            next(m for m in self.messages if m.class_name == class_name)
        )

    def model(self, class_name: str) -> type[BaseModel]:
        cls = getattr(self.under_test.models, class_name)
        assert isinstance(cls, type) and issubclass(cls, BaseModel)
        return cls

    def schema_errors(self, class_name: str, payload: Any) -> set[str]:
        """The keywords (`type`, `format`, ...) that reject `payload`, those inside a failed
        anyOf too; empty when it is valid."""

        def keywords(errors: Any) -> Iterator[str]:
            for error in errors:
                yield str(error.validator)
                yield from keywords(error.context or ())

        return set(keywords(self.validators[class_name].iter_errors(payload)))

    def model_accepts(self, class_name: str, payload: Any) -> bool:
        try:
            self.model(class_name).model_validate_json(json.dumps(payload))
        except ValidationError:
            return False
        return True

    def deref(self, schema: Any) -> dict[str, Any]:
        """`schema` with its `$ref` chain merged in, and a nullable anyOf/oneOf read as the
        non-null branch whose type admits null."""
        if not isinstance(schema, dict):
            return {}
        for key in ("anyOf", "oneOf"):
            if key in schema:
                branch = next(b for b in schema[key] if b.get("type") != "null")
                inner = self.deref(branch)
                kind = inner.get("type")
                kinds = kind if isinstance(kind, list) else [kind] if kind else []
                return {**inner, "type": [*kinds, "null"]}
        merged: dict[str, Any] = {}
        while True:
            merged = {**schema, **merged}
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            schema = self.defs[ref.rsplit("/", 1)[1]]
        merged.pop("$ref", None)
        return merged

    def schema_at(self, class_name: str, path: Path_) -> dict[str, Any]:
        schema = self.deref(self.defs[class_name])
        for key in path:
            schema = self.deref(
                schema.get("items", {}) if isinstance(key, int) else schema["properties"][key]
            )
        return schema

    # -- a base payload for every path ---------------------------------------------------------
    def base_for(self, class_name: str, path: Path_) -> Any:
        """The first example in which `path` exists; else the first example with the path made
        to exist, from values its schema accepts (examples need not show every field)."""
        examples = [p for _, p in self.examples_of(class_name)]
        found = next((p for p in examples if has_path(p, path)), None)
        if found is not None:
            return found
        payload = copy.deepcopy(examples[0])
        node, schema = payload, self.deref(self.defs[class_name])
        for key in path:
            sub = self.deref(schema["items"] if isinstance(key, int) else schema["properties"][key])
            if isinstance(key, int):
                while len(node) <= key:
                    node.append(self.make_valid(sub))
            elif node.get(key) is None:
                node[key] = self.make_valid(sub)
            node, schema = node[key], sub
        return payload

    def make_valid(self, schema: dict[str, Any]) -> Any:
        """One value `schema` accepts (the non-null one where null is allowed too)."""
        schema = self.deref(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return next(v for v in schema["enum"] if v is not None)
        if "default" in schema:
            return schema["default"]
        kinds = _kinds(schema) - {"null"}
        kind = kinds.pop() if kinds else "null"
        if kind == "object":
            props = schema.get("properties", {})
            return {k: self.make_valid(props[k]) for k in schema.get("required", [])}
        if kind == "array":
            count = schema.get("minItems", 0)
            return [self.make_valid(schema["items"]) for _ in range(count)]
        if kind in ("integer", "number"):
            return _number_within(schema, kind)
        if kind == "boolean":
            return False
        if kind == "string":
            return _string_within(schema)
        return None


@cache
def subject(name: str) -> Subject:
    return Subject(spec_under_test(name))


SUBJECTS = [subject(name) for name in SPECS]


# -- paths into payloads ----------------------------------------------------------------------
def get_in(value: Any, path: Path_) -> Any:
    for key in path:
        value = value[key]
    return value


def has_path(value: Any, path: Path_) -> bool:
    try:
        get_in(value, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def with_value(root: Any, path: Path_, value: Any) -> Any:
    result = copy.deepcopy(root)
    get_in(result, path[:-1])[path[-1]] = value
    return result


def without(root: Any, path: Path_) -> Any:
    result = copy.deepcopy(root)
    del get_in(result, path[:-1])[path[-1]]
    return result


def dotted(path: Path_) -> str:
    return ".".join(map(str, path)) or "(root)"


def _kinds(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


# -- values inside a schema -------------------------------------------------------------------
SAMPLE_FORMATS: dict[str, str] = {
    "date": "2026-02-28",
    "date-time": "2026-11-20T10:15:30Z",
    "email": "ada@example.org",
    "hostname": "mail.example.org",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.org/a?b=c",
    "uuid": "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70",
}


def _number_within(schema: dict[str, Any], kind: str) -> int | float:
    """The smallest multiple (of multipleOf, else of 1) inside the bounds."""
    step = Fraction(repr(schema.get("multipleOf", 1)))
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    value = (Fraction(repr(low)) / step).__ceil__() * step
    if "exclusiveMinimum" in schema and value <= Fraction(repr(schema["exclusiveMinimum"])):
        value += step
    return int(value) if kind == "integer" else float(value)


def _string_within(schema: dict[str, Any]) -> str:
    if "format" in schema:
        return SAMPLE_FORMATS[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
    if "pattern" in schema:
        regex = ecma_regex(schema["pattern"])
        return str(
            find(
                st.from_regex(regex, fullmatch=True, alphabet=st.characters(codec="ascii")),
                lambda s: low <= len(s) <= high,
                settings=settings(database=None, max_examples=2000),
            )
        )
    return "x" * max(low, 1) if high >= max(low, 1) else ""


# -- the mutation table -----------------------------------------------------------------------
WRONG_TYPES: dict[str, Any] = {
    "int": 42,
    "str": "42",
    "float": 4.5,
    "null": None,
    "list": [],
    "object": {},
    "bool": True,
}
# Which of those each JSON Schema type accepts.
ACCEPTED_BY = {
    "string": {"str"},
    "integer": {"int"},
    "number": {"int", "float"},
    "boolean": {"bool"},
    "object": {"object"},
    "array": {"list"},
    "null": {"null"},
}
BAD_FORMATS: dict[str, list[tuple[str, Any]]] = {
    "uuid": [
        ("not-a-uuid", "not-a-uuid"),
        ("empty", ""),
        ("too-short", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f7"),
        ("too-long", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f701"),
        ("not-hex", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6fzz"),
        # Spellings pydantic's UUID parser takes but format uuid does not (the wire rule refuses).
        ("no-hyphens", "04d05b5f3a4c4d8e9f102b3c4d5e6f70"),
        ("braces", "{04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70}"),
        ("urn", "urn:uuid:04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70"),
        ("trailing-newline", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f70\n"),
    ],
    "date-time": [
        ("yesterday", "yesterday"),
        ("month-13-day-45", "2026-13-45T00:00:00Z"),
        ("no-zone", "2026-11-21T08:00:00"),
        ("date-only", "2026-11-21"),
        ("hour-25", "2026-11-21T25:00:00Z"),
        ("offset-hour-only", "2026-11-21T08:00:00+01"),
        # Spellings pydantic's date-time parser takes but RFC 3339 does not (the wire rule refuses).
        ("no-seconds", "2026-11-20T10:15Z"),
        ("space-separator", "2026-11-20 10:15:30Z"),
        ("offset-without-colon", "2026-11-20T10:15:30+0100"),
        ("comma-fraction", "2026-11-20T10:15:30,5Z"),
        ("unix-seconds-in-a-string", "1700000000"),
        ("small-number-in-a-string", "42"),
        ("trailing-newline", "2026-11-20T10:15:30Z\n"),
    ],
    "date": [
        ("date-time", "2026-11-20T10:15:30Z"),
        ("february-30", "2026-02-30"),
        ("basic-format", "20261120"),
        ("slashes", "2026/11/20"),
        ("unicode-digits", "٢٠٢٦-11-20"),
        ("trailing-newline", "2026-11-20\n"),
    ],
    "email": [
        ("no-at", "ada.example.org"),
        ("two-ats", "ada@@example.org"),
        ("space", "ada lovelace@example.org"),
        ("double-dot-domain", "ada@example..org"),
        ("empty", ""),
        ("trailing-newline", "ada@example.org\n"),
    ],
    "uri": [
        ("relative", "/orders/42"),
        ("space", "https://example.org/a b"),
        ("no-scheme", "example.org"),
        ("bad-escape", "https://example.org/%zz"),
    ],
    "ipv4": [
        ("leading-zero", "192.168.01.1"),
        ("too-big", "256.1.1.1"),
        ("three-parts", "10.0.1"),
        ("trailing-newline", "10.0.0.1\n"),
    ],
    "ipv6": [
        ("ipv4", "192.0.2.1"),
        ("zone", "fe80::1%eth0"),
        ("two-gaps", "1::2::3"),
        ("not-hex", "2001:db8::g"),
    ],
    "hostname": [
        ("underscore", "my_host.example"),
        ("leading-hyphen", "-host.example"),
        ("long-label", "a" * 64 + ".example"),
        ("space", "my host"),
    ],
}
GOOD_FORMATS: dict[str, list[tuple[str, str]]] = {
    "uuid": [("upper-case", "04D05B5F-3A4C-4D8E-9F10-2B3C4D5E6F70")],
    "date-time": [
        ("lower-case-t-and-z", "2026-11-20t10:15:30z"),
        ("nanoseconds", "2026-11-20T10:15:30.123456789+05:30"),
    ],
    "date": [("leap-day", "2024-02-29")],
    "email": [("plus-and-subdomain", "ada+orders@mail.example.org"), ("no-dot", "ada@localhost")],
    "uri": [("urn", "urn:isbn:0451450523"), ("escape", "https://example.org/a%20b?x=1#y")],
    "ipv4": [("zero", "0.0.0.0")],
    "ipv6": [("mapped", "::ffff:192.0.2.1"), ("loopback", "::1")],
    "hostname": [("single-label", "localhost")],
}
PATTERN_CANDIDATES = [
    "a b",
    " ",
    "\x00",
    "a\x00b",
    "a/b",
    "/",
    "UPPER/CASE",
    "-leading",
    ".leading",
    "no-slash",
    "nocolon",
    "a\n",
    "\n",
    "x" * 3,
    "١٢٣",
    "é",
]


@dataclass(frozen=True)
class Case:
    spec: str
    message: str
    path: Path_
    name: str
    payload: Any
    keyword: str
    """The JSON Schema keyword that must reject it; empty for a payload both must accept."""

    @property
    def id(self) -> str:
        return f"{self.spec}:{self.message}:{dotted(self.path)}:{self.name}"


CaseMaker = Callable[[str, Any, str], Case]


def object_cases(
    s: Subject, class_name: str, schema: dict[str, Any], path: Path_
) -> Iterator[Case]:
    base = s.base_for(class_name, path)
    here = get_in(base, path)
    if schema.get("additionalProperties") is False and isinstance(here, dict):
        extra = {**here, "unexpectedField": "surprise"}
        yield Case(
            s.name,
            class_name,
            path,
            "unknown-field",
            _put(base, path, extra),
            "additionalProperties",
        )
    for name in schema.get("required", []):
        child = (*path, name)
        source = s.base_for(class_name, child)
        yield Case(
            s.name, class_name, child, "missing-required", without(source, child), "required"
        )
    for name, sub in schema.get("properties", {}).items():
        yield from field_cases(s, class_name, s.deref(sub), (*path, name))


def _put(base: Any, path: Path_, value: Any) -> Any:
    return with_value(base, path, value) if path else copy.deepcopy(value)


def field_cases(s: Subject, class_name: str, schema: dict[str, Any], path: Path_) -> Iterator[Case]:
    base = s.base_for(class_name, path)
    value = get_in(base, path)

    def case(name: str, new: Any, keyword: str) -> Case:
        return Case(s.name, class_name, path, name, with_value(base, path, new), keyword)

    kinds = _kinds(schema)
    if kinds:
        accepted = set().union(*(ACCEPTED_BY[k] for k in kinds))
        for label, wrong in WRONG_TYPES.items():
            if label not in accepted:
                yield case(f"wrong-type-{label}", wrong, "type")
    if "null" in kinds and value is not None:
        yield case("null-allowed", None, "")
    if "const" in schema:
        const = schema["const"]
        if isinstance(const, bool):
            yield case("wrong-const", not const, "const")
            yield case("const-as-integer", int(const), "type" if kinds else "const")
        elif isinstance(const, int):
            yield case("wrong-const", const + 1, "const")
            yield case("const-as-float", float(const), "")
            yield case("const-as-boolean", True, "type" if kinds else "const")
        else:
            yield case("wrong-const", f"Not{const}", "const")
        for other in s.messages:
            if other.event_type not in (None, const) and path[-1] == "eventType":
                yield case(f"other-event-type-{other.event_type}", other.event_type, "const")
    if "enum" in schema:
        members = [v for v in schema["enum"] if v is not None]
        if all(isinstance(v, int) for v in members):
            yield case("not-in-enum", max(members) + 1, "enum")
            yield case("enum-member-as-float", float(members[0]), "")
            if 1 in members or 0 in members:
                yield case("enum-member-as-boolean", 1 in members, "type" if kinds else "enum")
        else:
            yield case("not-in-enum", "not-in-the-enum", "enum")
            yield case("enum-member-in-other-case", str(members[0]).swapcase() + "!", "enum")
    fmt = schema.get("format", "")
    for label, bad in BAD_FORMATS.get(fmt, []):
        yield case(f"bad-{fmt}-{label}", bad, "format")
    for label, good in GOOD_FORMATS.get(fmt, []):
        if _fits_string(schema, good):
            yield case(f"good-{fmt}-{label}", good, "")
    if fmt in ("date-time", "date", "uuid"):
        yield case(f"{fmt}-as-number", 1700000000, "type")
    if kinds & {"integer", "number"}:
        yield from number_cases(schema, value, case)
    if isinstance(value, str):
        yield from string_cases(schema, value, case)
    if "object" in kinds:
        yield from object_cases(s, class_name, schema, path)
    if "array" in kinds and isinstance(value, list):
        yield from array_cases(s, class_name, schema, path, value, case)


def _fits_string(schema: dict[str, Any], text: str) -> bool:
    low, high = schema.get("minLength", 0), schema.get("maxLength", len(text))
    return low <= len(text) <= high and (
        "pattern" not in schema or ecma_regex(schema["pattern"]).search(text) is not None
    )


def number_cases(schema: dict[str, Any], value: Any, case: CaseMaker) -> Iterator[Case]:
    step = schema.get("multipleOf")

    def fits(number: int | float) -> bool:
        return step is None or is_multiple_of(number, step)

    if "minimum" in schema:
        low = schema["minimum"]
        yield case("below-minimum", low - max(step or 1, abs(low) * 1e-9), "minimum")
        edge = math.ceil(low) if "integer" in _kinds(schema) else low
        if fits(edge):
            yield case("at-minimum", edge, "")
        if -1 < low <= 0 < schema.get("maximum", 1) and fits(-1):
            yield case("negative", -1, "minimum")
    if "maximum" in schema:
        high = schema["maximum"]
        yield case("above-maximum", high + max(step or 1, abs(high) * 1e-9), "maximum")
        edge = math.floor(high) if "integer" in _kinds(schema) else high
        if fits(edge):
            yield case("at-maximum", edge, "")
    if "exclusiveMinimum" in schema:
        yield case("at-exclusive-minimum", schema["exclusiveMinimum"], "exclusiveMinimum")
    if "exclusiveMaximum" in schema:
        yield case("at-exclusive-maximum", schema["exclusiveMaximum"], "exclusiveMaximum")
    if "integer" in _kinds(schema) and isinstance(value, int) and not isinstance(value, bool):
        yield case("integral-float", float(value), "")
        yield case("fraction", value + 0.5, "type")
    if step is not None and isinstance(value, int | float):
        exact = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
        half = float(exact + Fraction(repr(step)) / 2)
        yield case("not-a-multiple", half, "multipleOf")
        # Decimal multiples a binary float cannot hold exactly: both sides must still accept.
        for k in (7, 1999, 10**6 + 3):
            multiple = float(Fraction(repr(step)) * k)
            integral = "integer" not in _kinds(schema) or multiple.is_integer()
            if _within(schema, multiple) and integral:
                yield case(f"multiple-{k}", multiple, "")


def _within(schema: dict[str, Any], number: float) -> bool:
    return (
        number >= schema.get("minimum", -float("inf"))
        and number <= schema.get("maximum", float("inf"))
        and number > schema.get("exclusiveMinimum", -float("inf"))
        and number < schema.get("exclusiveMaximum", float("inf"))
    )


def string_cases(schema: dict[str, Any], value: str, case: CaseMaker) -> Iterator[Case]:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    regex = ecma_regex(schema["pattern"]) if "pattern" in schema else None
    formatted = "format" in schema

    def fits_pattern(text: str) -> bool:
        return regex is None or regex.search(text) is not None

    if low > 0:
        yield case("too-short", value[: low - 1], "minLength")
        if low > 1:
            yield case("empty", "", "minLength")
        if fits_pattern(value[:low]) and not formatted:
            yield case("at-min-length", value[:low], "")
    if high is not None:
        pad = value[-1:] or "a"
        yield case("too-long", value + pad * (high + 1 - len(value)), "maxLength")
        if fits_pattern((value + pad * high)[:high]) and not formatted:
            yield case("at-max-length", (value + pad * high)[:high], "")
    if regex is not None:
        fits = [
            c
            for c in PATTERN_CANDIDATES
            if low <= len(c) <= (high or len(c)) and not regex.search(c)
        ]
        assert fits, f"no candidate breaks only the pattern {schema['pattern']!r}: add one"
        for candidate in fits[:3]:
            yield case(f"pattern-{candidate!r}", candidate, "pattern")
        if regex.search(value) and len(value) < (high or len(value) + 1):
            # Python's `$` also matches before a final newline; ECMA's (and pydantic's) does not:
            # the newline breaks the pattern unless the pattern itself allows newlines.
            keyword = "" if regex.search(value + "\n") else "pattern"
            yield case("pattern-trailing-newline", value + "\n", keyword)
        for digit in ("٣", "３"):  # ECMA's \d is ASCII: a Unicode digit is no digit
            swapped = re.sub("[0-9]", digit, value, count=1)
            if swapped != value:
                keyword = "" if regex.search(swapped) else "pattern"
                yield case(f"unicode-digit-{digit!r}", swapped, keyword)


def array_cases(
    s: Subject,
    class_name: str,
    schema: dict[str, Any],
    path: Path_,
    value: list[Any],
    case: CaseMaker,
) -> Iterator[Case]:
    if schema.get("minItems", 0) > 0:
        low = schema["minItems"]
        yield case("too-few-items", value[: low - 1], "minItems")
        if len(value) >= low:
            yield case("at-min-items", value[:low], "")
    if "maxItems" in schema and value:
        yield case("too-many-items", value + [value[0]] * schema["maxItems"], "maxItems")
        yield case("at-max-items", (value * schema["maxItems"])[: schema["maxItems"]], "")
    if isinstance(schema.get("items"), dict) and schema.get("maxItems", 1) > 0:
        yield from field_cases(s, class_name, s.deref(schema["items"]), (*path, 0))


def all_cases(s: Subject) -> list[Case]:
    cases: list[Case] = []
    for message in s.messages:
        cases.extend(object_cases(s, message.class_name, s.deref(s.defs[message.class_name]), ()))
    return cases


CASES = {s.name: all_cases(s) for s in SUBJECTS}
REJECTED = [c for s in SUBJECTS for c in CASES[s.name] if c.keyword]
ACCEPTED = [c for s in SUBJECTS for c in CASES[s.name] if not c.keyword]
EXAMPLES = [
    (s.name, m.class_name, name, payload)
    for s in SUBJECTS
    for m in s.messages
    for name, payload in s.examples_of(m.class_name)
]


def test_case_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Reports how many cases the table made; fails if a message lost its examples or fields."""
    with capsys.disabled():
        for s in SUBJECTS:
            mine = CASES[s.name]
            rejected = sum(1 for c in mine if c.keyword)
            examples = sum(1 for e in EXAMPLES if e[0] == s.name)
            print(
                f"\nconformance {s.name}: {examples} examples, {rejected} rejected and "
                f"{len(mine) - rejected} accepted mutations over {len(s.messages)} messages"
            )
    for s in SUBJECTS:
        assert s.messages, f"{s.name} has no JSON messages"
        for message in s.messages:
            assert len(s.examples_of(message.class_name)) >= 2, (s.name, message.key)
            assert sum(1 for c in CASES[s.name] if c.message == message.class_name) >= 20


@pytest.mark.parametrize("s", SUBJECTS, ids=lambda s: s.name)
def test_every_field_is_mutated(s: Subject) -> None:
    """Each property of each message (nested ones, and those no example has, included) has at
    least one rejected case."""
    covered = {(c.message, c.path) for c in REJECTED if c.spec == s.name}

    def walk(schema: dict[str, Any], path: Path_) -> Iterator[Path_]:
        for name, sub in schema.get("properties", {}).items():
            yield (*path, name)
            yield from walk(s.deref(sub), (*path, name))
        if isinstance(schema.get("items"), dict):
            yield from walk(s.deref(schema["items"]), (*path, 0))

    for message in s.messages:
        for path in walk(s.deref(s.defs[message.class_name]), ()):
            assert (message.class_name, path) in covered, (message.class_name, dotted(path))


# -- examples ---------------------------------------------------------------------------------
def normalise(s: Subject, schema: Any, value: Any) -> Any:
    """Values as the model means them: instants with their offset, uuids as UUIDs, days as dates,
    integral numbers as ints."""
    schema = s.deref(schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        filled = {k: d["default"] for k, sub in props.items() if "default" in (d := s.deref(sub))}
        return {k: normalise(s, props.get(k, {}), v) for k, v in (filled | value).items()}
    if isinstance(value, list):
        return [normalise(s, schema.get("items", {}), v) for v in value]
    fmt = schema.get("format")
    if isinstance(value, str) and fmt == "date-time":
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return (moment, moment.utcoffset())
    if isinstance(value, str) and fmt == "uuid":
        return UUID(value)
    if isinstance(value, str) and fmt == "date":
        return date.fromisoformat(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@pytest.mark.parametrize(
    ("spec", "class_name", "payload"),
    [pytest.param(sp, c, p, id=f"{sp}:{c}:{n}") for sp, c, n, p in EXAMPLES],
)
def test_example_conforms_and_round_trips(spec: str, class_name: str, payload: Any) -> None:
    s = subject(spec)
    assert s.schema_errors(class_name, payload) == set()
    parsed = s.model(class_name).model_validate_json(json.dumps(payload))
    dumped = parsed.model_dump(mode="json", by_alias=True)  # as the publishers dump
    assert s.schema_errors(class_name, dumped) == set()
    assert s.model(class_name).model_validate_json(json.dumps(dumped)) == parsed
    assert normalise(s, s.defs[class_name], dumped) == normalise(s, s.defs[class_name], payload)
    again = s.model(class_name).model_validate_json(parsed.model_dump_json(by_alias=True))
    assert again == parsed


@pytest.mark.parametrize("s", SUBJECTS, ids=lambda s: s.name)
def test_receive_endpoints_route_examples_to_their_own_type(s: Subject) -> None:
    """Each consumer decodes the examples of the messages it receives into the right class, and
    rejects those of the other messages."""
    checked = 0
    examples = [(c, p) for sp, c, _, p in EXAMPLES if sp == s.name]
    for op in s.doc.receivers:
        assert op.consumer is not None
        endpoint = s.under_test.consumers.ENDPOINTS[op.consumer.durable]
        mine = {s.doc.message(k).class_name for k in op.messages}
        for class_name, payload in examples:
            data = json.dumps(payload).encode()
            if class_name in mine:
                assert type(endpoint.decode(data)).__name__ == class_name
            else:
                with pytest.raises(ValidationError):
                    endpoint.decode(data)
            checked += 1
    assert checked >= len(examples)


# -- the mutation table, both ways ------------------------------------------------------------
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in REJECTED])
def test_invalid_payload_is_rejected_by_schema_and_model(case: Case) -> None:
    s = subject(case.spec)
    errors = s.schema_errors(case.message, case.payload)
    assert case.keyword in errors, (
        f"schema: expected a {case.keyword} error, got {errors or 'none'}"
    )
    assert not s.model_accepts(case.message, case.payload), "the model accepted it"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ACCEPTED])
def test_boundary_payload_is_accepted_by_schema_and_model(case: Case) -> None:
    s = subject(case.spec)
    assert s.schema_errors(case.message, case.payload) == set()
    assert s.model_accepts(case.message, case.payload)


# -- hypothesis: mutate the examples' leaves ---------------------------------------------------
_TEXT = st.characters(exclude_categories=["Cs"])
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
)


def _date_times() -> st.SearchStrategy[str]:
    moments = st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES
    )
    return moments.map(lambda m: m.isoformat().replace("+00:00", "Z"))


def _numbers(schema: dict[str, Any], kind: str) -> st.SearchStrategy[Any]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**53)))
    high = schema.get("maximum", schema.get("exclusiveMaximum", 2**53))
    inside = lambda n: _within(schema, n)  # noqa: E731
    step = schema.get("multipleOf")
    if step is not None:
        unit = Fraction(repr(step))
        ks = st.integers(int(Fraction(repr(low)) / unit) - 1, int(Fraction(repr(high)) / unit) + 1)
        cast: Callable[[Fraction], Any] = int if kind == "integer" else float
        return ks.map(lambda k: cast(unit * k)).filter(inside)
    if kind == "integer":
        return st.integers(int(low), int(high)).filter(inside)
    return st.floats(low, high, allow_nan=False, allow_infinity=False).filter(inside)


def valid_leaf(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` (a leaf: no properties)."""
    nullable = "null" in _kinds(schema)
    if nullable and _kinds(schema) & {"object", "array"}:
        return st.none()  # a null where an object or a list may be: the leaf is the null
    inner = _valid_leaf(schema)
    return st.one_of(st.none(), inner) if nullable else inner


def _valid_leaf(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from([v for v in schema["enum"] if v is not None])
    kind = (_kinds(schema) - {"null"} or {"null"}).pop()
    if kind in ("integer", "number"):
        return _numbers(schema, kind)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return st.uuids().flatmap(lambda u: st.sampled_from([str(u), str(u).upper()]))
        if fmt == "date-time":
            return _date_times()
        if fmt == "date":
            return st.dates(date(1900, 1, 1), date(2200, 1, 1)).map(date.isoformat)
        if fmt is not None:
            return st.sampled_from([SAMPLE_FORMATS[fmt], *[g for _, g in GOOD_FORMATS[fmt]]])
        low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
        if "pattern" in schema:
            regex = ecma_regex(schema["pattern"])
            return st.from_regex(regex, fullmatch=True, alphabet=_TEXT).filter(
                lambda s: low <= len(s) <= high
            )
        return st.text(_TEXT, min_size=low, max_size=min(high, low + 40))
    raise AssertionError(f"no strategy for {schema}")


def near_miss_leaf(schema: dict[str, Any], example: Any) -> st.SearchStrategy[Any]:
    """Values around the edges of `schema`, valid or not; half of the draws are picked edges, so
    that each is tried often."""
    edges: list[Any] = [None, [], {}, True, False, "42", 42, 4.5, 42.0, 0, -1]
    extra: list[st.SearchStrategy[Any]] = []
    if "const" in schema or "enum" in schema:
        edges += [f"{example}x", str(example).lower(), "", 1, 1.0, 2]
    kinds = _kinds(schema)
    if kinds & {"integer", "number"}:
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**53)))
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**53))
        step = schema.get("multipleOf", 1)
        edges += [low - step, low, high, high + step, low + step / 2, float(low), 1e-9]
        if isinstance(example, int | float) and not isinstance(example, bool):
            edges += [example + step / 2, float(example), example * 3]
        extra.append(
            st.integers(int(low) - 3, int(low) + 3) | st.integers(int(high) - 3, int(high) + 3)
        )
    if "string" in kinds and isinstance(example, str):
        fmt = schema.get("format")
        if fmt is not None:
            edges += [example[:-1], example + "0", example + "\n", example + " ", example.upper()]
            edges += [bad for _, bad in BAD_FORMATS.get(fmt, [])]
        else:
            high = schema.get("maxLength", 40)
            edges += [
                example + "\n",
                example + " ",
                " " + example,
                example.upper(),
                example[:-1],
                example + "/",
                "/" + example,
                example + "\x00",
                re.sub("[0-9]", "٣", example),
                example + example[-1:] * max(0, high + 1 - len(example)),
            ]
            extra.append(st.text(_TEXT, max_size=high + 2))
    picked = st.sampled_from(edges)
    return st.one_of(valid_leaf(schema), picked, picked, *extra)


def payloads(s: Subject, schema: Any, example: Any) -> st.SearchStrategy[Any]:
    """Valid payloads shaped like `example`, each leaf kept or redrawn within its schema."""
    schema = s.deref(schema)
    if isinstance(example, dict):
        props = schema.get("properties", {})
        return st.fixed_dictionaries(
            {k: payloads(s, props.get(k, {}), v) for k, v in example.items()}
        )
    if isinstance(example, list):
        if not example:
            return st.just([])
        low, high = schema.get("minItems", 0), schema.get("maxItems", 3)
        return st.lists(
            payloads(s, schema.get("items", {}), example[0]),
            min_size=low,
            max_size=max(low, min(high, 3)),
        )
    return st.one_of(st.just(example), valid_leaf(schema))


def _examples() -> st.SearchStrategy[tuple[str, str, Any]]:
    return st.sampled_from([(sp, c, p) for sp, c, _, p in EXAMPLES])


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(data=st.data())
def test_mutated_valid_payloads_are_accepted_by_both(data: st.DataObject) -> None:
    spec, class_name, example = data.draw(_examples())
    s = subject(spec)
    payload = data.draw(payloads(s, s.defs[class_name], example))
    assert s.schema_errors(class_name, payload) == set(), payload
    parsed = s.model(class_name).model_validate_json(json.dumps(payload))
    dumped = parsed.model_dump(mode="json", by_alias=True)
    assert s.schema_errors(class_name, dumped) == set()
    assert normalise(s, s.defs[class_name], dumped) == normalise(s, s.defs[class_name], payload)


def leaf_paths(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaf_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaf_paths(child, (*path, index))
    else:
        yield path


def object_paths(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    if isinstance(value, dict):
        yield path
        for key, child in value.items():
            yield from object_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from object_paths(child, (*path, index))


@_SETTINGS
@given(data=st.data())
def test_schema_valid_iff_model_valid(data: st.DataObject) -> None:
    """One leaf of an example redrawn around its schema's edges, and sometimes one structural
    change (a key dropped or an unknown one added): both sides must give the same verdict."""
    spec, class_name, example = data.draw(_examples())
    s = subject(spec)
    path = data.draw(st.sampled_from(list(leaf_paths(example))))
    schema = s.schema_at(class_name, path)
    payload = with_value(example, path, data.draw(near_miss_leaf(schema, get_in(example, path))))
    if data.draw(st.booleans()):
        where = data.draw(st.sampled_from(list(object_paths(payload))))
        target = get_in(payload, where)
        key = data.draw(st.sampled_from([*sorted(target), "unexpectedField"]))
        if key in target:
            del target[key]
        else:
            target[key] = "surprise"
    by_schema = not s.schema_errors(class_name, payload)
    event("schema-valid" if by_schema else "schema-invalid")
    assert by_schema == s.model_accepts(class_name, payload), (by_schema, payload)


def test_pattern_semantics_match_pydantic() -> None:
    """`$` ends the text for both sides (pydantic's regex engine and formats.Validator)."""
    assert ecma_regex("^[a-z]+$").search("abc\n") is None
    assert ecma_regex("^[$]+$").search("$$") is not None
    assert ecma_regex(r"^a\$$").search("a$") is not None
    assert ecma_regex(r"^\d+$").search("١٢٣") is None
    assert re.search("^[a-z]+$", "abc\n") is not None  # why the override exists


def test_optional_fields_absent_and_null() -> None:
    """On the shop spec: an optional field may be absent (its default, when it has one, is
    filled in); null is refused unless its type allows null — by both sides."""
    s = subject("shop")
    _, example = s.examples_of("OrderPlaced")[0]
    line = example["items"][0]
    absent = {k: v for k, v in line.items() if k != "giftWrap"}
    payload = {**example, "items": [absent]}
    assert s.schema_errors("OrderPlaced", payload) == set()
    parsed = s.model("OrderPlaced").model_validate_json(json.dumps(payload))
    assert parsed.items[0].gift_wrap is False  # type: ignore[attr-defined]
    for key, allowed in (("giftWrap", False), ("coupon", False), ("billTo", True)):
        target = (
            {**example, "items": [{**line, key: None}]}
            if key == "giftWrap"
            else {
                **example,
                key: None,
            }
        )
        assert (not s.schema_errors("OrderPlaced", target)) is allowed, key
        assert s.model_accepts("OrderPlaced", target) is allowed, key
