"""The JSON Schema subset of payloads: what the models enforce exactly, and what is refused.

Every keyword a payload schema may use is listed here, with the types it applies to; anything
else is refused with a located error that names the keyword and what to write instead, because
a keyword the models ignore would let them accept what the schema refuses. The table in
asyncapi/EXTENSIONS.md is this module in prose.

`wire_rule` says, for one field, what pydantic's types do not check as JSON Schema does; the
runtime's EventModel applies it (handwritten/runtime/wire.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from jsonschema import Draft202012Validator
from pydantic import Field, TypeAdapter
from pydantic_core import SchemaError

from generator import formats
from generator.diagnostics import escape_pointer_token

ANNOTATIONS = frozenset(
    {"title", "description", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
)
"""Keywords that say something to people and nothing to validation."""

BY_TYPE: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "integer": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
    "boolean": frozenset(),
    "null": frozenset(),
}
"""The validation keywords each type may use."""

GENERAL = frozenset({"type", "enum", "const", "default", "$ref", "anyOf", "oneOf"})

_VARIANTS = (
    "split the variants into messages of their own, routed on eventType, or make the "
    "field nullable with type: [T, 'null'] (anyOf/oneOf of one schema and {type: 'null'} "
    "is supported)"
)
_CONDITIONS = (
    "split the cases into messages of their own, routed on eventType, or into separate "
    "optional fields; check what remains in the handler (raise PermanentError)"
)
_CLOSED = (
    "payloads are closed: list every property under properties, with additionalProperties: false"
)
REFUSED: dict[str, str] = {
    "allOf": "write the merged schema out, or $ref one shared schema",
    "anyOf": _VARIANTS,
    "oneOf": _VARIANTS,
    "not": "say what is allowed (enum, const, pattern, bounds) rather than what is not",
    "if": _CONDITIONS,
    "then": _CONDITIONS,
    "else": _CONDITIONS,
    "uniqueItems": "pydantic lists keep duplicates: drop it and refuse duplicates in the handler "
    "(raise PermanentError), or key the items by their unique value",
    "prefixItems": "tuples are not supported: use an object with named properties",
    "contains": "check it in the handler (raise PermanentError)",
    "minContains": "check it in the handler (raise PermanentError)",
    "maxContains": "check it in the handler (raise PermanentError)",
    "unevaluatedItems": "use items",
    "unevaluatedProperties": _CLOSED,
    "patternProperties": _CLOSED,
    "propertyNames": _CLOSED,
    "minProperties": "make the properties that must be there required",
    "maxProperties": _CLOSED,
    "dependentRequired": "make the properties required, or split the message",
    "dependentSchemas": "make the properties required, or split the message",
    "dependencies": "make the properties required, or split the message",
    "$defs": "define shared schemas under components.schemas",
    "definitions": "define shared schemas under components.schemas",
    "$id": "refer to shared schemas with $ref: '#/components/schemas/Name'",
    "$anchor": "refer to shared schemas with $ref: '#/components/schemas/Name'",
    "$dynamicRef": "refer to shared schemas with $ref: '#/components/schemas/Name'",
    "$dynamicAnchor": "refer to shared schemas with $ref: '#/components/schemas/Name'",
    "$schema": "drop it: payloads are JSON Schema 2020-12 as AsyncAPI 3.0 says",
    "contentEncoding": "send the content as JSON fields, or as a message of its own contentType",
    "contentMediaType": "send the content as JSON fields, or as a message of its own contentType",
    "contentSchema": "send the content as JSON fields, or as a message of its own contentType",
    "nullable": "JSON Schema has no nullable: write type: [T, 'null']",
    "discriminator": "route variants as messages of their own on eventType",
}
"""Keywords outside the subset, each with what to write instead."""

_COMPOSITION = frozenset({"allOf", "anyOf", "oneOf", "not", "if", "then", "else"})
"""Refused keywords that stand in for a type: a schema made of them is not also `no-type`."""

PARSED_FORMATS = frozenset({"date", "date-time", "uuid"})
"""Formats whose fields the models hold parsed (date, datetime, UUID); the others are strings."""


@dataclass(frozen=True, slots=True)
class Problem:
    pointer: str
    code: str
    message: str
    hint: str


def check_metaschema(schema: Any, pointer: str) -> Iterator[Problem]:
    """Where `schema` is not a JSON Schema at all (`maximum: "1e20"`, as YAML reads `1e20`)."""
    for error in _METASCHEMA.iter_errors(schema):
        path = "".join(f"/{escape_pointer_token(p)}" for p in error.absolute_path)
        yield Problem(
            pointer + path,
            "invalid-schema",
            f"not a valid JSON Schema: {error.message}",
            "fix the keyword's value (YAML reads 1e20 as a string: write 1.0e+20)",
        )


_METASCHEMA = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def check(schema: Any, pointer: str) -> Iterator[Problem]:
    """Every way `schema` (written at `pointer`) leaves the subset. `$ref`s are not followed:
    the schemas they name are checked where they are written."""
    if not isinstance(schema, dict):
        yield Problem(
            pointer,
            "unsupported-schema",
            f"the schema {schema!r} is not an object",
            "write the schema out (true and false schemas are not supported)",
        )
        return
    keys = {k for k in schema if k not in ANNOTATIONS and not k.startswith("x-")}
    if "$ref" in schema:
        for key in sorted(keys - {"$ref"}):
            yield Problem(
                _at(pointer, key),
                "ref-sibling",
                f"{key} beside $ref is not supported",
                "put it in the referenced schema, or write this schema out",
            )
        return
    composed = False
    for key in sorted(keys):
        if key in REFUSED and not (key in ("anyOf", "oneOf") and _nullable_branch(schema[key])):
            composed = composed or key in _COMPOSITION
            yield Problem(
                _at(pointer, key), "unsupported-keyword", f"{key} is not supported", REFUSED[key]
            )
        elif (
            key not in REFUSED
            and key not in GENERAL
            and not any(key in keywords for keywords in BY_TYPE.values())
        ):
            yield Problem(
                _at(pointer, key),
                "unknown-keyword",
                f"{key} is not a JSON Schema keyword of the supported subset",
                "see the subset in asyncapi/EXTENSIONS.md; notes for people go in description "
                "or under an x- key",
            )
    for key in ("anyOf", "oneOf"):
        branch = _nullable_branch(schema.get(key))
        if branch is not None:
            index, inner = branch
            for other in sorted(keys - {key, "default"}):
                yield Problem(
                    _at(pointer, other),
                    "unsupported-keyword",
                    f"{other} beside {key} is not supported",
                    f"move it into the non-null branch of {key}",
                )
            yield from check(inner, f"{pointer}/{key}/{index}")
            return
    types = _types(schema)
    if types is None:
        yield Problem(
            _at(pointer, "type"),
            "unsupported-type",
            f"type {schema.get('type')!r} is not supported",
            "use one type, or [T, 'null'] for a nullable T",
        )
        return
    base = _base_type(schema, types)
    if base is None and ("enum" in schema or "const" in schema):
        # the values have no single type: that is what is wrong, not a missing `type`
        yield from _check_values(schema, pointer, None, "null" in types)
        return
    if base is None:
        if composed:
            return
        yield Problem(
            pointer,
            "no-type",
            "the schema has no type",
            "say what the value is: type: string, integer, number, boolean, object or array",
        )
        return
    for key in sorted(keys):
        owners = [t for t, keywords in BY_TYPE.items() if key in keywords]
        if owners and base not in owners:
            yield Problem(
                _at(pointer, key),
                "keyword-type-mismatch",
                f"{key} applies to {' and '.join(owners)} values, not to {base}",
                f"drop it, or make the type {owners[0]}",
            )
    yield from _check_values(schema, pointer, base, "null" in types)
    if base == "object":
        yield from _check_object(schema, pointer)
    elif base == "array" and "items" in schema:
        yield from check(schema["items"], f"{pointer}/items")
    elif base == "string":
        yield from _check_string(schema, pointer)
    elif base in ("integer", "number"):
        divisor = schema.get("multipleOf")
        if divisor is not None and not (_is_number(divisor) and divisor > 0):
            yield Problem(
                _at(pointer, "multipleOf"),
                "invalid-keyword",
                f"multipleOf {divisor!r} is not a positive number",
                "write a positive number, such as 0.01",
            )


def _check_object(schema: dict[str, Any], pointer: str) -> Iterator[Problem]:
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield Problem(
            _at(pointer, "additionalProperties"),
            "open-object",
            "additionalProperties with a schema (a map of free keys) is not supported",
            "list the keys under properties with additionalProperties: false, or send the "
            "entries as an array of objects such as {key, value}",
        )
    elif extra is not False:
        yield Problem(
            pointer
            if "additionalProperties" not in schema
            else _at(pointer, "additionalProperties"),
            "open-object",
            "the object is open: it accepts properties the schema does not list",
            "add additionalProperties: false (payloads are closed: a new field goes into the "
            "spec first, so that consumers learn of it)",
        )
    properties = schema.get("properties", {})
    refused_here = {k for k in schema if k in REFUSED}  # reported already, and say why
    if properties == {} and schema.get("additionalProperties") is False and not refused_here:
        yield Problem(
            pointer,
            "empty-object",
            "the object has no properties, so it can only be {}",
            "list its properties, or drop it (a marker is better a boolean or a const)",
        )
    if not isinstance(properties, dict):
        yield Problem(
            _at(pointer, "properties"), "invalid-keyword", "properties is not a mapping", ""
        )
        return
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        yield Problem(
            _at(pointer, "required"),
            "invalid-keyword",
            "required is not a list of property names",
            "",
        )
        required = []
    for i, name in enumerate(required):
        if name not in properties:
            yield Problem(
                f"{pointer}/required/{i}",
                "unknown-required",
                f"required property {name!r} is not listed under properties",
                "declare it under properties, or drop it from required",
            )
    for name, sub in properties.items():
        child = f"{pointer}/properties/{escape_pointer_token(name)}"
        if name in required and isinstance(sub, dict) and "default" in sub:
            yield Problem(
                _at(child, "default"),
                "default-on-required",
                f"required property {name!r} has a default, which is never used",
                "drop the default, or make the property optional",
            )
        yield from check(sub, child)


def _check_string(schema: dict[str, Any], pointer: str) -> Iterator[Problem]:
    name = schema.get("format")
    if name is not None and name not in formats.FORMATS:
        yield Problem(
            _at(pointer, "format"),
            "unsupported-format",
            f"format {name!r} is not supported",
            f"use one of {', '.join(sorted(formats.FORMATS))}, or a pattern",
        )
    if name in PARSED_FORMATS:
        for key in sorted({"minLength", "maxLength", "pattern"} & set(schema)):
            yield Problem(
                _at(pointer, key),
                "keyword-format-mismatch",
                f"{key} beside format {name} is not supported: the model holds the parsed "
                "value, not its text",
                f"drop {key}: format {name} already fixes the spelling",
            )
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        problem = pattern_problem(pattern)
        if problem:
            yield Problem(
                _at(pointer, "pattern"),
                "invalid-pattern",
                f"pattern {pattern!r} {problem}",
                "rewrite it in ECMA 262 syntax without lookaround or backreferences (pydantic's "
                "regex engine has neither), or check that condition in the handler (raise "
                "PermanentError)",
            )


def pattern_problem(pattern: str) -> str:
    """What keeps `pattern` from being checked alike by the spec's checker and the models."""
    try:
        formats.ecma_regex(pattern)
    except re.error as exc:
        return f"is not a regular expression: {exc}"
    # pydantic compiles patterns with Rust's regex engine, which has no lookaround and no
    # backreferences: a model with such a pattern would fail when its module is imported.
    try:
        TypeAdapter(Annotated[str, Field(pattern=formats.ascii_classes(pattern))])
    except SchemaError:
        return "uses a construct (lookaround, backreference, ...) the models cannot check"
    return ""


