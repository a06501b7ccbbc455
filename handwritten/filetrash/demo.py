"""`filetrash demo`: the whole system, end to end, with the numbers checked at the end.

1. Servers: NATS_URL and DATABASE_URL when both are set, else the dev servers (started now
   if they are not running, and stopped again at the end if this run started them).
2. Provisioning: the spec's streams and consumers, and the database migrations.
3. Every service as a real process (`filetrash run NAME`), two of the trash-processor
   (competing consumers); their log lines are shown as they come, prefixed with the process.
4. N simulated deletions, published at `--rate`.
5. Waiting, with a deadline, until every service has done its part for every deletion.
6. Stopping the services with SIGTERM (each must exit 0), then a reconciliation table.

The servers may hold data of earlier runs, so every number is counted for this run's event
ids only: the deletions published now and the trash events derived from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from handwritten.runtime import devservers
from handwritten.runtime.roles import ADMIN, ROLE_ENV
from handwritten.runtime.servers import (
    DATABASE_URL_ENV,
    NATS_CREDENTIALS_ENV,
    NATS_URL_ENV,
    ServerUrls,
)

if TYPE_CHECKING:
    from handwritten.filetrash.db.queries import RunCounts

DEFAULT_COUNT: Final = 40
STOP_TIMEOUT: Final = 20.0
READY_TIMEOUT: Final = 30.0
POLL_INTERVAL: Final = 0.2
LABEL_WIDTH: Final = 22
DLQ_STREAM: Final = "FILE_EVENTS_DLQ"
EVENTS_STREAM: Final = "FILE_EVENTS"

PROCESSES: Final = (
    ("trash-processor #1", "trash-processor"),
    ("trash-processor #2", "trash-processor"),
    ("audit-logger", "audit-logger"),
    ("analytics-service", "analytics-service"),
    ("cleanup-service", "cleanup-service"),
    ("notification-service", "notification-service"),
)
"""(label, service): every process the demo starts."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    count: int = DEFAULT_COUNT
    rate: float = 20.0
    timeout: float = 60.0
    seed: int | None = None
    dev_dir: Path | None = None


def say(label: str, text: str) -> None:
    """One line of the flow: `label │ text`."""
    print(f"{label:<{LABEL_WIDTH}} │ {text}", flush=True)


def banner(text: str) -> None:
    print(f"\n━━━ {text} " + "━" * max(3, 76 - len(text)), flush=True)


# --- servers --------------------------------------------------------------------------------


def run_demo(options: DemoOptions) -> int:
    """The `filetrash demo` command; returns the exit status (0: everything reconciles)."""
    from handwritten.runtime import devservers
    from handwritten.runtime.servers import resolve_servers

    started = time.monotonic()
    own_servers = False
    dev_dir = devservers.resolve_dev_dir(options.dev_dir)
    if os.environ.get(NATS_URL_ENV) and os.environ.get(DATABASE_URL_ENV):
        urls = resolve_servers(dev_dir)
        banner("Servers (from NATS_URL and DATABASE_URL)")
    else:
        banner(f"Dev servers in {dev_dir}")
        servers = devservers.up(dev_dir)
        for state in (servers.nats, servers.postgres):
            say("servers", devservers.describe(state))
        own_servers = servers.nats.note.startswith("started") and servers.postgres.note.startswith(
            "started"
        )
        urls = resolve_servers(dev_dir)
    try:
        return asyncio.run(_demo(urls, options, started))
    finally:
        if own_servers:
            banner("Stopping the dev servers this demo started")
            for state in devservers.down(dev_dir):
                say("servers", devservers.describe(state))


# --- service processes ------------------------------------------------------------------------


