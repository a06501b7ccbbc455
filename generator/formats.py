"""The JSON Schema checker of the spec's payloads, as the generated models read the schema.

`Validator` is Draft 2020-12 with the semantics of the supported subset (asyncapi/EXTENSIONS.md):
- `pattern` is read as ECMA 262 reads it: `$` is the end of the text (not also the place before
  a final newline, as in Python), and `\\d`, `\\w` are ASCII classes (not Unicode ones);
- `multipleOf` is decimal: 19.99 is a multiple of 0.01 (each number is taken as the shortest
  decimal that spells it, and divided exactly, as fractions);
- `number` means a finite number (JSON has no NaN or infinity);
- every supported `format` is an assertion, defined below. The runtime's EventModel checks the
  same definitions (handwritten/runtime/wire.py); tests/unit/test_formats.py holds both to one
  corpus, so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from fractions import Fraction
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators

_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_URI = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*"
)
_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
)
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_date_time(text: str) -> bool:
    """RFC 3339 `date-time`: a zone is required; no leap second (`:60`) and no year 0, which
    Python cannot hold; digits past microseconds are read and dropped."""
    if not _DATE_TIME.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def is_date(text: str) -> bool:
    """RFC 3339 `full-date`: YYYY-MM-DD, a real day."""
    if not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def is_uuid(text: str) -> bool:
    """RFC 4122 text: 8-4-4-4-12 hex digits with hyphens, any case."""
    return _UUID.fullmatch(text) is not None


def is_email(text: str) -> bool:
    """The WHATWG (HTML) definition of a valid e-mail address: ASCII, no quoted local part."""
    return _EMAIL.fullmatch(text) is not None


def is_uri(text: str) -> bool:
    """An absolute RFC 3986 URI: a scheme, `:`, then only URI characters and %-escapes."""
    return _URI.fullmatch(text) is not None


def is_ipv4(text: str) -> bool:
    """Dotted quad, each part 0-255 without leading zeros."""
    return _IPV4.fullmatch(text) is not None


def is_ipv6(text: str) -> bool:
    """RFC 4291 text (`::` shorthand and a trailing dotted quad allowed; no zone id)."""
    if not _IPV6_CHARS.fullmatch(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def is_hostname(text: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    return len(text) <= 253 and all(_LABEL.fullmatch(label) for label in text.split("."))


FORMATS: dict[str, Callable[[str], bool]] = {
    "date": is_date,
    "date-time": is_date_time,
    "email": is_email,
    "hostname": is_hostname,
    "ipv4": is_ipv4,
    "ipv6": is_ipv6,
    "uri": is_uri,
    "uuid": is_uuid,
}
"""Every `format` the subset supports; any other is refused when the spec is built."""

format_checker = FormatChecker(formats=())
for _name, _check in FORMATS.items():
    format_checker.checks(_name)(
        lambda value, check=_check: not isinstance(value, str) or check(value)
    )


def is_multiple_of(value: int | float, divisor: int | float) -> bool:
    """Decimal `multipleOf`: each number as the shortest decimal that spells it, divided exactly."""
    quotient = exact(value) / exact(divisor)
    return quotient.denominator == 1


def exact(number: int | float) -> Fraction:
    return Fraction(number) if isinstance(number, int) else Fraction(repr(number))


_ASCII_CLASSES = {"d": "0-9", "w": "A-Za-z0-9_"}


def ascii_classes(pattern: str) -> str:
    """`pattern` with ECMA's ASCII `\\d` and `\\w` (and `\\D`, `\\W`) spelt out, so that Python's
    and pydantic's regex engines, whose classes are Unicode, read them as ECMA 262 does."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
            members = _ASCII_CLASSES.get(char.lower())
            if members is None:
                out.append("\\" + char)
            elif char.islower():
                out.append(members if in_class else f"[{members}]")
            elif in_class:  # a negated class inside a class cannot be spelt out: keep it
                out.append("\\" + char)
            else:
                out.append(f"[^{members}]")
            continue
        if char == "\\":
            escaped = True
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled for Python as ECMA 262 reads it: ASCII classes, and each `$` outside a
    character class the end of the text."""
    out: list[str] = []
    in_class = escaped = False
    for char in ascii_classes(pattern):
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


def _multiple_of(
    validator: Any, divisor: int | float, instance: object, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "number"):
        return
    assert isinstance(instance, int | float)
    if not is_multiple_of(instance, divisor):
        yield ValidationError(f"{instance!r} is not a multiple of {divisor!r}")


def _is_number(checker: Any, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, float):
        return math.isfinite(instance)
    return isinstance(instance, int)


def _is_integer(checker: Any, instance: object) -> bool:
    if isinstance(instance, float):
        return math.isfinite(instance) and instance.is_integer()
    return isinstance(instance, int) and not isinstance(instance, bool)


Validator: type[Draft202012Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _pattern, "multipleOf": _multiple_of},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)
