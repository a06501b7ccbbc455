"""The compat golden corpus: each tests/compat/<case>/ holds old.yaml, new.yaml and expected.json
(`python -m generator compat --format json` of new against old, with its exit status).
`python -m tests.compat.regen [CASE...]` rewrites the expected files; review with `git diff`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from generator.cli import main

CORPUS = Path(__file__).resolve().parent
REPO = CORPUS.parents[1]
EXPECTED = "expected.json"


def cases() -> list[Path]:
    return sorted(p.parent for p in CORPUS.glob("*/new.yaml"))


def produce(case: Path) -> dict[str, Any]:
    """What `generator compat --format json` prints for the case, run from the repository root
    so that paths read as they would in the project."""
    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out):
            status = main(
                [
                    "compat",
                    "--spec",
                    (case / "new.yaml").relative_to(REPO).as_posix(),
                    "--against",
                    (case / "old.yaml").relative_to(REPO).as_posix(),
                    "--format",
                    "json",
                ]
            )
    finally:
        os.chdir(cwd)
    return {"exit": status, "report": json.loads(out.getvalue())}


def expected(case: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((case / EXPECTED).read_text(encoding="utf-8"))
    return loaded


def write(case: Path) -> None:
    text = json.dumps(produce(case), indent=2, ensure_ascii=False) + "\n"
    (case / EXPECTED).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    chosen = sys.argv[1:]
    for case in cases():
        if not chosen or case.name in chosen:
            write(case)
            print(f"wrote {case.relative_to(REPO)}/{EXPECTED}")
