"""The filetrash app's part of `filetrash`: the commands publish, purge and demo, and the
trash-processor's options of `filetrash run` (`--retention-days`, FILETRASH_FAULT).

Only argparse at import time: `filetrash --help` and the dev-server commands must stay fast,
so nats, asyncpg and the services are imported when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from handwritten.runtime.arguments import (
    add_log_format,
    non_negative_int,
    positive_int,
    rate,
    user_error,
)


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


def add_run_options(run: argparse.ArgumentParser) -> None:
    """`filetrash run`'s options for the app's services."""
    run.add_argument(
        "--retention-days",
        default=None,
        help="trash-processor: days a trashed file is kept (default: $FILETRASH_RETENTION_DAYS or 30)",
    )


def run_options(args: argparse.Namespace) -> Mapping[str, object]:
    """The trash-processor's retention and the fault hooks of FILETRASH_FAULT (see
    handwritten/filetrash/faults.py), as `ServiceResources.options`."""
    from handwritten.filetrash.faults import FaultInjector, FaultSpecInvalid
    from handwritten.filetrash.trash_processor import (
        FAULTS_OPTION,
        RETENTION_OPTION,
        InvalidRetention,
        retention_from,
    )
    from handwritten.runtime.registry import OptionInvalid

    try:
        return {
            RETENTION_OPTION: retention_from(getattr(args, "retention_days", None)),
            FAULTS_OPTION: FaultInjector.from_env(),
        }
    except (InvalidRetention, FaultSpecInvalid) as error:
        raise OptionInvalid(str(error)) from None


def cmd_publish(args: argparse.Namespace) -> int:
    from handwritten.filetrash.jobs import run_publisher
    from handwritten.runtime.jetstream import PublishFailed
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.servers import resolve_servers

    setup_logging(args.log_format)
    urls = resolve_servers()
    try:
        asyncio.run(run_publisher(urls, count=args.count, rate=args.rate, seed=args.seed))
    except PublishFailed as error:
        return user_error(str(error))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from handwritten.filetrash.jobs import run_purge
    from handwritten.runtime.jetstream import PublishFailed
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.run import DatabaseNotMigrated
    from handwritten.runtime.servers import resolve_servers

    setup_logging(args.log_format)
    urls = resolve_servers()
    try:
        asyncio.run(run_purge(urls, now=args.now, batch_size=args.batch_size))
    except DatabaseNotMigrated as error:
        return user_error(str(error))
    except PublishFailed as error:
        return user_error(str(error))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from handwritten.filetrash.demo import DemoOptions, run_demo
    from handwritten.runtime.logging import setup_logging

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
    """Add publish, purge and demo to `filetrash`'s subcommands."""
    publish = commands.add_parser("publish", help="publish simulated file deletions")
    publish.add_argument(
        "--count", type=non_negative_int, default=None, help="how many (default: until Ctrl-C)"
    )
    publish.add_argument(
        "--rate",
        type=rate,
        default=1.0,
        help="events per second (default: 1; 0: as fast as possible)",
    )
    publish.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the random generator (same seed, same events)",
    )
    add_log_format(publish)
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
        "--batch-size", type=positive_int, default=100, help="rows per transaction (default: 100)"
    )
    add_log_format(purge)
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
        "--count", type=positive_int, default=40, help="deletions to publish (default: 40)"
    )
    demo.add_argument(
        "--rate",
        type=rate,
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
