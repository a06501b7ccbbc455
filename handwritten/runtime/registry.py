"""Every service `filetrash run` can start, and what apps add to the runtime, found by discovery.

The runtime never imports an app by name. It reads the modules of each package directly under
`handwritten/` (except `runtime/` itself) as text, the way pytest finds its plugins by a
declared name rather than an import list:

- a module with a module-level `SERVICE = Service(...)` declares a service: the consumer of the
  spec whose durable name `filetrash run NAME` takes (`just scaffold-consumer` writes such
  modules into `handwritten/services/`; the filetrash app keeps its five in `handwritten/filetrash/`);
- a module with a module-level `CONTRIBUTION = Contribution(...)` declares what an app adds: CLI
  commands, options of `filetrash run`, and the database migrations `filetrash provision` applies.

Only the declaring modules are imported, and each on its own: one that fails to import (say an
app module whose endpoint the spec no longer generates) does not hide the others. Its problem
is kept as one line and shown when a service that was not found is asked for.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

if TYPE_CHECKING:
    import asyncpg

    from handwritten.runtime.contract import ConsumerEndpoint, Publish

HandlerT = TypeVar("HandlerT")
T = TypeVar("T")

HANDWRITTEN: Final = Path(__file__).resolve().parents[1]
"""`handwritten/`: each package in it but `runtime/` is searched for declarations."""
RUNTIME_PACKAGE: Final = "runtime"


class DatabaseNotConnected(Exception):
    """A handler used the database, but its service does not declare one."""


class DuplicateService(Exception):
    """Two services claim one durable name: `filetrash run` could not tell them apart."""


class ContributionConflict(Exception):
    """Two apps declare what only one may (database migrations)."""


@dataclass(frozen=True, slots=True)
class ServiceResources:
    """What a handler may use: JetStream for publishing, the database when its service declares
    one (`Service(database=True)` or `migrations=`), and options an app's contribution adds."""

    js: Publish
    database: asyncpg.Pool | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    service: str = "service"

    @property
    def pool(self) -> asyncpg.Pool:
        """The database pool; a service that declares no database has none."""
        if self.database is None:
            raise DatabaseNotConnected(
                f"{self.service} has no database connection: declare it in its SERVICE "
                "(`Service(..., database=True)`) so that `filetrash run` connects PostgreSQL"
            )
        return self.database

    def option(self, key: str, kind: type[T], default: T) -> T:
        """The option `key` (set by an app's `run_options`), else `default`."""
        value = self.options.get(key, default)
        if not isinstance(value, kind):
            raise TypeError(f"option {key!r} of {self.service} is not a {kind.__name__}: {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class Service(Generic[HandlerT]):
    """A consumer of the spec and how to build the handler that serves it.

    `database`: `filetrash run` connects PostgreSQL for it (without, it needs only NATS);
    `migrations`: a folder of migrations that must all be applied before it starts (implies
    `database`).
    """

    endpoint: ConsumerEndpoint[HandlerT, Any]
    make_handler: Callable[[ServiceResources], HandlerT]
    title: str
    just_recipe: str
    database: bool = False
    migrations: Path | None = None

    @property
    def name(self) -> str:
        return self.endpoint.durable

    @property
    def uses_database(self) -> bool:
        return self.database or self.migrations is not None


Subcommands = Any
"""argparse's private `_SubParsersAction`: what `add_subparsers()` returns."""


@dataclass(frozen=True, slots=True)
class Contribution:
    """What an app adds to the generic runtime, declared as a module-level `CONTRIBUTION`.

    Its module is imported to build the `filetrash` command, so it must import little (argparse,
    paths); commands import what they need when they run.
    """

    name: str
    add_commands: Callable[[Subcommands], None] | None = None
    """Adds the app's subcommands to `filetrash` (each `set_defaults(run=...)`)."""
    add_run_options: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds the app's options to `filetrash run`."""
    run_options: Callable[[argparse.Namespace], Mapping[str, object]] | None = None
    """Turns those options into `ServiceResources.options` (raise `OptionInvalid` to refuse)."""
    migrations: Path | None = None
    """The app's database migrations: `filetrash provision` plans and applies them."""


class OptionInvalid(ValueError):
    """An app's option of `filetrash run` has a value it cannot use (one line, exit 2)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A declaring module that could not be imported, or whose declaration is not one."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """What one kind of declaration yielded: (module, value) in module order, and problems."""

    declared: tuple[tuple[str, T], ...]
    problems: tuple[Problem, ...]


def _declares(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{name}\b\s*[:=]", re.MULTILINE)


def declaring_modules(name: str, root: Path = HANDWRITTEN) -> list[str]:
    """Dotted names of the modules that define `name` at module level, found by reading their
    text so that nothing else is imported: `handwritten.<package>.<module>`."""
    pattern = _declares(name)
    modules: list[str] = []
    for package in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
        if package.name == RUNTIME_PACKAGE:
            continue
        for path in sorted(package.glob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if pattern.search(text):
                modules.append(f"{root.name}.{package.name}.{path.stem}")
    return modules


def _module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def _import_problem(module: str, error: BaseException) -> Problem:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, ImportError) and (error.name or "").startswith("generated"):
        text += " (the spec no longer generates it: run `just generate`, or delete this module)"
    elif not isinstance(error, ImportError):
        text = f"{type(error).__name__}: {text}"
    return Problem(_module_path(module), f"cannot be imported: {text}")


def collect(name: str, kind: type[T], root: Path = HANDWRITTEN) -> Found[T]:
    """Imports each module declaring `name` and keeps the declarations that are a `kind`."""
    declared: list[tuple[str, T]] = []
    problems: list[Problem] = []
    for module in declaring_modules(name, root):
        try:
            value = getattr(importlib.import_module(module), name, None)
        except Exception as error:
            problems.append(_import_problem(module, error))
            continue
        if not isinstance(value, kind):
            problems.append(
                Problem(_module_path(module), f"{name} is not a {__name__}.{kind.__name__}")
            )
            continue
        declared.append((module, value))
    return Found(tuple(declared), tuple(problems))


@cache
def discover_services() -> tuple[dict[str, Service[Any]], tuple[Problem, ...]]:
    """The declared services by durable name, and the modules that could not say."""
    found = collect("SERVICE", Service)
    services: dict[str, Service[Any]] = {}
    owners: dict[str, str] = {}
    for module, declared in found.declared:
        if declared.name in services:
            raise DuplicateService(
                f"{_module_path(module)}: a service {declared.name!r} is declared already by "
                f"{_module_path(owners[declared.name])}"
            )
        services[declared.name] = declared
        owners[declared.name] = module
    return services, found.problems


@cache
def contributions() -> tuple[tuple[Contribution, ...], tuple[Problem, ...]]:
    """The apps' contributions in module order, and the modules that could not say."""
    found = collect("CONTRIBUTION", Contribution)
    return tuple(value for _, value in found.declared), found.problems


class _Registry(Mapping[str, Service[Any]]):
    """The discovered services; modules are looked for on first use, not at import: a
    service's module imports this one for `Service`."""

    def __getitem__(self, name: str) -> Service[Any]:
        return discover_services()[0][name]

    def __iter__(self) -> Iterator[str]:
        return iter(discover_services()[0])

    def __len__(self) -> int:
        return len(discover_services()[0])


SERVICES: Final[Mapping[str, Service[Any]]] = _Registry()


class UnknownService(KeyError):
    """`filetrash run NAME` with a name that no discovered service has."""

    def __str__(self) -> str:
        services, problems = discover_services()
        names = ", ".join(sorted(services)) or "none"
        text = f"unknown service {self.args[0]!r}; choose one of: {names}"
        if problems:
            text += "; not loaded: " + "; ".join(str(problem) for problem in problems)
        return text


def service(name: str) -> Service[Any]:
    try:
        return SERVICES[name]
    except KeyError:
        raise UnknownService(name) from None


def migrations_to_apply() -> Path | None:
    """The one migrations folder the apps declare, or None (then no database is needed)."""
    declared = [(c.name, c.migrations) for c in contributions()[0] if c.migrations is not None]
    if len(declared) > 1:
        names = ", ".join(name for name, _ in declared)
        raise ContributionConflict(
            f"apps {names} each declare database migrations; they share one schema_migrations "
            "table, so only one app may declare them: merge their folders"
        )
    return declared[0][1] if declared else None
