"""What every fault scenario needs: provisioned servers with fault-test timings, the services
and the publisher as real processes, and the reconciliation of a run against PostgreSQL and
the streams.

Timings: the spec's consumers wait 30 s for a first ack (backoff [30s, 1m, 2m, 5m]); a crashed
delivery would come back only after that. The scenarios keep the spec's shape and its
max_deliver but divide the waits by 15 (`FAULT_TIMINGS`), so that recovery takes seconds.
Everything else (streams, filters, retention, duplicate window) is the spec's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from generated.topology import CONSUMERS, STREAMS
from handwritten.filetrash import ids, reconcile
from handwritten.filetrash.db import MIGRATIONS
from handwritten.runtime.connect import connect_db, connect_nats
from handwritten.runtime.contract import ConsumerBinding
from handwritten.runtime.deadletter import CONSUMER_HEADER, REASON_HEADER, SEQUENCE_HEADER
from handwritten.runtime.migrate import migrate
from handwritten.runtime.provision import provision
from tests.app.service_harness import Servers
from tests.support.processes import CliProcess

EVENTS_STREAM = "FILE_EVENTS"
DLQ_STREAM = "FILE_EVENTS_DLQ"
DELETION_CONSUMERS = ("trash-processor", "audit-logger")
"""The durables whose work a scenario reconciles: a row, a trash event, an audit row."""

FAULT_TIMINGS: Mapping[str, Any] = {"ack_wait": 2.0, "backoff": [2.0, 4.0, 8.0, 20.0]}
"""The spec's ack wait and backoff, 15 times shorter; max_deliver stays the spec's 5."""


def fault_consumers(**overrides: Any) -> dict[str, ConsumerBinding]:
    """The spec's consumers with `FAULT_TIMINGS` (and `overrides`) applied."""
    changes = {**FAULT_TIMINGS, **overrides}
    return {
        name: replace(binding, config=binding.config.evolve(**changes))
        for name, binding in CONSUMERS.items()
    }


@asynccontextmanager
async def fault_servers(
    nats_url: str,
    database_url: str,
    *,
    replicas: int | None = None,
    stream_limits: Mapping[str, Any] | None = None,
    **consumer_overrides: Any,
) -> AsyncIterator[Servers]:
    """The spec's streams (with the `replicas` deployment override, and `stream_limits`, such
    as a test-sized max_msgs_per_subject, on FILE_EVENTS), the consumers with fault timings,
    the migrations, and the test's own connections to both servers."""
    nc = await connect_nats(nats_url, name="fault-test")
    pool = await connect_db(database_url, min_size=1, max_size=4)
    streams = dict(STREAMS)
    if stream_limits:
        streams[EVENTS_STREAM] = streams[EVENTS_STREAM].evolve(**stream_limits)
    try:
        js = nc.jetstream()
        await provision(
            js, streams, fault_consumers(**consumer_overrides), apply=True, replicas=replicas
        )
        await migrate(pool, MIGRATIONS)
        yield Servers(nats_url, database_url, nc, js, pool)
    finally:
        await pool.close()
        await nc.close()


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    what: str,
    state: Callable[[], Awaitable[object]] | None = None,
    interval: float = 0.25,
) -> float:
    """Poll until `condition` holds; return the seconds it took. Errors while polling (a
    server that is down) count as "not yet"."""
    started = time.monotonic()
    while True:
        try:
            if await condition():
                return time.monotonic() - started
        except Exception as error:  # the servers may be down while we poll
            last_error: Exception | None = error
        else:
            last_error = None
        if time.monotonic() - started > timeout:
            seen = ""
            if state is not None:
                try:
                    seen = f"; last seen: {await state()}"
                except Exception as error:
                    seen = f"; state unavailable: {error}"
            if last_error is not None:
                seen += f"; last error: {last_error!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{seen}")
        await asyncio.sleep(interval)


SLOW_TABLES = {"trashed_files": "original_event_id", "audit_log": "event_id"}


async def slow_down_inserts(
    pool: asyncpg.Pool, seconds: float, *, share: float = 1.0, tables: Iterable[str] = SLOW_TABLES
) -> None:
    """Make PostgreSQL take `seconds` for each row inserted into `tables` (the trash and the
    audit log) whose event id falls in the first `share` of the id space: a slow database, as
    the services would meet it, without touching their code."""
    cutoff = f"{min(int(share * 65536), 65535):04x}"
    for table in tables:
        column = SLOW_TABLES[table]
        condition = "TRUE" if share >= 1.0 else f"substr(NEW.{column}::text, 1, 4) < '{cutoff}'"
        await pool.execute(
            f"""
            CREATE OR REPLACE FUNCTION fault_slow_{table}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF {condition} THEN
                    PERFORM pg_sleep({seconds});
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER fault_slow BEFORE INSERT ON {table}
                FOR EACH ROW EXECUTE FUNCTION fault_slow_{table}();
            """
        )


