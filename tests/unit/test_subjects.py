"""generator.subjects: NATS subject validity, containment and overlap, by table and by brute force."""

from __future__ import annotations

import itertools

import pytest

from generator.subjects import contains, is_valid_subject, overlaps

VALID = [
    "a",
    "a.b",
    "files.>",
    "files.*",
    "*",
    ">",
    "a.*.c",
    "*.*",
    "dlq.files.*",
    "a-b_c.D9",
    "ü.é",
]
INVALID = [
    "",
    ".",
    "a..b",
    ".a",
    "a.",
    "a.>.b",
    ">.a",
    "a b",
    "a.b c",
    "a.\t",
    "a\n",
    "a.b*",
    "a.*b",
    "a.>x",
    "a.**",
    "a.>>",
]


@pytest.mark.parametrize("subject", VALID)
def test_valid_subjects(subject: str) -> None:
    assert is_valid_subject(subject)


@pytest.mark.parametrize("subject", INVALID)
def test_invalid_subjects(subject: str) -> None:
    assert not is_valid_subject(subject)


CONTAINS = [
    ("files.>", "files.deleted", True),
    ("files.>", "files.a.b", True),
    ("files.>", "files", False),
    ("files.>", "files.*", True),
    ("files.>", "files.>", True),
    ("files.*", "files.deleted", True),
    ("files.*", "files.*", True),
    ("files.*", "files.>", False),
    ("files.*", "files.a.b", False),
    ("files.deleted", "files.deleted", True),
    ("files.deleted", "files.*", False),
    ("files.deleted", "files.trashed", False),
    (">", "anything.at.all", True),
    (">", ">", True),
    ("*", "a.b", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.*.c", True),
    ("a.*.c", "a.>", False),
    ("a.>", "a.*.>", True),
    ("dlq.files.>", "files.deleted", False),
    ("files.>", "dlq.files.trash-processor", False),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), CONTAINS)
def test_contains(pattern: str, subject: str, expected: bool) -> None:
    assert contains(pattern, subject) is expected


OVERLAPS = [
    ("files.>", "files.deleted", True),
    ("files.*", "files.a.b", False),
    ("files.*", "files.>", True),
    ("a.*", "*.b", True),
    ("a.b", "a.c", False),
    ("a.>", "b.>", False),
    (">", "x", True),
    ("a", "a.b", False),
    ("a.>", "a", False),
    ("*.>", "a", False),
    ("files.>", "dlq.files.>", False),
    ("dlq.files.>", "dlq.*.x", True),
    ("*", "*", True),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAPS)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


# -- brute force: every pattern of up to three tokens over a tiny alphabet -------------------
_PATTERNS = [
    ".".join(tokens)
    for n in (1, 2, 3)
    for tokens in itertools.product(["x", "y", "*", ">"], repeat=n)
    if is_valid_subject(".".join(tokens))
]
# Concrete subjects one token longer than any pattern are enough to tell `>` from `*`.
_CONCRETE = [
    tokens for n in (1, 2, 3, 4) for tokens in itertools.product(["x", "y", "z"], repeat=n)
]


def _matches(pattern: str, concrete: tuple[str, ...]) -> bool:
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == ">":
            return len(concrete) > i
        if i >= len(concrete) or (token != "*" and token != concrete[i]):
            return False
    return len(tokens) == len(concrete)


_MATCHED = {p: frozenset(c for c in _CONCRETE if _matches(p, c)) for p in _PATTERNS}


def test_brute_force_tables_are_big_enough() -> None:
    assert len(_PATTERNS) > 50
    assert all(_MATCHED[p] for p in _PATTERNS)


@pytest.mark.parametrize("a", _PATTERNS)
def test_overlaps_agrees_with_brute_force(a: str) -> None:
    wrong = [b for b in _PATTERNS if overlaps(a, b) != bool(_MATCHED[a] & _MATCHED[b])]
    assert not wrong, f"overlaps({a!r}, ·) is wrong for {wrong}"


@pytest.mark.parametrize("a", _PATTERNS)
def test_contains_agrees_with_brute_force(a: str) -> None:
    wrong = [b for b in _PATTERNS if contains(a, b) != (_MATCHED[b] <= _MATCHED[a])]
    assert not wrong, f"contains({a!r}, ·) is wrong for {wrong}"
