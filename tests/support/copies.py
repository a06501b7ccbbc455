"""A copy of this repository to run commands in: the files git tracks or would track, committed
in a fresh git repository, with .venv linked to this checkout's. Commands run there with
PYTHONPATH and the working directory set to the copy, so that its generator/, generated/ and
handwritten/ shadow the editable install of this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
JUST = PYTHON.with_name("just") if PYTHON.with_name("just").exists() else shutil.which("just")


@dataclass(frozen=True)
class Copy:
    root: Path
    generate_stderr: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NATS_URL", "DATABASE_URL", "NATS_CREDS", "NATS_CA", "PYTHONPATH")
            and not k.startswith(("FILETRASH_", "PYTEST_"))
        }
        return {**env, "PYTHONPATH": str(self.root), "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def run(
        self, *command: str | Path, ok: bool = True, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(c) for c in command],
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if ok:
            assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        return result

    def python(self, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(PYTHON, *args, ok=ok, **env)

    def just(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert JUST is not None
        return self.run(JUST, *args, ok=ok)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def clone(self, target: Path) -> Copy:
        """Another copy, with this one's history (copier update compares commits)."""
        subprocess.run(["git", "clone", "-q", str(self.root), str(target)], check=True)
        return _prepared(target, self.generate_stderr)

    def edit(self, path: Path | str, old: str, new: str) -> None:
        file = self.root / path
        text = file.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} in {path}"
        file.write_text(text.replace(old, new), encoding="utf-8")


def _prepared(root: Path, generate_stderr: str) -> Copy:
    (root / ".venv").symlink_to(PYTHON.parents[1], target_is_directory=True)
    with (root / ".git" / "info" / "exclude").open("a", encoding="utf-8") as exclude:
        exclude.write(".venv\n")
    copy = Copy(root, generate_stderr)
    copy.git("config", "user.name", "scaffold test")
    copy.git("config", "user.email", "scaffold@test.invalid")
    return copy


def copy_of_repo(root: Path) -> Copy:
    """This checkout's files as git sees them now (tracked or not ignored), committed afresh."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / rel)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    copy = _prepared(root, "")
    copy.commit("the repository as it is")
    return copy
