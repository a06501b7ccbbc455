"""The spec as one self-contained HTML page (`just docs`): overview, topology diagram, messages,
channels, operations and streams, all linked. Rendered from the IR only, by one template with
autoescaping on: no string from the spec reaches the page unescaped, and the page loads
nothing (inline CSS and SVG, no script).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from generator.ir import Channel, Consumer, Document, Message, Operation, Role, Stream
from generator.render import TEMPLATES

DOCS_PATH = Path("docs/spec.html")
"""Where `just docs` writes the page, and what `just check` compares; the diagram alone goes
beside it as topology.svg (the README shows it)."""
DIAGRAM_NAME = "topology.svg"


# -- units people read ------------------------------------------------------------------------
def duration(seconds: float | None) -> str:
    """`30 s`, `2 min`, `7 days`, `1 day 12 h`."""
    if seconds is None:
        return "—"
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    minutes = int(seconds // 60)
    if minutes < 60 or minutes % 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h"
    days, rest = divmod(hours, 24)
    text = f"{days} day" + ("s" if days != 1 else "")
    return f"{text} {rest} h" if rest else text


def size(count: int | None) -> str:
    """`100 MiB`, `512 B`, `unlimited` for -1 or none."""
    if count is None or count < 0:
        return "unlimited"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor:
            return f"{count / factor:g} {unit}"
    return f"{count} B"


def amount(count: int | None) -> str:
    return "unlimited" if count is None or count < 0 else f"{count:,}"


def anchor(kind: str, name: str) -> str:
    """A unique, HTML-safe id: letters, digits and `-` stay; anything else is `_` and its hex."""
    return kind + "-" + re.sub(r"[^A-Za-z0-9-]", lambda m: f"_{ord(m.group()):x}_", name)


# -- what the page shows ----------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    path: str
    depth: int
    type: str
    required: bool
    constraints: str
    description: str
    ref: str | None
    """The shared schema it comes from (`components.schemas`), if any."""


@dataclass(frozen=True)
class Box:
    id: str
    href: str
    x: int
    y: int
    width: int
    height: int
    title: str
    lines: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int
    kind: str


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    boxes: tuple[Box, ...]
    edges: tuple[Edge, ...]


def message_fields(doc: Document, message: Message) -> list[Field]:
    """Every field of the message's payload, nested and `$ref`'d schemas unfolded."""
    if not message.is_json:
        return []
    defs: dict[str, Any] = json.loads(doc.models_schema)["$defs"]
    rows: list[Field] = []

    def deref(node: Any) -> tuple[dict[str, Any], str | None]:
        ref = None
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"].rsplit("/", 1)[1]
            node = defs[ref]
        return (node if isinstance(node, dict) else {}), ref

    def walk(schema: dict[str, Any], prefix: str, depth: int, seen: tuple[str, ...]) -> None:
        required = set(schema.get("required", []))
        for name, sub in schema.get("properties", {}).items():
            node, ref = deref(sub)
            nullable = False
            for key in ("anyOf", "oneOf"):
                if key in node:
                    branch = next(b for b in node[key] if b.get("type") != "null")
                    node, ref = deref(branch)
                    nullable = True
            rows.append(
                Field(
                    path=prefix + name,
                    depth=depth,
                    type=type_text(node, ref, nullable, deref),
                    required=name in required,
                    constraints=constraints_text(node),
                    description=str(sub.get("description") or node.get("description") or ""),
                    ref=ref if ref and ref not in seen else None,
                )
            )
            inner, inner_ref, path = node, ref, prefix + name
            while "array" in _types(inner) and isinstance(inner.get("items"), dict):
                inner, inner_ref = deref(inner["items"])
                path += "[]"
            if "object" in _types(inner) and (inner_ref is None or inner_ref not in seen):
                walk(inner, path + ".", depth + 1, (*seen, *([inner_ref] if inner_ref else [])))

    root, _ = deref(defs[message.class_name])
    walk(root, "", 0, (message.class_name,))
    return rows


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    return kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []


def type_text(node: dict[str, Any], ref: str | None, nullable: bool, deref: Any) -> str:
    kinds = [k for k in _types(node) if k != "null"]
    nullable = nullable or "null" in _types(node)
    if not kinds and "const" in node:
        kinds = [type(node["const"]).__name__.replace("str", "string")]
    if not kinds and "enum" in node:
        kinds = ["string" if all(isinstance(v, str) for v in node["enum"] if v) else "integer"]
    text = kinds[0] if kinds else "any"
    if text == "object" and ref:
        text = ref
    if text == "array":
        items, items_ref = deref(node.get("items", {}))
        text = "array of " + (
            items_ref or type_text(items, None, False, deref) if node.get("items") else "any"
        )
    if "format" in node:
        text += f" ({node['format']})"
    return text + " or null" if nullable else text


def constraints_text(node: dict[str, Any]) -> str:
    parts: list[str] = []
    if "const" in node:
        parts.append(f"always {json.dumps(node['const'])}")
    if "enum" in node:
        parts.append("one of " + ", ".join(json.dumps(v) for v in node["enum"]))
    for key, label in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            parts.append(f"{label} {json.dumps(node[key])}")
    if "multipleOf" in node:
        parts.append(f"multiple of {json.dumps(node['multipleOf'])}")
    low, high = node.get("minLength"), node.get("maxLength")
    if low is not None or high is not None:
        parts.append(f"length {low or 0}–{high if high is not None else '∞'}")
    low, high = node.get("minItems"), node.get("maxItems")
    if low is not None or high is not None:
        parts.append(f"{low or 0}–{high if high is not None else '∞'} items")
    if "pattern" in node:
        parts.append(f"matches {node['pattern']}")
    if "default" in node:
        parts.append(f"default {json.dumps(node['default'])}")
    return "; ".join(parts)


def consumer_settings(consumer: Consumer) -> list[tuple[str, str]]:
    return [
        ("durable", consumer.durable),
        ("stream", consumer.stream),
        ("filter", consumer.filter_subject),
        ("ack policy", consumer.ack_policy),
        ("deliver policy", consumer.deliver_policy),
        ("ack wait", duration(consumer.ack_wait) if consumer.ack_wait else "server default (30 s)"),
        ("max deliver", amount(consumer.max_deliver)),
        ("backoff", ", ".join(duration(b) for b in consumer.backoff) or "—"),
        ("max ack pending", amount(consumer.max_ack_pending)),
        ("dead letters to", consumer.dead_letter_subject),
    ]


def stream_settings(stream: Stream) -> list[tuple[str, str]]:
    return [
        ("subjects", ", ".join(stream.subjects)),
        ("retention", stream.retention),
        ("storage", stream.storage),
        ("discard", stream.discard),
        ("max bytes", size(stream.max_bytes)),
        ("max messages", amount(stream.max_msgs)),
        ("max messages per subject", amount(stream.max_msgs_per_subject)),
        ("discard new per subject", "yes" if stream.discard_new_per_subject else "no"),
        ("max age", duration(stream.max_age) if stream.max_age else "unlimited"),
        ("max message size", size(stream.max_msg_size)),
        ("duplicate window", duration(stream.duplicate_window)),
        ("replicas", str(stream.num_replicas)),
    ]


# -- the diagram ------------------------------------------------------------------------------
_LINE, _PAD, _GAP, _WIDTH = 16, 10, 18, 250
_COLUMNS = (20, 360, 700)


def diagram(doc: Document) -> Diagram:
    """Producers (send operations) → streams → consumers, and each consumer's dead letters back
    to the stream that keeps them."""
    channels = {c.key: c for c in doc.channels}
    boxes: list[Box] = []
    tops = [20, 20, 20]

    def place(column: int, box_id: str, href: str, title: str, lines: list[str], kind: str) -> Box:
        height = _PAD * 2 + _LINE * (1 + len(lines))
        fitted = tuple(_fit(line) for line in lines)
        box = Box(
            box_id, href, _COLUMNS[column], tops[column], _WIDTH, height, _fit(title), fitted, kind
        )
        tops[column] += height + _GAP
        boxes.append(box)
        return box

    senders = {
        op.key: place(
            0,
            "d-" + anchor("operation", op.key),
            "#" + anchor("operation", op.key),
            op.key,
            ["sends to " + channels[op.channel].address],
            "producer",
        )
        for op in doc.senders
    }
    streams = {
        s.name: place(
            1,
            "d-" + anchor("stream", s.name),
            "#" + anchor("stream", s.name),
            s.name,
            [
                ", ".join(s.subjects),
                f"{s.retention} · {s.storage} · discard {s.discard}",
                f"max {size(s.max_bytes)} · "
                + (duration(s.max_age) if s.max_age else "no max age"),
            ],
            "stream",
        )
        for s in doc.streams
    }
    consumers = {}
    for op in doc.receivers:
        c = op.consumer
        assert c is not None
        consumers[op.key] = place(
            2,
            "d-" + anchor("operation", op.key),
            "#" + anchor("operation", op.key),
            c.durable,
            [
                f"filter {c.filter_subject}",
                f"ack wait {duration(c.ack_wait)} · max deliver {amount(c.max_deliver)}",
            ],
            "consumer",
        )
    edges: list[Edge] = []
    for op in doc.senders:
        box, target = senders[op.key], streams[channels[op.channel].stream]
        edges.append(_edge(box, target, "publish"))
    for op in doc.receivers:
        assert op.consumer is not None
        box, source = consumers[op.key], streams[op.consumer.stream]
        edges.append(_edge(source, box, "deliver"))
        dlq = next((s for s in doc.streams if _captures(s, op.consumer.dead_letter_subject)), None)
        if dlq is not None:
            target = streams[dlq.name]
            edges.append(
                Edge(box.x, box.y + box.height - 8, target.x + target.width, target.y + 20, "dead")
            )
    return Diagram(max(_COLUMNS) + _WIDTH + 20, max(tops) + 10, tuple(boxes), tuple(edges))


def _fit(text: str, limit: int = 38) -> str:
    """What fits on a box's line; the section the box links to has it whole."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _edge(source: Box, target: Box, kind: str) -> Edge:
    return Edge(
        source.x + source.width,
        source.y + source.height // 2,
        target.x,
        target.y + target.height // 2,
        kind,
    )


