"""The `filetrash` command: a thin dispatcher; each command's logic lives in the runtime.

Its own commands are generic (up, down, status, provision, run); an app adds its own through
the `Contribution` its registry discovers (the filetrash app: publish, purge, demo), so the
command works the same with the app's folder deleted, those commands just absent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from handwritten.runtime import devservers, registry
from handwritten.runtime.arguments import add_log_format, positive_int, user_error
from handwritten.runtime.servers import ServersNotConfigured

USER_ERRORS: tuple[type[Exception], ...] = (
    ServersNotConfigured,
    devservers.PortUnavailable,
    registry.DuplicateService,
    registry.ContributionConflict,
    registry.OptionInvalid,
)
"""Errors the user can fix (a wrong URL, a port in use): one line on stderr, exit status 2."""

RUNTIME_ERRORS: tuple[type[Exception], ...] = (devservers.DevServerError,)
"""Errors of the environment (a server that would not start): one line or so, exit status 1."""

Command = Callable[[argparse.Namespace], int]


def _user_errors() -> tuple[type[Exception], ...]:
    """USER_ERRORS plus the connection errors, imported lazily (nats and asyncpg are slow)."""
    try:
        from handwritten.runtime.connect import DatabaseUnavailable, NatsUnavailable
    except ImportError:  # pragma: no cover - a broken install still reports its own error
        return USER_ERRORS
    return (*USER_ERRORS, NatsUnavailable, DatabaseUnavailable)


def _add_dev_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev-dir",
        type=Path,
        default=None,
        help="directory for the dev servers' data, logs and servers.json (default: ./.dev)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    servers = devservers.up(args.dev_dir, nats_port=args.nats_port, pg_port=args.pg_port)
    for state in (servers.nats, servers.postgres):
        print(devservers.describe(state), file=sys.stderr)
    print(f"NATS_URL={servers.nats_url}")
    print(f"DATABASE_URL={servers.database_url}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    for state in devservers.down(args.dev_dir):
        print(devservers.describe(state))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    states = devservers.status(args.dev_dir)
    for state in states:
        print(devservers.describe(state))
    return 0 if all(state.running for state in states) else 3


def cmd_headroom(args: argparse.Namespace) -> int:
    """Exit 1 when any limit is used past the threshold, so that a cron job can alert on it."""
    import asyncio

    from generated.topology import STREAMS
    from handwritten.runtime.connect import connect_nats
    from handwritten.runtime.headroom import read_headroom, warn_at
    from handwritten.runtime.servers import resolve_servers

    urls = resolve_servers(args.dev_dir, database=False)
    threshold = warn_at()

    async def show() -> int:
        nc = await connect_nats(urls.nats_url, name="filetrash-headroom")
        try:
            usages, _ = await read_headroom(nc.jetstream(), list(STREAMS))
        finally:
            await nc.close()
        for usage in usages:
            mark = "warning" if usage.share >= threshold else "ok"
            print(f"{mark:7} {usage.describe()}")
        over = sum(usage.share >= threshold for usage in usages)
        print(f"{over} limit(s) at or past {threshold:.0%} (FILETRASH_HEADROOM_WARN)")
        return 1 if over else 0

    return asyncio.run(show())


def cmd_provision(args: argparse.Namespace) -> int:
    """Exit 2 for what the user must decide (a refused change, a changed migration)."""
    import asyncio

    import asyncpg
    import nats.errors

    from generated.topology import CONSUMERS, STREAMS
    from handwritten.runtime.errors import ProvisioningError
    from handwritten.runtime.migrate import MigrationError
    from handwritten.runtime.provision import provision_servers
    from handwritten.runtime.servers import resolve_servers

    if args.replicas is not None and args.replicas < 1:
        return user_error("--replicas must be at least 1")
    migrations = registry.migrations_to_apply()
    urls = resolve_servers(args.dev_dir, database=migrations is not None)
    run = provision_servers(
        urls,
        STREAMS,
        CONSUMERS,
        apply=not args.plan,
        replicas=args.replicas,
        migrations=migrations,
        allow_interest=args.allow_interest,
    )
    try:
        asyncio.run(run)
    except (ProvisioningError, MigrationError) as error:
        return user_error(str(error))
    except (nats.errors.Error, asyncpg.PostgresError, OSError, TimeoutError) as error:
        print(f"filetrash: error: provisioning stopped: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from handwritten.runtime.consume import ConsumerMissing, ConsumerNotPullBased, ConsumeSettings
    from handwritten.runtime.logging import setup_logging
    from handwritten.runtime.run import DatabaseNotMigrated, run_service
    from handwritten.runtime.servers import resolve_servers

    try:
        definition = registry.service(args.service)
    except registry.UnknownService as error:
        return user_error(str(error))
    setup_logging(args.log_format)
    options: dict[str, object] = {}
    for contribution in registry.contributions()[0]:
        if contribution.run_options is not None:
            options.update(contribution.run_options(args))
    urls = resolve_servers(database=definition.uses_database)
    settings = ConsumeSettings(batch_size=args.batch_size, concurrency=args.concurrency)
    try:
        asyncio.run(run_service(args.service, urls, options=options, settings=settings))
    except (
        ConsumerMissing,
        ConsumerNotPullBased,
        DatabaseNotMigrated,
        registry.DatabaseNotConnected,
    ) as error:
        return user_error(str(error))
    return 0


def _add_run(commands: Any, contributed: Sequence[registry.Contribution]) -> None:
    run = commands.add_parser(
        "run",
        help="run one service (a durable consumer of the spec) until SIGTERM",
        description="Run one service until SIGTERM or Ctrl-C. Several processes of the same "
        "service share its durable consumer (competing consumers). The services are the "
        "modules under handwritten/ that declare a SERVICE (handwritten/runtime/registry.py).",
    )
    run.add_argument(
        "service",
        metavar="SERVICE",
        help="the service's durable name in the spec (e.g. a scaffolded consumer's)",
    )
    run.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="most messages per pull and per batch (a service without batches: in flight at "
        "once) (default: 64)",
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        help="batches handled at once, for a service that takes batches (default: 4)",
    )
    add_log_format(run)
    for contribution in contributed:
        if contribution.add_run_options is not None:
            contribution.add_run_options(run)
    run.set_defaults(run=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="filetrash", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start nats-server and PostgreSQL for development")
    _add_dev_dir(up)
    up.add_argument("--nats-port", type=int, help="NATS client port (default: 4222 or a free one)")
    up.add_argument("--pg-port", type=int, help="PostgreSQL port (default: 5432 or a free one)")
    up.set_defaults(run=cmd_up)

    down = commands.add_parser("down", help="stop the dev servers; their data is kept")
    _add_dev_dir(down)
    down.set_defaults(run=cmd_down)

    status = commands.add_parser("status", help="show the dev servers (exit 3 if not all run)")
    _add_dev_dir(status)
    status.set_defaults(run=cmd_status)

    headroom = commands.add_parser(
        "headroom",
        help="how much of each stream's limits the durables' backlogs use (exit 1 past 80%%)",
    )
    _add_dev_dir(headroom)
    headroom.set_defaults(run=cmd_headroom)

    provision = commands.add_parser(
        "provision",
        help="create or update the spec's streams and consumers (and migrate the apps' tables)",
    )
    _add_dev_dir(provision)
    provision.add_argument("--plan", action="store_true", help="only show what would change")
    provision.add_argument(
        "--replicas", type=int, help="replicas for every stream and consumer (default: the spec's)"
    )
    provision.add_argument(
        "--allow-interest",
        action="store_true",
        help="let a stream switch from limits to interest retention: messages every consumer "
        "has acknowledged are removed, the others kept (the migration to the spec of issue 11)",
    )
    provision.set_defaults(run=cmd_provision)

    contributed, problems = registry.contributions()
    for problem in problems:
        print(f"filetrash: warning: {problem}", file=sys.stderr)
    _add_run(commands, contributed)
    for contribution in contributed:  # the apps' commands, e.g. publish, purge, demo
        if contribution.add_commands is not None:
            contribution.add_commands(commands)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("filetrash: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if isinstance(error, _user_errors()):
            print(f"filetrash: error: {error}", file=sys.stderr)
            return 2
        if isinstance(error, ImportError) and (error.name or "").startswith("generated"):
            text = " ".join(str(error).split())
            return user_error(f"{text}: the spec does not generate what this command needs")
        if isinstance(error, RUNTIME_ERRORS):
            print(f"filetrash: error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
