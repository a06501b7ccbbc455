"""The benchmark: real nats-server and PostgreSQL, each scenario run back to back on them.

Throughput, per service (`tests/bench/services.py`): N events are published before anything
consumes them, the service's durable is paused, the contender's processes start and begin
pulling, and the clock runs from the first delivery (the consumer's `delivered` moves) to the
moment the durable has nothing pending and nothing unacknowledged. Every contender acks an
event only after its work is committed (and, for the trash-processor, its trash event
acknowledged by JetStream), so that is also the last row and the last trash event; the
harness then counts what each did. Every contender is a process of its own and measured by
the same outside clock, a consumer-info poll every few milliseconds, so the ratios compare
like with like.

Latency: one trash-processor, deletions published at a steady rate; for each, the time from
its publish to its row's `stored_at` (PostgreSQL's clock_timestamp() at the insert) and to
the arrival of its trash event at a plain NATS subscriber in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from generated.topology import CONSUMERS, STREAMS
from handwritten.filetrash.db import MIGRATIONS
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.runtime.errors import ProvisioningFailed
from handwritten.runtime.migrate import migrate
from handwritten.runtime.provision import provision
from tests.bench.machine import cpu_seconds, peak_rss_mib, process_tree_cpu
from tests.bench.services import SERVICES, BenchService, Event
from tests.support.servers import NatsServer, PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAM = "FILE_EVENTS"
DURABLE = "trash-processor"
DELETED_SUBJECT = "files.deleted"
TRASHED_SUBJECT = "files.trashed"
PAUSED_UNTIL = "2099-01-01T00:00:00Z"

POLL_INTERVAL = 0.005
"""Seconds between two consumer-info polls while a throughput run is timed."""

SETTLE = 1.0
"""Seconds the workers pull against the paused durable before the clock starts."""

READY = re.compile(r"\bready\b")


class BenchFailed(Exception):
    """A scenario did not finish, or finished with a wrong result (lost or duplicated work)."""


class DurablePostgres(PostgresServer):
    """PostgreSQL with its production defaults: fsync and synchronous commit stay on, so a
    committed row is a row on disk, for the batched and the one-at-a-time loop alike."""

    TEST_SETTINGS: dict[str, str] = {}  # noqa: RUF012 (overrides a class attribute)


# --- what a run measured ----------------------------------------------------------------------


@dataclass
class ThroughputResult:
    service: str
    scenario: str
    """The contender: ceiling, raw, faststream, filetrash (naive, filetrash ×2)."""
    description: str
    round: int
    events: int
    seconds: float
    processes: int
    cpu_workers: float
    cpu_nats: float
    cpu_postgres: float
    peak_rss_mib: list[float]
    work: dict[str, int]
    """What the harness counted after the run (rows, trash events, ...); each must be N."""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def us_per_event(self, cpu: float) -> float:
        return cpu / self.events * 1e6 if self.events else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "events_per_second": round(self.events_per_second)}


@dataclass
class LatencyResult:
    rate: float
    seconds: float
    events: int
    achieved_rate: float
    to_row_ms: dict[str, float]
    to_trash_event_ms: dict[str, float]
    peak_rss_mib: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max, in the samples' unit, rounded for a table."""
    if not samples:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return round(ordered[index], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 2)}


# --- processes ---------------------------------------------------------------------------------