def _check_values(
    schema: dict[str, Any], pointer: str, base: str | None, nullable: bool
) -> Iterator[Problem]:
    """`enum` and `const`; `base` is None when the schema has no single type."""
    of_type = f"of the schema's type ({base})" if base else "all of one type"
    if "enum" in schema:
        values = schema["enum"]
        members = [v for v in values if v is not None] if isinstance(values, list) else []
        kinds = {json_type(v) for v in members}
        if not isinstance(values, list) or not members:
            fix = "list the allowed values: enum: [a, b]"
        elif len(kinds) != 1:
            fix = (
                "split the values into fields of their own, one type each, or write them all "
                "as strings"
            )
        elif not kinds <= {"string", "integer"}:
            fix = (
                "write the values as strings, or as integers in a smaller unit (cents, not "
                "euros); booleans need no enum"
            )
        elif base is not None and kinds != {base}:
            fix = f"make the type {kinds.pop()}, or write the values as {base}s"
        elif None in values and not nullable:
            fix = "allow null with type: [T, 'null'], or drop null from the enum"
        elif nullable and None not in values:
            fix = "add null to the enum (as it is, enum refuses the null its type allows), or drop 'null' from type"
        elif len({repr(v) for v in values}) != len(values):
            fix = "list each value once"
        else:
            fix = ""
        if fix:
            yield Problem(
                _at(pointer, "enum"),
                "unsupported-enum",
                f"enum {_spell(values)} is not supported: its values must be distinct strings "
                f"or distinct integers, {of_type}, null only when the type allows it",
                fix,
            )
    if "const" in schema:
        value = schema["const"]
        kind = json_type(value)
        if nullable:
            yield Problem(
                _at(pointer, "const"),
                "unsupported-const",
                f"const {_spell(value)} with a nullable type: the const refuses the null the "
                "type allows",
                "drop 'null' from type, or use an enum that lists null",
            )
        elif kind not in ("string", "integer", "boolean") or kind != base:
            yield Problem(
                _at(pointer, "const"),
                "unsupported-const",
                f"const {_spell(value)} is not supported: it must be a string, an integer or a "
                f"boolean, {of_type}",
                "put a const on each property of the object instead"
                if kind in ("object", "array")
                else "use a string, integer or boolean constant of the schema's type",
            )


