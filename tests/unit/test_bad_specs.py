"""Bad specs, through the real CLI: exit code 2, the right diagnostic at the right place, every
problem at once, no traceback, and the output directory left exactly as it was.

Each tests/bad_specs/<case>.yaml marks the line its diagnostic must point at with `# <- error`
(and, for collisions, the first definition with `# <- other`). A few cases that cannot be a
YAML file in the corpus (a missing file, bytes that are not UTF-8, an alias bomb) are made in
code. Injection attempts are the opposite case: they must generate, and change no code.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator import subset
from generator.build import build
from generator.load import load_text
from generator.render import render

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "bad_specs"
GOLDEN_CLEAN = REPO / "tests" / "golden" / "multi_message" / "spec.yaml"
_LINE = re.compile(
    r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+) (?P<path>\S+): "
    r"(?P<level>error|warning)\[(?P<code>[a-z-]+)\]: (?P<message>.*?)(?: — (?P<hint>.*))?$"
)


@dataclass(frozen=True)
class Expect:
    codes: frozenset[str]
    """Every code reported, exactly."""
    code: str
    """The diagnostic at the `# <- error` line."""
    fragment: str
    path: str
    """Its dotted JSON pointer, as printed."""
    count: int | None = None


def expect(code: str, fragment: str, path: str, *also: str, count: int | None = None) -> Expect:
    return Expect(frozenset({code, *also}), code, fragment, path, count)


EXPECTED: dict[str, Expect] = {
    "yaml_syntax": expect("yaml-syntax", "YAML syntax error: expected ',' or ']'", "(document)"),
    "duplicate_key": expect(
        "duplicate-key", "key 'storage' appears twice", "x-jetstream-streams.FILES.storage"
    ),
    "not_a_mapping": expect("not-a-mapping", "must be a YAML mapping", "(document)"),
    "empty": expect("not-a-mapping", "must be a YAML mapping", "(document)"),
    "python_tag": expect("structure", "is not of type 'string'", "info.title"),
    "unknown_ref": expect(
        "unknown-ref",
        "'#/components/messages/FileRestord' points at nothing",
        "channels.filesRestored.messages.FileRestored.$ref",
    ),
    "external_ref": expect(
        "unsupported-ref",
        "'common.yaml#/components/messages/FileRestored' is not local",
        "channels.filesRestored.messages.FileRestored.$ref",
    ),
    "ref_cycle": expect("ref-cycle", "loops back on itself", "channels.loopA.$ref", count=2),
    "uncaptured_channel": expect(
        "uncaptured-channel",
        "channel address restored.files is captured by no stream",
        "channels.filesRestored.address",
    ),
    "channel_in_two_streams": expect(
        "channel-in-two-streams",
        "files.restored is captured by streams FILES, RESTORES",
        "channels.filesRestored.address",
        "overlapping-streams",
    ),
    "wrong_stream_binding": expect(
        "wrong-stream",
        "bound to FILES_DLQ, but its address files.restored is captured by FILES",
        "channels.filesRestored.bindings.nats.jetstream.stream",
    ),
    "unknown_stream_binding": expect(
        "unknown-stream",
        "bound to stream RESTORES, which is not declared",
        "channels.filesRestored.bindings.nats.jetstream.stream",
    ),
    "overlapping_streams": expect(
        "overlapping-streams",
        "'files.*.dead' of stream FILES_DLQ overlaps 'files.>' of stream FILES",
        "x-jetstream-streams.FILES_DLQ.subjects.1",
    ),
    "invalid_subject": expect(
        "invalid-subject",
        "'files..restored' is not a valid NATS subject",
        "channels.filesRestored.address",
    ),
    "filter_outside_stream": expect(
        "filter-outside-stream",
        "consumer analytics filters 'audit.>', outside stream FILES",
        "operations.analytics.x-jetstream-consumer.filter_subject",
    ),
    "duplicate_durable": expect(
        "duplicate-durable",
        "durable 'trash-processor' is declared twice",
        "operations.analytics.x-jetstream-consumer.durable",
    ),
    "invalid_stream_name": expect(
        "structure",
        "'FILES.DLQ' does not match",
        "x-jetstream-streams.FILES.DLQ",
        count=2,
    ),
    "invalid_durable_name": expect(
        "structure",
        "'analytics service' does not match",
        "operations.analytics.x-jetstream-consumer.durable",
    ),
    "durable_name_with_newline": expect(
        "structure",
        "'analytics\\n' does not match",
        "operations.analytics.x-jetstream-consumer.durable",
    ),
    "bad_duration": expect(
        "structure",
        "'2 minutes' is not valid",
        "x-jetstream-streams.FILES.duplicate_window",
    ),
    "message_without_payload": expect(
        "structure", "'payload' is required here", "components.messages.FileRestored"
    ),
    "receive_without_consumer": expect(
        "no-consumer",
        "receive operation analytics has no x-jetstream-consumer",
        "operations.analytics",
    ),
    "multi_message_without_discriminator": expect(
        "no-discriminator",
        "FileRestored has no required, constant eventType",
        "components.messages.FileRestored",
    ),
    "ambiguous_discriminator": expect(
        "ambiguous-discriminator",
        "FileRestored and FileDeleted share eventType 'FileDeleted'",
        "components.messages.FileRestored",
    ),
    "backoff_too_long": expect(
        "backoff-too-long",
        "backoff has 5 steps but max_deliver is 5",
        "operations.trashProcessor.x-jetstream-consumer.backoff",
    ),
    "discard_new_per_subject": expect(
        "discard-new-per-subject",
        "stream FILES sets discard_new_per_subject without discard: new and a positive "
        "max_msgs_per_subject",
        "x-jetstream-streams.FILES.discard_new_per_subject",
    ),
    "dead_letter_loop": expect(
        "dead-letter-loop",
        "dead letters of analytics go to files.analytics, which its own filter files.*",
        "operations.analytics.x-jetstream-consumer.dead_letter",
    ),
    "dead_letter_unknown_channel": expect(
        "unknown-channel",
        "dead-letter channel 'deadLetter' does not exist",
        "operations.analytics.x-jetstream-consumer.dead_letter",
    ),
    "invalid_example": expect(
        "invalid-example",
        "example 1 of FileRestored does not match its schema: '' should be non-empty",
        "components.messages.FileRestored.examples.1.payload.fileId",
    ),
    "message_name_collision": expect(
        "name-collision",
        "message file-deleted becomes the Python name 'FileDeleted', already taken",
        "components.messages.file-deleted",
    ),
    "operation_name_collision": expect(
        "name-collision",
        "operation publish-file-deleted becomes the Python name 'PublishFileDeleted'",
        "operations.publish-file-deleted",
    ),
    "property_name_collision": expect(
        "field-collision",
        "properties 'fileId' and 'file_id' both become 'file_id'",
        "components.messages.FileRestored.payload.properties.file_id",
    ),
    "reserved_message_name": expect(
        "reserved-name",
        "message BaseModel would become the class 'BaseModel'",
        "components.messages.BaseModel",
    ),
    "non_json_send": expect(
        "non-json-send",
        "operation publishDeadLetter sends DeadLetter, which is not JSON",
        "operations.publishDeadLetter",
    ),
    "unsupported_version": expect("structure", "'3.0.0' was expected", "asyncapi"),
    "missing_info": expect("structure", "'info' is required here", "(document)"),
    "invalid_pattern": expect(
        "invalid-pattern",
        "pattern '^[a-z' is not a regular expression",
        "components.messages.FileRestored.payload.properties.fileId.pattern",
        "invalid-example",
    ),
    "queue_mismatch": expect(
        "queue-mismatch",
        "queue 'analytics-workers' differs from the durable 'analytics'",
        "operations.analytics.bindings.nats.queue",
    ),
    "consumer_on_send": expect(
        "consumer-on-send",
        "send operation publishFileDeleted declares a consumer",
        "operations.publishFileDeleted.x-jetstream-consumer",
    ),
    "unknown_operation_message": expect(
        "unknown-message",
        "lists '#/channels/fileEvents/messages/FileMoved'",
        "operations.analytics.messages.2",
    ),
    "three_errors": expect(
        "uncaptured-channel",
        "restored.files is captured by no stream",
        "channels.filesRestored.address",
        "duplicate-durable",
        "invalid-example",
        count=3,
    ),
    # -- payload schemas outside the supported subset (generator/subset.py) --
    "unsupported_unique_items": expect(
        "unsupported-keyword",
        "uniqueItems is not supported",
        "components.messages.FileRestored.payload.properties.tags.uniqueItems",
        count=1,
    ),
    "unsupported_prefix_items": expect(
        "unsupported-keyword",
        "prefixItems is not supported",
        "components.messages.FileRestored.payload.properties.position.prefixItems",
        count=1,
    ),
    "unsupported_not": expect(
        "unsupported-keyword",
        "not is not supported",
        "components.messages.FileRestored.payload.properties.owner.not",
        count=1,
    ),
    "unsupported_if_then_else": expect(
        "unsupported-keyword",
        "if is not supported",
        "components.messages.FileRestored.payload.properties.size.if",
        count=3,
    ),
    "unsupported_one_of": expect(
        "unsupported-keyword",
        "oneOf is not supported",
        "components.messages.FileRestored.payload.properties.origin.oneOf",
        count=1,
    ),
    "unsupported_any_of": expect(
        "unsupported-keyword",
        "anyOf is not supported",
        "components.messages.FileRestored.payload.properties.size.anyOf",
        count=1,
    ),
    "unsupported_all_of": expect(
        "unsupported-keyword",
        "allOf is not supported",
        "components.messages.FileRestored.payload.properties.owner.allOf",
        count=1,
    ),
    "unsupported_mixed_enum": expect(
        "unsupported-enum",
        'enum [1, "one", null] is not supported',
        "components.messages.FileRestored.payload.properties.level.enum",
        count=1,
    ),
    "unsupported_float_enum": expect(
        "unsupported-enum",
        "enum [0.5, 1.5] is not supported",
        "components.messages.FileRestored.payload.properties.ratio.enum",
        count=1,
    ),
    "unsupported_object_const": expect(
        "unsupported-const",
        'const {"bucket": "trash"} is not supported',
        "components.messages.FileRestored.payload.properties.origin.const",
        count=1,
    ),
    "unsupported_open_object": expect(
        "open-object",
        "the object is open",
        "components.messages.FileRestored.payload.properties.origin",
        count=1,
    ),
    "unsupported_map": expect(
        "open-object",
        "additionalProperties with a schema (a map of free keys)",
        "components.messages.FileRestored.payload.properties.labels.additionalProperties",
        count=1,
    ),
    "unsupported_pattern_properties": expect(
        "unsupported-keyword",
        "patternProperties is not supported",
        "components.messages.FileRestored.payload.properties.labels.patternProperties",
        count=1,
    ),
    "unsupported_min_properties": expect(
        "unsupported-keyword",
        "minProperties is not supported",
        "components.messages.FileRestored.payload.properties.origin.minProperties",
        count=1,
    ),
    "unsupported_format": expect(
        "unsupported-format",
        "format 'iban' is not supported",
        "components.messages.FileRestored.payload.properties.account.format",
        count=1,
    ),
    "unsupported_lookahead": expect(
        "invalid-pattern",
        "pattern '^(?=.*[a-z]).+$' uses a construct",
        "components.messages.FileRestored.payload.properties.name.pattern",
        count=1,
    ),
    "unsupported_backreference": expect(
        "invalid-pattern",
        "pattern '^(.)\\\\1$' uses a construct",
        "components.messages.FileRestored.payload.properties.name.pattern",
        count=1,
    ),
    "unsupported_ref_sibling": expect(
        "ref-sibling",
        "maxLength beside $ref is not supported",
        "components.messages.FileRestored.payload.properties.owner.maxLength",
        count=1,
    ),
    "unsupported_keyword_type": expect(
        "keyword-type-mismatch",
        "minLength applies to string values, not to integer",
        "components.messages.FileRestored.payload.properties.size.minLength",
        count=1,
    ),
    "unsupported_no_type": expect(
        "no-type",
        "the schema has no type",
        "components.messages.FileRestored.payload.properties.note",
        count=1,
    ),
    "unsupported_type_union": expect(
        "unsupported-type",
        "type ['string', 'integer'] is not supported",
        "components.messages.FileRestored.payload.properties.size.type",
        count=1,
    ),
    "invalid_schema_value": expect(
        "invalid-schema",
        "not a valid JSON Schema: '1e6' is not of type 'number'",
        "components.messages.FileRestored.payload.properties.size.maximum",
        count=1,
    ),
    "unsupported_empty_object": expect(
        "empty-object",
        "the object has no properties, so it can only be {}",
        "components.messages.FileRestored.payload.properties.marker",
        count=1,
    ),
    "unsupported_nullable_const": expect(
        "unsupported-const",
        "with a nullable type: the const refuses the null the type allows",
        "components.messages.FileRestored.payload.properties.flag.const",
        count=1,
    ),
    "unsupported_nullable_enum_without_null": expect(
        "unsupported-enum",
        "null only when the type allows it",
        "components.messages.FileRestored.payload.properties.level.enum",
        count=1,
    ),
    "unsupported_nullable": expect(
        "unsupported-keyword",
        "nullable is not supported",
        "components.messages.FileRestored.payload.properties.note.nullable",
        count=1,
    ),
    "unsupported_unknown_required": expect(
        "unknown-required",
        "required property 'bucket' is not listed",
        "components.messages.FileRestored.payload.properties.origin.required.0",
        count=1,
    ),
    "unsupported_default_on_required": expect(
        "default-on-required",
        "required property 'fileId' has a default",
        "components.messages.FileRestored.payload.properties.fileId.default",
        count=1,
    ),
    "unsupported_unknown_keyword": expect(
        "unknown-keyword",
        "customTypePath is not a JSON Schema keyword",
        "components.messages.FileRestored.payload.properties.owner.customTypePath",
        count=1,
    ),
    "unsupported_component_unique_items": expect(
        "unsupported-keyword",
        "uniqueItems is not supported",
        "components.schemas.Tags.uniqueItems",
        count=1,
    ),
    "unsupported_three_keywords": expect(
        "unsupported-keyword",
        "uniqueItems is not supported",
        "components.messages.FileRestored.payload.properties.tags.uniqueItems",
        count=3,
    ),
    "undeclared_parameter": expect(
        "undeclared-parameter",
        "uses {tenant}, which is not declared under its parameters",
        "channels.filesRestored.address",
    ),
    "unused_parameter": expect(
        "unused-parameter",
        "parameter tenant of channel filesRestored is not in its address",
        "channels.filesRestored.parameters.tenant",
    ),
    "invalid_parameter_value": expect(
        "invalid-parameter-value",
        "enum value 'eu.west' of parameter region (channel filesRestored) contains '.'",
        "channels.filesRestored.parameters.region.enum.1",
        count=3,
    ),
    "parameter_pattern_mismatch": expect(
        "invalid-parameter-value",
        "enum value 'usa' of parameter region (channel filesRestored) does not match its "
        "x-pattern '[a-z]{2}'",
        "channels.filesRestored.parameters.region.enum.1",
    ),
    "invalid_parameter_pattern": expect(
        "invalid-pattern",
        "x-pattern '[a-z' of parameter region is not a regular expression",
        "channels.filesRestored.parameters.region.x-pattern",
    ),
    "parameter_name_collision": expect(
        "parameter-collision",
        "of channel filesRestored both become the Python name 'shop_id'",
        "channels.filesRestored.parameters.shop_id",
    ),
    "repeated_parameter": expect(
        "repeated-parameter",
        "parameter {id} appears twice in the address files.{id}.{id}",
        "channels.filesRestored.address",
    ),
    "parameter_with_schema": expect(
        "structure", "('schema' was unexpected)", "channels.filesRestored.parameters.region"
    ),
    "filter_outside_channel": expect(
        "filter-outside-channel",
        "consumer restore-auditor filters 'files.*.*', wider than its channel's address",
        "operations.restoreAuditor.x-jetstream-consumer.filter_subject",
    ),
    "filter_parameter_value": expect(
        "invalid-parameter-value",
        "filter files.xx.restored has 'xx' where channel filesRestored has the parameter region, "
        "but 'xx' is not one of eu, us",
        "operations.restoreAuditor.x-jetstream-consumer.filter_subject",
    ),
    "wildcard_send": expect(
        "wildcard-send",
        "send operation publishAnything publishes on files.*, which has a wildcard",
        "operations.publishAnything.channel",
    ),
    "dead_letter_parameter": expect(
        "invalid-parameter-value",
        "has 'trash-processor' where channel deadLetters has the parameter consumer, but "
        "'trash-processor' does not match its x-pattern '[a-z]+'",
        "operations.trashProcessor.x-jetstream-consumer.dead_letter",
    ),
}


@dataclass
class Run:
    spec: Path
    display: str
    returncode: int
    stdout: str
    stderr: str
    before: dict[str, tuple[bytes, int]]
    after: dict[str, tuple[bytes, int]]
    siblings_before: list[str]
    siblings_after: list[str]

    @property
    def diagnostics(self) -> list[dict[str, str]]:
        found = []
        for line in self.stderr.splitlines()[:-1]:
            match = _LINE.match(line)
            assert match, f"not a diagnostic line: {line!r}"
            found.append(match.groupdict())
        return found


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (
            p.read_bytes() if p.is_file() else b"<dir>",
            p.stat().st_mode,
        )
        for p in sorted(folder.rglob("*"))
    }


def prepopulate(out: Path) -> None:
    """An output directory that already has content: generate must not touch it on error."""
    (out / "nested").mkdir(parents=True)
    (out / "sentinel.txt").write_bytes(b"do not touch\x00\xff")
    (out / "models.py").write_text("# hand-written, not generated\nVALUE = 1\n")
    (out / "nested" / "deep.txt").write_text("still here\n")
    os.chmod(out / "sentinel.txt", 0o640)


def run_cli(spec: Path, root: Path, display: str) -> Run:
    root.mkdir(parents=True)
    out = root / "out"
    prepopulate(out)
    before, siblings_before = snapshot(out), sorted(os.listdir(root))
    result = subprocess.run(
        [sys.executable, "-m", "generator", "generate", "--spec", str(spec), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(
        spec,
        display,
        result.returncode,
        result.stdout,
        result.stderr,
        before,
        snapshot(out),
        siblings_before,
        sorted(os.listdir(root)),
    )


def _alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


# Cases that are not YAML files in the corpus: (name, bytes or None for "no file", code, fragment)
MADE_IN_CODE: list[tuple[str, bytes | None, str, str]] = [
    ("missing_file", None, "unreadable", "cannot read the spec"),
    ("not_utf8", b"asyncapi: 3.0.0\ninfo: \xff\xfe\n", "unreadable", "not UTF-8"),
    ("alias_bomb", _alias_bomb().encode(), "too-large", "more than 200000 YAML nodes"),
    ("binary_garbage", bytes(range(256)), "unreadable", "not UTF-8"),
]
CORPUS_CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every bad spec through the CLI once, a few at a time (each run is a fresh interpreter)."""
    base = tmp_path_factory.mktemp("bad_specs")
    jobs: list[tuple[str, Path, str]] = [
        (name, CORPUS / f"{name}.yaml", f"tests/bad_specs/{name}.yaml") for name in CORPUS_CASES
    ]
    for name, content, _, _ in MADE_IN_CODE:
        spec = base / "specs" / f"{name}.yaml"
        spec.parent.mkdir(exist_ok=True)
        if content is not None:
            spec.write_bytes(content)
        jobs.append((name, spec, str(spec)))
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        futures = {
            name: pool.submit(run_cli, spec, base / name, shown) for name, spec, shown in jobs
        }
        return {name: future.result() for name, future in futures.items()}


