"""Stage 1: the spec file → plain data, every node still knowing its line and JSON pointer.

Local `$ref`s are followed on demand by `Spec.resolve`, so the builder can tell a reference
to a channel from a copy of it; refs to other files are reported, not fetched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.diagnostics import Diagnostic, Level, Location, SpecError, escape_pointer_token


class _JsonLikeLoader(yaml.SafeLoader):
    """SafeLoader without YAML-only implicit types: dates stay strings, as in JSON."""


_JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Spec:
    """The loaded document and, for every JSON pointer in it, where it was written."""

    path: str
    data: dict[str, Any]
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)

    def where(self, pointer: str) -> Location:
        """The location of `pointer`, or of its nearest ancestor that has one."""
        probe = pointer
        while probe not in self.lines and probe:
            probe = probe.rsplit("/", 1)[0]
        line, column = self.lines.get(probe, (1, 1))
        return Location(self.path, line, column, pointer)

    def get(self, pointer: str) -> Any:
        """The node at `pointer`; raises KeyError when there is none."""
        node: Any = self.data
        for raw in _tokens(pointer):
            if isinstance(node, dict):
                node = node[raw]
            elif isinstance(node, list) and raw.isdigit() and int(raw) < len(node):
                node = node[int(raw)]
            else:
                raise KeyError(pointer)
        return node

    def resolve(self, node: Any, pointer: str) -> tuple[Any, str]:
        """Follows `$ref` chains from `node` (found at `pointer`); returns the target and its
        pointer. Raises `SpecError` for a ref that is not local, dangles or loops."""
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            where = self.where(f"{pointer}/$ref")
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise SpecError(
                    [
                        _ref_error(
                            where,
                            "unsupported-ref",
                            f"$ref {ref!r} is not local",
                            "only references inside this document (#/...) are supported",
                        )
                    ]
                )
            target = ref[1:] or ""
            if target in seen:
                raise SpecError(
                    [
                        _ref_error(
                            where,
                            "ref-cycle",
                            f"$ref {ref!r} loops back on itself",
                            "point the reference at a real definition",
                        )
                    ]
                )
            seen.add(target)
            try:
                node = self.get(target)
            except KeyError:
                raise SpecError(
                    [
                        _ref_error(
                            where,
                            "unknown-ref",
                            f"$ref {ref!r} points at nothing",
                            "check the spelling, or define it under components",
                        )
                    ]
                ) from None
            pointer = target
        return node, pointer


def _ref_error(where: Location, code: str, message: str, hint: str) -> Diagnostic:
    return Diagnostic(Level.ERROR, code, where, message, hint)


def _tokens(pointer: str) -> Iterator[str]:
    if not pointer:
        return
    for token in pointer.lstrip("/").split("/"):
        yield token.replace("~1", "/").replace("~0", "~")


def load_spec(path: Path, display: str | None = None) -> Spec:
    """Reads and parses the spec; a missing file, a YAML error or a duplicate key is a SpecError."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
        raise SpecError(
            [
                Diagnostic(
                    Level.ERROR,
                    "unreadable",
                    Location(shown, 1, 1, ""),
                    f"cannot read the spec: {reason}",
                    "check --spec",
                )
            ]
        ) from None
    return load_text(text, shown)


def load_text(text: str, display: str) -> Spec:
    loader = _JsonLikeLoader(text)
    spec = Spec(display, {})
    problems: list[Diagnostic] = []
    try:
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode):
            raise SpecError(
                [
                    Diagnostic(
                        Level.ERROR,
                        "not-a-mapping",
                        Location(display, 1, 1, ""),
                        "the spec must be a YAML mapping",
                        "start from asyncapi/asyncapi.yaml",
                    )
                ]
            )
        spec.data = _convert(root, "", spec, problems, loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(
            [
                Diagnostic(
                    Level.ERROR,
                    "yaml-syntax",
                    Location(display, line, column, ""),
                    f"YAML syntax error: {problem}",
                    "fix the YAML at that position",
                )
            ]
        ) from None
    finally:
        loader.dispose()
    if problems:
        raise SpecError(problems)
    return spec


# Far more than any real spec; stops a few lines of nested aliases ("billion laughs") from
# expanding into gigabytes.
MAX_NODES = 200_000


def _convert(
    node: yaml.Node, pointer: str, spec: Spec, problems: list[Diagnostic], loader: yaml.SafeLoader
) -> Any:
    spec.lines[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if len(spec.lines) > MAX_NODES:
        raise SpecError(
            [
                Diagnostic(
                    Level.ERROR,
                    "too-large",
                    spec.where(pointer),
                    f"the spec expands to more than {MAX_NODES} YAML nodes",
                    "do not nest aliases (*name) of big anchors",
                )
            ]
        )
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            child = f"{pointer}/{escape_pointer_token(key)}"
            if key in result:
                where = Location(
                    spec.path, key_node.start_mark.line + 1, key_node.start_mark.column + 1, child
                )
                problems.append(
                    Diagnostic(
                        Level.ERROR,
                        "duplicate-key",
                        where,
                        f"key {key!r} appears twice in the same mapping",
                        "remove one of them",
                    )
                )
            result[key] = _convert(value_node, child, spec, problems, loader)
            if isinstance(value_node, yaml.CollectionNode) and not value_node.flow_style:
                # A block mapping or list starts on the line after its key: point at the key.
                spec.lines[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, f"{pointer}/{i}", spec, problems, loader)
            for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node)
