"""`--contender filetrash@REV`: the bench runs filetrash as of another revision beside the rest,
from that revision's files exported into its work directory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.bench.__main__ import _names
from tests.bench.harness import REPO_ROOT, BenchFailed, export_revision, scenarios
from tests.bench.services import CONTENDERS, EXTRA_CONTENDERS

KNOWN = CONTENDERS + EXTRA_CONTENDERS


def _in_git() -> bool:
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO_ROOT, capture_output=True
    )
    return inside.returncode == 0


needs_git = pytest.mark.skipif(not _in_git(), reason="the checkout is not a git work tree")


def test_a_revision_of_filetrash_is_a_contender_name_and_nothing_else_is() -> None:
    assert _names(["raw,filetrash@HEAD~1", "filetrash@v0.3"], KNOWN, "contender") == (
        "raw",
        "filetrash@HEAD~1",
        "filetrash@v0.3",
    )
    for name in ("raw@HEAD", "filetrash@", "filetrash-HEAD"):
        with pytest.raises(SystemExit, match="unknown contender"):
            _names([name], KNOWN, "contender")


@needs_git
def test_a_revision_is_exported_with_its_own_files_and_runs_from_there(tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    source = export_revision("HEAD", tmp_path)
    assert source.name == f"filetrash-{head[:10]}"
    committed = subprocess.run(
        ["git", "show", "HEAD:handwritten/cli.py"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    assert (source / "handwritten" / "cli.py").read_bytes() == committed
    assert export_revision(head, tmp_path) == source  # exported once

    [scenario] = scenarios(
        "nats://x",
        "postgresql://x",
        "cleanup-service",
        ["filetrash@HEAD"],
        {"filetrash@HEAD": source},
    )
    assert scenario.source == source
    assert scenario.commands[0][1:] == ["-m", "handwritten.cli", "run", "cleanup-service"]
    assert "HEAD" in scenario.description


@needs_git
def test_an_unknown_revision_fails_the_bench_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(BenchFailed, match="filetrash@no-such-branch: no such revision"):
        export_revision("no-such-branch", tmp_path)
    assert not any(tmp_path.iterdir())
