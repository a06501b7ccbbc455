"""The service commands of `filetrash`: run, publish, purge and demo.

Only argparse at import time: `filetrash --help` and the dev-server commands must stay fast,
so nats, asyncpg and the services are imported when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

SERVICE_NAMES = (
    "trash-processor",
    "audit-logger",
    "analytics-service",
    "cleanup-service",
    "notification-service",
)
"""The built-in services' durable names (checked against the registry by the tests). `run`
also takes the services that `just scaffold-consumer` made; the registry finds those, so the
name is checked when the command runs rather than by argparse, which would have to import it."""


def _log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for machines: one object per line",
    )


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 (as fast as possible) or positive: {text}")
    return value


def _instant(text: str) -> datetime:
    """An ISO 8601 date-time with a zone (`2027-01-01T00:00:00Z`), or a date (midnight UTC)."""
    from datetime import UTC

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date-time: {text!r} (e.g. 2027-01-01T00:00:00Z)"
        ) from None
    if value.tzinfo is None:
        if "T" in text or " " in text:
            raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z")
        value = value.replace(tzinfo=UTC)
    return value


def _user_error(message: str) -> int:
    print(f"filetrash: error: {message}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from handwritten.runtime.consume import ConsumerMissing, ConsumerNotPullBased, ConsumeSettings
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.servers import resolve_servers
    from handwritten.services.faults import FaultInjector, FaultSpecInvalid
    from handwritten.services.registry import (
        InvalidRetention,
        UnknownService,
        retention_from,
        service,
    )
    from handwritten.services.run import DatabaseNotMigrated, run_service

    try:
        service(args.service)
    except UnknownService as error:
        return _user_error(str(error))
    setup_logging(args.log_format)
    try:
        retention = retention_from(args.retention_days)
        faults = FaultInjector.from_env()
    except (InvalidRetention, FaultSpecInvalid) as error:
        return _user_error(str(error))
    urls = resolve_servers()
    try:
        asyncio.run(
            run_service(
                args.service,
                urls,
                retention=retention,
                faults=faults,
                settings=ConsumeSettings(batch_size=args.batch_size, concurrency=args.concurrency),
            )
        )
    except (ConsumerMissing, ConsumerNotPullBased, DatabaseNotMigrated) as error:
        return _user_error(str(error))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from handwritten.runtime.jetstream import PublishFailed
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.servers import resolve_servers
    from handwritten.services.run import run_publisher

    setup_logging(args.log_format)
    urls = resolve_servers()
    try:
        asyncio.run(run_publisher(urls, count=args.count, rate=args.rate, seed=args.seed))
    except PublishFailed as error:
        return _user_error(str(error))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from handwritten.runtime.jetstream import PublishFailed
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.servers import resolve_servers
    from handwritten.services.run import DatabaseNotMigrated, run_purge

    setup_logging(args.log_format)
    urls = resolve_servers()
    try:
        asyncio.run(run_purge(urls, now=args.now, batch_size=args.batch_size))
    except DatabaseNotMigrated as error:
        return _user_error(str(error))
    except PublishFailed as error:
        return _user_error(str(error))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from handwritten.runtime.logging import setup_logging
    from handwritten.services.demo import DemoOptions, run_demo

    setup_logging("text", level="WARNING")  # the demo's own lines are printed, not logged
    options = DemoOptions(
        count=args.count,
        rate=args.rate,
        timeout=args.timeout,
        seed=args.seed,
        dev_dir=args.dev_dir,
    )
    return run_demo(options)


def add_commands(commands: Any) -> None:
    """Add run, publish, purge and demo to `filetrash`'s subcommands."""
    run = commands.add_parser(
        "run",
        help="run one service (a durable consumer of the spec) until SIGTERM",
        description="Run one service until SIGTERM or Ctrl-C. Several processes of the same "
        "service share its durable consumer (competing consumers). FILETRASH_FAULT injects "
        "crashes for tests (see handwritten/services/faults.py).",
    )
    run.add_argument(
        "service",
        metavar="SERVICE",
        help=f"one of: {', '.join(SERVICE_NAMES)}, or a scaffolded consumer's durable name",
    )
    run.add_argument(
        "--retention-days",
        default=None,
        help="trash-processor: days a trashed file is kept (default: $FILETRASH_RETENTION_DAYS or 30)",
    )
    run.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="most messages per pull and per batch (a service without batches: in flight at "
        "once) (default: 64)",
    )
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="batches handled at once, for a service that takes batches (default: 4)",
    )
    _log_format(run)
    run.set_defaults(run=cmd_run)

    publish = commands.add_parser("publish", help="publish simulated file deletions")
    publish.add_argument(
        "--count", type=_non_negative_int, default=None, help="how many (default: until Ctrl-C)"
    )
    publish.add_argument(
        "--rate",
        type=_rate,
        default=1.0,
        help="events per second (default: 1; 0: as fast as possible)",
    )
    publish.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random generator (same seed, same events)",
    )
    _log_format(publish)
    publish.set_defaults(run=cmd_publish)

    purge = commands.add_parser(
        "purge", help="delete expired trash entries for good, one FilePurgedEvent each"
    )
    purge.add_argument(
        "--now",
        type=_instant,
        default=None,
        help="purge what expired by this ISO 8601 time (default: now)",
    )
    purge.add_argument(
        "--batch-size", type=_positive_int, default=100, help="rows per transaction (default: 100)"
    )
    _log_format(purge)
    purge.set_defaults(run=cmd_purge)

    demo = commands.add_parser(
        "demo",
        help="the whole flow: servers, provisioning, every service, N deletions, reconciliation",
        description="Start the dev servers (unless NATS_URL and DATABASE_URL are set), "
        "provision, run every service as a process (two trash-processors), publish N "
        "deletions, follow the services' logs, and check that every number adds up. "
        "Exit status 0 only when they do.",
    )
    demo.add_argument(
        "--count", type=_positive_int, default=40, help="deletions to publish (default: 40)"
    )
    demo.add_argument(
        "--rate",
        type=_rate,
        default=20.0,
        help="deletions per second (default: 20; 0: as fast as possible)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the services to process everything (default: 60)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the simulated deletions (a seed used before on the same servers repeats its event ids, which then do not reconcile)",
    )
    demo.add_argument(
        "--dev-dir", type=Path, default=None, help="directory of the dev servers (default: ./.dev)"
    )
    demo.set_defaults(run=cmd_demo)
