"""The runtime runs any spec's consumers: the filetrash app deleted, another domain's spec.

In a copy of this repository (tests/support/copies.py) the app's folder handwritten/filetrash/
and its tests (tests/app, tests/faults, tests/bench) are deleted and asyncapi/asyncapi.yaml is
replaced by the spec of FOREIGN_SPECS; then the workflow of a team that adopts the toolkit must
work end to end on real servers: `just generate`, `just check`, `just lint`,
`just scaffold-consumer`, the scaffolded test, `filetrash provision` and `filetrash run`, the
last two with NATS only (no DATABASE_URL and no dev servers: the spec's services need no
PostgreSQL). One copy per spec is made and shared by the tests (module-scoped fixture).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from generator import naming
from generator.build import build
from generator.load import load_spec
from tests.support.copies import JUST, PYTHON, REPO, Copy, copy_of_repo
from tests.support.servers import NatsServer, PostgresServer

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ForeignSpec:
    """A spec with none of filetrash's services, and the receive operation to scaffold."""

    path: str
    operation: str


FOREIGN_SPECS = [ForeignSpec("tests/specs/shop.yaml", "fulfilment")]
"""Add a spec here to run every test of this module on it too."""

APP_PATHS = ["handwritten/filetrash", "tests/app", "tests/faults", "tests/bench"]
"""The filetrash app and the tests that exercise it: what a team deletes."""
APP_COMMANDS = ("publish", "purge", "demo")
GENERIC_COMMANDS = ("up", "down", "status", "provision", "run", "dlq")
NOT_WRITTEN = re.compile(r"raise NotImplementedError\(\s*\"write [^\"]+\"\s*\)")
WRITTEN = 'log.info("✅ handled %s", type(event).__name__)'


@dataclass(frozen=True)
class Adopted:
    """The copy after the deletions, the new spec, generate, scaffold and a written handler."""

    copy: Copy
    spec: ForeignSpec
    durable: str
    module: Path
    test: Path
    subject: str
    example: Any
    generate_stderr: str
    lint_with_app_stderr: str
    """`just lint` before the app was deleted (it passed: `copy.just` checks the exit code)."""


def _operation_facts(spec_path: Path, key: str) -> tuple[str, str, Any]:
    """Durable, module name and the first example of the first message the operation receives."""
    spec = load_spec(spec_path, "asyncapi/asyncapi.yaml")
    document, _ = build(spec)
    operation = next(op for op in document.operations if op.key == key)
    assert operation.consumer is not None, f"{key} is no receive operation with a consumer"
    message = document.message(operation.messages[0])
    examples = spec.get(message.pointer).get("examples") or []
    payloads = [example["payload"] for example in examples if "payload" in example]
    assert payloads, f"{operation.messages[0]} needs an example in {spec_path}"
    return operation.consumer.durable, naming.snake(key), payloads[0]


@pytest.fixture(scope="module", params=FOREIGN_SPECS, ids=lambda spec: Path(spec.path).stem)
def adopted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Adopted:
    spec: ForeignSpec = request.param
    if JUST is None or shutil.which("git") is None:
        pytest.skip("needs just and git")
    if not (REPO / ".git").exists():
        pytest.skip("needs this repository's git checkout")
    copy = copy_of_repo(tmp_path_factory.mktemp("foreign") / "repo")
    # First with the app still in place: it no longer fits the spec, and falls away from lint.
    shutil.copy(REPO / spec.path, copy.root / "asyncapi" / "asyncapi.yaml")
    copy.just("generate")
    lint_with_app = copy.just("lint")
    for path in APP_PATHS:
        shutil.rmtree(copy.root / path)
    for stale in (copy.root / "handwritten" / "services").glob("*"):
        if stale.name != "__init__.py":  # a checkout's own scaffolded consumers, if any
            stale.unlink()
    shutil.copy(REPO / spec.path, copy.root / "asyncapi" / "asyncapi.yaml")
    copy.commit(f"another team's spec ({spec.path}), without the filetrash app")
    generated = copy.just("generate")
    if copy.git("status", "--porcelain"):
        copy.commit("generated from the new spec")
    copy.just("scaffold-consumer", spec.operation)
    durable, module, example = _operation_facts(
        copy.root / "asyncapi" / "asyncapi.yaml", spec.operation
    )
    # the registry of the copy finds the scaffolded service; a subject its filter takes has
    # each wildcard filled with a value the address parameter there accepts
    subject = copy.python(
        "-c",
        "from handwritten.runtime.registry import service\n"
        f"e = service({durable!r}).endpoint\n"
        "p = {x.name: x for x in e.address.parameters}\n"
        "slots = e.address.template.split('.') + [''] * 16\n"
        "def fill(token, slot):\n"
        "    if token not in ('*', '>'):\n"
        "        return token\n"
        "    parameter = p.get(slot[1:-1])\n"
        "    return parameter.enum[0] if parameter and parameter.enum else 'example'\n"
        "print('.'.join(fill(t, s) for t, s in zip(e.filter_subject.split('.'), slots)))",
    ).stdout.strip()
    module_path = Path("handwritten/services") / f"{module}.py"
    text = (copy.root / module_path).read_text(encoding="utf-8")
    written, count = NOT_WRITTEN.subn(WRITTEN, text)
    assert count >= 1, text
    (copy.root / module_path).write_text(written, encoding="utf-8")
    copy.python("-m", "ruff", "format", str(module_path))
    copy.commit(f"{spec.operation}: scaffolded and written")
    return Adopted(
        copy,
        spec,
        durable,
        module_path,
        Path("tests/integration") / f"test_{module}.py",
        subject,
        example,
        generated.stderr,
        lint_with_app.stderr,
    )


