"""Every service `filetrash run` can start, by durable name: its endpoint and its handler.

The names are the consumers' durable names from the spec, so `filetrash run trash-processor`
runs exactly the consumer the spec calls trash-processor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
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


SERVICES: Final[Mapping[str, Service[Any]]] = dict(
    [
        _service(TRASH_PROCESSOR, _trash_processor, "File Trash Subscriber", "dev-subscriber"),
        _service(AUDIT_LOGGER, _audit_logger, "Audit Logger", "dev-audit-logger"),
        _service(ANALYTICS_SERVICE, _analytics, "Analytics Service", "dev-analytics"),
        _service(CLEANUP_SERVICE, _cleanup, "Cleanup Service", "dev-cleanup"),
        _service(NOTIFICATION_SERVICE, _notification, "Notification Service", "dev-notification"),
    ]
)


class UnknownService(KeyError):
    """`filetrash run NAME` with a name that is no consumer of the spec."""

    def __str__(self) -> str:
        return f"unknown service {self.args[0]!r}; choose one of {', '.join(sorted(SERVICES))}"


def service(name: str) -> Service[Any]:
    try:
        return SERVICES[name]
    except KeyError:
        raise UnknownService(name) from None