def test_corpus_is_complete() -> None:
    assert set(CORPUS_CASES) == set(EXPECTED), "every corpus file needs an expectation, and back"
    assert len(CORPUS_CASES) + len(MADE_IN_CODE) >= 24


def marked_lines(spec: Path, marker: str) -> list[int]:
    text = spec.read_text(encoding="utf-8")
    return [i for i, line in enumerate(text.splitlines(), 1) if f"# <- {marker}" in line]


def assert_untouched(run: Run) -> None:
    assert run.after == run.before, "the output directory changed"
    assert run.siblings_after == run.siblings_before == ["out"], "staging left behind"


def assert_clean_failure(run: Run) -> None:
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert run.stdout == ""
    last = run.stderr.splitlines()[-1]
    assert last.endswith("out/ left unchanged"), last
    assert last.startswith(f"{len(run.diagnostics)} problem(s) in "), last


@pytest.mark.parametrize("name", CORPUS_CASES)
def test_bad_spec(name: str, runs: dict[str, Run]) -> None:
    run, want = runs[name], EXPECTED[name]
    assert_clean_failure(run)
    assert_untouched(run)
    found = run.diagnostics
    assert {d["code"] for d in found} == want.codes, run.stderr
    if want.count is not None:
        assert len(found) == want.count, run.stderr
    assert all(d["file"] == run.display for d in found)
    assert all(d["level"] == "error" and d["hint"] for d in found), run.stderr
    errors = marked_lines(run.spec, "error")
    assert errors, "mark the expected line with `# <- error`"
    primary = [d for d in found if int(d["line"]) == errors[0] and d["code"] == want.code]
    assert primary, f"no {want.code} at line {errors[0]}:\n{run.stderr}"
    assert want.fragment in primary[0]["message"], primary[0]["message"]
    assert primary[0]["path"] == want.path
    for line in errors[1:]:
        assert any(int(d["line"]) == line for d in found), f"nothing reported at line {line}"
    for line in marked_lines(run.spec, "other"):
        assert f"{run.display}:{line}:" in primary[0]["message"], "the first definition is named"


