"""`python -m generator.scaffold OPERATION` (`just scaffold-consumer`): a working consumer for a
receive operation of the spec, rendered by copier from templates/consumer/.

It writes handwritten/services/<module>.py (the handler, one method per message, each logging
the event and raising NotImplementedError until someone writes it, and a module-level SERVICE
that the runtime's registry discovers), tests/integration/test_<module>.py and copier's
answers beside the module; then it rewrites handwritten/services/consumers.just, the `dev-<durable>` recipes
that the justfile imports. `--update OPERATION` (`just update-consumer`) runs `copier update`
with answers computed afresh from the spec, merging template or operation changes into the
written code.

Run it from the repository's root, after `just generate`. Copier renders the template from the
commit at HEAD and records it, so that `copier update` can find that version again.
Exit codes: 0 done, 2 refused (one line on stderr saying why).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from generator import naming
from generator.build import build
from generator.consumers_check import consumer_imports, consumers_by_operation
from generator.diagnostics import SpecError
from generator.ir import Document, Operation
from generator.load import load_spec

SPEC = Path("asyncapi/asyncapi.yaml")
HANDWRITTEN = Path("handwritten")
SERVICES = HANDWRITTEN / "services"
TESTS = Path("tests/integration")
CONSUMERS = Path("generated/consumers.py")
JUSTFILE = Path("justfile")
RECIPES = SERVICES / "consumers.just"
TEMPLATE = (Path("copier.yml"), Path("templates/consumer"))
EXIT_OK, EXIT_REFUSED = 0, 2

_SPEC_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
# Names the scaffolded module and test import or define besides the implementation class.
_TAKEN = frozenset({"Delivery", "Recorder", "Service", "ServiceResources", "SERVICE"})


class Refusal(Exception):
    """Why nothing was scaffolded, in one line."""


def answers_file(module: str) -> Path:
    return SERVICES / f".copier-answers.{module}.yml"


def answers_for(document: Document, operation: Operation) -> dict[str, Any]:
    """Every answer of copier.yml for `operation`; all names are the generator's own."""
    assert operation.consumer is not None
    models = {document.message(key).class_name for key in operation.messages}
    class_name = naming.pascal(operation.key)
    if class_name in _TAKEN | models | {operation.class_name, operation.constant_name}:
        class_name += "Consumer"
    return {
        "operation": operation.key,
        "durable": operation.consumer.durable,
        "module": naming.snake(operation.key),
        "class_name": class_name,
        "handler_protocol": operation.class_name,
        "endpoint": operation.constant_name,
        "title": title(operation),
        "messages": [
            {
                "key": key,
                "model": document.message(key).class_name,
                "method": document.message(key).handler_method,
            }
            for key in operation.messages
        ],
    }


def title(operation: Operation) -> str:
    """The operation's title as the text of a double-quoted Python string: one line, no quotes
    or backslashes of its own, invisible characters spelled as escapes."""
    text = naming.one_line(operation.title, limit=120).replace("\\", "/").replace('"', "'")
    return naming.printable(text)


def load_document() -> Document:
    if not SPEC.is_file() or not TEMPLATE[0].is_file():
        raise Refusal(f"run it from the repository's root (no {SPEC} or {TEMPLATE[0]} here)")
    try:
        document, _ = build(load_spec(SPEC, SPEC.as_posix()))
    except SpecError as error:
        raise Refusal(
            f"{SPEC} has {len(error.diagnostics)} problem(s): `just generate` shows them"
        ) from None
    return document


def receive_operation(document: Document, key: str) -> Operation:
    receivers = ", ".join(op.key for op in document.receivers) or "none"
    operation = next((op for op in document.operations if op.key == key), None)
    if operation is None:
        raise Refusal(f"{SPEC} has no operation {key!r}; its receive operations: {receivers}")
    if operation.action != "receive" or operation.consumer is None:
        raise Refusal(
            f"{key} is a {operation.action} operation: only receive operations have consumers "
            f"(the spec's: {receivers})"
        )
    for name in (operation.key, *operation.messages):
        if not _SPEC_NAME.match(name):
            raise Refusal(f"{name!r}: the scaffold takes letters, digits, '_', '-' and '.' only")
    return operation


