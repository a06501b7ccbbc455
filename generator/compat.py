"""Every change between two specs, each with the deploy order it needs (`just compat`).

Payloads are closed, so a change to a message's schema is judged in two directions:
- *old readers* (consumers not yet upgraded) must accept what *new writers* send;
- *new readers* (upgraded consumers, a durable replaying the stream) must accept what *old
  writers* sent, which the stream keeps for `max_age`.
Both hold: `compatible`. Only the first: `producers-first` (new writers send a subset of what
old readers accept; upgrade the consumers once the stream no longer holds old messages they
would refuse). Only the second: `consumers-first`. Neither: `breaking`, with the migration that
works instead. Topology changes (streams, consumers, channels) are classed by what JetStream
does with them: data it would drop, publishes it would refuse, a durable it would replay.

Each unsafe payload claim carries a counter-example: an instance one side's schema accepts and
the other's refuses, found by `generator.formats.Validator` (the subset's semantics, which the
generated models follow exactly: tests/unit/test_conformance.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Any

from generator import formats, subjects, subset
from generator.diagnostics import escape_pointer_token, pointer_to_dotted
from generator.formats import format_checker
from generator.ir import Document
from generator.load import Spec


class Order(StrEnum):
    COMPATIBLE = "compatible"
    CONSUMERS_FIRST = "consumers-first"
    PRODUCERS_FIRST = "producers-first"
    BREAKING = "breaking"


def order_of(old_readers_safe: bool, new_readers_safe: bool) -> Order:
    """`old_readers_safe`: old consumers accept what new producers send; `new_readers_safe`:
    new consumers accept what old producers sent (and the stream retains)."""
    if old_readers_safe and new_readers_safe:
        return Order.COMPATIBLE
    if new_readers_safe:
        return Order.CONSUMERS_FIRST
    if old_readers_safe:
        return Order.PRODUCERS_FIRST
    return Order.BREAKING


_WHY_ORDER = {
    Order.CONSUMERS_FIRST: "old consumers refuse what new producers may send",
    Order.PRODUCERS_FIRST: "new consumers refuse what old producers sent (retained in the stream)",
}


@dataclass
class Change:
    pointer: str
    """Where it is written in the new spec (or, when removed, where it was in the old one)."""
    line: int
    kind: str
    order: Order
    why: str
    migration: str = ""
    messages: list[str] = field(default_factory=list)
    """The messages whose payload it touches (a shared schema touches several)."""
    consumers: list[str] = field(default_factory=list)
    """Durables that must be upgraded (for consumers-first/producers-first), or are affected."""
    producers: list[str] = field(default_factory=list)
    """Send operations that must be upgraded."""
    counter_example: Any = None
    counter_example_found: bool = False
    instance_path: tuple[str | int, ...] = ()
    allowed: bool = False

    @property
    def path(self) -> str:
        return pointer_to_dotted(self.pointer)

    def as_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "path": self.path,
            "line": self.line,
            "kind": self.kind,
            "class": self.order.value,
            "why": self.why,
            "migration": self.migration,
        }
        if self.messages:
            result["messages"] = self.messages
        if self.consumers:
            result["consumers"] = self.consumers
        if self.producers:
            result["producers"] = self.producers
        if self.counter_example_found:
            result["counter_example"] = self.counter_example
        if self.allowed:
            result["allowed"] = True
        return result


@dataclass
class Report:
    old_version: str
    new_version: str
    changes: list[Change]
    refused: list[str]
    """Breaking changes not allowed."""
    version_problems: list[str]
    """`info.version` not raised for a change that needs an order (its major part for a
    breaking one)."""
    require_version: bool = False

    @property
    def problems(self) -> list[str]:
        """What makes the exit status 1: refused changes, and the version rule when required."""
        return self.refused + (self.version_problems if self.require_version else [])

    def order(self) -> list[dict[str, Any]]:
        """The deploy steps: consumers of consumers-first changes, then producers, then the
        consumers of producers-first changes; breaking changes first need their migration."""
        steps: list[dict[str, Any]] = []
        breaking = [c for c in self.changes if c.order is Order.BREAKING]
        if breaking:
            steps.append(
                {
                    "step": "migrate",
                    "services": sorted({s for c in breaking for s in c.consumers + c.producers}),
                    "changes": [c.path for c in breaking],
                }
            )
        first = [c for c in self.changes if c.order is Order.CONSUMERS_FIRST]
        then = [c for c in self.changes if c.order is Order.PRODUCERS_FIRST]
        if first and any(c.consumers for c in first):
            steps.append(
                {
                    "step": "upgrade consumers",
                    "services": sorted({d for c in first for d in c.consumers}),
                    "changes": [c.path for c in first],
                }
            )
        producers = sorted({p for c in first + then for p in c.producers})
        if producers:
            steps.append(
                {
                    "step": "upgrade producers",
                    "services": producers,
                    "changes": [c.path for c in then + first if c.producers],
                }
            )
        if then and any(c.consumers for c in then):
            steps.append(
                {
                    "step": "upgrade consumers",
                    "services": sorted({d for c in then for d in c.consumers}),
                    "changes": [c.path for c in then],
                }
            )
        rest = [c for c in self.changes if c.order is Order.COMPATIBLE]
        if rest:
            steps.append({"step": "any order", "services": [], "changes": [c.path for c in rest]})
        return steps

    def as_json(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "changes": [c.as_json() for c in self.changes],
            "order": self.order(),
            "problems": self.problems,
            "warnings": [] if self.require_version else self.version_problems,
        }

    def render_text(self, new_path: str) -> str:
        if not self.changes:
            return "no changes that matter to running services\n"
        lines: list[str] = []
        groups = [
            (Order.BREAKING, "breaking: no deploy order works; migrate instead"),
            (Order.CONSUMERS_FIRST, "consumers first: upgrade these consumers, then producers"),
            (Order.PRODUCERS_FIRST, "producers first: upgrade producers, then these consumers"),
            (Order.COMPATIBLE, "compatible: any order"),
        ]
        for order, title in groups:
            chosen = [c for c in self.changes if c.order is order]
            if not chosen:
                continue
            lines.append(f"== {title}")
            for c in chosen:
                lines.append(f"{new_path}:{c.line} {c.path}: {c.kind}: {c.why}")
                if c.consumers or c.producers:
                    who: list[str] = [f"consumers {', '.join(c.consumers)}"] if c.consumers else []
                    who += [f"producers {', '.join(c.producers)}"] if c.producers else []
                    lines.append(f"    affects: {'; '.join(who)}")
                if c.counter_example_found:
                    text = json.dumps(c.counter_example, sort_keys=True)
                    lines.append(f"    counter-example: {text}")
                if c.migration:
                    lines.append(f"    migration: {c.migration}")
                if c.allowed:
                    lines.append("    allowed by --allow")
            lines.append("")
        lines.append("deploy order:")
        for i, step in enumerate(self.order(), 1):
            names = f": {', '.join(step['services'])}" if step["services"] else ""
            lines.append(f"  {i}. {step['step']}{names}")
        for problem in self.problems:
            lines.append(f"error: {problem}")
        if not self.require_version:
            for problem in self.version_problems:
                lines.append(f"warning: {problem}")
        return "\n".join(lines) + "\n"


# -- the two specs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    spec: Spec
    doc: Document

    @property
    def data(self) -> dict[str, Any]:
        return self.spec.data

    def resolve(self, node: Any, pointer: str) -> tuple[Any, str]:
        return self.spec.resolve(node, pointer)


def compare(
    old: Side, new: Side, allow: frozenset[str] = frozenset(), *, require_version: bool = False
) -> Report:
    """Every change from `old` to `new`, classified; `allow` holds dotted paths (or their
    prefixes) of breaking changes that are accepted; `require_version` makes a version not
    raised an error (CI), not a warning."""
    changes: list[Change] = []
    changes += _compare_payloads(old, new)
    changes += _compare_channels(old, new)
    changes += _compare_operations(old, new)
    changes += _compare_streams(old, new)
    changes += _compare_consumers(old, new)
    changes += _compare_roles(old, new)
    for change in changes:
        if change.order is Order.BREAKING and any(
            change.path == a or change.path.startswith(a + ".") for a in allow
        ):
            change.allowed = True
    changes.sort(key=lambda c: (c.line, c.path, c.kind))
    return Report(
        old_version=str(old.doc.version),
        new_version=str(new.doc.version),
        changes=changes,
        refused=[
            f"{c.path} (line {c.line}): breaking change {c.kind} not allowed — {c.migration}; "
            f"or accept it with --allow {c.path}"
            for c in changes
            if c.order is Order.BREAKING and not c.allowed
        ],
        version_problems=_version_problems(old.doc.version, new.doc.version, changes),
        require_version=require_version,
    )


def _version_problems(old_version: str, new_version: str, changes: list[Change]) -> list[str]:
    problems: list[str] = []
    if any(c.order is not Order.COMPATIBLE for c in changes) and old_version == new_version:
        problems.append(
            f"info.version is still {new_version} but some changes need a deploy order: "
            "raise it (the major part for a breaking change)"
        )
    elif any(c.order is Order.BREAKING for c in changes) and _major(old_version) == _major(
        new_version
    ):
        problems.append(
            f"info.version {old_version} → {new_version} keeps its major part across a "
            "breaking change: raise the major part"
        )
    return problems


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


# -- payloads ---------------------------------------------------------------------------------
def _compare_payloads(old: Side, new: Side) -> list[Change]:
    found: dict[tuple[str, str], Change] = {}
    old_messages = {m.key: m for m in old.doc.messages if m.is_json}
    for message in new.doc.messages:
        before = old_messages.get(message.key)
        if before is None or not message.is_json:
            continue
        walker = _SchemaWalk(old, new, message.key)
        old_raw = old.spec.get(before.pointer)
        new_raw = new.spec.get(message.pointer)
        walker.walk(
            old_raw["payload"],
            f"{before.pointer}/payload",
            new_raw["payload"],
            f"{message.pointer}/payload",
            (),
        )
        checker = _CounterExamples(old, new, before.class_name, message.class_name)
        for change in walker.changes:
            key = (change.pointer, change.kind)
            if key in found:
                found[key].messages.append(message.key)
                continue
            change.messages = [message.key]
            if change.order is not Order.COMPATIBLE:
                checker.search(change)
            found[key] = change
    for change in found.values():
        change.consumers = sorted(
            op.consumer.durable
            for op in new.doc.receivers
            if op.consumer is not None and set(op.messages) & set(change.messages)
        )
        change.producers = sorted(
            op.key for op in new.doc.senders if set(op.messages) & set(change.messages)
        )
    return list(found.values())


_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


class _SchemaWalk:
    """Compares two payload schemas keyword by keyword, following `$ref`s on both sides."""

    def __init__(self, old: Side, new: Side, message: str) -> None:
        self.old, self.new, self.message = old, new, message
        self.changes: list[Change] = []
        self.seen: set[tuple[str, str, tuple[str | int, ...]]] = set()

    def add(
        self,
        pointer: str,
        kind: str,
        old_ok: bool,
        new_ok: bool,
        why: str,
        at: tuple[str | int, ...],
        migration: str = "",
    ) -> None:
        order = order_of(old_ok, new_ok)
        if order in _WHY_ORDER:
            why = f"{why}: {_WHY_ORDER[order]}"
        if not migration:
            migration = _PAYLOAD_MIGRATION[order]
        self.changes.append(
            Change(
                pointer=pointer,
                line=self.new.spec.where(pointer).line,
                kind=kind,
                order=order,
                why=why,
                migration=migration,
                instance_path=at,
            )
        )

    def walk(self, a: Any, ap: str, b: Any, bp: str, at: tuple[str | int, ...]) -> None:
        a, ap, a_null = _normalise(self.old, a, ap)
        b, bp, b_null = _normalise(self.new, b, bp)
        key = (ap, bp, at)
        if key in self.seen or not isinstance(a, dict) or not isinstance(b, dict):
            return
        self.seen.add(key)
        name = _describe_at(at)
        old_types, new_types = _types(a) | a_null, _types(b) | b_null
        if old_types != new_types:
            wider = _covered(old_types, new_types)
            narrower = _covered(new_types, old_types)
            self.add(
                f"{bp}/type",
                "type-widened" if wider else "type-narrowed" if narrower else "type-changed",
                narrower,
                wider,
                f"{name} type {_spell(old_types)} → {_spell(new_types)}",
                at,
                "" if wider or narrower else _NEW_FIELD,
            )
            if not (wider or narrower):
                return
        self.keywords(a, b, bp, at, name)
        if "object" in old_types & new_types:
            self.properties(a, ap, b, bp, at)
        if "array" in old_types & new_types and "items" in a and "items" in b:
            self.walk(a["items"], f"{ap}/items", b["items"], f"{bp}/items", (*at, 0))

    def keywords(
        self, a: dict[str, Any], b: dict[str, Any], bp: str, at: tuple[str | int, ...], name: str
    ) -> None:
        for word in _LOWER + _UPPER:
            if a.get(word) == b.get(word):
                continue
            lower = word in _LOWER
            before, after = a.get(word), b.get(word)
            if before is None:
                wider, narrower = False, True
            elif after is None:
                wider, narrower = True, False
            else:
                wider = after < before if lower else after > before
                narrower = not wider
            verb = "loosened" if wider else "tightened"
            self.add(
                f"{bp}/{word}",
                f"{word}-{verb}",
                narrower,
                wider,
                f"{name} {word} {_spell_value(before)} → {_spell_value(after)}",
                at,
            )
        for word in ("format", "pattern"):
            before, after = a.get(word), b.get(word)
            if before == after:
                continue
            kind = "added" if before is None else "removed" if after is None else "changed"
            self.add(
                f"{bp}/{word}",
                f"{word}-{kind}",
                kind == "added",
                kind == "removed",
                f"{name} {word} {_spell_value(before)} → {_spell_value(after)}"
                + (" (one pattern is not known to contain the other)" if kind == "changed" else ""),
                at,
                _NEW_FIELD if kind == "changed" else "",
            )
        if a.get("multipleOf") != b.get("multipleOf"):
            before, after = a.get("multipleOf"), b.get("multipleOf")
            if before is None:
                wider, narrower = False, True
            elif after is None:
                wider, narrower = True, False
            else:
                ratio = formats.exact(before) / formats.exact(after)
                wider = ratio.denominator == 1
                narrower = (1 / ratio).denominator == 1 if ratio else False
            self.add(
                f"{bp}/multipleOf",
                "multipleOf-changed",
                narrower,
                wider,
                f"{name} multipleOf {_spell_value(before)} → {_spell_value(after)}",
                at,
            )
        self.values(a, b, bp, at, name)
        if a.get("default", _ABSENT) != b.get("default", _ABSENT):
            self.add(
                f"{bp}/default",
                "default-changed",
                True,
                True,
                f"{name} default {_spell_value(a.get('default'))} → "
                f"{_spell_value(b.get('default'))}: readers fill in another value for an "
                "absent field",
                at,
            )

    def values(
        self, a: dict[str, Any], b: dict[str, Any], bp: str, at: tuple[str | int, ...], name: str
    ) -> None:
        old_set = _allowed(a)
        new_set = _allowed(b)
        if old_set == new_set:
            return
        is_event_type = at == ("eventType",)
        if old_set is None:
            wider, narrower = False, True
        elif new_set is None:
            wider, narrower = True, False
        else:
            wider, narrower = old_set < new_set, new_set < old_set
        word = "const" if "const" in a or "const" in b else "enum"
        if is_event_type:
            self.add(
                f"{bp}/{word}",
                "event-type-changed",
                False,
                False,
                f"eventType {_spell_value(a.get(word))} → {_spell_value(b.get(word))}: "
                "routers and the discriminated union dispatch on it",
                at,
                "a new message (version) with its own eventType beside the old one; consumers "
                "handle both, producers switch, the old message leaves once the stream drained",
            )
            return
        kind = "values-added" if wider else "values-removed" if narrower else "values-changed"
        self.add(
            f"{bp}/{word}",
            f"{word}-{kind}",
            narrower,
            wider,
            f"{name} {word} {_spell_value(a.get(word))} → {_spell_value(b.get(word))}",
            at,
            "" if wider or narrower else _NEW_FIELD,
        )

    def properties(
        self, a: dict[str, Any], ap: str, b: dict[str, Any], bp: str, at: tuple[str | int, ...]
    ) -> None:
        old_props: dict[str, Any] = a.get("properties") or {}
        new_props: dict[str, Any] = b.get("properties") or {}
        old_req, new_req = set(a.get("required") or ()), set(b.get("required") or ())
        for name in new_props:
            child = f"{bp}/properties/{escape_pointer_token(name)}"
            here = (*at, name)
            if name not in old_props:
                if name in new_req:
                    self.add(
                        child,
                        "property-added-required",
                        False,
                        False,
                        f"{_describe_at(here)} added and required (payloads are closed)",
                        here,
                        "add it optional (consumers first, then producers); make it required "
                        "in a later version, once no retained message lacks it",
                    )
                else:
                    self.add(
                        child,
                        "property-added",
                        False,
                        True,
                        f"{_describe_at(here)} added, optional (payloads are closed)",
                        here,
                    )
                continue
            if name in old_req and name not in new_req:
                self.add(
                    child,
                    "property-made-optional",
                    False,
                    True,
                    f"{_describe_at(here)} no longer required",
                    here,
                )
            elif name in new_req and name not in old_req:
                self.add(
                    child,
                    "property-made-required",
                    True,
                    False,
                    f"{_describe_at(here)} now required",
                    here,
                )
            self.walk(
                old_props[name],
                f"{ap}/properties/{escape_pointer_token(name)}",
                new_props[name],
                child,
                here,
            )
        for name in old_props:
            if name in new_props:
                continue
            here = (*at, name)
            where = f"{bp}/properties/{escape_pointer_token(name)}"
            if name in old_req:
                self.add(
                    where,
                    "property-removed-required",
                    False,
                    False,
                    f"required {_describe_at(here)} removed (payloads are closed)",
                    here,
                    "make it optional first (consumers first), stop producing it, then remove "
                    "it (producers first) once the stream no longer holds messages with it",
                )
            else:
                self.add(
                    where,
                    "property-removed",
                    True,
                    False,
                    f"optional {_describe_at(here)} removed (payloads are closed)",
                    here,
                )


_NEW_FIELD = (
    "a new optional field (or a new message version) beside the old one; producers fill both "
    "until every consumer reads the new one, and the old leaves once the stream drained"
)
_PAYLOAD_MIGRATION = {
    Order.COMPATIBLE: "",
    Order.CONSUMERS_FIRST: "upgrade every consumer of the message, then its producers",
    Order.PRODUCERS_FIRST: "upgrade the producers, let the consumers drain what old producers "
    "sent (a new durable must not replay it), then upgrade the consumers",
    Order.BREAKING: _NEW_FIELD,
}
_ABSENT = object()


def _normalise(side: Side, node: Any, pointer: str) -> tuple[Any, str, set[str]]:
    """Follows `$ref`s; reads a nullable anyOf/oneOf as its non-null branch plus `null`."""
    node, pointer = side.resolve(node, pointer)
    extra: set[str] = set()
    if isinstance(node, dict):
        for word in ("anyOf", "oneOf"):
            branches = node.get(word)
            if isinstance(branches, list) and len(branches) == 2:
                for i, branch in enumerate(branches):
                    if not (isinstance(branch, dict) and branch.get("type") == "null"):
                        inner, inner_pointer, more = _normalise(
                            side, branch, f"{pointer}/{word}/{i}"
                        )
                        merged = {**inner, **{k: v for k, v in node.items() if k != word}}
                        return merged, inner_pointer, {"null"} | more
    return node, pointer, extra


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    if isinstance(kind, str):
        return {kind}
    values = [schema["const"]] if "const" in schema else list(schema.get("enum") or ())
    return {subset.json_type(v) for v in values}


def _covered(inner: set[str], outer: set[str]) -> bool:
    return all(t in outer or (t == "integer" and "number" in outer) for t in inner)


def _allowed(schema: dict[str, Any]) -> frozenset[Any] | None:
    if "const" in schema:
        return frozenset([json.dumps(schema["const"])])
    if "enum" in schema:
        return frozenset(json.dumps(v) for v in schema["enum"])
    return None


def _spell(types: set[str]) -> str:
    return "|".join(sorted(types)) or "(any)"


def _spell_value(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


def _describe_at(at: tuple[str | int, ...]) -> str:
    if not at:
        return "the payload"
    return "field " + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")


# -- counter-examples --------------------------------------------------------------------------
class _CounterExamples:
    """Finds, for an unsafe claim, a payload one side accepts and the other refuses."""

    def __init__(self, old: Side, new: Side, old_class: str, new_class: str) -> None:
        self.old_schema = json.loads(old.doc.models_schema)
        self.new_schema = json.loads(new.doc.models_schema)
        self.old_valid = _validator(self.old_schema, old_class)
        self.new_valid = _validator(self.new_schema, new_class)
        self.old_root = self.old_schema["$defs"][old_class]
        self.new_root = self.new_schema["$defs"][new_class]
        examples = [*_examples(old, old_class), *_examples(new, new_class)]
        self.samples: dict[str, list[Any]] = {}
        for example in examples:
            _collect(example, None, self.samples)
        self.bases = [
            *examples,
            *(
                _make(root_schema, root, full=full, samples=self.samples)
                for full in (True, False)
                for root_schema, root in (
                    (self.old_root, self.old_schema),
                    (self.new_root, self.new_schema),
                )
            ),
        ]

    def search(self, change: Change) -> None:
        # Old readers unsafe: a new payload the old schema refuses; else an old one the new refuses.
        directions = {
            Order.CONSUMERS_FIRST: (True,),
            Order.PRODUCERS_FIRST: (False,),
            Order.BREAKING: (True, False),
        }[change.order]
        for want_new_valid in directions:
            if self.search_one(change, want_new_valid):
                return
        change.why += " (no counter-example found by generation: the claim is conservative)"

    def search_one(self, change: Change, want_new_valid: bool) -> bool:
        for candidate in self.candidates(change.instance_path):
            old_ok = self.old_valid.is_valid(candidate)
            new_ok = self.new_valid.is_valid(candidate)
            if (want_new_valid and new_ok and not old_ok) or (
                not want_new_valid and old_ok and not new_ok
            ):
                change.counter_example = candidate
                change.counter_example_found = True
                change.why += (
                    " (counter-example: accepted by the new schema, refused by the old)"
                    if want_new_valid
                    else " (counter-example: accepted by the old schema, refused by the new)"
                )
                return True
        return False

    def candidates(self, path: tuple[str | int, ...]) -> Iterator[Any]:
        values = list(self.values_at(path))
        for base in self.bases:
            yield base
            if not path:
                continue
            for value in values:
                made = _set_in(base, path, value, self)
                if made is not None:
                    yield made
            removed = _set_in(base, path, _ABSENT, self)
            if removed is not None:
                yield removed

    def values_at(self, path: tuple[str | int, ...]) -> Iterator[Any]:
        for schema, root in (
            (_schema_at(self.old_root, self.old_schema, path), self.old_schema),
            (_schema_at(self.new_root, self.new_schema, path), self.new_schema),
        ):
            if schema is None:
                continue
            yield _make(schema, root, full=True, name=_last_name(path), samples=self.samples)
            yield _make(schema, root, full=False, name=_last_name(path), samples=self.samples)
            node = _deref(schema, root)
            yield from _boundaries(node)
            if "items" in node:
                item = _make(node["items"], root, full=False)
                for word in ("minItems", "maxItems"):
                    if word in node:
                        for n in (node[word] - 1, node[word] + 1):
                            if n >= 0:
                                yield [copy.deepcopy(item) for _ in range(n)]
        yield from (None, 0, 1.5, "x", True, [], {})

    def sub_default(self, path: tuple[str | int, ...]) -> Any:
        schema = _schema_at(self.new_root, self.new_schema, path) or _schema_at(
            self.old_root, self.old_schema, path
        )
        return (
            _make(schema, self.new_schema if schema is not None else self.old_schema, full=True)
            if schema
            else {}
        )


def _collect(value: Any, name: str | None, into: dict[str, list[Any]]) -> None:
    """Every leaf of an example under the name of the property that holds it."""
    if isinstance(value, dict):
        for key, item in value.items():
            _collect(item, key, into)
    elif isinstance(value, list):
        for item in value:
            _collect(item, name, into)
    elif name is not None:
        into.setdefault(name, []).append(value)


def _last_name(path: tuple[str | int, ...]) -> str | None:
    return next((p for p in reversed(path) if isinstance(p, str)), None)


def _validator(schema: dict[str, Any], class_name: str) -> Any:
    return formats.Validator(
        {**schema, "$ref": f"#/$defs/{class_name}"}, format_checker=format_checker
    )


def _examples(side: Side, class_name: str) -> list[Any]:
    message = next(m for m in side.doc.messages if m.class_name == class_name)
    raw = side.spec.get(message.pointer)
    return [copy.deepcopy(e["payload"]) for e in raw.get("examples", []) if "payload" in e]


def _deref(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    for word in ("anyOf", "oneOf"):
        if word in schema:
            branch = next(b for b in schema[word] if b.get("type") != "null")
            return _deref(branch, root)
    merged: dict[str, Any] = {}
    seen = 0
    while seen < 50:
        seen += 1
        merged = {**schema, **merged}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        schema = root["$defs"][ref.rsplit("/", 1)[1]]
    merged.pop("$ref", None)
    return merged


def _schema_at(
    schema: Any, root: dict[str, Any], path: tuple[str | int, ...]
) -> dict[str, Any] | None:
    node = _deref(schema, root)
    for key in path:
        if isinstance(key, int):
            node = _deref(node.get("items"), root)
        else:
            props = node.get("properties") or {}
            if key not in props:
                return None
            node = _deref(props[key], root)
    return node


_FORMAT_VALUES = {
    "uuid": "00000000-0000-4000-8000-000000000000",
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def _make(
    schema: Any,
    root: dict[str, Any],
    *,
    full: bool,
    depth: int = 0,
    name: str | None = None,
    samples: dict[str, list[Any]] | None = None,
) -> Any:
    """One value `schema` accepts, as far as a simple construction goes (`full`: every optional
    property too, and one item in each list); the validators judge the result."""
    node = _deref(schema, root)
    if "const" in node:
        return node["const"]
    if node.get("enum"):
        return next((v for v in node["enum"] if v is not None), None)
    if "default" in node:
        return node["default"]
    kinds = _types(node) - {"null"}
    kind = sorted(kinds)[0] if kinds else "null"
    if depth > 8:
        return None
    if kind == "object":
        props = node.get("properties") or {}
        names = list(props) if full else list(node.get("required") or ())
        return {
            k: _make(props[k], root, full=full, depth=depth + 1, name=k, samples=samples)
            for k in names
            if k in props
        }
    if kind == "array":
        count = max(node.get("minItems", 0), 1 if full else 0)
        return [
            _make(node.get("items"), root, full=full, depth=depth + 1, name=name, samples=samples)
            for _ in range(count)
        ]
    if kind in ("integer", "number"):
        low = node.get("minimum", node.get("exclusiveMinimum", 0))
        value = max(low, 0) if "maximum" not in node else min(max(low, 0), node["maximum"])
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            value = node["exclusiveMinimum"] + 1
        step = node.get("multipleOf")
        if step:
            value = int(Fraction(value) / formats.exact(step) + 1) * step
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    if kind == "string":
        if node.get("format") in _FORMAT_VALUES:
            return _FORMAT_VALUES[node["format"]]
        if "pattern" in node:  # a value the examples hold under the same name, if one fits
            regex = formats.ecma_regex(node["pattern"])
            for value in (samples or {}).get(name or "", []):
                if isinstance(value, str) and regex.search(value):
                    return value
        return "a" * max(node.get("minLength", 1), 1)
    return None


def _boundaries(node: dict[str, Any]) -> Iterator[Any]:
    for word in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if word in node:
            for delta in (-1, 0, 1):
                yield node[word] + delta
    for word in ("minLength", "maxLength"):
        if word in node:
            for n in (node[word] - 1, node[word], node[word] + 1):
                if n >= 0:
                    yield "a" * n
    yield from node.get("enum") or ()
    if "const" in node:
        yield node["const"]
    if "multipleOf" in node:
        yield node["multipleOf"]
        yield node["multipleOf"] * 2
    yield "not a formatted value"


def _set_in(base: Any, path: tuple[str | int, ...], value: Any, finder: _CounterExamples) -> Any:
    """A copy of `base` with `value` at `path` (removed when `value` is `_ABSENT`); missing
    parents are made from the schema. None when the path cannot exist in `base`."""
    result = copy.deepcopy(base)
    node = result
    for i, key in enumerate(path[:-1]):
        if isinstance(key, int):
            if not isinstance(node, list):
                return None
            while len(node) <= key:
                node.append(finder.sub_default(path[: i + 1]))
        else:
            if not isinstance(node, dict):
                return None
            if not isinstance(node.get(key), dict | list):
                node[key] = finder.sub_default(path[: i + 1])
        node = node[key]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list):
            return None
        while len(node) <= last:
            node.append(None)
        if value is _ABSENT:
            return None
        node[last] = copy.deepcopy(value)
        return result
    if not isinstance(node, dict):
        return None
    if value is _ABSENT:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)
    return result


# -- channels, operations ----------------------------------------------------------------------
def _topology_change(
    new: Side, pointer: str, kind: str, order: Order, why: str, migration: str = ""
) -> Change:
    return Change(
        pointer=pointer,
        line=new.spec.where(pointer).line,
        kind=kind,
        order=order,
        why=why,
        migration=migration,
    )


def _receivers_of(doc: Document, channel: str) -> list[str]:
    return sorted(
        op.consumer.durable for op in doc.receivers if op.channel == channel and op.consumer
    )


def _senders_of(doc: Document, channel: str) -> list[str]:
    return sorted(op.key for op in doc.senders if op.channel == channel)


def _compare_channels(old: Side, new: Side) -> list[Change]:
    changes: list[Change] = []
    old_channels = {c.key: c for c in old.doc.channels}
    new_channels = {c.key: c for c in new.doc.channels}
    for key, ch in new_channels.items():
        pointer = f"/channels/{escape_pointer_token(key)}"
        before = old_channels.get(key)
        if before is None:
            changes.append(
                _topology_change(
                    new, pointer, "channel-added", Order.COMPATIBLE, f"channel {key} added"
                )
            )
            continue
        if before.address != ch.address:
            c = _topology_change(
                new,
                f"{pointer}/address",
                "channel-address-changed",
                Order.BREAKING,
                f"channel {key} address {before.address} → {ch.address}: old consumers filter "
                "the old subject and miss what new producers send; new consumers miss what old "
                "producers send",
                "a new channel on the new address beside the old one; consumers read both, "
                "producers switch, the old channel leaves once its stream drained",
            )
            c.consumers, c.producers = _receivers_of(new.doc, key), _senders_of(new.doc, key)
            changes.append(c)
        else:
            changes += _compare_parameters(new, key, before, ch, pointer)
        if before.stream != ch.stream:
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/bindings",
                    "channel-stream-changed",
                    Order.BREAKING,
                    f"channel {key} moves from stream {before.stream} to {ch.stream}: its "
                    "retained messages stay behind and its consumers are recreated",
                    "drain the old stream's consumers of the channel first, then move it",
                )
            )
        for message in ch.messages:
            if message not in before.messages:
                c = _topology_change(
                    new,
                    f"{pointer}/messages/{escape_pointer_token(message)}",
                    "channel-message-added",
                    Order.CONSUMERS_FIRST,
                    f"message {message} may now travel on {key}: old consumers dead-letter it "
                    "(unknown-event-type or schema-invalid)",
                    "upgrade the channel's consumers, then its producers",
                )
                c.consumers, c.producers = _receivers_of(new.doc, key), _senders_of(new.doc, key)
                changes.append(c)
        for message in before.messages:
            if message not in ch.messages:
                c = _topology_change(
                    new,
                    f"{pointer}/messages/{escape_pointer_token(message)}",
                    "channel-message-removed",
                    Order.PRODUCERS_FIRST,
                    f"message {message} no longer travels on {key}: new consumers dead-letter "
                    "the ones old producers sent",
                    "stop its producers, let the consumers drain the stream, then upgrade them",
                )
                c.consumers, c.producers = _receivers_of(new.doc, key), _senders_of(old.doc, key)
                changes.append(c)
    for key in old_channels:
        if key not in new_channels:
            changes.append(
                _topology_change(
                    new,
                    f"/channels/{escape_pointer_token(key)}",
                    "channel-removed",
                    Order.PRODUCERS_FIRST,
                    f"channel {key} ({old_channels[key].address}) removed",
                    "stop its producers, let its consumers drain, then remove both",
                )
            )
    return changes


def _compare_parameters(new: Side, key: str, before: Any, after: Any, pointer: str) -> list[Change]:
    changes: list[Change] = []
    old_params = {p.name: p for p in before.parameters}
    for param in after.parameters:
        was = old_params.get(param.name)
        if was is None:
            continue
        ppointer = f"{pointer}/parameters/{escape_pointer_token(param.name)}"
        old_set, new_set = set(was.enum), set(param.enum)
        if old_set != new_set or was.pattern != param.pattern:
            if old_set == new_set:
                wider = param.pattern is None
                narrower = was.pattern is None
            else:
                wider = (not new_set) or (bool(old_set) and old_set < new_set)
                narrower = (not old_set) or (bool(new_set) and new_set < old_set)
            order = order_of(narrower, wider)
            c = _topology_change(
                new,
                ppointer,
                "parameter-values-changed",
                order,
                f"parameter {param.name} of {key} accepts other values "
                f"(enum {sorted(old_set)} → {sorted(new_set)}, x-pattern {was.pattern!r} → "
                f"{param.pattern!r}): a consumer dead-letters a subject its channel refuses "
                "(invalid-subject)",
                _PAYLOAD_MIGRATION[order],
            )
            c.consumers, c.producers = _receivers_of(new.doc, key), _senders_of(new.doc, key)
            changes.append(c)
    return changes


def _compare_operations(old: Side, new: Side) -> list[Change]:
    changes: list[Change] = []
    old_ops = {op.key: op for op in old.doc.operations}
    for op in new.doc.operations:
        pointer = f"/operations/{escape_pointer_token(op.key)}"
        was = old_ops.get(op.key)
        if was is None:
            why = f"{op.action} operation {op.key} added"
            if op.consumer is not None and op.consumer.deliver_policy == "all":
                why += (
                    f"; its new durable {op.consumer.durable} starts at the first message the "
                    "stream retains (deliver_policy all)"
                )
            changes.append(_topology_change(new, pointer, "operation-added", Order.COMPATIBLE, why))
            continue
        if was.channel != op.channel:
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/channel",
                    "operation-channel-changed",
                    Order.BREAKING,
                    f"operation {op.key} moves from channel {was.channel} to {op.channel}",
                    "a new operation on the new channel beside the old one",
                )
            )
            continue
        added = [m for m in op.messages if m not in was.messages]
        removed = [m for m in was.messages if m not in op.messages]
        if not (added or removed):
            continue
        if op.action == "receive":
            order = order_of(not removed, True) if not removed else Order.PRODUCERS_FIRST
            why = f"receive operation {op.key} handles {', '.join(added) or 'no new'} message(s)"
            if removed:
                why += f" and no longer {', '.join(removed)}: it dead-letters those"
        else:
            order = Order.CONSUMERS_FIRST if added else Order.COMPATIBLE
            why = f"send operation {op.key} now sends {', '.join(added) or 'nothing new'}"
            if removed:
                why += f" and no longer {', '.join(removed)}"
        c = _topology_change(
            new,
            f"{pointer}/messages",
            "operation-messages-changed",
            order,
            why,
            _PAYLOAD_MIGRATION[order],
        )
        if op.consumer is not None:
            c.consumers = [op.consumer.durable]
        else:
            c.producers = [op.key]
            c.consumers = _receivers_of(new.doc, op.channel)
        changes.append(c)
    for key, was in old_ops.items():
        if key not in {op.key for op in new.doc.operations}:
            why = f"{was.action} operation {key} removed"
            migration = ""
            if was.consumer is not None:
                why += f"; its durable {was.consumer.durable} is left on the server"
                migration = f"delete the durable {was.consumer.durable} once its service stopped"
            changes.append(
                _topology_change(
                    new,
                    f"/operations/{escape_pointer_token(key)}",
                    "operation-removed",
                    Order.COMPATIBLE,
                    why,
                    migration,
                )
            )
    return changes


# -- NATS roles ------------------------------------------------------------------------------
_GRANT_FIRST = (
    "apply the new authorization before the service that needs it starts (`filetrash up` "
    "reloads the dev server's; elsewhere render generated/permissions.py into your server's)"
)
_REVOKE_AFTER = "revoke it once no running service of the old spec uses it"


def _spell_subjects(action: str, sign: str, subjects_: list[str]) -> str:
    return f"{sign}{action} " + ", ".join(subjects_)


def _compare_roles(old: Side, new: Side) -> list[Change]:
    """Each role's permissions granted or revoked: what the server's authorization must
    change (generated/permissions.py), and when."""
    changes: list[Change] = []
    old_roles = {r.name: r for r in old.doc.roles}
    new_roles = {r.name: r for r in new.doc.roles}

    def pointer_of(operations: tuple[str, ...]) -> str:
        return f"/operations/{escape_pointer_token(operations[0])}" if operations else ""

    for name, role in sorted(new_roles.items()):
        was = old_roles.get(name)
        pointer = pointer_of(role.operations)
        if was is None:
            why = (
                f"NATS role {name} added: publish {', '.join(role.publish)}; "
                f"subscribe {', '.join(role.subscribe)}"
            )
            changes.append(
                _topology_change(new, pointer, "role-added", Order.COMPATIBLE, why, _GRANT_FIRST)
            )
            continue
        parts: list[str] = []
        granted = revoked = False
        for action, before, after in (
            ("publish", was.publish, role.publish),
            ("subscribe", was.subscribe, role.subscribe),
        ):
            plus = [s for s in after if s not in before]
            minus = [s for s in before if s not in after]
            if plus:
                parts.append(_spell_subjects(action, "+", plus))
                granted = True
            if minus:
                parts.append(_spell_subjects(action, "-", minus))
                revoked = True
        if not parts:
            continue
        migration = "; ".join(
            text for flag, text in ((granted, _GRANT_FIRST), (revoked, _REVOKE_AFTER)) if flag
        )
        c = _topology_change(
            new,
            pointer,
            "role-permissions-changed",
            Order.COMPATIBLE,
            f"NATS role {name}: " + "; ".join(parts),
            migration,
        )
        if role.kind == "receive":
            c.consumers = [name]
        elif role.kind == "send":
            c.producers = [name]
        changes.append(c)
    performers = {
        key: op.consumer.durable for op in new.doc.receivers if op.consumer for key in op.sends
    }
    for name, was in sorted(old_roles.items()):
        if name not in new_roles:
            why = f"NATS role {name} removed"
            if name in performers:
                why += f" (its send operation is performed by {performers[name]} now)"
            changes.append(
                _topology_change(
                    new,
                    pointer_of(was.operations),
                    "role-removed",
                    Order.COMPATIBLE,
                    why,
                    _REVOKE_AFTER,
                )
            )
    return changes


# -- streams and consumers ---------------------------------------------------------------------
_DRAIN = (
    "let every consumer of the stream catch up (or copy the data out) before the change, or "
    "accept losing it with --allow"
)


def _compare_streams(old: Side, new: Side) -> list[Change]:
    changes: list[Change] = []
    old_streams = {s.name: s for s in old.doc.streams}
    for s in new.doc.streams:
        pointer = f"/x-jetstream-streams/{escape_pointer_token(s.name)}"
        was = old_streams.get(s.name)
        if was is None:
            changes.append(
                _topology_change(
                    new, pointer, "stream-added", Order.COMPATIBLE, f"stream {s.name} added"
                )
            )
            continue
        for subject in s.subjects:
            if subject not in was.subjects and not any(
                subjects.contains(o, subject) for o in was.subjects
            ):
                changes.append(
                    _topology_change(
                        new,
                        f"{pointer}/subjects",
                        "stream-subject-added",
                        Order.COMPATIBLE,
                        f"stream {s.name} also captures {subject} (provision before producers "
                        "publish to it)",
                    )
                )
        for subject in was.subjects:
            if not any(subjects.contains(n, subject) for n in s.subjects):
                c = _topology_change(
                    new,
                    f"{pointer}/subjects",
                    "stream-subject-removed",
                    Order.PRODUCERS_FIRST,
                    f"stream {s.name} no longer captures {subject}: publishes to it fail (no "
                    "stream answers), its consumers get nothing new",
                    "stop every producer of the subject, then provision the stream",
                )
                c.producers = sorted(
                    op.key for op in old.doc.senders if subjects.overlaps(subject, op.subject)
                )
                changes.append(c)
        if {was.retention, s.retention} == {"limits", "interest"}:
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/retention",
                    "stream-retention-changed",
                    Order.BREAKING,
                    f"stream {s.name} retention {was.retention} → {s.retention}: JetStream "
                    "changes it in place, but "
                    + (
                        "the messages every durable has acknowledged leave the stream at once "
                        "(no replay of history from it afterwards)"
                        if s.retention == "interest"
                        else "acknowledged messages stay until the limits drop them"
                    ),
                    "`filetrash provision --allow-interest` makes the change in place "
                    "(docs/backlog.md); accept it here with --allow",
                )
            )
        for name, kind in (
            ("retention", "stream-retention-changed"),
            ("storage", "stream-storage-changed"),
        ):
            if name == "retention" and {was.retention, s.retention} == {"limits", "interest"}:
                continue
            if getattr(was, name) != getattr(s, name):
                changes.append(
                    _topology_change(
                        new,
                        f"{pointer}/{name}",
                        kind,
                        Order.BREAKING,
                        f"stream {s.name} {name} {getattr(was, name)} → {getattr(s, name)}: "
                        "JetStream cannot change it in place",
                        "a new stream beside the old one; drain the old one's consumers, move "
                        "producers and consumers, then delete it",
                    )
                )
        for name in ("max_age", "max_bytes", "max_msgs"):
            before, after = _limit(getattr(was, name)), _limit(getattr(s, name))
            unit = "s" if name == "max_age" else ""
            if before == after:
                continue
            if after < before:
                changes.append(
                    _topology_change(
                        new,
                        f"{pointer}/{name}",
                        f"stream-{name.replace('_', '-')}-lowered",
                        Order.BREAKING,
                        f"stream {s.name} {name} {_spell_limit(before, unit)} → "
                        f"{_spell_limit(after, unit)}: retained messages beyond the new limit are dropped at once",
                        _DRAIN,
                    )
                )
            else:
                changes.append(
                    _topology_change(
                        new,
                        f"{pointer}/{name}",
                        f"stream-{name.replace('_', '-')}-raised",
                        Order.COMPATIBLE,
                        f"stream {s.name} {name} {_spell_limit(before, unit)} → "
                        f"{_spell_limit(after, unit)}",
                    )
                )
        before, after = _limit(was.max_msg_size), _limit(s.max_msg_size)
        if before != after:
            lower = after < before
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/max_msg_size",
                    "stream-max-msg-size-" + ("lowered" if lower else "raised"),
                    Order.PRODUCERS_FIRST if lower else Order.COMPATIBLE,
                    f"stream {s.name} max_msg_size {_spell_limit(before)} → {_spell_limit(after)}"
                    + (": larger publishes are refused" if lower else ""),
                    "make producers send smaller messages first" if lower else "",
                )
            )
        before, after = _limit(was.max_msgs_per_subject), _limit(s.max_msgs_per_subject)
        if before != after:
            refuses = s.discard == "new" and s.discard_new_per_subject
            order = (
                Order.COMPATIBLE
                if after > before
                else (Order.PRODUCERS_FIRST if refuses else Order.BREAKING)
            )
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/max_msgs_per_subject",
                    "stream-max-msgs-per-subject-" + ("raised" if after > before else "lowered"),
                    order,
                    f"stream {s.name} max_msgs_per_subject {_spell_limit(before)} → "
                    f"{_spell_limit(after)}"
                    + (
                        ""
                        if after > before
                        else ": a full subject refuses publishes (producers must handle it)"
                        if refuses
                        else ": retained messages beyond it are dropped at once"
                    ),
                    ""
                    if after > before
                    else "make producers handle StreamFull first"
                    if refuses
                    else _DRAIN,
                )
            )
        if was.discard_new_per_subject != s.discard_new_per_subject:
            on = s.discard_new_per_subject
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/discard_new_per_subject",
                    "stream-discard-new-per-subject-changed",
                    Order.PRODUCERS_FIRST if on else Order.BREAKING,
                    f"stream {s.name} discard_new_per_subject {was.discard_new_per_subject} → "
                    f"{on}: a full subject "
                    + (
                        "refuses publishes (producers must handle the error)"
                        if on
                        else "drops its oldest messages, unprocessed ones too, without a word"
                    ),
                    "make producers handle StreamFull first" if on else _DRAIN,
                )
            )
        if was.discard != s.discard:
            changes.append(
                _topology_change(
                    new,
                    f"{pointer}/discard",
                    "stream-discard-changed",
                    Order.PRODUCERS_FIRST if s.discard == "new" else Order.COMPATIBLE,
                    f"stream {s.name} discard {was.discard} → {s.discard}: when full it "
                    + (
                        "refuses publishes (producers must handle the error)"
                        if s.discard == "new"
                        else "drops its oldest messages instead of refusing publishes"
                    ),
                )
            )
        for name in ("num_replicas", "duplicate_window"):
            if getattr(was, name) != getattr(s, name):
                changes.append(
                    _topology_change(
                        new,
                        f"{pointer}/{name}",
                        f"stream-{name.replace('_', '-')}-changed",
                        Order.COMPATIBLE,
                        f"stream {s.name} {name} {getattr(was, name)} → {getattr(s, name)}",
                    )
                )
        changes += _unknown_settings(new, pointer, f"stream {s.name}", was, s, _STREAM_JUDGED)
    for name in old_streams:
        if name not in {s.name for s in new.doc.streams}:
            changes.append(
                _topology_change(
                    new,
                    f"/x-jetstream-streams/{escape_pointer_token(name)}",
                    "stream-removed",
                    Order.BREAKING,
                    f"stream {name} removed: its retained messages are lost once it is deleted",
                    _DRAIN,
                )
            )
    return changes


def _limit(value: float | int | None) -> float:
    return float("inf") if value is None or value < 0 else float(value)


def _spell_limit(value: float, unit: str = "") -> str:
    return (
        "unlimited"
        if value == float("inf")
        else f"{int(value) if value.is_integer() else value}{unit}"
    )


def _compare_consumers(old: Side, new: Side) -> list[Change]:
    changes: list[Change] = []
    old_ops = {op.key: op for op in old.doc.receivers if op.consumer is not None}
    for op in new.doc.receivers:
        was_op = old_ops.get(op.key)
        if was_op is None or op.consumer is None or was_op.consumer is None:
            continue
        was, now = was_op.consumer, op.consumer
        pointer = f"/operations/{escape_pointer_token(op.key)}/x-jetstream-consumer"

        def add(
            name: str,
            kind: str,
            order: Order,
            why: str,
            migration: str = "",
            pointer: str = pointer,
            durable: str = now.durable,
        ) -> None:
            c = _topology_change(new, f"{pointer}/{name}", kind, order, why, migration)
            c.consumers = [durable]
            changes.append(c)

        if was.durable != now.durable:
            add(
                "durable",
                "durable-renamed",
                Order.BREAKING,
                f"durable {was.durable} → {now.durable}: a new consumer that starts at "
                f"deliver_policy {now.deliver_policy}"
                + (" and replays the whole stream" if now.deliver_policy == "all" else "")
                + f"; {was.durable} is orphaned with its pending messages",
                f"create {now.durable} with deliver_policy new (or by start sequence) once "
                f"{was.durable} caught up and stopped, then delete {was.durable}",
            )
            continue
        if was.filter_subject != now.filter_subject:
            wider = subjects.contains(now.filter_subject, was.filter_subject)
            add(
                "filter_subject",
                "filter-changed",
                Order.COMPATIBLE if wider else Order.BREAKING,
                f"{now.durable} filter {was.filter_subject} → {now.filter_subject}"
                + ("" if wider else ": messages it no longer matches are never processed by it"),
                "" if wider else "a new durable for the new filter once the old one caught up",
            )
        if was.deliver_policy != now.deliver_policy:
            add(
                "deliver_policy",
                "deliver-policy-changed",
                Order.BREAKING,
                f"{now.durable} deliver_policy {was.deliver_policy} → {now.deliver_policy}: "
                "JetStream cannot change it on an existing durable",
                "a new durable with the new policy; delete the old one once it caught up",
            )
        for name in ("ack_wait", "max_ack_pending", "max_waiting"):
            if getattr(was, name) != getattr(now, name):
                add(
                    name,
                    f"{name.replace('_', '-')}-changed",
                    Order.COMPATIBLE,
                    f"{now.durable} {name} {getattr(was, name)} → {getattr(now, name)} "
                    "(updated in place by provisioning)",
                )
        if was.backoff != now.backoff:
            add(
                "backoff",
                "backoff-changed",
                Order.COMPATIBLE,
                f"{now.durable} backoff {list(was.backoff)} → {list(now.backoff)} (updated in "
                "place by provisioning)",
            )
        if was.max_deliver != now.max_deliver:
            fewer = _limit(now.max_deliver) < _limit(was.max_deliver)
            add(
                "max_deliver",
                "max-deliver-changed",
                Order.COMPATIBLE,
                f"{now.durable} max_deliver {was.max_deliver} → {now.max_deliver}"
                + (": messages in redelivery are dead-lettered sooner" if fewer else ""),
            )
        if was.dead_letter_subject != now.dead_letter_subject:
            add(
                "dead_letter",
                "dead-letter-changed",
                Order.COMPATIBLE,
                f"{now.durable} dead letters {was.dead_letter_subject} → "
                f"{now.dead_letter_subject}: earlier ones stay where they are",
            )
        for change in _unknown_settings(new, pointer, now.durable, was, now, _CONSUMER_JUDGED):
            change.consumers = [now.durable]
            changes.append(change)
    return changes


_STREAM_JUDGED = frozenset(
    {
        "name",
        "description",
        "location",
        "subjects",
        "retention",
        "storage",
        "discard",
        "max_bytes",
        "max_msgs",
        "max_msg_size",
        "max_age",
        "duplicate_window",
        "num_replicas",
        "max_msgs_per_subject",
        "discard_new_per_subject",
    }
)
_CONSUMER_JUDGED = frozenset(
    {
        "durable",
        "stream",
        "description",
        "location",
        "filter_subject",
        "ack_policy",
        "deliver_policy",
        "ack_wait",
        "max_deliver",
        "backoff",
        "max_ack_pending",
        "max_waiting",
        "dead_letter_subject",
    }
)


def _unknown_settings(
    new: Side, pointer: str, owner: str, was: Any, now: Any, judged: frozenset[str]
) -> list[Change]:
    """A setting the IR gained after this module was written is not waved through: its change
    is breaking until someone says what JetStream does with it (and teaches it here)."""
    changes = []
    for item in dataclasses.fields(now):
        if item.name in judged or getattr(was, item.name, None) == getattr(now, item.name):
            continue
        changes.append(
            _topology_change(
                new,
                f"{pointer}/{item.name}",
                f"{item.name.replace('_', '-')}-changed",
                Order.BREAKING,
                f"{owner} {item.name} {getattr(was, item.name, None)!r} → "
                f"{getattr(now, item.name)!r}: compat does not know what JetStream does with it",
                "check what the change does to retained data and running services, then "
                "accept it with --allow (and teach generator/compat.py the setting)",
            )
        )
    return changes