def test_python_tag_is_not_executed(runs: dict[str, Run]) -> None:
    assert "pwned" not in runs["python_tag"].stdout


@pytest.mark.parametrize("case", MADE_IN_CODE, ids=[c[0] for c in MADE_IN_CODE])
def test_unusable_input(case: tuple[str, bytes | None, str, str], runs: dict[str, Run]) -> None:
    name, _, code, fragment = case
    run = runs[name]
    assert_clean_failure(run)
    assert_untouched(run)
    [found] = run.diagnostics
    assert found["code"] == code
    assert fragment in found["message"]


def test_three_independent_errors_are_reported_together(runs: dict[str, Run]) -> None:
    found = runs["three_errors"].diagnostics
    assert [d["code"] for d in found] == [
        "uncaptured-channel",
        "duplicate-durable",
        "invalid-example",
    ]
    assert [int(d["line"]) for d in found] == marked_lines(CORPUS / "three_errors.yaml", "error")


def test_three_unsupported_keywords_are_reported_together(runs: dict[str, Run]) -> None:
    found = runs["unsupported_three_keywords"].diagnostics
    assert [d["path"].rsplit(".", 2)[-2:] for d in found] == [
        ["tags", "uniqueItems"],
        ["owner", "not"],
        ["labels", "patternProperties"],
    ]
    assert [int(d["line"]) for d in found] == marked_lines(
        CORPUS / "unsupported_three_keywords.yaml", "error"
    )