def _spell(value: Any) -> str:
    """`value` as the spec's author wrote it (JSON: null, true), for messages."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def _nullable_branch(value: Any) -> tuple[int, Any] | None:
    """(index, schema) of the non-null branch of `[schema, {type: null}]`, in either order."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    nulls = [i for i, v in enumerate(value) if _is_null_schema(v)]
    if len(nulls) != 1:
        return None
    index = 1 - nulls[0]
    return index, value[index]


def _is_null_schema(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "null"
        and all(k in ANNOTATIONS or k == "type" for k in value)
    )


def _types(schema: dict[str, Any]) -> list[str] | None:
    raw = schema.get("type")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw in BY_TYPE else None
    if (
        isinstance(raw, list)
        and 1 <= len(raw) <= 2
        and all(isinstance(t, str) and t in BY_TYPE for t in raw)
        and len(set(raw)) == len(raw)
        and (len(raw) == 1 or "null" in raw)
    ):
        return list(raw)
    return None


def _base_type(schema: dict[str, Any], types: list[str]) -> str | None:
    """The one non-null type (or null itself), read from `type`, else from enum or const."""
    named = [t for t in types if t != "null"] or types
    if named:
        return named[0]
    values = schema["enum"] if isinstance(schema.get("enum"), list) else []
    if "const" in schema:
        values = [schema["const"]]
    kinds = {json_type(v) for v in values if v is not None}
    return kinds.pop() if len(kinds) == 1 else None


