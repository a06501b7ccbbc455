"""The generated models accept exactly what the spec's JSON Schemas accept.

For every JSON message of asyncapi/asyncapi.yaml: its examples validate against its schema
(`Document.models_schema`, checked by `generator.formats.Validator`, Draft 2020-12 with ECMA
`pattern`s, and `generator.formats.format_checker`) and parse into `generated.models`, whose
dump validates again and round-trips. A mutation table walked over every field of every
message (recursively) makes payloads that BOTH must reject, and boundary payloads that both
must accept; hypothesis mutates the examples' leaves and checks schema-valid ⇔ model-valid.

The one place where the two sides knowingly disagree (1.0 as an integer) is pinned by
`test_integral_float_is_an_integer_only_for_the_schema`, with the reason. The lenient spellings
pydantic's own parsers take for `uuid` and `date-time` are ordinary rejected cases: the
runtime's EventModel refuses them.
"""

from __future__ import annotations

import copy
import importlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

import generated.consumers
import generated.models
from generator.build import build
from generator.formats import Validator, ecma_regex, format_checker
from generator.load import load_spec
from tests.golden import regen

REPO = Path(__file__).resolve().parents[2]
SPEC = load_spec(REPO / "asyncapi" / "asyncapi.yaml", "asyncapi/asyncapi.yaml")
DOC, _ = build(SPEC)
SCHEMA: dict[str, Any] = json.loads(DOC.models_schema)
DEFS: dict[str, Any] = SCHEMA["$defs"]
MESSAGES = [m for m in DOC.messages if m.is_json]  # DeadLetter is opaque bytes: no schema
Path_ = tuple[str | int, ...]


def examples_of(class_name: str) -> list[tuple[str, Any]]:
    message = next(m for m in MESSAGES if m.class_name == class_name)
    raw = SPEC.get(message.pointer)
    return [
        (str(e.get("name", i)), e["payload"])
        for i, e in enumerate(raw.get("examples", []))
        if "payload" in e
    ]


def validator(class_name: str) -> Draft202012Validator:
    return Validator({**SCHEMA, "$ref": f"#/$defs/{class_name}"}, format_checker=format_checker)


VALIDATORS = {m.class_name: validator(m.class_name) for m in MESSAGES}


def model(class_name: str) -> type[BaseModel]:
    cls = getattr(generated.models, class_name)
    assert isinstance(cls, type) and issubclass(cls, BaseModel)
    return cls


def schema_errors(class_name: str, payload: Any) -> set[str]:
    """The keywords (`type`, `format`, ...) that reject `payload`; empty when it is valid."""
    return {str(e.validator) for e in VALIDATORS[class_name].iter_errors(payload)}


def model_accepts(class_name: str, payload: Any) -> bool:
    try:
        model(class_name).model_validate_json(json.dumps(payload))
    except ValidationError:
        return False
    return True


def deref(schema: Any) -> dict[str, Any]:
    """`schema` with its `$ref` chain merged in (siblings of `$ref` win, as in 2020-12)."""
    if not isinstance(schema, dict):
        return {}
    merged: dict[str, Any] = {}
    while True:
        merged = {**schema, **merged}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        schema = DEFS[ref.rsplit("/", 1)[1]]
    merged.pop("$ref", None)
    return merged


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
        ("1234", "1234"),
        ("too-short", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f7"),
        ("too-long", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6f701"),
        ("not-hex", "04d05b5f-3a4c-4d8e-9f10-2b3c4d5e6fzz"),
        # Spellings pydantic's UUID parser takes but format uuid does not (EventModel refuses them).
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
        # Spellings pydantic's date-time parser takes but RFC 3339 does not (EventModel refuses).
        ("no-seconds", "2026-11-20T10:15Z"),
        ("space-separator", "2026-11-20 10:15:30Z"),
        ("offset-without-colon", "2026-11-20T10:15:30+0100"),
        ("comma-fraction", "2026-11-20T10:15:30,5Z"),
        ("unix-seconds-in-a-string", "1700000000"),
        ("small-number-in-a-string", "42"),
        ("trailing-newline", "2026-11-20T10:15:30Z\n"),
    ],
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
]