SUBSET_CASES = [
    n for n in CORPUS_CASES if n.startswith("unsupported_") and n != "unsupported_version"
]
NAMED_FIRST = {"unsupported-keyword", "unknown-keyword", "ref-sibling", "keyword-type-mismatch"}


@pytest.mark.parametrize("name", SUBSET_CASES)
def test_subset_refusals_name_the_keyword_and_the_fix(name: str, runs: dict[str, Run]) -> None:
    """A refused keyword is named where it is written, and its hint is the one in the table."""
    for found in runs[name].diagnostics:
        keyword = found["path"].rsplit(".", 1)[-1]
        if found["code"] in NAMED_FIRST:
            assert found["message"].startswith(f"{keyword} "), found
        elif found["code"] not in ("open-object", "empty-object", "no-type", "unknown-required"):
            # these point at the schema or at a `required` entry, not at a keyword
            assert re.search(rf"\b{re.escape(keyword)}\b", found["message"]), found
        if found["code"] == "unsupported-keyword":
            assert found["hint"] == subset.REFUSED[keyword]
        assert len(found["hint"]) > 20, found


def test_a_refused_composition_is_not_also_untyped(runs: dict[str, Run]) -> None:
    """anyOf/oneOf/allOf stand in for a type: `no-type` beside them would be noise."""
    for name in ("unsupported_any_of", "unsupported_one_of", "unsupported_all_of"):
        assert "no-type" not in {d["code"] for d in runs[name].diagnostics}, name


