"""Problems found in a spec, as data: collected while building, printed together by the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """Where a node of the spec came from: file, 1-based line and column, and JSON pointer."""

    file: str
    line: int
    column: int
    pointer: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    level: Level
    code: str
    where: Location
    message: str
    hint: str = ""

    def render(self) -> str:
        path = pointer_to_dotted(self.where.pointer)
        text = f"{self.where} {path}: {self.level.value}[{self.code}]: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


class SpecError(Exception):
    """The spec has errors; nothing was generated. Carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} problem(s) in the spec")
        self.diagnostics = diagnostics


def pointer_to_dotted(pointer: str) -> str:
    """`/channels/filesDeleted/address` → `channels.filesDeleted.address` (for humans)."""
    if not pointer or pointer == "/":
        return "(document)"
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    return ".".join(parts)


def escape_pointer_token(token: str | int) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")