@dataclass
class ServiceProcess:
    """One `filetrash run` child: its output shown as it comes, its steps counted."""

    label: str
    service: str
    process: asyncio.subprocess.Process | None = None
    reader: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    steps: Counter[str] = field(default_factory=Counter)
    stopped_stats: dict[str, Any] = field(default_factory=dict)
    exit_status: int | None = None

    async def start(self, env: dict[str, str], metrics_port: int) -> None:
        """Each service serves its metrics on its own port, and logs where."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "handwritten.cli",
            "run",
            self.service,
            "--log-format",
            "json",
            "--metrics-port",
            str(metrics_port),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops them in order
        )
        self.reader = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self._show(line.decode("utf-8", errors="replace").rstrip("\n"))

    def _show(self, line: str) -> None:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or "message" not in entry:
            say(self.label, line)  # a traceback or anything else not from logging
            return
        message = str(entry["message"])
        step = entry.get("step")
        if isinstance(step, str):
            count = entry.get("count", 1)  # a batch tells each step once, with its count
            self.steps[step] += count if isinstance(count, int) else 1
            if step == "stopped":
                self.stopped_stats = entry
        if entry.get("logger") == "handwritten.runtime.consume" and " ready." in message:
            self.ready.set()
        level = entry.get("level", "INFO")
        say(self.label, message if level == "INFO" else f"{level}: {message}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then wait; SIGKILL after `timeout` (and report no clean exit)."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                say(self.label, f"did not stop within {timeout:.0f}s of SIGTERM: killing it")
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                self.exit_status = None
                await self._drain_reader()
                return None
        await self._drain_reader()
        self.exit_status = process.returncode
        return process.returncode

    async def _drain_reader(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.reader, 5.0)


def _child_env(urls: ServerUrls) -> dict[str, str]:
    env = dict(os.environ)
    env[NATS_URL_ENV] = urls.nats_url
    env[DATABASE_URL_ENV] = urls.database()
    # Each service connects as its own role (FILETRASH_ROLE would make them all one).
    env.pop(ROLE_ENV, None)
    if urls.nats_credentials is not None:
        env[NATS_CREDENTIALS_ENV] = str(urls.nats_credentials)
    env.pop("FILETRASH_FAULT", None)  # the demo expects clean runs
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    expected: int | None
    actual: int

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.actual


async def _demo(urls: ServerUrls, options: DemoOptions, started: float) -> int:
    from generated.topology import CONSUMERS, STREAMS
    from handwritten.filetrash import ids, reconcile
    from handwritten.filetrash.db import MIGRATIONS, queries
    from handwritten.filetrash.jobs import PUBLISHER_ROLE
    from handwritten.filetrash.publisher import (
        DeletionSimulator,
        describe_published,
        publish_deletions,
    )
    from handwritten.runtime.connect import connect_db, connect_nats
    from handwritten.runtime.jetstream import JetStreamPublisher
    from handwritten.runtime.provision import provision_servers
    from handwritten.runtime.servers import redact

    say("servers", f"NATS {redact(urls.nats_url)}, PostgreSQL {redact(urls.database())}")
    banner("Provisioning: streams, consumers, migrations")
    await provision_servers(
        urls,
        STREAMS,
        CONSUMERS,
        apply=True,
        migrations=MIGRATIONS,
        echo=lambda text: _say_lines("provision", text),
    )

    # The demo reconciles as admin and publishes as the publisher's role, as
    # `filetrash publish` does; each service runs under its own role.
    nc = await connect_nats(urls.nats_url, name="filetrash demo", login=urls.login(ADMIN))
    publisher_nc = await connect_nats(
        urls.nats_url, name="filetrash demo publisher", login=urls.login(PUBLISHER_ROLE)
    )
    pool = await connect_db(urls.database(), min_size=1, max_size=2)
    processes = [ServiceProcess(label, name) for label, name in PROCESSES]
    try:
        js = nc.jetstream()
        dlq_before = await reconcile.last_seq(js, DLQ_STREAM)
        # FILE_EVENTS keeps a trash event only until its consumers acknowledged it: a witness
        # made now keeps them for the count at the end.
        trash_witness = await reconcile.Witness.start(
            js, stream=EVENTS_STREAM, subject="files.trashed"
        )

        banner("Starting the services (two trash-processors compete for files.deleted)")
        env = _child_env(urls)
        taken: set[int] = set()
        for each in processes:
            port = devservers.free_port(avoid=frozenset(taken))
            taken.add(port)
            await each.start(env, port)
        if not await _wait_ready(processes, READY_TIMEOUT):
            return 1

        seed = random.SystemRandom().randrange(2**32) if options.seed is None else options.seed
        pace = "as fast as possible" if options.rate == 0 else f"{options.rate:g}/s"
        banner(f"Publishing {options.count} deletions ({pace}, seed {seed})")
        published = await publish_deletions(
            JetStreamPublisher(publisher_nc.jetstream()),
            DeletionSimulator(random.Random(seed)),
            count=options.count,
            rate=options.rate,
            on_published=lambda event, result: say("publisher", describe_published(event, result)),
        )
        deletion_ids = [p.event.event_id for p in published]
        trash_event_ids = [ids.trash_event_id(i) for i in deletion_ids]

        count = options.count
        complete = False
        deadline = time.monotonic() + options.timeout
        while True:
            counts = await queries.count_run(pool, deletion_ids, trash_event_ids)
            if _all_done(counts, count):
                complete = True
                break
            dead = [p for p in processes if not p.running]
            if dead or time.monotonic() > deadline:
                for p in dead:
                    say(
                        "demo",
                        f"❌ {p.label} exited early (status {p.process and p.process.returncode})",
                    )
                if not dead:
                    say("demo", f"❌ not everything was processed within {options.timeout:g}s")
                break
            await asyncio.sleep(POLL_INTERVAL)

        banner("Stopping the services (SIGTERM)")
        statuses = [await each.stop() for each in processes]

        trash_messages = await trash_witness.collect()
        trash_tally = reconcile.tally(trash_messages, trash_event_ids)
        dead_letters = await reconcile.last_seq(js, DLQ_STREAM) - dlq_before
        counts = await queries.count_run(pool, deletion_ids, trash_event_ids)
    finally:
        for each in processes:
            if each.running:
                await each.stop(timeout=5.0)
        await pool.close()
        await nc.close()
        await publisher_nc.close()

    rows = [
        Row(
            "FileDeletedEvent published (new in files.deleted)",
            count,
            sum(1 for p in published if not p.result.duplicate),
        ),
        Row("rows in trashed_files", count, counts.trashed_rows),
        Row("FilePlacedInTrashEvent in files.trashed", count, trash_tally.copies),
        Row("  … of which duplicates", 0, trash_tally.duplicates),
        Row("audit_log rows", count, counts.audit_rows),
        Row(
            "analytics: FileDeletedEvent counted",
            count,
            counts.analytics_by_type.get("FileDeletedEvent", 0),
        ),
        Row(
            "analytics: FilePlacedInTrashEvent counted",
            count,
            counts.analytics_by_type.get("FilePlacedInTrashEvent", 0),
        ),
        Row("cleanup_queue rows", count, counts.cleanup_rows),
        Row("user_notifications rows", count, counts.notification_rows),
        Row("dead letters (FILE_EVENTS_DLQ, this run)", 0, dead_letters),
        Row(
            "services stopped cleanly by SIGTERM",
            len(processes),
            sum(1 for s in statuses if s == 0),
        ),
    ]
    trash = [p for p in processes if p.service == "trash-processor"]
    stored_by_instances = sum(p.steps["stored"] for p in trash)
    rows.append(Row("rows stored by the two trash-processors", count, stored_by_instances))
    ok = complete and all(row.ok for row in rows)
    _print_table(rows, trash, ok, count, time.monotonic() - started)
    return 0 if ok else 1


def _say_lines(label: str, text: str) -> None:
    for line in text.splitlines():
        say(label, line)


async def _wait_ready(processes: list[ServiceProcess], timeout: float) -> bool:
    """Wait until every service listens (so the trash-processors share the work from the
    first deletion on); False, with the reason shown, when one exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not all(p.ready.is_set() for p in processes):
        exited = [p for p in processes if not p.running]
        if exited:
            for p in exited:
                say(
                    "demo",
                    f"❌ {p.label} exited during start-up (status {p.process and p.process.returncode})",
                )
            return False
        if time.monotonic() > deadline:
            waiting = ", ".join(p.label for p in processes if not p.ready.is_set())
            say("demo", f"❌ not ready within {timeout:g}s: {waiting}")
            return False
        await asyncio.sleep(POLL_INTERVAL)
    return True