@dataclass(frozen=True)
class Case:
    message: str
    path: Path_
    name: str
    payload: Any
    keyword: str
    """The JSON Schema keyword that must reject it; empty for a payload both must accept."""

    @property
    def id(self) -> str:
        return f"{self.message}:{dotted(self.path)}:{self.name}"


def base_for(class_name: str, path: Path_) -> Any | None:
    """The first example of the message in which `path` exists."""
    return next((p for _, p in examples_of(class_name) if has_path(p, path)), None)


def object_cases(class_name: str, schema: dict[str, Any], path: Path_) -> Iterator[Case]:
    base = base_for(class_name, path)
    if base is None:
        return
    here = get_in(base, path)
    if schema.get("additionalProperties") is False:
        extra = {**here, "unexpectedField": "surprise"}
        yield Case(
            class_name, path, "unknown-field", _put(base, path, extra), "additionalProperties"
        )
    for name in schema.get("required", []):
        child = (*path, name)
        source = base_for(class_name, child)
        if source is not None:
            yield Case(class_name, child, "missing-required", without(source, child), "required")
    for name, sub in schema.get("properties", {}).items():
        yield from field_cases(class_name, deref(sub), (*path, name))


def _put(base: Any, path: Path_, value: Any) -> Any:
    return with_value(base, path, value) if path else copy.deepcopy(value)


def field_cases(class_name: str, schema: dict[str, Any], path: Path_) -> Iterator[Case]:
    base = base_for(class_name, path)
    assert base is not None, (
        f"{class_name}.{dotted(path)} appears in no example: add an example that has it, "
        "so that the conformance tests cover it"
    )
    value = get_in(base, path)

    def case(name: str, new: Any, keyword: str) -> Case:
        return Case(class_name, path, name, with_value(base, path, new), keyword)

    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else set()
    if kinds:
        accepted = set().union(*(ACCEPTED_BY[k] for k in kinds))
        for label, wrong in WRONG_TYPES.items():
            if label not in accepted:
                yield case(f"wrong-type-{label}", wrong, "type")
    if "const" in schema:
        yield case("wrong-const", f"Not{schema['const']}", "const")
        for other in MESSAGES:
            if other.event_type not in (None, schema["const"]) and path[-1] == "eventType":
                yield case(f"other-event-type-{other.event_type}", other.event_type, "const")
    if "enum" in schema:
        yield case("not-in-enum", "not-in-the-enum", "enum")
    for label, bad in BAD_FORMATS.get(schema.get("format", ""), []):
        yield case(f"bad-{schema['format']}-{label}", bad, "format")
    if schema.get("format") == "date-time":
        yield case("date-time-as-number", 1700000000, "type")
    yield from bound_cases(schema, value, case)
    yield from string_cases(schema, value, case)
    if "object" in kinds or "properties" in schema:
        yield from object_cases(class_name, schema, path)
    if "array" in kinds and isinstance(value, list):
        yield from array_cases(class_name, schema, path, value, case)


def bound_cases(schema: dict[str, Any], value: Any, case: Any) -> Iterator[Case]:
    if "minimum" in schema:
        low = schema["minimum"]
        yield case("below-minimum", low - 1, "minimum")
        yield case("at-minimum", low, "")
        if low <= 0 < schema.get("maximum", 1):
            yield case("negative", -1, "minimum")
    if "maximum" in schema:
        high = schema["maximum"]
        yield case("above-maximum", high + 1, "maximum")
        yield case("at-maximum", high, "")
    if "exclusiveMinimum" in schema:
        yield case("at-exclusive-minimum", schema["exclusiveMinimum"], "exclusiveMinimum")
    if "exclusiveMaximum" in schema:
        yield case("at-exclusive-maximum", schema["exclusiveMaximum"], "exclusiveMaximum")