def _captures(stream: Stream, subject: str) -> bool:
    from generator.subjects import contains

    return any(contains(pattern, subject) for pattern in stream.subjects)


# -- the page ---------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["anchor"] = anchor
    return env


def render_docs(doc: Document) -> str:
    """The page: every part of the spec, linked, with the diagram inline."""
    channels = {c.key: c for c in doc.channels}
    return (
        _environment()
        .get_template("docs.html.jinja")
        .render(
            doc=doc,
            diagram=diagram(doc),
            fields={m.key: message_fields(doc, m) for m in doc.messages},
            carried_by={m.key: _carriers(doc.channels, m) for m in doc.messages},
            operations_of={m.key: _operations(doc.operations, m) for m in doc.messages},
            channels=channels,
            consumer_settings=consumer_settings,
            stream_settings=stream_settings,
            consumers_of={s.name: _consumers(doc.receivers, s) for s in doc.streams},
            role_grants=role_grants,
        )
    )


def role_grants(role: Role) -> list[tuple[str, str]]:
    """(`publish SUBJECT` or `subscribe SUBJECT`, why), every grant of the role; the admin
    role's are the whole server."""
    if role.reasons:
        return list(role.reasons)
    grants = [(f"publish {s}", "") for s in role.publish]
    return grants + [(f"subscribe {s}", "") for s in role.subscribe]


def render_diagram(doc: Document) -> str:
    """The topology diagram alone, as an SVG file."""
    svg = _environment().get_template("topology.svg.jinja").render(diagram=diagram(doc))
    return f"<!-- Generated by filetrash-generator from {doc.spec_path} — do not edit. -->\n{svg}"


def docs_files(doc: Document) -> dict[str, str]:
    """The files of `docs/` that the spec renders, by name."""
    return {DOCS_PATH.name: render_docs(doc), DIAGRAM_NAME: render_diagram(doc)}


def _carriers(channels: tuple[Channel, ...], message: Message) -> list[Channel]:
    return [c for c in channels if message.key in c.messages]


def _operations(operations: tuple[Operation, ...], message: Message) -> list[Operation]:
    return [op for op in operations if message.key in op.messages]


def _consumers(receivers: tuple[Operation, ...], stream: Stream) -> list[Operation]:
    return [op for op in receivers if op.consumer is not None and op.consumer.stream == stream.name]
