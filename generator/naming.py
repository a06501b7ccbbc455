"""Every identifier the generator writes is made here: split, change case, escape.

Wire names stay as they are on the wire (aliases, subjects, durables); only the Python names
are derived, and two spec names that derive the same Python name are reported by the builder.
"""

from __future__ import annotations

import builtins
import keyword
import re

# Names the generated modules import or define themselves; a spec name may not shadow them.
RESERVED = frozenset(
    {
        "Annotated",
        "Any",
        "AwareDatetime",
        "BaseModel",
        "ConfigDict",
        "ConsumerBinding",
        "ConsumerConfig",
        "ConsumerEndpoint",
        "CONSUMERS",
        "Delivery",
        "DeliverPolicy",
        "DiscardPolicy",
        "EventModel",
        "EVENT_UNION_CONFIG",
        "Field",
        "Final",
        "Literal",
        "Mapping",
        "OutgoingMessage",
        "Protocol",
        "Publish",
        "PublishResult",
        "RetentionPolicy",
        "RootModel",
        "STREAMS",
        "StorageType",
        "StrictBool",
        "StrictInt",
        "StreamConfig",
        "TypeAdapter",
        "UUID",
        "AckPolicy",
        "annotations",
        "delivery",
        "event",
        "handler",
        "headers",
        "msg_id",
        "payload",
        "self",
    }
)
_BUILTINS = frozenset(dir(builtins))

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9]|[^A-Za-z0-9]|$)|[A-Z]?[a-z0-9]+|[A-Z]+")


def words(name: str) -> list[str]:
    """`trashProcessor` → [trash, Processor]; `FILE_EVENTS` → [FILE, EVENTS]; `x-y.z` → [x, y, z]."""
    return _WORD.findall(name)


def escape(identifier: str) -> str:
    """A valid, non-shadowing Python identifier (trailing `_` for keywords, builtins and our own
    names, leading `n` for a leading digit, `unnamed` for nothing)."""
    if not identifier:
        return "unnamed"
    if identifier[0].isdigit():
        identifier = "n" + identifier
    if keyword.iskeyword(identifier) or keyword.issoftkeyword(identifier):
        return identifier + "_"
    if identifier in _BUILTINS or identifier in RESERVED:
        return identifier + "_"
    return identifier


def pascal(name: str) -> str:
    """A class name: always capitalised (`N2fa`, `Unnamed`), as datamodel-code-generator names
    the payload models; a trailing `_` means it had to be escaped."""
    escaped = escape("".join(w[:1].upper() + w[1:] for w in words(name)))
    return escaped[:1].upper() + escaped[1:]


def snake(name: str) -> str:
    return escape("_".join(w.lower() for w in words(name)))


def constant(name: str) -> str:
    return escape("_".join(w.upper() for w in words(name)))


def py_str(text: str) -> str:
    """A Python string literal for any text from the spec: the only way spec text enters code."""
    return repr(str(text))


def printable(text: str) -> str:
    """`text` with every invisible or control character but newline and tab spelled as an
    escape (`\\x1b`, `\\u202e`): descriptions become docstrings, where a terminal escape or a
    bidi override could hide what the code says."""
    return "".join(
        c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def comment_text(text: str) -> str:
    """Text that stays on its `#` comment line: `printable`, with newlines and tabs escaped too."""
    return printable(text).replace("\n", "\\n").replace("\t", "\\t")


def one_line(text: str | None, limit: int = 88) -> str:
    """The first sentence-ish line of a description, for docstrings and comments."""
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
