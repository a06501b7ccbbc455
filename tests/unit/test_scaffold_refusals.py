"""`just scaffold-consumer OPERATION` refuses, in one line on stderr with exit status 2 and
without writing anything, what it cannot or must not scaffold."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def scaffold(operation: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "generator.scaffold", operation],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if "__pycache__" not in p.parts}


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line of the refusal, after checking how it was given."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("scaffold-consumer: error: ")
    return lines[0].removeprefix("scaffold-consumer: error: ")


@pytest.fixture
def nothing_written() -> Iterator[None]:
    before = files_under(REPO / "handwritten") | files_under(REPO / "tests" / "integration")
    yield None
    after = files_under(REPO / "handwritten") | files_under(REPO / "tests" / "integration")
    assert after - before == set()


@pytest.mark.usefixtures("nothing_written")
def test_an_operation_that_does_not_exist() -> None:
    message = refused(scaffold("restoreAuditr"))
    assert message.startswith("asyncapi/asyncapi.yaml has no operation 'restoreAuditr'; ")
    assert "its receive operations: analyticsService, auditLogger, " in message


@pytest.mark.usefixtures("nothing_written")
def test_a_send_operation() -> None:
    message = refused(scaffold("publishFileDeleted"))
    assert message.startswith(
        "publishFileDeleted is a send operation: only receive operations have consumers"
    )


@pytest.mark.usefixtures("nothing_written")
def test_an_operation_that_already_has_a_consumer() -> None:
    message = refused(scaffold("trashProcessor"))
    assert message.startswith("trashProcessor already has a consumer: ")
    assert "handwritten/filetrash/trash_processor.py:" in message
    assert message.endswith(
        " imports TRASH_PROCESSOR, TrashProcessorHandler from generated.consumers"
    )


def test_an_operation_that_is_not_generated_yet(tmp_path: Path) -> None:
    """A receive operation added to the spec without `just generate` since."""
    (tmp_path / "asyncapi").mkdir()
    spec = (REPO / "asyncapi" / "asyncapi.yaml").read_text(encoding="utf-8")
    renamed = spec.replace("\n  notificationService:\n", "\n  notifier:\n")
    assert renamed != spec
    (tmp_path / "asyncapi" / "asyncapi.yaml").write_text(renamed, encoding="utf-8")
    shutil.copy(REPO / "copier.yml", tmp_path / "copier.yml")
    shutil.copytree(REPO / "generated", tmp_path / "generated")
    (tmp_path / "handwritten" / "services").mkdir(parents=True)
    message = refused(scaffold("notifier", cwd=tmp_path))
    assert message == "generated/consumers.py has no NOTIFIER yet: run `just generate` first"
    assert not list((tmp_path / "handwritten" / "services").iterdir())


def test_outside_the_repository_root(tmp_path: Path) -> None:
    message = refused(scaffold("notificationService", cwd=tmp_path))
    assert message.startswith("run it from the repository's root")