def test_every_failure_names_its_spec_and_leaves_output(runs: dict[str, Run]) -> None:
    """Across the whole corpus: never a traceback, always exit 2 and untouched output."""
    for name, run in runs.items():
        assert run.returncode == 2, name
        assert "Traceback" not in run.stderr, name
        assert run.after == run.before, name


# -- injection attempts: accepted, and inert ----------------------------------------------
PAYLOAD = '"""\'\'\'\n import os; os.system("x") # {{ 7*7 }} {% if x %}{% endif %} \\'


def _targets() -> dict[str, tuple[str, ...]]:
    """Where spec text is placed, as a path into the document; every one a plain string."""
    placed = "components.messages.OrderCancelled.payload.properties"
    return {
        "info-title": ("info", "title"),
        "info-description": ("info", "description"),
        "stream-description": ("x-jetstream-streams", "ORDERS", "description"),
        "operation-title": ("operations", "placeOrder", "title"),
        "operation-summary": ("operations", "orderLedger", "summary"),
        "consumer-description": ("operations", "receipts", "x-jetstream-consumer", "description"),
        "message-summary": ("components", "messages", "OrderPaid", "summary"),
        "payload-description": ("components", "messages", "OrderPaid", "payload", "description"),
        "property-description": (*placed.split("."), "reason", "description"),
        "enum-value": (*placed.split("."), "reason", "enum", "3"),
        "default": (*placed.split("."), "note", "default"),
    }