def test_generate_and_check_pass_without_the_app(adopted: Adopted) -> None:
    assert "error" not in adopted.generate_stderr, adopted.generate_stderr
    assert not (adopted.copy.root / "handwritten" / "filetrash").exists()
    check = adopted.copy.just("check")
    assert "generated/ matches asyncapi/asyncapi.yaml" in check.stdout
    # the other receive operations have no consumer yet (a warning each); nothing else is said
    assert f"operations.{adopted.spec.operation}:" not in check.stderr, check.stderr
    assert "stale-consumer" not in check.stderr and "error" not in check.stderr, check.stderr
    consumers = (adopted.copy.root / "generated" / "consumers.py").read_text(encoding="utf-8")
    assert "TRASH_PROCESSOR" not in consumers


def test_lint_passes_with_the_app_left_in_place(adopted: Adopted) -> None:
    """Pointed at another spec, the app no longer type-checks: lint leaves it out, saying so."""
    assert "handwritten/filetrash/ left out of the type check" in adopted.lint_with_app_stderr


def test_lint_passes_without_the_app(adopted: Adopted) -> None:
    result = adopted.copy.just("lint")
    assert "Success: no issues found" in result.stdout, result.stdout + result.stderr


def test_the_cli_and_justfile_carry_only_the_generic_commands(adopted: Adopted) -> None:
    shown = adopted.copy.python("-m", "handwritten.cli", "--help")
    assert shown.stderr == "", shown.stderr
    for command in GENERIC_COMMANDS:
        assert re.search(rf"^    {command}\b", shown.stdout, re.MULTILINE), shown.stdout
    for command in APP_COMMANDS:
        assert not re.search(rf"^    {command}\b", shown.stdout, re.MULTILINE), shown.stdout
    recipes = adopted.copy.just("--list").stdout
    assert f"dev-{adopted.durable} *ARGS" in recipes
    assert "dev-subscriber" not in recipes and "demo" not in recipes
    dry_run = adopted.copy.just("--dry-run", f"dev-{adopted.durable}").stderr
    assert f"-m handwritten.cli run {adopted.durable}" in dry_run


def test_an_unknown_service_is_one_line_naming_the_discovered_ones(adopted: Adopted) -> None:
    result = adopted.copy.python(
        "-m", "handwritten.cli", "run", "trash-processor", ok=False, NATS_URL="nats://127.0.0.1:1"
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"filetrash: error: unknown service 'trash-processor'; choose one of: {adopted.durable}\n"
    )


def test_the_scaffolded_test_passes_with_nats_only(
    adopted: Adopted, pg_server: PostgresServer
) -> None:
    # DATABASE_URL names a server, but the service declares no database: none is created
    result = adopted.copy.python(
        "-m", "pytest", str(adopted.test), "-q", "-p", "no:cacheprovider",
        DATABASE_URL=pg_server.url,
    )  # fmt: skip
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout
    assert "failed" not in result.stdout and "skipped" not in result.stdout, result.stdout


async def test_provision_and_run_with_nats_only(adopted: Adopted, nats_server: NatsServer) -> None:
    """No DATABASE_URL and no dev servers: asking for PostgreSQL would fail at once."""
    env = {"NATS_URL": nats_server.url}
    provisioned = adopted.copy.python("-m", "handwritten.cli", "provision", **env)
    assert f"consumer {adopted.durable}" in provisioned.stdout or adopted.durable in (
        provisioned.stdout
    ), provisioned.stdout
    assert "migration" not in provisioned.stdout, provisioned.stdout
    again = adopted.copy.python("-m", "handwritten.cli", "provision", "--plan", **env)
    assert "no changes" in again.stdout, again.stdout

    log = adopted.copy.root / f"{adopted.durable}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(PYTHON), "-m", "handwritten.cli", "run", adopted.durable],
            cwd=adopted.copy.root,
            env=adopted.copy.env(**env),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        await _wait_for(log, f"{adopted.durable} ready")
        nc = await nats.connect(nats_server.url)
        try:
            ack = await nc.jetstream().publish(
                adopted.subject,
                json.dumps(adopted.example).encode(),
                headers={"Nats-Msg-Id": str(uuid.uuid4())},
            )
            assert ack.seq >= 1
        finally:
            await nc.close()
        await _wait_for(log, "✅ handled ")
        process.send_signal(signal.SIGTERM)
        await _wait_for(log, f"{adopted.durable} stopped: 1 handled, 1 acked")
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    seen = log.read_text(encoding="utf-8", errors="replace")
    assert "PostgreSQL" not in seen and "Traceback" not in seen, seen


async def _wait_for(log: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (seen := log.read_text(encoding="utf-8", errors="replace")):
        assert time.monotonic() < deadline, f"no {text!r} in the service's output:\n{seen}"
        await asyncio.sleep(0.05)
