"""The third way in: edit the spec, `just generate`, `just scaffold-consumer OPERATION`.

Everything runs in a copy of this repository (the files git tracks or would track, committed
in a fresh git repository, with .venv linked to this one) where a new channel `files.restored`,
its message FileRestoredEvent and the receive operation restoreAuditor (durable
restore-auditor) are added to the spec. Commands run there with PYTHONPATH and the working
directory set to the copy, so that its generator/, generated/ and handwritten/ shadow the
editable install of this checkout (checked by `test_the_copy_imports_its_own_packages`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from tests.support.copies import JUST, REPO, Copy, copy_of_repo
from tests.support.servers import NatsServer, PostgresServer

pytestmark = pytest.mark.integration

MODULE = Path("handwritten/services/restore_auditor.py")
TEST = Path("tests/integration/test_restore_auditor.py")
ANSWERS = Path("handwritten/services/.copier-answers.restore_auditor.yml")
TEMPLATE_MODULE = Path("templates/consumer/handwritten/services/{{ module }}.py.jinja")
# Tests of the copy that exercise what the new operation touches: its message's examples and
# model (conformance), the generated package (quality, golden), topology and naming.
UNIT_SUBSET = [
    "tests/unit/test_conformance.py",
    "tests/unit/test_generated_quality.py",
    "tests/unit/test_golden.py",
    "tests/unit/test_provision_plan.py",
    "tests/unit/test_naming.py",
    "tests/unit/test_subjects.py",
]

CHANNEL = """\
  filesRestored:
    address: files.restored
    title: File restored
    description: A user took a file back out of the trash.
    messages:
      FileRestoredEvent:
        $ref: '#/components/messages/FileRestoredEvent'
    bindings:
      nats:
        jetstream:
          stream: FILE_EVENTS
"""
OPERATION = """\
  restoreAuditor:
    action: receive
    title: Restore auditor
    summary: Records every restore from the trash.
    channel:
      $ref: '#/channels/filesRestored'
    messages:
      - $ref: '#/channels/filesRestored/messages/FileRestoredEvent'
    x-jetstream-consumer:
      durable: restore-auditor
      ack_policy: explicit
      deliver_policy: all
      max_deliver: 5
      backoff: [PT30S, PT1M]
      dead_letter: deadLetters

"""
SCHEMA = """\
    FileRestoredEventPayload:
      type: object
      title: FileRestoredEvent
      description: Published on `files.restored` when a user restores a trashed file.
      additionalProperties: false
      required: [eventId, eventType, timestamp, data]
      properties:
        eventId:
          $ref: '#/components/schemas/EventId'
        eventType:
          type: string
          const: FileRestoredEvent
        timestamp:
          $ref: '#/components/schemas/Timestamp'
        data:
          $ref: '#/components/schemas/RestoredFile'
    RestoredFile:
      type: object
      title: RestoredFile
      description: The trash entry that was restored.
      additionalProperties: false
      required: [trashId, userId]
      properties:
        trashId:
          type: string
          format: uuid
        userId:
          $ref: '#/components/schemas/UserId'
"""
MESSAGE = """\
    FileRestoredEvent:
      name: FileRestoredEvent
      title: File restored
      summary: A trashed file was restored by its owner.
      contentType: application/json
      payload:
        $ref: '#/components/schemas/FileRestoredEventPayload'
      examples:
        - name: report
          payload:
            eventId: 1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d
            eventType: FileRestoredEvent
            timestamp: '2026-11-22T09:00:00Z'
            data:
              trashId: bf8bc8a6-2c3d-4e5f-9a6b-7c8d9e0f1a2b
              userId: user-001
        - name: notes
          payload:
            eventId: 2c3d4e5f-6071-4b8c-9d0e-1f2a3b4c5d6e
            eventType: FileRestoredEvent
            timestamp: '2026-11-23T10:30:00.250+01:00'
            data:
              trashId: 0a1b2c3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d
              userId: e5f6a7b8
