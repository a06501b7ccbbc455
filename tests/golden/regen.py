"""Rewrites the expected output of every golden case: `python -m tests.golden.regen [CASE...]`.

A case is a folder holding `spec.yaml` and either `expected/` (the generated package, file for
file) or `expected_diagnostics.txt` (the rendered diagnostics, one a line). Whichever the spec
produces now is written, and the other removed; review the result with `git diff`.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from generator.build import build
from generator.diagnostics import SpecError
from generator.load import load_spec
from generator.render import render

GOLDEN = Path(__file__).resolve().parent
REPO = GOLDEN.parents[1]
EXPECTED_DIR = "expected"
EXPECTED_DIAGNOSTICS = "expected_diagnostics.txt"


def cases() -> list[Path]:
    return sorted(p.parent for p in GOLDEN.glob("*/spec.yaml"))


def produce(case: Path) -> dict[str, str] | str:
    """The generated files of `case`, or the text of its diagnostics when the spec has errors.
    The spec is named by its path from the repository root, as `just generate` would."""
    spec = case / "spec.yaml"
    try:
        document, _ = build(load_spec(spec, spec.relative_to(REPO).as_posix()))
    except SpecError as exc:
        return "".join(d.render() + "\n" for d in exc.diagnostics)
    return render(document)


def expected(case: Path) -> dict[str, str] | str | None:
    diagnostics = case / EXPECTED_DIAGNOSTICS
    if diagnostics.is_file():
        return diagnostics.read_text(encoding="utf-8")
    folder = case / EXPECTED_DIR
    if not folder.is_dir():
        return None
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def write(case: Path, result: dict[str, str] | str) -> None:
    shutil.rmtree(case / EXPECTED_DIR, ignore_errors=True)
    (case / EXPECTED_DIAGNOSTICS).unlink(missing_ok=True)
    if isinstance(result, str):
        (case / EXPECTED_DIAGNOSTICS).write_text(result, encoding="utf-8")
        return
    for rel, text in result.items():
        target = case / EXPECTED_DIR / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def kind(result: dict[str, str] | str | None) -> str:
    return "nothing" if result is None else "diagnostics" if isinstance(result, str) else "output"


def main(argv: list[str]) -> int:
    chosen = [c for c in cases() if not argv or c.name in argv]
    unknown = set(argv) - {c.name for c in chosen}
    if unknown:
        print(f"no golden case named {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for case in chosen:
        before = expected(case)
        after = produce(case)
        write(case, after)
        note = "unchanged" if before == after else "rewritten"
        if kind(before) != kind(after):
            note = f"now {kind(after)}, was {kind(before)}: check that this is intended"
        print(f"{case.name}: {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
