"""What the JSON Schema says that pydantic's own types do not check exactly, checked on the wire.

The generator hands pydantic everything it enforces as JSON Schema does (types, bounds,
lengths, patterns, required, closed objects) and attaches the rest to each field as a small
rule, `json_schema_extra={"x-wire": {...}}`, which `EventModel` runs as a before-validator of
that field, on the raw value before pydantic parses it:

- `format`: the value is a string of that format (pydantic reads `uuid` without hyphens and
  `date-time` without seconds or as a number; `email` and the others it does not check);
- `multipleOf`: decimal, as JSON Schema means it (19.99 is a multiple of 0.01; pydantic's float
  check is not exact either way);
- `type: integer`: 1.0 is the integer 1, as in JSON Schema (handed to pydantic as 1), and
  `true` is no integer (a `Literal[1]` would take it); `boolean`: only `true`/`false`;
  `number`: finite (pydantic takes `NaN` and `1e400`);
- `nullable`: null passes; `items`: the rule of each element of a list.

The format definitions are the generator's (generator/formats.py), written twice because the
generator does not import the runtime; tests/unit/test_formats.py holds both to one corpus.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from fractions import Fraction
from typing import Any
from uuid import UUID

WIRE_KEY = "x-wire"

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


def _date_time(text: str) -> bool:
    if not _DATE_TIME.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _ipv6(text: str) -> bool:
    if not _IPV6_CHARS.fullmatch(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _hostname(text: str) -> bool:
    return len(text) <= 253 and all(_LABEL.fullmatch(label) for label in text.split("."))


FORMATS: Mapping[str, tuple[Callable[[str], bool], str]] = {
    "date": (_date, "an RFC 3339 date (YYYY-MM-DD)"),
    "date-time": (_date_time, "an RFC 3339 date-time with a time zone"),
    "email": (lambda t: _EMAIL.fullmatch(t) is not None, "an e-mail address"),
    "hostname": (_hostname, "a host name"),
    "ipv4": (lambda t: _IPV4.fullmatch(t) is not None, "an IPv4 address"),
    "ipv6": (_ipv6, "an IPv6 address"),
    "uri": (lambda t: _URI.fullmatch(t) is not None, "an absolute URI"),
    "uuid": (lambda t: _UUID.fullmatch(t) is not None, "a hyphenated UUID"),
}
"""Each supported `format`: its check, and what a value must be, for the error message."""

_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = "(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
PARSED_STRINGS: Mapping[str, Mapping[str, Any]] = {
    "date": {"pattern": f"^{_YEAR}-{_MONTH_DAY}$"},
    "date-time": {
        "pattern": (
            f"^{_YEAR}-{_MONTH_DAY}[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
            "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
        )
    },
    "uuid": {"min_length": 36, "max_length": 36},
}
"""For the formats whose field pydantic parses (`_PARSED`), the string constraints that, with
that parse, accept on the wire exactly what the format's check accepts. A date or date-time
the check refuses either fails the pattern (no year 0, hour 24, minute or second 60, month
13, day 32) or names a day its month lacks (30 February), which pydantic cannot make a date
of. Of the spellings pydantic parses as a UUID (32 hex digits, hyphenated, braced, as a URN)
only the hyphenated one has 36 characters: a length is enough, and costs a third of a
pattern. `EventModel` checks these in pydantic's own (Rust) string validation, with no
Python call per value; tests/unit/test_formats.py holds constraints and parse to the check."""

_PARSED: Mapping[str, type] = {"date": date, "date-time": datetime, "uuid": UUID}
"""Formats whose field holds a parsed value: in Python (not on the wire) that value is fine."""


class WireError(ValueError):
    """A value that the schema refuses and pydantic's type would take."""


def conform(value: Any, rule: Mapping[str, Any]) -> Any:
    """`value` checked against `rule`, with integral floats of integer positions made ints;
    raises WireError naming what the value must be."""
    if value is None and rule.get("nullable"):
        return value
    kind = rule.get("type")
    if kind == "integer":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{value!r} is not an integer")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WireError(f"{value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise WireError(f"{value!r} is not a finite number")
    elif kind == "boolean" and not isinstance(value, bool):
        raise WireError(f"{value!r} is not a boolean")
    divisor = rule.get("multipleOf")
    if divisor is not None and isinstance(value, int | float) and not isinstance(value, bool):
        exact = Fraction(value) if isinstance(value, int) else Fraction(repr(value))
        if (exact / Fraction(divisor)).denominator != 1:
            raise WireError(f"{value!r} is not a multiple of {divisor}")
    name = rule.get("format")
    if name is not None:
        check, what = FORMATS[name]
        parsed = _PARSED.get(name)
        if not (isinstance(value, str) and check(value)) and not (
            parsed is not None and isinstance(value, parsed)
        ):
            raise WireError(f"{value!r} is not {what}")
    items = rule.get("items")
    if items is not None and isinstance(value, list):
        conformed = [conform(item, items) for item in value]
        if any(new is not old for new, old in zip(conformed, value, strict=True)):
            return conformed
    return value


Checker = Callable[[Any], Any]
"""One field's rule made a function: the value, conformed, or WireError."""


def checker(rule: Mapping[str, Any]) -> Checker:
    """`conform(value, rule)` as a function of the value alone, with the common rules (a
    format, an integer) specialised: it runs for the field of every event decoded, so the rule
    is read once here rather than key by key for each value."""
    if set(rule) == {"format"} and rule["format"] in FORMATS:
        check = FORMATS[rule["format"]][0]
        parsed = _PARSED.get(rule["format"])

        def conform_format(value: Any) -> Any:
            if (type(value) is str and check(value)) or (
                parsed is not None and isinstance(value, parsed)
            ):
                return value
            return conform(value, rule)  # the same error, or a str subclass

        return conform_format
    if set(rule) == {"type"} and rule["type"] == "integer":

        def conform_integer(value: Any) -> Any:
            return value if type(value) is int else conform(value, rule)

        return conform_integer
    return lambda value: conform(value, rule)
