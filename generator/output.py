"""Writing the rendered package atomically, and diffing it against what is on disk.

`generate` and `check` share `render`; this module is the only one that touches the output
directory.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path

_IGNORED = {"__pycache__"}


def read_tree(out: Path) -> dict[str, str]:
    """The files now in `out` (relative path → text), ignoring caches."""
    if not out.is_dir():
        return {}
    files: dict[str, str] = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if path.is_file() and not _IGNORED.intersection(rel.parts):
            files[rel.as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return files


def diff(expected: dict[str, str], out: Path, *, only: set[str] | None = None) -> str:
    """A unified diff from what is in `out` to what the spec renders; empty when they match.
    With `only`, just those files of `out` are compared (pages among other docs)."""
    actual = read_tree(out)
    if only is not None:
        actual = {rel: text for rel, text in actual.items() if rel in only}
    chunks: list[str] = []
    for rel in sorted(set(expected) | set(actual)):
        before, after = actual.get(rel), expected.get(rel)
        if before == after:
            continue
        chunks.extend(
            difflib.unified_diff(
                (before or "").splitlines(keepends=True),
                (after or "").splitlines(keepends=True),
                fromfile=f"{out.name}/{rel}" if before is not None else "/dev/null",
                tofile=f"{out.name}/{rel} (from spec)" if after is not None else "/dev/null",
            )
        )
        if chunks and not chunks[-1].endswith("\n"):
            chunks.append("\n")
    return "".join(chunks)


def write_atomically(files: dict[str, str], out: Path) -> None:
    """Replaces `out` with exactly `files`: written to a sibling directory first, then swapped
    in with renames, so an error at any point leaves the old output as it was."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        for rel, text in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_file_atomically(text: str, path: Path) -> None:
    """Replaces one file: written beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.new-{os.getpid()}")
    try:
        staging.write_text(text, encoding="utf-8")
        staging.replace(path)
    finally:
        staging.unlink(missing_ok=True)