def _all_done(counts: RunCounts, count: int) -> bool:
    return (
        counts.trashed_rows == count
        and counts.trash_events_marked == count
        and counts.audit_rows == count
        and counts.cleanup_rows == count
        and counts.notification_rows == count
        and counts.analytics_by_type.get("FileDeletedEvent", 0) == count
        and counts.analytics_by_type.get("FilePlacedInTrashEvent", 0) == count
    )


def _print_table(
    rows: list[Row],
    trash: list[ServiceProcess],
    ok: bool,
    count: int,
    elapsed: float,
    out: Callable[[str], None] = print,
) -> None:
    banner("Reconciliation (this run's events only)")
    width = max(len(row.what) for row in rows)
    out(f"  {'':<{width}}  {'expected':>8}  {'actual':>6}")
    for row in rows:
        expected = "" if row.expected is None else str(row.expected)
        out(f"  {row.what:<{width}}  {expected:>8}  {row.actual:>6}  {'✅' if row.ok else '❌'}")
    out("")
    out("  Competing consumers (trash-processor):")
    for p in trash:
        handled = p.stopped_stats.get("handled", p.steps["received"])
        share = 100 * p.steps["stored"] / count if count else 0
        out(
            f"    {p.label}: received {p.steps['received']}, stored {p.steps['stored']} "
            f"({share:.0f}%), handled {handled}"
        )
    idle = [p.label for p in trash if p.steps["received"] == 0]
    if idle:
        out(f"    ⚠️  {', '.join(idle)} did no work this time")
    out("")
    if ok:
        out(f"✅ Everything reconciles: {count} deletions through every service in {elapsed:.1f}s")
    else:
        out(f"❌ The numbers do not reconcile (see ❌ above); {elapsed:.1f}s")
    sys.stdout.flush()