def slowed(event_ids: Iterable[UUID], share: float) -> list[UUID]:
    """The ids `slow_down_inserts(..., share=share)` slows down."""
    cutoff = f"{min(int(share * 65536), 65535):04x}"
    return [e for e in event_ids if share >= 1.0 or str(e)[:4] < cutoff]


# --- processes -----------------------------------------------------------------------------


class Fleet:
    """The processes of one scenario: services (`filetrash run`) and publishers, each with its
    own log file; whatever is still running at the end is killed."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.processes: list[CliProcess] = []
        self._numbers: Counter[str] = Counter()

    def _spawn(self, label: str, args: Sequence[str], extra_env: Mapping[str, str]) -> CliProcess:
        self._numbers[label] += 1
        log = self.workdir / f"{label}.{self._numbers[label]}.log"
        process = CliProcess(label, args, {**self.env, **extra_env}, log)
        self.processes.append(process)
        return process

    def service(
        self, name: str, *args: str, label: str | None = None, **extra_env: str
    ) -> CliProcess:
        return self._spawn(label or name, ["run", name, "--log-format", "json", *args], extra_env)

    def restart(self, process: CliProcess, **extra_env: str) -> CliProcess:
        """A new process like `process` (which must have ended), with `extra_env` instead of
        the FILETRASH_ variables it had."""
        assert not process.alive, f"{process.label} is still running"
        return self._spawn(process.label, process.args, extra_env)

    def publisher(
        self, count: int, *, rate: float, seed: int, label: str = "publisher"
    ) -> CliProcess:
        args = ["publish", "--count", str(count), "--rate", f"{rate:g}", "--seed", str(seed)]
        return self._spawn(label, [*args, "--log-format", "json"], {})

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()

    def logs(self, label: str) -> list[dict[str, Any]]:
        """The JSON lines of every process with this label, in start order."""
        return [line for p in self.processes if p.label == label for line in p.log_lines()]


async def wait_ready(*processes: CliProcess, timeout: float = 60.0) -> None:
    """Until each service logged that it is listening; a process that exits first fails."""
    deadline = time.monotonic() + timeout
    for process in processes:
        while not any(line.get("step") == "ready" for line in process.log_lines()):
            if not process.alive:
                raise AssertionError(
                    f"{process.label} exited with {process.returncode}:\n{process.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{process.label} not ready after {timeout:.0f}s")
            await asyncio.sleep(0.1)


def published_ids(process: CliProcess) -> list[UUID]:
    """The deletions a `filetrash publish` process logged as acknowledged by JetStream."""
    return [
        UUID(line["event_id"])
        for line in process.log_lines()
        if line.get("step") == "published" and "event_id" in line
    ]


# --- reconciliation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    """A run's outcome, counted for the valid deletions it published.

    `processed`: deletions with their trashed_files row (marked as announced), their
    FilePlacedInTrashEvent in the stream and their audit row. `lost` = published - processed.
    `duplicated`: every copy beyond the first of a trash event, a dead letter or a row.
    `unexpected`: rows or events that belong to no published deletion.
    """

    published: int
    processed: int
    lost: int
    duplicated: int
    unexpected: int
    dead_letters: int
    dead_letter_reasons: Mapping[str, int]
    details: Mapping[str, Any] = field(default_factory=dict)

    def assert_exact(self, *, dead_letters: int = 0) -> None:
        """Nothing lost, nothing twice, nothing extra, exactly `dead_letters` dead letters."""
        problems = []
        if self.lost:
            problems.append(f"{self.lost} lost")
        if self.duplicated:
            problems.append(f"{self.duplicated} duplicated")
        if self.unexpected:
            problems.append(f"{self.unexpected} unexpected")
        if self.dead_letters != dead_letters:
            problems.append(f"{self.dead_letters} dead letters, expected {dead_letters}")
        assert not problems, f"{', '.join(problems)}: {dict(self.details)}"


async def scan_trash_events(js: JetStreamContext) -> list[reconcile.StoredMessage]:
    return await reconcile.scan(js, stream=EVENTS_STREAM, subject="files.trashed")


async def scan_dead_letters(js: JetStreamContext) -> list[reconcile.StoredMessage]:
    return await reconcile.scan(js, stream=DLQ_STREAM, subject="dlq.files.>")


async def reconcile_run(
    servers: Servers, valid_ids: Iterable[UUID], *, sample: int = 5, consumed: bool = False
) -> Reconciliation:
    """Count, in PostgreSQL and in the streams, what happened to every valid deletion.

    `consumed`: the consumers of trash events (notification-service, analytics-service) ran,
    so FILE_EVENTS (interest retention) no longer holds the trash events; each must then have
    its notification row instead, exactly once."""
    deletions = list(dict.fromkeys(valid_ids))
    wanted = {str(d) for d in deletions}
    trash_event_of = {str(ids.trash_event_id(d)): str(d) for d in deletions}
    pool: asyncpg.Pool = servers.pool
    rows = await pool.fetch("SELECT original_event_id, trash_event_seq FROM trashed_files")
    audit = await pool.fetch("SELECT event_id FROM audit_log")
    trash_messages = await scan_trash_events(servers.js)
    letters = await scan_dead_letters(servers.js)

    row_count = Counter(str(r["original_event_id"]) for r in rows)
    marked = {str(r["original_event_id"]) for r in rows if r["trash_event_seq"] is not None}
    audit_count = Counter(str(r["event_id"]) for r in audit)
    event_count = Counter(trash_event_of.get(m.event_id() or "", "?") for m in trash_messages)
    if consumed:
        notified = await pool.fetch("SELECT event_id FROM user_notifications")
        for r in notified:
            deletion = trash_event_of.get(str(r["event_id"]), "?")
            event_count[deletion] = max(event_count[deletion], 1)
    letter_keys = Counter(
        (m.headers.get(CONSUMER_HEADER), m.headers.get(SEQUENCE_HEADER)) for m in letters
    )

    complete = {
        d for d in wanted if row_count[d] and d in marked and audit_count[d] and event_count[d]
    }
    missing = {
        "row": sorted(d for d in wanted if not row_count[d]),
        "unmarked row": sorted(d for d in wanted if row_count[d] and d not in marked),
        "trash event": sorted(d for d in wanted if not event_count[d]),
        "audit row": sorted(d for d in wanted if not audit_count[d]),
    }
    extra_copies = {
        "trash event": sum(n - 1 for n in event_count.values() if n > 1),
        "row": sum(n - 1 for n in row_count.values() if n > 1),
        "audit row": sum(n - 1 for n in audit_count.values() if n > 1),
        "dead letter": sum(n - 1 for n in letter_keys.values() if n > 1),
    }
    unexpected = {
        "row": sum(n for d, n in row_count.items() if d not in wanted),
        "audit row": sum(n for d, n in audit_count.items() if d not in wanted),
        "trash event": event_count.get("?", 0),
    }
    details: dict[str, Any] = {
        "missing": {k: (len(v), v[:sample]) for k, v in missing.items() if v},
        "extra copies": {k: n for k, n in extra_copies.items() if n},
        "unexpected": {k: n for k, n in unexpected.items() if n},
    }
    return Reconciliation(
        published=len(deletions),
        processed=len(complete),
        lost=len(wanted - complete),
        duplicated=sum(extra_copies.values()),
        unexpected=sum(unexpected.values()),
        dead_letters=len(letters),
        dead_letter_reasons=dict(Counter(m.headers.get(REASON_HEADER, "?") for m in letters)),
        details={k: v for k, v in details.items() if v},
    )


async def consumer_infos(
    js: JetStreamContext, durables: Sequence[str] = DELETION_CONSUMERS
) -> dict[str, ConsumerInfo]:
    return {durable: await js.consumer_info(EVENTS_STREAM, durable) for durable in durables}


async def deliveries(js: JetStreamContext, durables: Sequence[str] = DELETION_CONSUMERS) -> int:
    """Messages the server delivered to these durables so far, redeliveries included (the
    consumer sequence counts every delivery): minus what was published, the redeliveries."""
    infos = await consumer_infos(js, durables)
    return sum(info.delivered.consumer_seq if info.delivered else 0 for info in infos.values())


async def all_settled(js: JetStreamContext, durables: Sequence[str] = DELETION_CONSUMERS) -> bool:
    """Every durable has delivered everything and has no unacknowledged message left."""
    infos = await consumer_infos(js, durables)
    return all(info.num_pending == 0 and info.num_ack_pending == 0 for info in infos.values())


async def wait_processed(
    servers: Servers, deletions: Sequence[UUID], *, timeout: float, what: str = ""
) -> float:
    """Wait until every deletion has its announced row and its audit row, and both durables
    have settled everything; return the seconds it took."""

    async def done() -> bool:
        counts = await servers.counts(list(deletions))
        if counts.trash_events_marked < len(deletions) or counts.audit_rows < len(deletions):
            return False
        return await all_settled(servers.js)

    async def state() -> object:
        counts = await servers.counts(list(deletions))
        infos = await consumer_infos(servers.js)
        return (
            f"{counts.trash_events_marked}/{len(deletions)} announced, "
            f"{counts.audit_rows}/{len(deletions)} audited, consumers "
            + ", ".join(
                f"{name}: pending {i.num_pending} ack-pending {i.num_ack_pending} "
                f"redelivered {i.num_redelivered}"
                for name, i in infos.items()
            )
        )

    return await wait_until(
        done, timeout=timeout, what=what or f"all {len(deletions)} deletions processed", state=state
    )