def check_generated(operation: Operation) -> None:
    """The generated package must already hold the operation's endpoint and handler."""
    try:
        tree = ast.parse(CONSUMERS.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        raise Refusal(f"{CONSUMERS} is missing or broken: run `just generate` first") from None
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    defined |= {
        node.target.id
        for node in tree.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    if not {operation.constant_name, operation.class_name} <= defined:
        raise Refusal(
            f"{CONSUMERS} has no {operation.constant_name} yet: run `just generate` first"
        )


def check_new(document: Document, operation: Operation, answers: dict[str, Any]) -> None:
    """Refuses an operation that some module already consumes, and any file or recipe that
    exists already."""
    using = consumers_by_operation(document, consumer_imports(HANDWRITTEN)).get(operation.key)
    if using is not None:
        names = [n for n in using.names if n in (operation.constant_name, operation.class_name)]
        raise Refusal(
            f"{operation.key} already has a consumer: {using.path.as_posix()}:{using.line} "
            f"imports {', '.join(names)} from generated.consumers"
        )
    module = answers["module"]
    for path in (SERVICES / f"{module}.py", TESTS / f"test_{module}.py", answers_file(module)):
        if path.exists():
            raise Refusal(f"{path.as_posix()} exists already; move it away or pick its operation")
    recipe = f"dev-{answers['durable']}"
    justfiles = [p for p in (JUSTFILE, RECIPES) if p.is_file()]
    if any(_defines_recipe(p.read_text(encoding="utf-8"), recipe) for p in justfiles):
        raise Refusal(f"a just recipe {recipe} exists already; rename the durable")


def _defines_recipe(justfile: str, recipe: str) -> bool:
    return re.search(rf"^@?{re.escape(recipe)}(\s|:)", justfile, re.MULTILINE) is not None


def committed_template() -> str:
    """The commit copier renders from: HEAD, whose template must hold no uncommitted changes
    (they would not be what `copier update` finds later)."""
    try:
        head = _git("rev-parse", "--verify", "HEAD")
        dirty = _git("status", "--porcelain", "--", *(p.as_posix() for p in TEMPLATE))
    except (OSError, subprocess.CalledProcessError):
        raise Refusal(
            "scaffolding needs git and a commit: copier renders the template from git"
        ) from None
    if dirty:
        raise Refusal(
            "templates/consumer/ or copier.yml has uncommitted changes: commit them first"
        )
    return head


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


def write_recipes() -> Path:
    """Rewrites consumers.just from every answers file: one `dev-<durable>` recipe each."""
    lines = [
        "# The `dev-<durable>` recipes of the consumers that `just scaffold-consumer` made; the",
        "# justfile imports this file. Rewritten from the .copier-answers.*.yml files beside it",
        "# by every scaffold-consumer and update-consumer: do not edit.",
    ]
    for path in sorted(SERVICES.glob(".copier-answers.*.yml")):
        answers = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        durable, module = str(answers.get("durable", "")), str(answers.get("module", ""))
        if not (_SPEC_NAME.match(durable) and (SERVICES / f"{module}.py").is_file()):
            continue
        title = naming.one_line(str(answers.get("title", durable)), limit=80)
        lines += [
            "",
            f"# {title}: `filetrash run {durable}` ({SERVICES.as_posix()}/{module}.py).",
            f"dev-{durable} *ARGS:",
            f"    {{{{python}}}} -m handwritten.cli run {durable} {{{{ARGS}}}}",
        ]
    RECIPES.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return RECIPES


def scaffold(key: str) -> str:
    """Renders the consumer of operation `key`; returns what to tell the person."""
    from copier import run_copy

    document = load_document()
    operation = receive_operation(document, key)
    answers = answers_for(document, operation)
    check_generated(operation)
    check_new(document, operation, answers)
    head = committed_template()
    run_copy(
        ".",
        ".",
        data=answers,
        vcs_ref=head,
        defaults=True,
        quiet=True,
        cleanup_on_error=False,
    )
    write_recipes()
    module, durable = answers["module"], answers["durable"]
    return (
        f"created {SERVICES.as_posix()}/{module}.py, {TESTS.as_posix()}/test_{module}.py and "
        f"{answers_file(module).as_posix()}; `just dev-{durable}` is in {RECIPES.as_posix()}\n"
        f"next: write the methods of {answers['class_name']} (each raises NotImplementedError "
        f"until then) and run `just test {TESTS.as_posix()}/test_{module}.py`; "
        f"`filetrash provision` creates the durable {durable}, `just dev-{durable}` runs it"
    )


def update(key: str) -> str:
    """`copier update` of the consumer of `key`, with its answers computed from the spec now."""
    from copier import run_update

    document = load_document()
    operation = receive_operation(document, key)
    answers = answers_for(document, operation)
    check_generated(operation)
    path = answers_file(answers["module"])
    if not path.is_file():
        raise Refusal(f"{path.as_posix()} is missing: scaffold {key} first")
    run_update(
        ".",
        data=answers,
        answers_file=path,
        vcs_ref="HEAD",
        defaults=True,
        overwrite=True,
        quiet=True,
        skip_answered=True,
    )
    write_recipes()
    return f"updated the consumer of {key}: review `git diff` (conflicts are marked inline)"


def main(argv: Sequence[str] | None = None) -> int:
    from copier.errors import CopierError

    parser = argparse.ArgumentParser(prog="python -m generator.scaffold", description=__doc__)
    parser.add_argument("operation", help="id of a receive operation in the spec")
    parser.add_argument(
        "--update", action="store_true", help="merge template and spec changes into it"
    )
    args = parser.parse_args(argv)
    try:
        message = update(args.operation) if args.update else scaffold(args.operation)
    except Refusal as refusal:
        print(f"scaffold-consumer: error: {refusal}", file=sys.stderr)
        return EXIT_REFUSED
    except CopierError as error:
        text = " ".join(str(error).split())
        print(f"scaffold-consumer: error: copier: {text}", file=sys.stderr)
        return EXIT_REFUSED
    print(message)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
