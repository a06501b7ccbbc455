"""Channel addresses with parameters, such as `orders.{region}.placed`.

Publishing fills an address with values (`orders.eu.placed`); consuming reads the values back
from the subject a message was delivered on. Each parameter stands for exactly one NATS token,
so a value must be one: not empty, and without `.` (it would make two tokens), `*` or `>` (they
would make a wildcard, which JetStream cannot store a message on) or whitespace. A parameter
may also restrict its values to an `enum` and to a `pattern` (the spec's `x-pattern`), which the
whole value must match.

Generated publishers and consumer endpoints use `Address`; like `contract`, this module is part
of the small surface that generated code depends on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_WILDCARDS = frozenset({"*", ">"})


class InvalidSubjectParameter(ValueError):
    """A parameter value cannot stand in its address: not one NATS token, not in the enum, or
    not matching the pattern. Raised before anything is sent."""

    def __init__(self, address: str, parameter: str, value: str, why: str, fix: str) -> None:
        super().__init__(f"{address}: parameter {parameter} cannot be {value!r}: it {why}; {fix}")
        self.address = address
        self.parameter = parameter
        self.value = value
        self.why = why


class SubjectOutsideAddress(ValueError):
    """A delivered subject does not have the shape of the address it was read against (a
    consumer filter wider than its channel)."""


def token_problem(value: str) -> str | None:
    """Why `value` is not exactly one NATS token, or None when it is one."""
    if not value:
        return "is empty"
    if "." in value:
        return "contains '.', which would split it into several tokens"
    if "*" in value or ">" in value:
        return "contains a wildcard ('*' or '>')"
    if any(c.isspace() for c in value):
        return "contains whitespace"
    return None


def wildcard_tokens(subject: str) -> list[str]:
    """The tokens of `subject` that are wildcards (`*`, `>`): a subject to publish to has none."""
    return [token for token in subject.split(".") if token in _WILDCARDS]


@dataclass(frozen=True, slots=True)
class SubjectParameter:
    """One `{name}` of an address and the values it accepts (any single token by default)."""

    name: str
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    """A regular expression the whole value must match (`re.fullmatch`)."""
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.compile(self.pattern) if self.pattern is not None else None
        object.__setattr__(self, "_regex", regex)

    def problem(self, value: str) -> tuple[str, str] | None:
        """(why, fix) when `value` may not stand for this parameter, else None."""
        why = token_problem(value)
        if why is not None:
            return why, "a parameter is exactly one subject token"
        if self.enum and value not in self.enum:
            return f"is not one of {', '.join(self.enum)}", "pass one of those values"
        if self._regex is not None and not self._regex.fullmatch(value):
            return f"does not match {self.pattern}", "pass a value that matches the pattern"
        return None


@dataclass(frozen=True, slots=True)
class Address:
    """A channel address: literal tokens, `{parameter}` tokens, and (in a consumer's channel)
    possibly `*` or `>`. Every `{name}` in `template` has its `SubjectParameter`."""

    template: str
    parameters: tuple[SubjectParameter, ...] = ()
    _tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _slots: Mapping[int, SubjectParameter] = field(init=False, repr=False, compare=False)
    """Token position → the parameter standing there."""

    def __post_init__(self) -> None:
        tokens = tuple(self.template.split("."))
        by_name = {p.name: p for p in self.parameters}
        slots: dict[int, SubjectParameter] = {}
        for position, token in enumerate(tokens):
            found = _PLACEHOLDER.fullmatch(token)
            if found is None:
                continue
            parameter = by_name.get(found.group(1))
            if parameter is None:
                raise ValueError(f"{self.template}: no SubjectParameter for {token}")
            slots[position] = parameter
        if {p.name for p in slots.values()} != set(by_name) or len(slots) != len(by_name):
            raise ValueError(f"{self.template}: each parameter must stand in one token")
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_slots", slots)

    @property
    def wildcard(self) -> str:
        """The address with each parameter as `*`: the filter that receives all of it."""
        return ".".join("*" if i in self._slots else token for i, token in enumerate(self._tokens))

    def _checked(self, parameter: SubjectParameter, value: str) -> str:
        problem = parameter.problem(value)
        if problem is not None:
            raise InvalidSubjectParameter(self.template, parameter.name, value, *problem)
        return value

    def fill(self, values: Mapping[str, str]) -> str:
        """The concrete subject for `values` (by parameter name); raises
        `InvalidSubjectParameter` for a value that may not stand in its place."""
        tokens = list(self._tokens)
        for position, parameter in self._slots.items():
            tokens[position] = self._checked(parameter, values[parameter.name])
        return ".".join(tokens)

    def parse(self, subject: str) -> dict[str, str]:
        """The parameter values in a delivered `subject`, by name. Raises
        `SubjectOutsideAddress` when the subject does not have the address's shape, and
        `InvalidSubjectParameter` when a value is not one the parameter accepts."""
        if not self._slots:
            return {}
        tokens = subject.split(".")
        last = self._tokens[-1]
        if len(tokens) < len(self._tokens) or (len(tokens) > len(self._tokens) and last != ">"):
            raise SubjectOutsideAddress(f"subject {subject} does not match {self.template}")
        values: dict[str, str] = {}
        for position, token in enumerate(self._tokens):
            parameter = self._slots.get(position)
            if parameter is not None:
                values[parameter.name] = self._checked(parameter, tokens[position])
            elif token not in _WILDCARDS and token != tokens[position]:
                raise SubjectOutsideAddress(f"subject {subject} does not match {self.template}")
        return values


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the NATS filter or stream subject `pattern` (`*` one token, `>` the rest) takes
    the concrete `subject`."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)