class Worker:
    """One consumer process of a scenario, its output in a file."""

    def __init__(
        self, command: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def ready(self) -> bool:
        return bool(READY.search(self.output()))

    def alive(self) -> bool:
        return self.process.poll() is None

    async def stop(self, timeout: float = 30.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.alive():
            self.process.kill()
        status = self.process.wait()
        self._log.close()
        return status


async def wait_ready(workers: Sequence[Worker], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.ready for w in workers):
        for w in workers:
            if not w.alive():
                raise BenchFailed(f"{' '.join(w.command)} exited early:\n{w.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise BenchFailed(f"workers not ready within {timeout:g}s")
        await asyncio.sleep(0.05)


# --- the bench ---------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A contender on one service: the processes to start, and whether they do the work
    (the ceiling only acks)."""

    service: str
    name: str
    description: str
    commands: list[list[str]]
    writes_rows: bool
    source: Path = REPO_ROOT
    """The checkout the processes run from (`filetrash@REV`: that revision's, exported)."""


DESCRIPTIONS = {
    "ceiling": "raw nats-py pull consumer: fetch 256 at a time, ack; no decoding, no database",
    "raw": "hand-tuned nats-py + asyncpg pipeline, same guarantees, no validation, no framework "
    "(tests/bench/raw.py)",
    "faststream": "idiomatic FastStream 0.7 app: own Pydantic models, batch pull subscriber, "
    "manual confirmed acks after the row and the PubAck (tests/bench/faststream_app.py)",
    "filetrash": "`filetrash run SERVICE` as shipped (one process)",
    "naive": "the article's loop (nats-py + asyncpg): per message insert, await publish, "
    "record its sequence, ack",
    "filetrash ×2": "two competing `filetrash run SERVICE` processes",
}


T = TypeVar("T")


def in_turn(contenders: list[T], round_: int) -> list[T]:
    """The contenders in the order of round `round_` (from 1): each round starts one further
    along, so that over the rounds each runs first, second, ... alike, and what one run leaves
    behind (nats-server deleting the last run's stream store, PostgreSQL's background writer)
    does not always fall on the same contender's run."""
    if not contenders:
        return contenders
    start = (round_ - 1) % len(contenders)
    return contenders[start:] + contenders[:start]


def scenarios(
    nats_url: str,
    database_url: str,
    service: str,
    contenders: Sequence[str],
    sources: Mapping[str, Path] | None = None,
) -> list[Scenario]:
    """The contenders' scenarios on `service`; `sources` has the exported checkout of each
    `filetrash@REV` contender (`export_revision`)."""
    bench_service = SERVICES[service]
    out = []
    for contender in contenders:
        if (source := (sources or {}).get(contender)) is not None:
            revision = contender.partition("@")[2]
            description = f"`filetrash run {service}` as of {revision}, from {source.name}"
            commands = bench_service.commands("filetrash", nats_url, database_url)
        else:
            source = REPO_ROOT
            description = DESCRIPTIONS[contender].replace("SERVICE", service)
            commands = bench_service.commands(contender, nats_url, database_url)
        if commands is None:
            continue
        out.append(
            Scenario(
                service,
                contender,
                description,
                commands,
                writes_rows=contender != "ceiling",
                source=source,
            )
        )
    return out


def export_revision(revision: str, into: Path) -> Path:
    """The files of `revision` (a commit, tag or branch of this repository) exported into a
    directory of `into`, for a `filetrash@REV` contender: an A/B of two versions in one run,
    on the same servers, interleaved round by round. Raises BenchFailed for an unknown one."""
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise BenchFailed(f"filetrash@{revision}: no such revision in {REPO_ROOT}")
    commit = found.stdout.strip()
    target = into / f"filetrash-{commit[:10]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, capture_output=True
        )
        if archive.returncode != 0:
            raise BenchFailed(f"filetrash@{revision}: git archive failed: {archive.stderr!r}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


class Profiler:
    """py-spy attached to a worker for the timed part of a run (py-spy must be installed:
    `pip install py-spy`); collapsed stacks, one file per scenario and worker."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(self.binary).exists():
            raise BenchFailed("--profile needs py-spy: pip install py-spy")
        self._running: list[subprocess.Popen[bytes]] = []

    def attach(self, name: str, pids: Sequence[int]) -> None:
        stem = re.sub(r"\W+", "-", name)
        for i, pid in enumerate(pids):
            out = self.out_dir / f"{stem}-{i}.txt"
            command = [self.binary, "record", "--pid", str(pid), "--format", "raw"]
            self._running.append(
                subprocess.Popen(
                    [*command, "--rate", "250", "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)  # py-spy needs a moment to attach

    def detach(self) -> None:
        for process in self._running:
            process.send_signal(signal.SIGINT)
        for process in self._running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self._running.clear()


class Bench:
    """The servers, connections and the pre-built deletions shared by every scenario."""

    def __init__(
        self, nats_url: str, database_url: str, nc: Client, pool: asyncpg.Pool, work_dir: Path
    ) -> None:
        self.nats_url = nats_url
        self.database_url = database_url
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.pool = pool
        self.work_dir = work_dir
        self.nats_pid: int | None = None
        self.postgres_pid: int | None = None
        self.profiler: Profiler | None = None

    def env(self, source: Path = REPO_ROOT) -> dict[str, str]:
        """A worker's environment: the bench's servers, and `source`'s code first on the path."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILETRASH_")}
        env.update(NATS_URL=self.nats_url, DATABASE_URL=self.database_url)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
        return env

    async def reset(self, service: BenchService = SERVICES[DURABLE]) -> None:
        """Empty streams (with fresh duplicate windows), the service's durable (and, for the
        trash-processor, one that keeps the trash events), its tables emptied, and a
        checkpoint so none of that falls into the next timed run."""
        for name in STREAMS:
            with contextlib.suppress(Exception):
                await self.js.delete_stream(name)
        durables = {service.durable: CONSUMERS[service.durable]}
        if service.keep_trash_events:
            # FILE_EVENTS keeps a message only while a durable needs it (interest retention):
            # the notification-service durable, never read here, keeps the trash events.
            durables["notification-service"] = CONSUMERS["notification-service"]
        # nats-server removes a deleted stream's store in the background: creating the same
        # stream at once is now and then refused (10049, "error creating store"); retried.
        for attempt in range(50):
            try:
                await provision(self.js, STREAMS, durables, apply=True)
                break
            except ProvisioningFailed as error:
                if "10049" not in str(error) or attempt == 49:
                    raise BenchFailed(f"provisioning the bench's streams: {error}") from error
                await asyncio.sleep(0.1)
        await self.pool.execute(f"TRUNCATE {', '.join(service.tables)}")
        await self.pool.execute("CHECKPOINT")

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish events as fast as JetStream takes them, waiting for every PubAck."""
        window = 2000
        for start in range(0, len(events), window):
            futures = [
                await self.js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
                for subject, msg_id, payload in events[start : start + window]
            ]
            await asyncio.wait_for(asyncio.gather(*futures), 60)

    async def _progress(self, durable: str = DURABLE) -> tuple[int, int, int, int]:
        info = await self.js.consumer_info(STREAM, durable)
        delivered = info.delivered.stream_seq if info.delivered else 0
        acked = info.ack_floor.stream_seq if info.ack_floor else 0
        return delivered, acked, info.num_pending or 0, info.num_ack_pending or 0

    async def counts(self) -> tuple[int, int]:
        rows = await self.pool.fetchval("SELECT count(*) FROM trashed_files")
        return int(rows), await self.trash_events()

    async def trash_events(self) -> int:
        info = await self.js.stream_info(STREAM, subjects_filter=TRASHED_SUBJECT)
        return int((info.state.subjects or {}).get(TRASHED_SUBJECT, 0))

    async def work_done(self, service: BenchService) -> dict[str, int]:
        """What the service's checks count, and the trash events kept, after a run."""
        work = {name: int(await self.pool.fetchval(sql)) for name, sql in service.checks.items()}
        if service.keep_trash_events:
            work["trash events"] = await self.trash_events()
        _, _, pending, ack_pending = await self._progress(service.durable)
        work["pending + unacked"] = pending + ack_pending
        return work

    def _server_cpu(self) -> tuple[float, float]:
        nats_cpu = cpu_seconds(self.nats_pid) if self.nats_pid else 0.0
        pg_cpu = process_tree_cpu(self.postgres_pid) if self.postgres_pid else 0.0
        return nats_cpu, pg_cpu

    async def throughput(
        self,
        scenario: Scenario,
        events: Sequence[Event],
        *,
        say: Callable[[str], None],
        round_: int = 1,
    ) -> ThroughputResult:
        n = len(events)
        service = SERVICES[scenario.service]
        await self.reset(service)
        await self.publish(events)
        stream_last = (await self.js.stream_info(STREAM)).state.last_seq
        await self.js.pause_consumer(STREAM, service.durable, PAUSED_UNTIL)
        logs = self.work_dir / re.sub(r"\W+", "-", f"{scenario.service}-{scenario.name}-{round_}")
        logs.mkdir(parents=True, exist_ok=True)
        workers = [
            Worker(command, self.env(scenario.source), logs / f"worker-{i}.log", scenario.source)
            for i, command in enumerate(scenario.commands)
        ]
        try:
            await wait_ready(workers)
            if self.profiler is not None:
                self.profiler.attach(
                    f"{scenario.service}-{scenario.name}", [w.pid for w in workers]
                )
            await asyncio.sleep(SETTLE)
            worker_cpu_before = sum(cpu_seconds(w.pid) for w in workers)
            nats_before, pg_before = self._server_cpu()
            await self.js.resume_consumer(STREAM, service.durable)
            started, finished = await self._time_until_drained(
                workers, stream_last, n, service.durable
            )
            worker_cpu = sum(cpu_seconds(w.pid) for w in workers) - worker_cpu_before
            nats_after, pg_after = self._server_cpu()
            rss = [peak_rss_mib(w.pid) or 0.0 for w in workers]
        finally:
            if self.profiler is not None:
                self.profiler.detach()
            statuses = [await w.stop() for w in workers]
        bad = [(w, s) for w, s in zip(workers, statuses, strict=True) if s != 0]
        if bad:
            w, s = bad[0]
            raise BenchFailed(f"{scenario.name}: a worker exited with {s}:\n{w.output()[-3000:]}")
        work = await self.work_done(service)
        if scenario.writes_rows:
            short = {k: v for k, v in work.items() if v != (0 if k == "pending + unacked" else n)}
            if short:
                raise BenchFailed(
                    f"{scenario.service} / {scenario.name}: for {n} events, {short}\n"
                    + "\n".join(w.output()[-2000:] for w in workers)
                )
        # A run that drains within one poll (tiny N in the CI smoke run) counts as one poll:
        # an upper bound on its time, and never a division by zero.
        seconds = max(finished - started, POLL_INTERVAL)
        say(
            f"{scenario.service} / {scenario.name}: {n} events in {seconds:.2f}s = {n / seconds:,.0f}/s"
        )
        return ThroughputResult(
            service=scenario.service,
            scenario=scenario.name,
            description=scenario.description,
            round=round_,
            events=n,
            seconds=round(seconds, 4),
            processes=len(workers),
            cpu_workers=round(worker_cpu, 3),
            cpu_nats=round(nats_after - nats_before, 3),
            cpu_postgres=round(pg_after - pg_before, 3),
            peak_rss_mib=rss,
            work=work,
        )

    async def _time_until_drained(
        self, workers: Sequence[Worker], last_seq: int, n: int, durable: str = DURABLE
    ) -> tuple[float, float]:
        """(first delivery, nothing pending and nothing unacked), both by the same poll."""
        started: float | None = None
        deadline = time.monotonic() + max(120.0, n / 100)
        while True:
            delivered, acked, pending, ack_pending = await self._progress(durable)
            now = time.perf_counter()
            if started is None and delivered > 0:
                started = now
            if started is not None and acked >= last_seq and pending == 0 and ack_pending == 0:
                return started, now
            if time.monotonic() > deadline:
                raise BenchFailed(
                    f"not drained in time: delivered {delivered}, acked {acked}, "
                    f"pending {pending}, unacked {ack_pending}"
                )
            for w in workers:
                if not w.alive():
                    raise BenchFailed(f"a worker died:\n{w.output()[-3000:]}")
            await asyncio.sleep(POLL_INTERVAL)

    async def latency(
        self, *, rate: float, seconds: float, seed: int, say: Callable[[str], None]
    ) -> LatencyResult:
        await self.reset()
        total = max(1, round(rate * seconds))
        events = deletions(total, seed)
        logs = self.work_dir / "latency"
        logs.mkdir(parents=True, exist_ok=True)
        service = [sys.executable, "-m", "handwritten.cli", "run", "trash-processor"]
        worker = Worker(service, self.env(), logs / "worker.log")
        announced: dict[str, float] = {}

        async def on_trashed(msg: Msg) -> None:
            arrived = time.time()
            marker = b'"originalEventId":"'
            start = msg.data.find(marker)
            if start >= 0:
                start += len(marker)
                announced[msg.data[start : start + 36].decode()] = arrived

        sub = await self.nc.subscribe(TRASHED_SUBJECT, cb=on_trashed)
        sent: dict[str, float] = {}
        futures: list[asyncio.Future[Any]] = []
        try:
            await wait_ready([worker])
            await asyncio.sleep(SETTLE)
            began = time.perf_counter()
            for i, (event_id, payload) in enumerate(events):
                due = began + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[event_id] = time.time()
                futures.append(
                    await self.js.publish_async(
                        DELETED_SUBJECT, payload, headers={"Nats-Msg-Id": event_id}
                    )
                )
            elapsed = time.perf_counter() - began
            await asyncio.wait_for(asyncio.gather(*futures), 60)
            deadline = time.monotonic() + 60
            while len(announced) < total or (await self.counts())[0] < total:
                if time.monotonic() > deadline or not worker.alive():
                    raise BenchFailed(
                        f"latency: {len(announced)} of {total} trash events arrived\n"
                        f"{worker.output()[-3000:]}"
                    )
                await asyncio.sleep(0.1)
            rss = peak_rss_mib(worker.pid)
        finally:
            await sub.unsubscribe()
            status = await worker.stop()
        if status != 0:
            raise BenchFailed(f"latency: the trash-processor exited with {status}")
        records = await self.pool.fetch(
            "SELECT original_event_id, extract(epoch FROM stored_at)::float8 AS at "
            "FROM trashed_files"
        )
        to_row = [
            (r["at"] - sent[str(r["original_event_id"])]) * 1000
            for r in records
            if str(r["original_event_id"]) in sent
        ]
        to_event = [(announced[i] - sent[i]) * 1000 for i in sent if i in announced]
        result = LatencyResult(
            rate=rate,
            seconds=seconds,
            events=total,
            achieved_rate=round(total / elapsed, 1) if elapsed > 0 else 0.0,
            to_row_ms=percentiles(to_row),
            to_trash_event_ms=percentiles(to_event),
            peak_rss_mib=rss,
        )
        say(
            f"latency at {rate:g}/s: publish → row p50 {result.to_row_ms['p50']} ms, "
            f"p99 {result.to_row_ms['p99']} ms"
        )
        return result


def deletions(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(event id, payload) of `count` simulated deletions, serialised as the generated
    publisher does."""
    simulator = DeletionSimulator(random.Random(seed))
    out = []
    for _ in range(count):
        event = simulator.next_event()
        out.append(
            (str(event.event_id), event.model_dump_json(by_alias=True, exclude_none=True).encode())
        )
    return out


@asynccontextmanager
async def bench_servers(work_dir: Path) -> AsyncIterator[Bench]:
    """A nats-server and a PostgreSQL of the bench's own, migrated, connected."""
    nats_server = NatsServer(work_dir / "nats")
    postgres = DurablePostgres()
    try:
        await asyncio.to_thread(nats_server.start)
        await asyncio.to_thread(postgres.start)
        admin = await asyncpg.connect(postgres.url)
        try:
            await admin.execute('CREATE DATABASE "bench"')
        finally:
            await admin.close()
        database_url = postgres.url_for("bench")
        nc = await nats.connect(nats_server.url, name="bench harness")
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
        try:
            await migrate(pool, MIGRATIONS)
            bench = Bench(nats_server.url, database_url, nc, pool, work_dir)
            bench.nats_pid = nats_server.pid
            bench.postgres_pid = postgres.pid
            yield bench
        finally:
            await pool.close()
            await nc.close()
    finally:
        nats_server.close()
        postgres.close()


@dataclass
class Options:
    n: int = 20_000
    """Events per throughput run of the trash-processor."""
    n_others: int = 20_000
    """Events per throughput run of each other service."""
    latency_rate: float = 1000.0
    latency_seconds: float = 20.0
    seed: int = 7
    rounds: int = 3
    generation_sizes: tuple[int, ...] = (50, 100, 200)
    generation_repeats: int = 3
    only: frozenset[str] = field(default_factory=frozenset)
    services: tuple[str, ...] = tuple(SERVICES)
    contenders: tuple[str, ...] = ("ceiling", "raw", "faststream", "filetrash")
    profile_dir: Path | None = None

    def n_for(self, service: str) -> int:
        return self.n if service == DURABLE else self.n_others


def temporary_work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="filetrash-bench-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
