"""The JSON Schema formats the spec uses, checked the same way by the generator and the tests.

jsonschema only checks `date-time` when an optional package is present; we check it ourselves
so that a machine without that package does not silently accept anything.

`Validator` is Draft 2020-12 with `pattern` read as ECMA 262 reads it, as JSON Schema says and
as pydantic's regex engine does: `$` is the end of the text, not also the place before a final
newline (Python's meaning), so `user-001\\n` does not match `^[a-z0-9-]+$`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

format_checker = FormatChecker(formats=())


@format_checker.checks("date-time", raises=ValueError)
def is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    return True


@format_checker.checks("uuid", raises=ValueError)
def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _UUID.match(value):
        return False
    uuid.UUID(value)
    return True


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled with each `$` outside a character class meaning the end of the text."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out))


def _pattern(
    validator: Any, pattern: str, instance: object, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        regex = ecma_regex(pattern)
    except re.error as exc:
        yield ValidationError(f"pattern {pattern!r} is not a regular expression: {exc}")
        return
    if not regex.search(str(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator: type[Draft202012Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, validators={"pattern": _pattern}
)
