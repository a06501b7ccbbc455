"""Stage 3: IR → {relative path: file text}. Pure: it writes nothing.

Templates read only the IR; spec text reaches code only through the `py_str` filter. Every
file is formatted by the pinned ruff, and a formatter failure is a generator error.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import jinja2
from ruff.__main__ import find_ruff_bin  # type: ignore[import-untyped]

from generator.ir import Document
from generator.models import ModelGenerationError, render_models
from generator.naming import comment_text, py_str

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Every setting explicit, none from the working directory: `src = []` and the first-party list
# keep import sorting from depending on which folders happen to be next to the caller.
_RUFF_OPTIONS = [
    "--isolated",
    "--line-length",
    "100",
    "--target-version",
    "py311",
    "--config",
    "src = []",
    "--config",
    "lint.isort.known-first-party = ['handwritten']",
]


class FormatError(Exception):
    """ruff could not format a generated file: a bug in a template, reported with its output."""


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["py_str"] = py_str
    env.filters["py_float"] = lambda value: repr(float(value))
    env.filters["nats_member"] = nats_member
    env.filters["comment"] = comment_text
    return env


# nats-py's enum members are the wire values in capitals, except these.
_NATS_MEMBERS = {"workqueue": "WORK_QUEUE"}


def nats_member(value: str) -> str:
    """The nats.js.api enum member for a wire value: `limits` → LIMITS, `workqueue` → WORK_QUEUE."""
    return _NATS_MEMBERS.get(value, value.upper())


def render(doc: Document) -> dict[str, str]:
    """Every file of the generated package, formatted, keyed by its path inside the package."""
    env = _environment()
    header = env.get_template("_macros/header.jinja").module.header(doc)  # type: ignore[attr-defined]
    sends = sorted({doc.message(k).class_name for op in doc.senders for k in op.messages})
    receives = sorted({doc.message(k).class_name for op in doc.receivers for k in op.messages})
    context = {
        "doc": doc,
        "publish_imports": sends,
        "consume_imports": receives,
        "any_union": any(len(op.messages) > 1 for op in doc.receivers),
    }
    files = {
        "__init__.py": env.get_template("__init__.py.jinja").render(context),
        "models.py": _checked_models(doc, str(header)),
        "topology.py": env.get_template("topology.py.jinja").render(context),
        "publishers.py": env.get_template("publishers.py.jinja").render(context),
        "consumers.py": env.get_template("consumers.py.jinja").render(context),
        "permissions.py": env.get_template("permissions.py.jinja").render(context),
    }
    return {path: format_python(text, path) for path, text in sorted(files.items())}


def _checked_models(doc: Document, header: str) -> str:
    """The templates import each JSON message's model by the name the builder chose; a model that
    datamodel-code-generator named otherwise (to dodge a clash) would break those imports."""
    code = render_models(doc.models_schema, header)
    defined = {node.name for node in ast.parse(code).body if isinstance(node, ast.ClassDef)}
    missing = {m.class_name for m in doc.messages if m.is_json} - defined
    if missing:
        raise ModelGenerationError(
            f"datamodel-code-generator did not name a model {', '.join(sorted(missing))} "
            "(another schema or an inline object took the name); rename the message"
        )
    return code


def format_python(source: str, path: str) -> str:
    """Sorts imports, drops unused ones and formats, exactly as the pinned ruff does."""
    ruff = find_ruff_bin()
    fixed = _run(
        [
            ruff,
            "check",
            *_RUFF_OPTIONS,
            "--select",
            "I,F401",
            "--fix-only",
            "--exit-zero",
            "--stdin-filename",
            path,
            "-",
        ],
        source,
        path,
    )
    return _run([ruff, "format", *_RUFF_OPTIONS, "--stdin-filename", path, "-"], fixed, path)


def _run(command: list[str], source: str, path: str) -> str:
    result = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise FormatError(f"ruff failed on generated {path}: {result.stderr.strip()}")
    return result.stdout
