"""Which receive operations have a handwritten consumer, and which consumers lost their operation.

A consumer is a module under handwritten/ that imports an operation's endpoint or handler from
`generated.consumers`: each service module does, the filetrash app's under
handwritten/filetrash/ and the scaffolded ones under handwritten/services/. The modules are
read as source, never imported: the generator stays on its side of the wall. `just generate`
and `just check` print what this finds as warnings; they never fail, since the consumer of a
new operation is scaffolded after generating.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from generator.diagnostics import Diagnostic, Level
from generator.ir import Document

CONSUMERS_MODULE = "generated.consumers"


@dataclass(frozen=True, slots=True)
class ConsumerImport:
    """`from generated.consumers import <names>` at `path`:`line`."""

    path: Path
    line: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CodeWarning:
    """A warning located in handwritten code rather than in the spec."""

    code: str
    path: str
    line: int
    message: str
    hint: str

    def render(self) -> str:
        return f"{self.path}:{self.line}: warning[{self.code}]: {self.message} — {self.hint}"


def consumer_imports(services: Path) -> list[ConsumerImport]:
    """Every import from `generated.consumers` in the modules under `services`; a module that
    does not parse is skipped (ruff and mypy report it)."""
    found: list[ConsumerImport] = []
    for path in sorted(services.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)):
            if node.level == 0 and node.module == CONSUMERS_MODULE:
                names = tuple(alias.name for alias in node.names)
                found.append(ConsumerImport(path, node.lineno, names))
    return found


def consumers_by_operation(
    document: Document, imports: Iterable[ConsumerImport]
) -> dict[str, ConsumerImport]:
    """Each receive operation that some module imports the endpoint or handler of → the first
    such import."""
    imports = list(imports)
    result: dict[str, ConsumerImport] = {}
    for operation in document.receivers:
        wanted = {operation.constant_name, operation.class_name}
        using = next((i for i in imports if wanted.intersection(i.names)), None)
        if using is not None:
            result[operation.key] = using
    return result


def scaffolded_operation(module: Path) -> str | None:
    """The operation a scaffolded module was made for, from the copier answers beside it."""
    answers = module.with_name(f".copier-answers.{module.stem}.yml")
    try:
        data = yaml.safe_load(answers.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    operation = data.get("operation") if isinstance(data, dict) else None
    return operation if isinstance(operation, str) else None


def check_consumers(
    document: Document, consumers_source: str, services: Path, *, display_root: Path
) -> list[Diagnostic | CodeWarning]:
    """Warnings for receive operations without a consumer (located in the spec) and for modules
    that import names the freshly rendered `consumers_source` no longer defines."""
    imports = consumer_imports(services)
    warnings: list[Diagnostic | CodeWarning] = []
    consumed = consumers_by_operation(document, imports)
    for operation in document.receivers:
        if operation.key not in consumed:
            durable = operation.consumer.durable if operation.consumer else operation.key
            warnings.append(
                Diagnostic(
                    Level.WARNING,
                    "no-consumer",
                    operation.location,
                    f"receive operation {operation.key} ({durable}) has no consumer under "
                    f"{_display(services, display_root)}/",
                    f"run `just scaffold-consumer {operation.key}`",
                )
            )
    defined = _top_level_names(consumers_source)
    receivers = {operation.key for operation in document.receivers}
    for each in imports:
        missing = [name for name in each.names if name not in defined and name != "*"]
        if not missing:
            continue
        made_for = scaffolded_operation(each.path)
        why = (
            f"it was made for {made_for}, which is no longer a receive operation of the spec"
            if made_for is not None and made_for not in receivers
            else "its operation was removed or renamed"
        )
        warnings.append(
            CodeWarning(
                "stale-consumer",
                _display(each.path, display_root),
                each.line,
                f"imports {', '.join(missing)} from {CONSUMERS_MODULE}, which the spec no "
                f"longer generates: {why}",
                "restore the operation, or delete this consumer (its module, test and "
                ".copier-answers file)",
            )
        )
    return warnings


def _top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