def string_cases(schema: dict[str, Any], value: Any, case: Any) -> Iterator[Case]:
    if not isinstance(value, str):
        return
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    regex = ecma_regex(schema["pattern"]) if "pattern" in schema else None

    def fits_pattern(text: str) -> bool:
        return regex is None or regex.search(text) is not None

    if low > 0:
        yield case("too-short", value[: low - 1], "minLength")
        if low > 1:
            yield case("empty", "", "minLength")
        if fits_pattern(value[:low]):
            yield case("at-min-length", value[:low], "")
    if high is not None:
        pad = value[-1:] or "a"
        yield case("too-long", value + pad * (high + 1 - len(value)), "maxLength")
        if fits_pattern((value + pad * high)[:high]):
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


def array_cases(
    class_name: str, schema: dict[str, Any], path: Path_, value: list[Any], case: Any
) -> Iterator[Case]:
    if "minItems" in schema and schema["minItems"] > 0:
        yield case("too-few-items", value[: schema["minItems"] - 1], "minItems")
    if "maxItems" in schema and value:
        yield case("too-many-items", value + [value[0]] * schema["maxItems"], "maxItems")
    if value and isinstance(schema.get("items"), dict):
        yield from field_cases(class_name, deref(schema["items"]), (*path, 0))


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for message in MESSAGES:
        cases.extend(object_cases(message.class_name, deref(DEFS[message.class_name]), ()))
    return cases


CASES = all_cases()
REJECTED = [c for c in CASES if c.keyword]
ACCEPTED = [c for c in CASES if not c.keyword]
EXAMPLES = [
    (m.class_name, name, payload) for m in MESSAGES for name, payload in examples_of(m.class_name)
]


def test_case_count(capsys: pytest.CaptureFixture[str]) -> None:
    """Reports how many cases the table made; fails if a message lost its examples or fields."""
    total = len(EXAMPLES) + len(CASES)
    with capsys.disabled():
        print(
            f"\nconformance: {len(EXAMPLES)} examples, {len(REJECTED)} rejected and "
            f"{len(ACCEPTED)} accepted mutations = {total} cases over {len(MESSAGES)} messages"
        )
    assert MESSAGES, "the spec has no JSON messages"
    for message in MESSAGES:
        mine = [c for c in CASES if c.message == message.class_name]
        assert len(examples_of(message.class_name)) >= 2, message.key
        assert len(mine) >= 20, (message.key, len(mine))


def test_every_field_is_mutated() -> None:
    """Each property of each message (nested ones included) has at least one rejected case."""
    covered = {(c.message, c.path) for c in REJECTED}

    def walk(class_name: str, schema: dict[str, Any], path: Path_) -> Iterator[Path_]:
        for name, sub in schema.get("properties", {}).items():
            yield (*path, name)
            yield from walk(class_name, deref(sub), (*path, name))

    for message in MESSAGES:
        for path in walk(message.class_name, deref(DEFS[message.class_name]), ()):
            assert (message.class_name, path) in covered, (message.class_name, dotted(path))


# -- examples ---------------------------------------------------------------------------------
def normalise(schema: Any, value: Any) -> Any:
    """Values as the model means them: date-times as instants with their offset, uuids as UUIDs."""
    schema = deref(schema)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        filled = {k: s["default"] for k, s in props.items() if "default" in deref(s)} | value
        return {k: normalise(props.get(k, {}), v) for k, v in filled.items()}
    if isinstance(value, list):
        return [normalise(schema.get("items", {}), v) for v in value]
    if isinstance(value, str) and schema.get("format") == "date-time":
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        return (moment, moment.utcoffset())
    if isinstance(value, str) and schema.get("format") == "uuid":
        return UUID(value)
    return value


@pytest.mark.parametrize(
    ("class_name", "payload"),
    [pytest.param(c, p, id=f"{c}:{n}") for c, n, p in EXAMPLES],
)
def test_example_conforms_and_round_trips(class_name: str, payload: Any) -> None:
    assert schema_errors(class_name, payload) == set()
    parsed = model(class_name).model_validate_json(json.dumps(payload))
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert schema_errors(class_name, dumped) == set()
    assert model(class_name).model_validate_json(json.dumps(dumped)) == parsed
    assert normalise(DEFS[class_name], dumped) == normalise(DEFS[class_name], payload)
    again = model(class_name).model_validate_json(parsed.model_dump_json(by_alias=True))
    assert again == parsed


