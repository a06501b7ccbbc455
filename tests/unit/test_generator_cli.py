"""`python -m generator generate|check`, as CI and `just` run it: exit codes, the diff that
`check` prints, determinism, and what a one-field change touches."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from generator.load import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "asyncapi" / "asyncapi.yaml"
GENERATED = REPO / "generated"
MINIMAL = REPO / "tests" / "golden" / "minimal" / "spec.yaml"


def cli(*args: str, cwd: Path = REPO, seed: str = "0") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run(
        [sys.executable, "-m", "generator", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def project(root: Path, spec_text: str | None = None) -> Path:
    """A copy of the spec at <root>/asyncapi/asyncapi.yaml, so that the CLI run in <root> names
    it exactly as the real `just generate` does (the name is in every header)."""
    (root / "asyncapi").mkdir(parents=True)
    text = spec_text if spec_text is not None else SPEC.read_text(encoding="utf-8")
    (root / "asyncapi" / "asyncapi.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def copy_of_generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generated/ as committed (a fresh copy per use is made from this one)."""
    target = tmp_path_factory.mktemp("committed") / "generated"
    shutil.copytree(GENERATED, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def fresh_copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "generated"
    shutil.copytree(source, target)
    return target


def test_check_passes_on_the_committed_package(copy_of_generated: Path, tmp_path: Path) -> None:
    out = fresh_copy(copy_of_generated, tmp_path)
    result = cli("check", "--spec", "asyncapi/asyncapi.yaml", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches" in result.stdout
    assert tree(out) == tree(copy_of_generated), "check must not write"


def test_check_catches_a_hand_edit(copy_of_generated: Path, tmp_path: Path) -> None:
    out = fresh_copy(copy_of_generated, tmp_path)
    models = out / "models.py"
    models.write_text(models.read_text(encoding="utf-8") + "\nHAND_EDIT = True\n", encoding="utf-8")
    before = tree(out)
    result = cli("check", "--spec", "asyncapi/asyncapi.yaml", "--out", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--- generated/models.py" in result.stdout
    assert "+++ generated/models.py (from spec)" in result.stdout
    assert "-HAND_EDIT = True" in result.stdout
    assert "consumers.py" not in result.stdout, "only the edited file is in the diff"
    assert "stale or was edited by hand" in result.stderr
    assert tree(out) == before, "check must not repair"


def test_check_catches_a_stray_and_a_missing_file(copy_of_generated: Path, tmp_path: Path) -> None:
    out = fresh_copy(copy_of_generated, tmp_path)
    (out / "extra.py").write_text("X = 1\n", encoding="utf-8")
    (out / "topology.py").unlink()
    result = cli("check", "--spec", "asyncapi/asyncapi.yaml", "--out", str(out))
    assert result.returncode == 1
    assert "--- generated/extra.py" in result.stdout and "+++ /dev/null" in result.stdout
    assert "--- /dev/null" in result.stdout and "+++ generated/topology.py" in result.stdout


def test_check_catches_a_spec_changed_without_regenerating(
    copy_of_generated: Path, tmp_path: Path
) -> None:
    spec = load_spec(SPEC)
    version = spec.data["info"]["version"]
    line, _ = spec.lines["/info/version"]
    lines = SPEC.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace(version, version + "-changed")
    root = project(tmp_path / "proj", "".join(lines))
    shutil.copytree(copy_of_generated, root / "generated")
    result = cli("check", cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--- generated/__init__.py" in result.stdout
    assert f"{version}-changed:" in result.stdout
    assert "models.py" not in result.stdout
    assert "stale or was edited by hand" in result.stderr


def test_check_of_a_missing_output_directory(tmp_path: Path) -> None:
    result = cli("check", "--spec", "asyncapi/asyncapi.yaml", "--out", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert not (tmp_path / "absent").exists()


def test_generate_is_deterministic_and_matches_the_committed_package(tmp_path: Path) -> None:
    """Two runs with different hash seeds, from a different working directory that has its own
    pyproject.toml and folders named like the imports: byte for byte the committed output."""
    root = project(tmp_path / "elsewhere")
    (root / "pyproject.toml").write_text("[tool.ruff]\nline-length = 60\n", encoding="utf-8")
    for shadow in ("pydantic", "nats", "handwritten"):
        (root / shadow).mkdir()
    first = cli("generate", "--out", "one", cwd=root, seed="1")
    second = cli("generate", "--out", "two", cwd=root, seed="2")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert tree(root / "one") == tree(root / "two")
    assert tree(root / "one") == tree(GENERATED)


def test_changing_one_field_type_changes_only_models(tmp_path: Path) -> None:
    spec = load_spec(SPEC)
    schemas = spec.data["components"]["schemas"]
    name, prop = next(
        (name, prop)
        for name, schema in schemas.items()
        for prop, sub in schema.get("properties", {}).items()
        if sub.get("type") == "integer"
    )
    line, _ = spec.lines[f"/components/schemas/{name}/properties/{prop}/type"]
    lines = SPEC.read_text(encoding="utf-8").splitlines(keepends=True)
    assert "integer" in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace("integer", "number")
    before = project(tmp_path / "before")
    after = project(tmp_path / "after", "".join(lines))
    for root in (before, after):
        result = cli("generate", cwd=root)
        assert result.returncode == 0, result.stderr
    old, new = tree(before / "generated"), tree(after / "generated")
    assert set(old) == set(new)
    assert [rel for rel in old if old[rel] != new[rel]] == ["models.py"]

    # One hunk: the field's declaration (its type, its bounds' spelling, its wire rule).
    def body(text: bytes) -> list[str]:  # the imports change too: StrictFloat for StrictInt
        lines = text.decode().splitlines()
        return lines[next(i for i, line in enumerate(lines) if line.startswith("class ")) :]

    a, b = body(old["models.py"]), body(new["models.py"])
    hunks = [op for op in difflib.SequenceMatcher(a=a, b=b).get_opcodes() if op[0] != "equal"]
    assert hunks and hunks[-1][2] - hunks[0][1] <= 12, hunks  # within one field
    i1, i2, j1, j2 = hunks[0][1], hunks[-1][2], hunks[0][3], hunks[-1][4]
    removed, added = "\n".join(a[i1:i2]), "\n".join(b[j1:j2])
    assert "StrictInt" in removed and "StrictFloat" in added, (removed, added)
    assert "StrictInt" not in added and "StrictFloat" not in removed


def test_generate_replaces_the_directory_exactly(tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "stale.py").write_text("OLD = 1\n", encoding="utf-8")
    result = cli("generate", "--spec", str(MINIMAL), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert set(tree(out)) == {
        "__init__.py",
        "models.py",
        "topology.py",
        "publishers.py",
        "consumers.py",
        "permissions.py",
    }
    assert sorted(os.listdir(tmp_path)) == ["pkg"], "no staging directory left behind"


def test_warnings_are_printed_and_strict_makes_them_fatal(tmp_path: Path) -> None:
    text = MINIMAL.read_text(encoding="utf-8").replace("    duplicate_window: PT1M\n", "")
    spec = tmp_path / "spec.yaml"
    spec.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    lenient = cli("generate", "--spec", str(spec), "--out", str(out))
    assert lenient.returncode == 0, lenient.stderr
    assert "warning[no-duplicate-window]: stream PINGS has no duplicate_window" in lenient.stderr
    written = tree(out)
    strict = cli("generate", "--spec", str(spec), "--out", str(out), "--strict")
    assert strict.returncode == 2
    assert "warning[no-duplicate-window]" in strict.stderr
    assert "1 problem(s)" in strict.stderr
    assert tree(out) == written
    strict_check = cli("check", "--spec", str(spec), "--out", str(out), "--strict")
    assert strict_check.returncode == 2


def test_unknown_command_is_a_usage_error() -> None:
    result = cli("regenerate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr
