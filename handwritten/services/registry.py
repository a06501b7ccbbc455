"""Every service `filetrash run` can start, by durable name: its endpoint and its handler.

The names are the consumers' durable names from the spec, so `filetrash run trash-processor`
runs exactly the consumer the spec calls trash-processor. The five services of the article are
listed here; a module of this package that defines a module-level `SERVICE` (as every module
`just scaffold-consumer` makes does) is found on first use, without editing this file.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import asyncpg

from generated.consumers import (
    ANALYTICS_SERVICE,
    AUDIT_LOGGER,
    CLEANUP_SERVICE,
    NOTIFICATION_SERVICE,
    TRASH_PROCESSOR,
    AnalyticsServiceHandler,
    AuditLoggerHandler,
    CleanupServiceHandler,
    NotificationServiceHandler,
    TrashProcessorHandler,
)
from handwritten.runtime.contract import ConsumerEndpoint, Publish
from handwritten.services.analytics import AnalyticsService
from handwritten.services.audit_logger import AuditLogger
from handwritten.services.cleanup import CleanupService
from handwritten.services.faults import NO_FAULTS, FaultInjector
from handwritten.services.notification import NotificationService
from handwritten.services.trash_processor import (
    DEFAULT_RETENTION,
    RETENTION_ENV,
    TrashProcessor,
)

HandlerT = TypeVar("HandlerT")


class InvalidRetention(ValueError):
    """The retention (`--retention-days` or FILETRASH_RETENTION_DAYS) is not a positive number."""


def retention_from(
    days: float | str | None, *, environ: Mapping[str, str] | None = None
) -> timedelta:
    """`days` when given, else FILETRASH_RETENTION_DAYS, else 30 days."""
    env = os.environ if environ is None else environ
    source = "--retention-days"
    if days is None:
        days = env.get(RETENTION_ENV) or None
        source = RETENTION_ENV
    if days is None:
        return DEFAULT_RETENTION
    try:
        value = float(days)
    except ValueError:
        value = 0.0
    if not value > 0 or value > 36500:
        raise InvalidRetention(f"{source} must be a number of days in (0, 36500], not {days!r}")
    return timedelta(days=value)


@dataclass(frozen=True, slots=True)
class ServiceResources:
    """What a handler may use: the database, JetStream for publishing, and its options."""

    pool: asyncpg.Pool
    js: Publish
    retention: timedelta = DEFAULT_RETENTION
    faults: FaultInjector = field(default=NO_FAULTS)


@dataclass(frozen=True, slots=True)
class Service(Generic[HandlerT]):
    """A consumer of the spec and how to build the handler that serves it."""

    endpoint: ConsumerEndpoint[HandlerT, Any]
    make_handler: Callable[[ServiceResources], HandlerT]
    title: str
    just_recipe: str

    @property
    def name(self) -> str:
        return self.endpoint.durable


def _service(
    endpoint: ConsumerEndpoint[HandlerT, Any],
    make_handler: Callable[[ServiceResources], HandlerT],
    title: str,
    just_recipe: str,
) -> tuple[str, Service[Any]]:
    return endpoint.durable, Service(endpoint, make_handler, title, just_recipe)


def _trash_processor(r: ServiceResources) -> TrashProcessorHandler:
    return TrashProcessor(r.pool, r.js, retention=r.retention, faults=r.faults)


def _audit_logger(r: ServiceResources) -> AuditLoggerHandler:
    return AuditLogger(r.pool)


def _analytics(r: ServiceResources) -> AnalyticsServiceHandler:
    return AnalyticsService(r.pool)


def _cleanup(r: ServiceResources) -> CleanupServiceHandler:
    return CleanupService(r.pool)


def _notification(r: ServiceResources) -> NotificationServiceHandler:
    return NotificationService(r.pool)


BUILT_IN: Final[Mapping[str, Service[Any]]] = dict(
    [
        _service(TRASH_PROCESSOR, _trash_processor, "File Trash Subscriber", "dev-subscriber"),
        _service(AUDIT_LOGGER, _audit_logger, "Audit Logger", "dev-audit-logger"),
        _service(ANALYTICS_SERVICE, _analytics, "Analytics Service", "dev-analytics"),
        _service(CLEANUP_SERVICE, _cleanup, "Cleanup Service", "dev-cleanup"),
        _service(NOTIFICATION_SERVICE, _notification, "Notification Service", "dev-notification"),
    ]
)

_DECLARES_SERVICE = re.compile(r"^SERVICE\b\s*[:=]", re.MULTILINE)


class DuplicateService(Exception):
    """Two services claim one durable name: `filetrash run` could not tell them apart."""


def declaring_modules(package: Path = Path(__file__).parent) -> list[str]:
    """The modules of this package with a module-level `SERVICE`, found by reading their text so
    that nothing else is imported."""
    return sorted(
        path.stem
        for path in package.glob("*.py")
        if _DECLARES_SERVICE.search(path.read_text(encoding="utf-8"))
    )


def discover(built_in: Mapping[str, Service[Any]] = BUILT_IN) -> dict[str, Service[Any]]:
    """The services that modules of this package declare as `SERVICE`, by durable name."""
    found: dict[str, Service[Any]] = {}
    for name in declaring_modules():
        module = f"{__package__}.{name}"
        declared = getattr(importlib.import_module(module), "SERVICE", None)
        if not isinstance(declared, Service):
            raise TypeError(f"{module}.SERVICE is not a handwritten.services.registry.Service")
        if declared.name in built_in or declared.name in found:
            raise DuplicateService(f"{module}.SERVICE: a service {declared.name!r} exists already")
        found[declared.name] = declared
    return found


class _Registry(Mapping[str, Service[Any]]):
    """The built-in services, then the declared ones. Modules are looked for on first use, not
    at import: a scaffolded module imports this one for `Service`."""

    def __init__(self, built_in: Mapping[str, Service[Any]]) -> None:
        self._built_in = built_in
        self._all: dict[str, Service[Any]] | None = None

    def _services(self) -> dict[str, Service[Any]]:
        if self._all is None:
            self._all = {**self._built_in, **discover(self._built_in)}
        return self._all

    def __getitem__(self, name: str) -> Service[Any]:
        return self._services()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._services())

    def __len__(self) -> int:
        return len(self._services())


SERVICES: Final[Mapping[str, Service[Any]]] = _Registry(BUILT_IN)


class UnknownService(KeyError):
    """`filetrash run NAME` with a name that is no consumer of the spec."""

    def __str__(self) -> str:
        return f"unknown service {self.args[0]!r}; choose one of {', '.join(sorted(SERVICES))}"


def service(name: str) -> Service[Any]:
    try:
        return SERVICES[name]
    except KeyError:
        raise UnknownService(name) from None