def test_receive_endpoints_route_examples_to_their_own_type() -> None:
    """Each consumer decodes the examples of the messages it receives into the right class, and
    rejects those of the other messages."""
    checked = 0
    for op in DOC.receivers:
        assert op.consumer is not None
        endpoint = generated.consumers.ENDPOINTS[op.consumer.durable]
        mine = {DOC.message(k).class_name for k in op.messages}
        for class_name, _, payload in EXAMPLES:
            data = json.dumps(payload).encode()
            if class_name in mine:
                assert type(endpoint.decode(data)).__name__ == class_name
            else:
                with pytest.raises(ValidationError):
                    endpoint.decode(data)
            checked += 1
    assert checked >= len(EXAMPLES)


# -- the mutation table, both ways ------------------------------------------------------------
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in REJECTED])
def test_invalid_payload_is_rejected_by_schema_and_model(case: Case) -> None:
    errors = schema_errors(case.message, case.payload)
    assert case.keyword in errors, (
        f"schema: expected a {case.keyword} error, got {errors or 'none'}"
    )
    assert not model_accepts(case.message, case.payload), "the model accepted it"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ACCEPTED])
def test_boundary_payload_is_accepted_by_schema_and_model(case: Case) -> None:
    assert schema_errors(case.message, case.payload) == set()
    assert model_accepts(case.message, case.payload)


# -- numbers as JSON Schema compares them ------------------------------------------------------
def test_integral_float_is_an_integer_for_both() -> None:
    """JSON Schema counts 1.0 as an integer (it compares numbers, not spellings): so do the
    models, which read it as the int 1."""
    integer_fields = [
        c
        for c in REJECTED
        if c.name == "wrong-type-float"
        and c.keyword == "type"
        and deref(_schema_at(c.message, c.path)).get("type") == "integer"
    ]
    assert integer_fields, "no integer field in the spec"
    case = integer_fields[0]
    base = base_for(case.message, case.path)
    payload = with_value(base, case.path, float(get_in(base, case.path)))
    assert schema_errors(case.message, payload) == set()
    assert model_accepts(case.message, payload)


def _schema_at(class_name: str, path: Path_) -> dict[str, Any]:
    schema = deref(DEFS[class_name])
    for key in path:
        schema = deref(schema["items"] if isinstance(key, int) else schema["properties"][key])
    return schema


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


def valid_leaf(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy `schema` (a leaf: no properties)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**53)), schema.get("maximum", 2**53))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "uuid":
            return st.uuids().flatmap(lambda u: st.sampled_from([str(u), str(u).upper()]))
        if fmt == "date-time":
            return _date_times()
        low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
        if "pattern" in schema:
            regex = ecma_regex(schema["pattern"])
            return st.from_regex(regex, fullmatch=True, alphabet=_TEXT).filter(
                lambda s: low <= len(s) <= high
            )
        return st.text(_TEXT, min_size=low, max_size=min(high, low + 40))
    raise AssertionError(f"no strategy for {schema}")


def near_miss_leaf(schema: dict[str, Any], example: Any) -> st.SearchStrategy[Any]:
    """Values around the edges of `schema`, valid or not, avoiding the known divergences; half
    of the draws are picked edges, so that each is tried often."""
    edges: list[Any] = [None, [], {}, True, "42", 42, 4.5]
    extra: list[st.SearchStrategy[Any]] = []
    if "const" in schema or "enum" in schema:
        edges += [f"{example}x", str(example).lower(), ""]
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum", -(2**53)), schema.get("maximum", 2**53)
        edges += [low - 1, low, high, high + 1]
        extra.append(st.integers(low - 3, low + 3) | st.integers(high - 3, high + 3))
    if kind == "string" and isinstance(example, str):
        fmt = schema.get("format")
        if fmt == "uuid":
            edges += [example[:-1], example + "0", example.replace("-", "", 1), example + "\n"]
        elif fmt == "date-time":
            edges += [
                example[:19],
                example[:10],
                example.replace("-", "/", 1),
                example + "x",
                example[:5] + "13" + example[7:],
                example + "\n",
            ]
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
                example + example[-1:] * max(0, high + 1 - len(example)),
            ]
            extra.append(st.text(_TEXT, max_size=high + 2))
    picked = st.sampled_from(edges)
    return st.one_of(valid_leaf(schema), picked, picked, *extra)


