"""`generator compat`: the golden corpus (tests/compat/<case>/), and its payload claims checked by
generation: the old and the new spec of each case are generated into packages, and

- every counter-example it prints is refused by the models it says refuse it and accepted by
  the others;
- for every payload change it calls safe for new readers (compatible, consumers-first), the
  instances made from the old schema (its examples, values built from it, and the mutations at
  the changed field that the old schema accepts) validate with the new models; for those safe
  for old readers (compatible, producers-first), the same from the new schema with the old models.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from generator import compat
from generator.build import build
from generator.cli import main
from generator.ir import Stream
from generator.load import load_spec, load_text
from tests.compat import regen
from tests.support import specs

CASES = regen.cases()


def side(path: Path) -> compat.Side:
    spec = load_spec(path, path.relative_to(regen.REPO).as_posix())
    doc, _ = build(spec)
    return compat.Side(spec, doc)


@cache
def sides(case: Path) -> tuple[compat.Side, compat.Side]:
    return side(case / "old.yaml"), side(case / "new.yaml")


@cache
def report(case: Path) -> compat.Report:
    old, new = sides(case)
    return compat.compare(old, new)


@cache
def package(path: Path) -> ModuleType:
    """The models module generated from the spec at `path` (one package per distinct file)."""
    text = path.read_text(encoding="utf-8")
    name = f"compat_{abs(hash(text)) % 10**12}"
    specs.generate_package(path, name, specs._scratch())
    return __import__(f"{name}.models", fromlist=["models"])


def accepts(models: ModuleType, class_name: str, payload: Any) -> bool:
    cls = getattr(models, class_name)
    assert isinstance(cls, type) and issubclass(cls, BaseModel)
    try:
        cls.model_validate_json(json.dumps(payload))
    except ValidationError:
        return False
    return True


# -- the corpus ---------------------------------------------------------------------------------
def test_the_corpus_covers_every_class() -> None:
    seen = {c.order for case in CASES for c in report(case).changes}
    assert seen == set(compat.Order), seen
    assert len(CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_compat_case(case: Path) -> None:
    assert regen.produce(case) == regen.expected(case), (
        f"compat case {case.name} differs; if intended, run `python -m tests.compat.regen`"
    )


# -- the claims, checked by generation ----------------------------------------------------------
PAYLOAD_CHANGES = [
    (case, i) for case in CASES for i, change in enumerate(report(case).changes) if change.messages
]


@pytest.mark.parametrize(
    ("case", "index"),
    PAYLOAD_CHANGES,
    ids=[f"{c.name}-{report(c).changes[i].kind}" for c, i in PAYLOAD_CHANGES],
)
def test_payload_claim_holds_for_the_generated_models(case: Path, index: int) -> None:
    change = report(case).changes[index]
    old, new = sides(case)
    old_models, new_models = package(case / "old.yaml"), package(case / "new.yaml")
    for message in change.messages:
        old_class = next(m.class_name for m in old.doc.messages if m.key == message)
        new_class = next(m.class_name for m in new.doc.messages if m.key == message)
        if change.counter_example_found:
            example = change.counter_example
            old_ok = accepts(old_models, old_class, example)
            new_ok = accepts(new_models, new_class, example)
            assert old_ok != new_ok, (change.path, example)
            if change.order is compat.Order.CONSUMERS_FIRST:
                assert new_ok and not old_ok
            if change.order is compat.Order.PRODUCERS_FIRST:
                assert old_ok and not new_ok
        else:
            assert change.order is compat.Order.COMPATIBLE or "conservative" in change.why


MESSAGES = sorted(
    {(case, m) for case in CASES for c in report(case).changes for m in c.messages},
    key=lambda pair: (pair[0].name, pair[1]),
)


@pytest.mark.parametrize(("case", "message"), MESSAGES, ids=[f"{c.name}-{m}" for c, m in MESSAGES])
def test_safe_claims_hold_for_the_generated_models(case: Path, message: str) -> None:
    """A message whose changes are all safe for new readers: every instance made from the old
    schema (examples, built values, mutations at each changed field) validates with the new
    models; and the other way round for old readers."""
    changes = [c for c in report(case).changes if message in c.messages]
    old, new = sides(case)
    old_models, new_models = package(case / "old.yaml"), package(case / "new.yaml")
    old_class = next(m.class_name for m in old.doc.messages if m.key == message)
    new_class = next(m.class_name for m in new.doc.messages if m.key == message)
    finder = compat._CounterExamples(old, new, old_class, new_class)
    candidates = [c for change in changes for c in finder.candidates(change.instance_path)]
    new_readers_safe = all(
        c.order in (compat.Order.COMPATIBLE, compat.Order.CONSUMERS_FIRST) for c in changes
    )
    old_readers_safe = all(
        c.order in (compat.Order.COMPATIBLE, compat.Order.PRODUCERS_FIRST) for c in changes
    )
    assert (
        new_readers_safe
        or old_readers_safe
        or any(c.order is compat.Order.BREAKING or "conservative" in c.why for c in changes)
    )
    if new_readers_safe:
        made_old = [c for c in candidates if finder.old_valid.is_valid(c)]
        assert len(made_old) >= 3
        for instance in made_old:
            assert accepts(new_models, new_class, instance), instance
    if old_readers_safe:
        made_new = [c for c in candidates if finder.new_valid.is_valid(c)]
        assert len(made_new) >= 3
        for instance in made_new:
            assert accepts(old_models, old_class, instance), instance


# -- the filetrash spec and the command ---------------------------------------------------------
SPEC = specs.SPECS["filetrash"]


def edited(*edits: tuple[str, str]) -> str:
    text = SPEC.read_text(encoding="utf-8")
    for before, after in edits:
        assert before in text, before
        text = text.replace(before, after, 1)
    return text


ADD_CHECKSUM = (
    "        deletedAt:\n          $ref: '#/components/schemas/Timestamp'\n",
    "        deletedAt:\n          $ref: '#/components/schemas/Timestamp'\n"
    "        checksum:\n          type: string\n          minLength: 8\n",
)


def compare_texts(old: str, new: str) -> compat.Report:
    sides_ = []
    for name, text in (("old.yaml", old), ("new.yaml", new)):
        spec = load_text(text, name)
        doc, _ = build(spec)
        sides_.append(compat.Side(spec, doc))
    return compat.compare(sides_[0], sides_[1])


def test_an_optional_field_added_to_the_deletion_is_consumers_first() -> None:
    result = compare_texts(
        SPEC.read_text(), edited(ADD_CHECKSUM, ("version: 2.0.0", "version: 2.1.0"))
    )
    (change,) = result.changes
    assert change.kind == "property-added"
    assert change.order is compat.Order.CONSUMERS_FIRST
    assert change.path == "components.schemas.DeletedFile.properties.checksum"
    assert change.consumers == [
        "analytics-service",
        "audit-logger",
        "cleanup-service",
        "trash-processor",
    ]
    assert change.producers == ["publishFileDeleted"]
    assert [s["step"] for s in result.order()] == ["upgrade consumers", "upgrade producers"]
    assert result.problems == []


def test_the_same_change_without_a_new_version_warns_and_fails_when_required(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = compare_texts(SPEC.read_text(), edited(ADD_CHECKSUM))
    assert result.problems == [] and "info.version" in result.version_problems[0]
    new = tmp_path / "new.yaml"
    new.write_text(edited(ADD_CHECKSUM), encoding="utf-8")
    args = ["compat", "--spec", str(new), "--against", str(SPEC)]
    assert main(args) == 0
    assert "warning: info.version is still 2.0.0" in capsys.readouterr().out
    assert main([*args, "--require-version"]) == 1
    assert "error: info.version is still 2.0.0" in capsys.readouterr().out


def test_a_shared_schema_change_is_listed_once_with_every_message() -> None:
    result = compare_texts(
        SPEC.read_text(),
        edited(
            ("      maxLength: 64\n", "      maxLength: 32\n"), ("version: 2.0.0", "version: 2.1.0")
        ),
    )
    (change,) = result.changes
    assert change.kind == "maxLength-tightened"
    assert change.order is compat.Order.PRODUCERS_FIRST
    assert set(change.messages) == {"FileDeletedEvent", "FilePlacedInTrashEvent", "FilePurgedEvent"}


def test_allow_accepts_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(
        edited(("max_age: P7D", "max_age: P1D"), ("version: 2.0.0", "version: 3.0.0")),
        encoding="utf-8",
    )
    args = ["compat", "--spec", str(new), "--against", str(SPEC), "--format", "json"]
    assert main(args) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["changes"][0]["class"] == "breaking"
    assert refused["changes"][0]["kind"] == "stream-max-age-lowered"
    assert main([*args, "--allow", "x-jetstream-streams.FILE_EVENTS", "--require-version"]) == 0
    allowed = json.loads(capsys.readouterr().out)
    assert allowed["changes"][0]["allowed"] is True
    assert allowed["problems"] == []


def test_against_a_git_ref_and_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    if (
        shutil.which("git") is None
        or subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=regen.REPO, capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("not a git checkout")
    assert main(["compat", "--spec", str(SPEC), "--against", "HEAD"]) in (0, 1)
    capsys.readouterr()
    assert main(["compat", "--spec", str(SPEC), "--against", "no-such-ref-xyz"]) == 2
    err = capsys.readouterr().err
    assert "--against no-such-ref-xyz" in err and "Traceback" not in err


def test_the_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "generator", "compat", "--against", str(SPEC), "--format", "json"],
        cwd=regen.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changes"] == []


@dataclasses.dataclass(frozen=True)
class _LaterStream(Stream):
    """A stream setting the IR may gain later (another engineer's per-subject limit, say)."""

    future_setting: int = -1


def test_a_setting_compat_does_not_know_is_breaking_until_taught() -> None:
    spec = load_text(SPEC.read_text(), "old.yaml")
    doc, _ = build(spec)

    def with_limit(limit: int) -> compat.Side:
        streams = tuple(
            _LaterStream(
                **{f.name: getattr(s, f.name) for f in dataclasses.fields(s)},
                future_setting=limit,
            )
            for s in doc.streams
        )
        return compat.Side(spec, dataclasses.replace(doc, streams=streams))

    result = compat.compare(with_limit(-1), with_limit(5))
    found = {(c.path, c.kind, c.order) for c in result.changes}
    assert (
        "x-jetstream-streams.FILE_EVENTS.future_setting",
        "future-setting-changed",
        compat.Order.BREAKING,
    ) in found
    assert compat.compare(with_limit(5), with_limit(5)).changes == []
