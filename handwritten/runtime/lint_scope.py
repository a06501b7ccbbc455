"""`python -m handwritten.runtime.lint_scope`: what `just lint` type-checks.

The generator, generated/, the runtime and your services (handwritten/services/) always. An
app beside them (a package under handwritten/, such as handwritten/filetrash/) only while it
still fits the spec: pointed at another team's spec, an app whose endpoints and models are
gone falls away from the type check with a note, as it falls away from the registry, instead
of failing it. Prints the targets for mypy, one a line.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

HANDWRITTEN = Path(__file__).resolve().parent.parent
ALWAYS = (
    "generated",
    "generator",
    "handwritten/__init__.py",
    "handwritten/runtime",
    "handwritten/services",
    "handwritten/cli.py",
)


def app_packages(root: Path = HANDWRITTEN) -> list[str]:
    return sorted(
        path.name
        for path in root.iterdir()
        if (path / "__init__.py").is_file() and path.name not in ("runtime", "services")
    )


def import_problem(package: str) -> str | None:
    """The first module of `handwritten.<package>` that does not import, and why."""
    name = f"handwritten.{package}"
    try:
        module = importlib.import_module(name)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{name}."):
            importlib.import_module(info.name)
    except ImportError as exc:
        return f"{exc.name or name}: {exc}"
    return None


def targets(root: Path = HANDWRITTEN) -> list[str]:
    found = [t for t in ALWAYS if (root.parent / t).exists()]
    for package in app_packages(root):
        problem = import_problem(package)
        if problem is None:
            found.append(f"handwritten/{package}")
        else:
            print(
                f"lint: handwritten/{package}/ left out of the type check: it does not fit the "
                f"spec ({problem}) — restore its operations, or delete it",
                file=sys.stderr,
            )
    return found


if __name__ == "__main__":
    print("\n".join(targets()))