def payloads(schema: Any, example: Any) -> st.SearchStrategy[Any]:
    """Valid payloads shaped like `example`, each leaf kept or redrawn within its schema."""
    schema = deref(schema)
    if isinstance(example, dict):
        props = schema.get("properties", {})
        return st.fixed_dictionaries({k: payloads(props.get(k, {}), v) for k, v in example.items()})
    if isinstance(example, list):
        if not example:
            return st.just([])
        return st.lists(payloads(schema.get("items", {}), example[0]), max_size=3)
    return st.one_of(st.just(example), valid_leaf(schema))


def _examples() -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from([(c, p) for c, _, p in EXAMPLES])


_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(data=st.data())
def test_mutated_valid_payloads_are_accepted_by_both(data: st.DataObject) -> None:
    class_name, example = data.draw(_examples())
    payload = data.draw(payloads(DEFS[class_name], example))
    assert schema_errors(class_name, payload) == set(), payload
    parsed = model(class_name).model_validate_json(json.dumps(payload))
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert schema_errors(class_name, dumped) == set()
    assert normalise(DEFS[class_name], dumped) == normalise(DEFS[class_name], payload)


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


@_SETTINGS
@given(data=st.data())
def test_schema_valid_iff_model_valid(data: st.DataObject) -> None:
    """One leaf of an example redrawn around its schema's edges, and sometimes one structural
    change (a key dropped or an unknown one added): both sides must give the same verdict."""
    class_name, example = data.draw(_examples())
    path = data.draw(st.sampled_from(list(leaf_paths(example))))
    schema = _schema_at(class_name, path)
    payload = with_value(example, path, data.draw(near_miss_leaf(schema, get_in(example, path))))
    if data.draw(st.booleans()):
        where = data.draw(st.sampled_from(list(object_paths(payload))))
        target = get_in(payload, where)
        key = data.draw(st.sampled_from([*sorted(target), "unexpectedField"]))
        if key in target:
            del target[key]
        else:
            target[key] = "surprise"
    by_schema = not schema_errors(class_name, payload)
    event("schema-valid" if by_schema else "schema-invalid")
    assert by_schema == model_accepts(class_name, payload), (by_schema, payload)


def test_pattern_semantics_match_pydantic() -> None:
    """`$` ends the text for both sides (pydantic's regex engine and formats.Validator)."""
    assert ecma_regex("^[a-z]+$").search("abc\n") is None
    assert ecma_regex("^[$]+$").search("$$") is not None
    assert ecma_regex(r"^a\$$").search("a$") is not None
    assert re.search("^[a-z]+$", "abc\n") is not None  # why the override exists


# -- optional fields (no message of the real spec has one yet) --------------------------------
def test_optional_field_rejects_null(tmp_path: Path) -> None:
    """On the rich_payloads golden case, whose Reading has optional `battery` (with a default)
    and `location` (without): absent is fine, an explicit null is refused by both sides, as
    the models use the MISSING sentinel and strict nullability."""
    case = regen.GOLDEN / "rich_payloads"
    doc, _ = build(load_spec(case / "spec.yaml"))
    schema = json.loads(doc.models_schema)
    check = Validator({**schema, "$ref": "#/$defs/Reading"}, format_checker=format_checker)
    shutil.copytree(case / regen.EXPECTED_DIR, tmp_path / "golden_rich_null")
    sys.path.insert(0, str(tmp_path))
    try:
        reading = importlib.import_module("golden_rich_null.models").Reading
    finally:
        sys.path.remove(str(tmp_path))
    payload = {
        "eventType": "Reading",
        "sensorId": "AB-0001",
        "samples": [{"value": 1.5, "unit": "celsius"}],
        "battery": None,
    }
    assert not check.is_valid(payload)
    with pytest.raises(ValidationError):
        reading.model_validate_json(json.dumps(payload))
    del payload["battery"]
    assert check.is_valid(payload)
    parsed = reading.model_validate_json(json.dumps(payload))
    assert parsed.battery == 100
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "location" not in dumped
    assert check.is_valid(dumped)