TARGETS = _targets()
# These reach the generated code; the others (info.description, a message summary) do not.
RENDERED = set(TARGETS) - {"info-description", "message-summary"}


def _spec_with(text: dict[str, str]) -> dict[str, Any]:
    """The clean golden spec with an extra enum value and an optional `note` with a default (so
    both exist in every variant), and `text[target]` placed at each target."""
    spec: dict[str, Any] = yaml.safe_load(GOLDEN_CLEAN.read_text(encoding="utf-8"))
    props = spec["components"]["messages"]["OrderCancelled"]["payload"]["properties"]
    props["reason"]["enum"].append("placeholder")
    props["note"] = {"type": "string", "default": "placeholder"}
    for target, path in TARGETS.items():
        node = spec
        for key in path[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = path[-1]
        if isinstance(node, list):
            node[int(last)] = text.get(target, f"plain {target}")
        else:
            node[last] = text.get(target, f"plain {target}")
    return spec


def _generate(spec: dict[str, Any]) -> dict[str, str]:
    doc, _ = build(load_text(yaml.safe_dump(spec, sort_keys=False), "spec.yaml"))
    return render(doc)


def _shape(source: str) -> str:
    """The module's AST with every string constant blanked: what the code does, not its text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


def _strings(source: str) -> list[str]:
    return [
        n.value
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]


@pytest.fixture(scope="module")
def clean_output() -> dict[str, str]:
    return _generate(_spec_with({}))


@pytest.mark.parametrize("target", [*TARGETS, "all-at-once"])
def test_injection_is_accepted_and_inert(target: str, clean_output: dict[str, str]) -> None:
    chosen = list(TARGETS) if target == "all-at-once" else [target]
    output = _generate(_spec_with({t: PAYLOAD for t in chosen}))
    assert set(output) == set(clean_output)
    for rel, source in output.items():
        assert _shape(source) == _shape(clean_output[rel]), f"{rel}: the code changed"
        calls = sum(isinstance(n, ast.Call) for n in ast.walk(ast.parse(source)))
        clean_calls = sum(isinstance(n, ast.Call) for n in ast.walk(ast.parse(clean_output[rel])))
        assert calls == clean_calls, rel
    if set(chosen) & RENDERED:
        everything = [s for source in output.values() for s in _strings(source)]
        assert any('os.system("x")' in s for s in everything), "the text did not get through"


def _differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in _differences(a[k], b[k], (*path, str(k)))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _differences(x, y, (*path, str(i)))
        ]
    return [] if a == b else [path]


def test_injection_variants_differ_from_clean_only_at_the_targets() -> None:
    """Guards the test above: the payload lands exactly where intended, and nowhere else."""
    clean, dirty = _spec_with({}), _spec_with(dict.fromkeys(TARGETS, PAYLOAD))
    assert sorted(_differences(clean, dirty)) == sorted(TARGETS.values())
