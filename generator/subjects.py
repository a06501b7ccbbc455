"""NATS subject rules: `*` matches one token, `>` one or more tokens at the end."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\s.*>]+")


def is_valid_subject(subject: str) -> bool:
    """Non-empty tokens without whitespace; `*` alone in a token; `>` only as the last token."""
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if token == ">":
            if i != len(tokens) - 1:
                return False
        elif token != "*" and not _TOKEN.fullmatch(token):
            return False
    return True


def _covers(pattern: list[str], subject: list[str]) -> bool:
    for i, token in enumerate(pattern):
        if token == ">":
            return len(subject) > i
        if i >= len(subject):
            return False
        if subject[i] == ">":
            return False
        if token != "*" and (subject[i] == "*" or token != subject[i]):
            return False
    return len(pattern) == len(subject)


def contains(pattern: str, subject: str) -> bool:
    """True when every subject that `subject` can match is matched by `pattern` (subset)."""
    return _covers(pattern.split("."), subject.split("."))


def overlaps(a: str, b: str) -> bool:
    """True when some concrete subject matches both `a` and `b`."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != "*" and y != "*" and x != y:
            return False
    return True