def json_type(value: Any) -> str:
    """The JSON Schema type of a JSON value (`true` is a boolean, not an integer)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _at(pointer: str, key: str) -> str:
    return f"{pointer}/{escape_pointer_token(key)}"


# -- what the runtime checks on the wire -------------------------------------------------------
def wire_rule(schema: Any, deref: Callable[[Any], Any]) -> dict[str, Any] | None:
    """What pydantic's types miss about a value of `schema` (a supported one), as the rule the
    runtime applies (handwritten/runtime/wire.py); None when pydantic checks it all. Objects are
    models with rules of their own."""
    schema = deref(schema)
    if not isinstance(schema, dict):
        return None
    for key in ("anyOf", "oneOf"):
        branch = _nullable_branch(schema.get(key))
        if branch is not None:
            inner = wire_rule(branch[1], deref)
            return {**inner, "nullable": True} if inner else None
    types = _types(schema) or []
    base = _base_type(schema, types)
    rule: dict[str, Any] = {}
    if base in ("integer", "number") or (base == "boolean" and "const" in schema):
        rule["type"] = base
    if base == "string" and "format" in schema:
        rule["format"] = schema["format"]
    if base in ("integer", "number") and _is_number(schema.get("multipleOf")):
        divisor = schema["multipleOf"]
        rule["multipleOf"] = repr(divisor) if isinstance(divisor, float) else str(divisor)
    if base == "array" and "items" in schema:
        items = wire_rule(schema["items"], deref)
        if items:
            rule["items"] = items
    if rule and "null" in types:
        rule["nullable"] = True
    return rule or None
