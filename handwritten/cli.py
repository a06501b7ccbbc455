"""The `filetrash` command: a thin dispatcher; each command's logic lives in the runtime."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from handwritten.runtime import devservers
from handwritten.runtime.servers import ServersNotConfigured
from handwritten.services import commands as service_commands

USER_ERRORS: tuple[type[Exception], ...] = (ServersNotConfigured, devservers.PortUnavailable)
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


def cmd_provision(args: argparse.Namespace) -> int:
    """Exit 2 for what the user must decide (a refused change, a changed migration)."""
    import asyncio

    import asyncpg
    import nats.errors

    from generated.topology import CONSUMERS, STREAMS
    from handwritten.db.migrate import MigrationError
    from handwritten.runtime.errors import ProvisioningError
    from handwritten.runtime.provision import provision_servers
    from handwritten.runtime.servers import resolve_servers

    if args.replicas is not None and args.replicas < 1:
        print("filetrash: error: --replicas must be at least 1", file=sys.stderr)
        return 2
    urls = resolve_servers(args.dev_dir)
    run = provision_servers(urls, STREAMS, CONSUMERS, apply=not args.plan, replicas=args.replicas)
    try:
        asyncio.run(run)
    except (ProvisioningError, MigrationError) as error:
        print(f"filetrash: error: {error}", file=sys.stderr)
        return 2
    except (nats.errors.Error, asyncpg.PostgresError, OSError, TimeoutError) as error:
        print(f"filetrash: error: provisioning stopped: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="filetrash", description=__doc__)
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

    provision = commands.add_parser(
        "provision", help="create or update the spec's streams and consumers, migrate the database"
    )
    _add_dev_dir(provision)
    provision.add_argument("--plan", action="store_true", help="only show what would change")
    provision.add_argument(
        "--replicas", type=int, help="replicas for every stream and consumer (default: the spec's)"
    )
    provision.set_defaults(run=cmd_provision)

    service_commands.add_commands(commands)  # run, publish, purge, demo

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
        if isinstance(error, RUNTIME_ERRORS):
            print(f"filetrash: error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
