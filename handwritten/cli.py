"""The `filetrash` command: a thin dispatcher; each command's logic lives in the runtime.

Its own commands are generic (up, down, status, provision, run); an app adds its own through
the `Contribution` its registry discovers (the filetrash app: publish, purge, demo), so the
command works the same with the app's folder deleted, those commands just absent.
"""

from __future__ import annotations

import argparse
import os
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
        from handwritten.runtime.roles import CredentialsMissing, PermissionRefused
    except ImportError:  # pragma: no cover - a broken install still reports its own error
        return USER_ERRORS
    return (
        *USER_ERRORS,
        NatsUnavailable,
        DatabaseUnavailable,
        PermissionRefused,
        CredentialsMissing,
    )


def _add_dev_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev-dir",
        type=Path,
        default=None,
        help="directory for the dev servers' data, logs and servers.json (default: ./.dev)",
    )


def cmd_up(args: argparse.Namespace) -> int:
    servers = devservers.up(
        args.dev_dir, nats_port=args.nats_port, pg_port=args.pg_port, auth=not args.no_auth
    )
    for state in (servers.nats, servers.postgres):
        print(devservers.describe(state), file=sys.stderr)
    if servers.credentials is not None:
        print(
            f"NATS authorization on: one user per role of the spec, passwords in "
            f"{servers.credentials} (mode 0600); commands connect as their role",
            file=sys.stderr,
        )
    print(f"NATS_URL={servers.nats_url}")
    print(f"DATABASE_URL={servers.database_url}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    for state in devservers.down(args.dev_dir):
        print(devservers.describe(state))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The dev servers (when `filetrash up` started some), then the system as the spec defines
    it, live. Exit 0 when all is well, 3 when a dev server is down, 4 when the topology drifted
    from the spec (nothing provisioned yet included), 5 when a durable lags (see --max-pending,
    --max-headroom)."""
    import asyncio
    import json
    import time

    from handwritten.runtime.servers import ServersNotConfigured, resolve_servers

    if not os.environ.get("NATS_URL"):  # the dev servers, as before
        states = devservers.status(args.dev_dir)
        if not args.json:
            for state in states:
                print(devservers.describe(state))
        if not all(state.running for state in states):
            return 3
    try:
        urls = resolve_servers(args.dev_dir, database=False)
    except ServersNotConfigured as error:
        return user_error(str(error))
    while True:
        status, code = asyncio.run(_read_status(urls, args))
        if args.json:
            print(json.dumps({**status, "exit": code}, indent=2))
        else:
            if args.watch:
                print("\x1b[2J\x1b[H", end="")  # clear the screen, cursor home
            print(status["text"])
        if not args.watch:
            return code
        time.sleep(args.watch)


async def _read_status(urls: Any, args: argparse.Namespace) -> tuple[dict[str, object], int]:
    from generated.consumers import ENDPOINTS
    from generated.topology import CONSUMERS, STREAMS
    from handwritten.runtime import status
    from handwritten.runtime.connect import connect_nats
    from handwritten.runtime.roles import ADMIN

    nc = await connect_nats(urls.nats_url, name="filetrash status", login=urls.login(ADMIN))
    try:
        found = await status.read_status(nc, STREAMS, CONSUMERS, ENDPOINTS)
    finally:
        await nc.close()
    code = status.verdict(found, max_pending=args.max_pending, max_headroom=args.max_headroom)
    if args.json:
        return found.as_json(), code
    return {"text": status.render(found)}, code


def cmd_headroom(args: argparse.Namespace) -> int:
    """Exit 1 when any limit is used past the threshold, so that a cron job can alert on it."""
    import asyncio

    from generated.topology import STREAMS
    from handwritten.runtime.connect import connect_nats
    from handwritten.runtime.headroom import read_headroom, warn_at
    from handwritten.runtime.roles import ADMIN
    from handwritten.runtime.servers import resolve_servers

    urls = resolve_servers(args.dev_dir, database=False)
    threshold = warn_at()

    async def show() -> int:
        nc = await connect_nats(urls.nats_url, name="filetrash-headroom", login=urls.login(ADMIN))
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

    from handwritten.runtime.consume import ConsumeSettings
    from handwritten.runtime.durable import ConsumerMissing, ConsumerNotPullBased
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
        asyncio.run(
            run_service(
                args.service,
                urls,
                options=options,
                settings=settings,
                metrics_port=args.metrics_port,
                steady_gc=True,
            )
        )
    except (
        ConsumerMissing,
        ConsumerNotPullBased,
        DatabaseNotMigrated,
        registry.DatabaseNotConnected,
    ) as error:
        return user_error(str(error))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    """`dlq list|show|replay`: exit 2 for what the user must fix, 1 when a replay kept some."""
    import asyncio

    import nats.errors

    from handwritten.runtime import dlq
    from handwritten.runtime.servers import resolve_servers

    try:
        return asyncio.run(_dlq(args, resolve_servers))
    except (dlq.DlqError, registry.UnknownService) as error:
        return user_error(str(error))
    except (nats.errors.Error, OSError, TimeoutError) as error:
        print(f"filetrash: error: dlq {args.dlq_command} stopped: {error}", file=sys.stderr)
        return 1


async def _dlq(args: argparse.Namespace, resolve_servers: Any) -> int:
    from generated.consumers import ENDPOINTS
    from generated.topology import STREAMS
    from handwritten.runtime import dlq
    from handwritten.runtime.jetstream import JetStreamPublisher
    from handwritten.runtime.registry import ServiceResources
    from handwritten.runtime.run import connected, require_migrated

    streams = dlq.dead_letter_streams(
        ENDPOINTS, {name: list(config.subjects or ()) for name, config in STREAMS.items()}
    )
    if args.stream is not None:
        if args.stream not in streams:
            raise dlq.DlqError(
                f"--stream {args.stream} is no dead-letter stream of the spec "
                f"({', '.join(streams) or 'none'})"
            )
        streams = [args.stream]
    if args.dlq_command == "replay":
        definition = registry.service(args.consumer)
        urls = resolve_servers(database=definition.uses_database)
        first, last = dlq.parse_range(args.seq)
        async with connected(
            urls, name="filetrash dlq replay", database=definition.uses_database
        ) as (
            nc,
            pool,
        ):
            if pool is not None and definition.migrations is not None and not args.dry_run:
                await require_migrated(pool, definition.migrations)
            js = nc.jetstream()
            options: dict[str, object] = {}
            for contribution in registry.contributions()[0]:  # as `filetrash run` has them
                if contribution.run_options is not None:
                    options.update(contribution.run_options(args))
            resources = ServiceResources(
                js=JetStreamPublisher(js), database=pool, options=options, service=args.consumer
            )
            handler = definition.make_handler(resources)
            kept = 0
            for stream in streams:
                report = await dlq.replay(
                    js,
                    definition.endpoint,
                    handler,
                    stream=stream,
                    reason=args.reason,
                    first=first,
                    last=last,
                    dry_run=args.dry_run,
                )
                sys.stdout.write(report.render(args.consumer, args.dry_run))
                kept += len(report.kept)
        return 1 if kept and not args.dry_run else 0
    urls = resolve_servers(database=False)
    async with connected(urls, name=f"filetrash dlq {args.dlq_command}", database=False) as (
        nc,
        _,
    ):
        js = nc.jetstream()
        if args.dlq_command == "show":
            sys.stdout.write(dlq.render_show(await dlq.find(js, streams, args.seq, args.stream)))
            return 0
        letters = [
            letter
            for stream in streams
            async for letter in dlq.read_dead_letters(js, stream)
            if args.consumer is None or letter.consumer == args.consumer
        ]
        sys.stdout.write(dlq.render_list(dlq.summarise(letters)))
    return 0


def _add_dlq(commands: Any, contributed: Sequence[registry.Contribution]) -> None:
    from handwritten.runtime.deadletter import REASONS

    parser = commands.add_parser(
        "dlq",
        help="list, show and replay dead letters",
        description="The dead letters of the spec's consumers. A replay hands each chosen dead "
        "letter to the handler of the consumer that gave up on it (only that one), with the "
        "models of the spec as it is now, and removes it from the DLQ once handled "
        "(handwritten/runtime/dlq.py says why this way).",
    )
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="DLQ_COMMAND")
    listing = sub.add_parser("list", help="per consumer and reason: count, oldest, newest")
    listing.add_argument("--consumer", help="only this durable's")
    show = sub.add_parser("show", help="one dead letter: headers, payload, why")
    show.add_argument("seq", type=positive_int, metavar="SEQ", help="its sequence in the DLQ")
    replay = sub.add_parser("replay", help="hand dead letters to their consumer again")
    replay.add_argument("--consumer", required=True, metavar="DURABLE", help="the consumer")
    replay.add_argument("--reason", choices=REASONS, help="only dead letters of this reason")
    replay.add_argument("--seq", metavar="A-B", help="only these DLQ sequences (A-B, A-, A)")
    replay.add_argument(
        "--dry-run", action="store_true", help="only say which the consumer would accept now"
    )
    for contribution in contributed:  # the options a handler gets from `filetrash run`
        if contribution.add_run_options is not None:
            contribution.add_run_options(replay)
    for each in (listing, show, replay):
        each.add_argument("--stream", help="the dead-letter stream (default: every one)")
        each.set_defaults(run=cmd_dlq)


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
        default=None,
        help="most messages per pull and per batch (a service without batches: in flight at "
        "once) (default: 256 for a service that takes batches, else 64)",
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        default=2,  # ConsumeSettings.concurrency
        help="batches handled at once, for a service that takes batches (default: 2)",
    )
    run.add_argument(
        "--metrics-port",
        type=positive_int,
        default=os.environ.get("FILETRASH_METRICS_PORT") or None,  # parsed like the flag
        help="serve Prometheus metrics on /metrics, and /healthz and /readyz, on this port "
        "(default: FILETRASH_METRICS_PORT, else none; FILETRASH_METRICS_HOST is the address, "
        "127.0.0.1 by default)",
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
    up.add_argument(
        "--no-auth",
        action="store_true",
        help="run nats-server without authorization (default: one user per role of the spec, "
        "generated/permissions.py)",
    )
    up.set_defaults(run=cmd_up)

    down = commands.add_parser("down", help="stop the dev servers; their data is kept")
    _add_dev_dir(down)
    down.set_defaults(run=cmd_down)

    status = commands.add_parser(
        "status",
        help="the dev servers and the system as the spec defines it, live",
        description="Streams (messages, bytes, oldest, use of each limit), durables (pending, "
        "ack pending, redelivered, waiting pulls, headroom before the stream's limits drop "
        "what they still need, dead letters by reason, last activity) and drift from the spec. "
        "Exit 0: all well; 3: a dev server is down; 4: the topology drifted from the spec (a "
        "stream or durable missing included); 5: a durable lags past --max-pending, or its "
        "unprocessed messages use more than --max-headroom of a stream limit.",
    )
    _add_dev_dir(status)
    status.add_argument("--json", action="store_true", help="one JSON document, for machines")
    status.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="refresh in place every SECONDS (default 2)",
    )
    status.add_argument(
        "--max-pending",
        type=int,
        default=None,
        help="exit 5 when a durable has more unprocessed messages than this",
    )
    status.add_argument(
        "--max-headroom",
        type=float,
        default=0.8,
        help="exit 5 when a durable's unprocessed messages use more than this fraction of a "
        "stream limit (default 0.8)",
    )
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
    _add_dlq(commands, contributed)
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
