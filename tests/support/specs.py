"""The specs the spec-generic tests run on, each with its generated package imported.

`filetrash` is asyncapi/asyncapi.yaml with the committed `generated` package (which `just
check` holds to the spec); `shop` is tests/specs/shop.yaml, an online shop that shares nothing
with filetrash, generated into a temporary package once per test session.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from generator.build import build
from generator.ir import Document, Message
from generator.load import Spec, load_spec
from generator.render import render

REPO = Path(__file__).resolve().parents[2]
SPECS: dict[str, Path] = {
    "filetrash": REPO / "asyncapi" / "asyncapi.yaml",
    "shop": REPO / "tests" / "specs" / "shop.yaml",
    "edge_schemas": REPO / "tests" / "specs" / "edge_schemas.yaml",
}
"""Every spec the spec-generic tests run on, by a short name."""


@dataclass(frozen=True)
class SpecUnderTest:
    name: str
    path: Path
    spec: Spec
    doc: Document
    package: str
    """The import name of its generated package."""

    @property
    def models(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.models")

    @property
    def consumers(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.consumers")

    @property
    def publishers(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.publishers")

    def examples(self, message: Message) -> list[tuple[str, Any]]:
        """(name, payload) of each example of `message` in the spec, as written."""
        raw = self.spec.get(message.pointer)
        return [
            (str(e.get("name", i)), e["payload"])
            for i, e in enumerate(raw.get("examples", []))
            if "payload" in e
        ]

    @property
    def topology(self) -> ModuleType:
        return importlib.import_module(f"{self.package}.topology")


@cache
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="filetrash-specs-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    sys.path.insert(0, str(folder))
    return folder


def generate_package(path: Path, package: str, into: Path) -> None:
    """Builds the spec at `path` and writes its generated package as `into/package`."""
    doc, _ = build(load_spec(path, path.relative_to(REPO).as_posix()))
    for rel, text in render(doc).items():
        target = into / package / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


@cache
def spec_under_test(name: str) -> SpecUnderTest:
    path = SPECS[name]
    spec = load_spec(path, path.relative_to(REPO).as_posix())
    doc, _ = build(spec)
    if name == "filetrash":
        package = "generated"
    else:
        package = f"spec_{name}_generated"
        generate_package(path, package, _scratch())
    return SpecUnderTest(name, path, spec, doc, package)