"""
EXAMPLE = {
    "eventId": "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d",
    "eventType": "FileRestoredEvent",
    "timestamp": "2026-11-22T09:00:00Z",
    "data": {"trashId": "bf8bc8a6-2c3d-4e5f-9a6b-7c8d9e0f1a2b", "userId": "user-001"},
}
NOT_WRITTEN = '        raise NotImplementedError("write RestoreAuditor.on_file_restored_event")\n'
WRITTEN = '        log.info("♻️ restored %s for %s", event.data.trash_id, event.data.user_id)\n'


def add_restore_operation(copy: Copy) -> None:
    spec = "asyncapi/asyncapi.yaml"
    copy.edit(spec, "\nchannels:\n", "\nchannels:\n" + CHANNEL)
    copy.edit(spec, "\noperations:\n", "\noperations:\n" + OPERATION)
    copy.edit(spec, "\ncomponents:\n  schemas:\n", "\ncomponents:\n  schemas:\n" + SCHEMA)
    copy.edit(spec, "\n  messages:\n", "\n  messages:\n" + MESSAGE)


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """The copy after the spec edit, `just generate` and `just scaffold-consumer`, committed."""
    if JUST is None or shutil.which("git") is None:
        pytest.skip("needs just and git")
    if not (REPO / ".git").exists():
        pytest.skip("needs this repository's git checkout")
    copy = copy_of_repo(tmp_path_factory.mktemp("scaffold") / "repo")
    add_restore_operation(copy)
    generated = copy.just("generate")
    copy.just("scaffold-consumer", "restoreAuditor")
    copy.commit("restoreAuditor and its consumer")
    return Copy(copy.root, generated.stderr)


@pytest.fixture(scope="module")
def written(scaffolded: Copy, tmp_path_factory: pytest.TempPathFactory) -> Copy:
    """A clone of `scaffolded` whose handler is written: it logs the restore."""
    copy = scaffolded.clone(tmp_path_factory.mktemp("written") / "repo")
    copy.edit(MODULE, NOT_WRITTEN, WRITTEN)
    copy.commit("the restore auditor logs each restore")
    return copy


def test_the_copy_imports_its_own_packages(scaffolded: Copy) -> None:
    shown = scaffolded.python(
        "-c",
        "import generated.consumers, generator, handwritten.runtime.registry as r\n"
        "print(generated.consumers.__file__, generator.__file__, r.__file__)\n"
        "print(r.service('restore-auditor').endpoint.filter_subject)",
    ).stdout.split()
    root = scaffolded.root.resolve()
    assert all(Path(path).resolve().is_relative_to(root) for path in shown[:3]), shown
    assert shown[3] == "files.restored"


def test_generate_warned_about_the_operation_without_consumer(scaffolded: Copy) -> None:
    assert (
        "operations.restoreAuditor: warning[no-consumer]: receive operation restoreAuditor "
        "(restore-auditor) has no consumer under handwritten/ — run "
        "`just scaffold-consumer restoreAuditor`" in scaffolded.generate_stderr
    )
    check = scaffolded.python("-m", "generator", "check")
    assert "warning" not in check.stderr, check.stderr


def test_the_scaffold_is_lint_clean_typed_and_registered(scaffolded: Copy) -> None:
    module = (scaffolded.root / MODULE).read_text(encoding="utf-8")
    assert "class RestoreAuditor:" in module
    assert NOT_WRITTEN in module
    assert 'log.info(\n            "📨 %s [seq: %d] %s",' in module
    assert "SERVICE: Service[RestoreAuditorHandler] = Service(" in module
    scaffolded.python("-m", "ruff", "check", str(MODULE), str(TEST))
    scaffolded.python("-m", "ruff", "format", "--check", str(MODULE), str(TEST))
    scaffolded.python("-m", "mypy", str(MODULE))
    answers = (scaffolded.root / ANSWERS).read_text(encoding="utf-8")
    assert "_src_path: .\n" in answers and "operation: restoreAuditor\n" in answers
    assert "dev-restore-auditor *ARGS" in scaffolded.just("--list").stdout
    dry_run = scaffolded.just("--dry-run", "dev-restore-auditor").stderr
    assert "-m handwritten.cli run restore-auditor" in dry_run
    # a second scaffold of the same operation is refused: it has a consumer now
    again = scaffolded.just("scaffold-consumer", "restoreAuditor", ok=False)
    assert again.returncode != 0
    assert "restoreAuditor already has a consumer: handwritten/services/restore_auditor.py" in (
        again.stderr
    )


def test_the_scaffolded_test_fails_until_the_handler_is_written(
    scaffolded: Copy, pg_server: PostgresServer
) -> None:
    result = scaffolded.python(
        "-m", "pytest", str(TEST), "-q", "-p", "no:cacheprovider", "-x",
        ok=False, DATABASE_URL=pg_server.url,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "write RestoreAuditor.on_file_restored_event: the handler is not written yet" in (
        result.stdout
    )


def test_the_written_handler_receives_the_typed_event(
    written: Copy, pg_server: PostgresServer
) -> None:
    result = written.python(
        "-m", "pytest", str(TEST), "-q", "-p", "no:cacheprovider",
        DATABASE_URL=pg_server.url,
    )  # fmt: skip
    assert "1 passed" in result.stdout, result.stdout


async def test_just_dev_recipe_runs_the_service(
    written: Copy, nats_server: NatsServer, database_url: str
) -> None:
    servers = {"NATS_URL": nats_server.url, "DATABASE_URL": database_url}
    written.python("-m", "handwritten.cli", "provision", **servers)
    log = written.root / "restore-auditor.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(JUST), "dev-restore-auditor"],
            cwd=written.root,
            env=written.env(**servers),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        await _wait_for(log, "restore-auditor ready")
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish("files.restored", json.dumps(EXAMPLE).encode())
        finally:
            await nc.close()
        await _wait_for(log, "♻️ restored bf8bc8a6-2c3d-4e5f-9a6b-7c8d9e0f1a2b for user-001")
        process.send_signal(signal.SIGTERM)  # just passes it on to the service
        await _wait_for(log, "restore-auditor stopped: 1 handled, 1 acked")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def _wait_for(log: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (seen := log.read_text(encoding="utf-8", errors="replace")):
        assert time.monotonic() < deadline, f"no {text!r} in the service's output:\n{seen}"
        await asyncio.sleep(0.05)


def test_unit_tests_pass_in_the_copy(written: Copy) -> None:
    result = written.python("-m", "pytest", *UNIT_SUBSET, "-q", "-p", "no:cacheprovider")
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout


def test_copier_update_keeps_the_written_handler(
    written: Copy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    copy = written.clone(tmp_path_factory.mktemp("update") / "repo")
    # The template changes (committed: copier renders templates from git) ...
    copy.edit(
        TEMPLATE_MODULE,
        "# handwritten.runtime.registry finds SERVICE:",
        "# Template change one.\n# handwritten.runtime.registry finds SERVICE:",
    )
    copy.commit("template change one")
    # ... and plain `copier update`, with the stored answers, brings it in.
    copy.python(
        "-m", "copier", "update", "--defaults", "--vcs-ref", "HEAD", "--answers-file", str(ANSWERS)
    )
    module = (copy.root / MODULE).read_text(encoding="utf-8")
    assert "# Template change one.\n" in module
    assert WRITTEN in module and NOT_WRITTEN not in module
    assert "<<<<<<<" not in module and not list(copy.root.rglob("*.rej"))
    changed = copy.git("status", "--porcelain").split("\n")
    assert sorted(line[3:] for line in changed if line) == [str(ANSWERS), str(MODULE)]
    copy.commit("copier update")
    # `just update-consumer` does the same with answers computed from the spec again.
    copy.edit(TEMPLATE_MODULE, "# Template change one.\n", "# Template change two.\n")
    copy.commit("template change two")
    copy.just("update-consumer", "restoreAuditor")
    module = (copy.root / MODULE).read_text(encoding="utf-8")
    assert "# Template change two.\n" in module and "change one" not in module
    assert WRITTEN in module and "<<<<<<<" not in module


def test_generate_warns_about_a_consumer_whose_operation_is_gone(
    written: Copy, tmp_path_factory: pytest.TempPathFactory
) -> None:
    copy = written.clone(tmp_path_factory.mktemp("removed") / "repo")
    copy.edit("asyncapi/asyncapi.yaml", OPERATION, "")
    result = copy.just("generate")
    assert (
        "handwritten/services/restore_auditor.py:17: warning[stale-consumer]: imports "
        "RESTORE_AUDITOR, RestoreAuditorHandler from generated.consumers, which the spec no "
        "longer generates: it was made for restoreAuditor, which is no longer a receive "
        "operation of the spec" in result.stderr
    ), result.stderr
    assert "no-consumer" not in result.stderr


def test_the_template_renders_ruff_formatted_code_for_long_names(tmp_path: Path) -> None:
    """The scaffold's output must be what ruff would write: copier update merges against a
    fresh render, so a file that ruff had reformatted would conflict with every update."""
    from copier import run_copy

    template = tmp_path / "template"
    (template / "templates").mkdir(parents=True)
    shutil.copy(REPO / "copier.yml", template / "copier.yml")
    shutil.copytree(REPO / "templates" / "consumer", template / "templates" / "consumer")
    long = "on_" + "file_restored_and_then_audited_by_a_consumer_with_a_long_name"
    for module, methods, models in (
        ("short", ["on_x"], ["X"]),
        ("long", [long, "on_y", "on_z"], ["FileRestoredAndAuditedEventWithALongName", "Y", "Z"]),
    ):
        answers = {
            "operation": f"{module}Operation",
            "durable": f"{module}-durable",
            "module": module,
            "class_name": f"{module.title()}OperationWithAnotherRatherLongClassName",
            "handler_protocol": f"{module.title()}OperationWithAnotherRatherLongClassNameHandler",
            "endpoint": f"{module.upper()}_OPERATION",
            "title": "A title with 'quotes', ünïcode and \\x1b",
            "messages": [
                {"key": model, "model": model, "method": method}
                for method, model in zip(methods, models, strict=True)
            ],
        }
        run_copy(str(template), str(tmp_path / "out"), data=answers, defaults=True, quiet=True)
    files = sorted((tmp_path / "out").rglob("*.py"))
    assert len(files) == 4
    ruff = [sys.executable, "-m", "ruff"]
    checked = subprocess.run(
        [*ruff, "format", "--check", "--diff", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for file in files:
        compile(file.read_text(encoding="utf-8"), str(file), "exec")
