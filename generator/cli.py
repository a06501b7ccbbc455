"""`python -m generator generate|check|docs|compat`: the spec → IR → render pipeline behind
`just generate`, and the compatibility gate behind `just compat`.

Exit codes: 0 done (or up to date), 1 `check` found a difference (or `compat` a breaking change
not allowed, or with --require-version a version not raised), 2 the spec has errors.
Both commands also warn, without failing (not even with --strict), about receive operations
that no module under handwritten/ consumes and about consumers whose operation is
gone; see generator/consumers_check.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from generator import compat
from generator.build import build
from generator.consumers_check import check_consumers
from generator.diagnostics import SpecError
from generator.docs import DOCS_PATH, docs_files
from generator.load import Spec, load_spec, load_text
from generator.models import ModelGenerationError
from generator.output import diff, write_atomically, write_file_atomically
from generator.render import FormatError, render

EXIT_OK, EXIT_STALE, EXIT_SPEC = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator", description=__doc__)
    parser.add_argument("command", choices=["generate", "check", "docs", "compat"])
    parser.add_argument(
        "--spec",
        type=Path,
        default=Path("asyncapi/asyncapi.yaml"),
        help="the AsyncAPI document (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("generated"),
        help="the package to write or compare (default: %(default)s)",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="the HTML page of the spec (its diagram goes beside it as topology.svg), written by "
        "generate and docs, compared by check "
        f"(default: {DOCS_PATH} beside the default --out, none otherwise)",
    )
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--quiet", action="store_true", help="print only problems")
    parser.add_argument(
        "--against",
        default=DEFAULT_AGAINST,
        help="compat: the old spec, a file or a git ref whose copy of --spec is read "
        "(default: %(default)s, the spec as last committed on main)",
    )
    parser.add_argument(
        "--format", choices=["text", "json"], default="text", help="compat: the output format"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PATH",
        help="compat: accept the breaking changes at this dotted path (or under it); repeatable",
    )
    parser.add_argument(
        "--require-version",
        action="store_true",
        help="compat: fail (not warn) when info.version is not raised for a change that needs "
        "a deploy order, or its major part for a breaking one (CI)",
    )
    args = parser.parse_args(argv)
    if args.command == "compat":
        return compat_main(
            args.spec, args.against, args.format, frozenset(args.allow), args.require_version
        )

    started = time.perf_counter()
    docs = args.docs
    if docs is None and (args.command == "docs" or args.out == Path("generated")):
        docs = DOCS_PATH
    try:
        document, warnings = build(load_spec(args.spec, _display(args.spec)), strict=args.strict)
        if args.command == "docs":
            assert docs is not None
            return _write_docs(docs_files(document), docs.parent, started, quiet=args.quiet)
        files = render(document)
        pages = docs_files(document) if docs is not None else {}
    except SpecError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic.render(), file=sys.stderr)
        print(
            f"{len(exc.diagnostics)} problem(s) in {args.spec}; {args.out}/ left unchanged",
            file=sys.stderr,
        )
        return EXIT_SPEC
    except (ModelGenerationError, FormatError) as exc:
        print(f"{args.spec}: error: {exc}; {args.out}/ left unchanged", file=sys.stderr)
        return EXIT_SPEC
    for warning in warnings:
        print(warning.render(), file=sys.stderr)
    handwritten = args.out.parent / "handwritten"
    if handwritten.is_dir():  # the packages of services: the app's and handwritten/services/
        consumers = files["consumers.py"]
        for each in check_consumers(document, consumers, handwritten, display_root=Path.cwd()):
            print(each.render(), file=sys.stderr)

    if args.command == "check":
        delta = diff(files, args.out)
        if docs is not None:
            delta += diff(pages, docs.parent, only=set(pages))
        if delta:
            sys.stdout.write(delta)
            print(
                f"{args.out}/{' or ' + str(docs.parent) + '/' if docs else ''} is stale or was "
                "edited by hand: run `just generate`",
                file=sys.stderr,
            )
            return EXIT_STALE
        if not args.quiet:
            print(f"{args.out}/ matches {args.spec}")
        return EXIT_OK

    write_atomically(files, args.out)
    if docs is not None:
        for name, text in pages.items():
            write_file_atomically(text, docs.parent / name)
    if not args.quiet:
        elapsed = time.perf_counter() - started
        print(f"generated {len(files)} files in {args.out}/ from {args.spec} in {elapsed:.2f}s")
    return EXIT_OK


def compat_main(
    spec: Path, against: str, output: str, allow: frozenset[str], require_version: bool = False
) -> int:
    """Compares `against` (old) with `spec` (new) and prints the changes with their order."""
    sides: list[compat.Side] = []
    for which in ("old", "new"):
        try:
            loaded = (
                _load_against(spec, against) if which == "old" else load_spec(spec, _display(spec))
            )
            document, _ = build(loaded)
        except SpecError as exc:
            for diagnostic in exc.diagnostics:
                print(diagnostic.render(), file=sys.stderr)
            print(f"{len(exc.diagnostics)} problem(s) in the {which} spec", file=sys.stderr)
            return EXIT_SPEC
        except AgainstError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_SPEC
        sides.append(compat.Side(loaded, document))
    report = compat.compare(sides[0], sides[1], allow, require_version=require_version)
    if output == "json":
        print(json.dumps(report.as_json(), indent=2, sort_keys=False))
    else:
        sys.stdout.write(report.render_text(_display(spec)))
    return EXIT_STALE if report.problems else EXIT_OK


DEFAULT_AGAINST = "main"


class AgainstError(Exception):
    """`--against` names neither a readable file nor a git ref holding the spec."""


def _load_against(spec: Path, against: str) -> Spec:
    candidate = Path(against)
    if candidate.is_file():
        return load_spec(candidate, _display(candidate))
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=spec.resolve().parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if root.returncode != 0:
        raise AgainstError(f"--against {against}: no such file, and {spec} is not in a git tree")
    top = Path(root.stdout.strip())
    inside = spec.resolve().relative_to(top.resolve()).as_posix()
    shown = subprocess.run(
        ["git", "show", f"{against}:{inside}"],
        cwd=top,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        raise AgainstError(
            f"--against {against}: no such file, and git cannot read {inside} at {against} "
            f"({shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else 'unknown ref'})"
        )
    return load_text(shown.stdout, f"{against}:{inside}")


def _write_docs(pages: dict[str, str], folder: Path, started: float, *, quiet: bool) -> int:
    for name, text in pages.items():
        write_file_atomically(text, folder / name)
    if not quiet:
        elapsed = time.perf_counter() - started
        sizes = ", ".join(
            f"{folder / n} ({len(t.encode()) / 1024:.0f} KiB)" for n, t in pages.items()
        )
        print(f"wrote {sizes} in {elapsed:.2f}s")
    return EXIT_OK


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()
