"""Bad input at every edge: each gives a clear error and a non-zero exit, never a traceback,
and loses no data.

Covered elsewhere, not repeated here (docs/faults.md lists them): wrong NATS and PostgreSQL
credentials, TLS and creds files (integration/test_connect.py); a spec the live server cannot
accept — storage or deliver policy changed, replicas a single server cannot host
(integration/test_provision.py); services started before provisioning
(integration/test_services.py); bad specs (unit/test_bad_specs.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from generated.publishers import PublishFileDeleted
from handwritten.filetrash.publisher import DeletionSimulator
from handwritten.runtime import devservers
from handwritten.runtime.contract import OutgoingMessage, PublishResult
from handwritten.runtime.deadletter import (
    CONSUMER_HEADER,
    REASON_HEADER,
    TRUNCATED_HEADER,
)
from handwritten.runtime.jetstream import JetStreamPublisher, PayloadTooLarge
from tests.app.service_harness import REPO_ROOT
from tests.faults.harness import (
    DELETION_CONSUMERS,
    EVENTS_STREAM,
    Fleet,
    consumer_infos,
    fault_servers,
    reconcile_run,
    scan_dead_letters,
    wait_processed,
    wait_ready,
)
from tests.support.servers import NatsServer, PostgresServer

pytestmark = pytest.mark.faults

SECRET = "s3cr3t-pa55"


def base_env(**servers: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "DATABASE_URL", "NATS_CREDS", "NATS_CA")
        and not k.startswith("FILETRASH_")
    }
    return {**env, **servers}


async def cli(*args: str, env: Mapping[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run `filetrash ARGS`; its exit status and everything it wrote."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "handwritten.cli",
        *args,
        env=dict(env),
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        pytest.fail(f"filetrash {' '.join(args)} hung:\n{output.decode()[-3000:]}")
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", errors="replace")


def assert_clear_failure(status: int, output: str, *expected: str) -> None:
    assert status != 0, output
    assert "Traceback" not in output, output
    assert "filetrash: error:" in output, output
    assert SECRET not in output, "a secret was printed"
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"


# --- payloads ------------------------------------------------------------------------------


async def test_an_oversized_publish_is_refused_clearly_and_the_connection_survives(
    nats_server: NatsServer, database_url: str
) -> None:
    async with fault_servers(nats_server.url, database_url) as servers:
        publisher = JetStreamPublisher(servers.js)
        limit = servers.nc.max_payload
        for size in (limit + 1, limit - 10):  # the second only with its headers
            with pytest.raises(PayloadTooLarge, match=f"max_payload of {limit} bytes") as refused:
                await publisher.publish("files.deleted", b"x" * size, msg_id=f"big-{size}")
            assert f"{size} payload" in str(refused.value) and "nothing was sent" in str(
                refused.value
            )
        batch = await publisher.publish_many(
            [
                OutgoingMessage("files.deleted", b"x" * (limit + 1), msg_id="big-in-batch"),
                OutgoingMessage("files.deleted", b"{}", msg_id="small-in-batch"),
            ]
        )
        assert isinstance(batch[0], PayloadTooLarge), batch  # refused alone, not retried
        assert isinstance(batch[1], PublishResult) and not batch[1].duplicate, batch
        event = DeletionSimulator(random.Random(1)).next_event()
        await PublishFileDeleted(publisher).publish(event)  # the same connection still works
        assert servers.nc.is_connected
        stored = (await servers.js.stream_info(EVENTS_STREAM)).state.messages
    assert stored == 2


async def test_a_poison_message_at_the_size_limit_is_dead_lettered_cut_short(
    nats_server: NatsServer, database_url: str, fault_dir: Path
) -> None:
    """Its copy with the dead-letter headers would exceed max_payload: sent whole, the server
    would close the consumer's connection, at every redelivery."""
    async with fault_servers(nats_server.url, database_url) as servers:
        big = b"not json " + b"x" * (servers.nc.max_payload - 200)
        ack = await servers.js.publish("files.deleted", big, headers={"Nats-Msg-Id": "big"})
        simulator = DeletionSimulator(random.Random(2))
        events = [simulator.next_event() for _ in range(200)]
        for event in events:
            await PublishFileDeleted(servers.publisher).publish(event)
        deletions = [event.event_id for event in events]
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [fleet.service("trash-processor"), fleet.service("audit-logger")]
            await wait_ready(*services)
            await wait_processed(servers, deletions, timeout=60)
            for process in services:
                assert process.alive, process.tail()
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
        letters = await scan_dead_letters(servers.js)
        original = await servers.js.get_msg(EVENTS_STREAM, ack.seq)
    outcome.assert_exact(dead_letters=len(DELETION_CONSUMERS))
    assert {m.headers[CONSUMER_HEADER] for m in letters} == set(DELETION_CONSUMERS)
    for letter in letters:
        assert letter.headers[REASON_HEADER] == "invalid-json"
        assert letter.headers[TRUNCATED_HEADER] == str(len(big))
        assert big.startswith(letter.data) and len(letter.data) > len(big) - 2000
    assert original.data == big, "the whole original stays in its stream"


async def test_odd_headers_do_not_change_what_is_processed(
    nats_server: NatsServer, database_url: str, fault_dir: Path
) -> None:
    """The body is the event; headers are only passed along. Forged dead-letter headers, a
    Nats-Msg-Id that is not the eventId, a wrong content type, a long header: processed once
    each, and the same event under two msg ids is still one row and one trash event."""
    odd_headers = [
        {"Content-Type": "text/plain"},
        {"Filetrash-Dlq-Reason": "invalid-json", "Filetrash-Dlq-Consumer": "trash-processor"},
        {"Eventtype": "FilePurgedEvent"},
        {"X-Long": "y" * 4000},
        {"Nats-Expected-Last-Msg-Id": ""},
    ]
    async with fault_servers(nats_server.url, database_url) as servers:
        simulator = DeletionSimulator(random.Random(3))
        events = [simulator.next_event() for _ in range(1000)]
        for n, event in enumerate(events):
            body = event.model_dump_json(by_alias=True).encode()
            headers = odd_headers[n % len(odd_headers)]
            await servers.publisher.publish(
                "files.deleted", body, msg_id=f"odd-{n}", headers=headers
            )
        again = events[:100]  # the same events, other msg ids: JetStream stores them again
        for n, event in enumerate(again):
            body = event.model_dump_json(by_alias=True).encode()
            await servers.publisher.publish("files.deleted", body, msg_id=f"again-{n}")
        deletions = [event.event_id for event in events]
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [fleet.service("trash-processor"), fleet.service("audit-logger")]
            await wait_ready(*services)
            await wait_processed(servers, deletions, timeout=60)
            for process in services:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    outcome.assert_exact()


async def test_a_header_nats_cannot_carry_is_refused_before_sending(
    nats_server: NatsServer, database_url: str
) -> None:
    import nats.errors

    async with fault_servers(nats_server.url, database_url) as servers:
        with pytest.raises(nats.errors.BadHeaderError):
            await servers.publisher.publish(
                "files.deleted", b"{}", msg_id="bad-header", headers={"Bad Key:": "x"}
            )
        assert servers.nc.is_connected
        assert (await servers.js.stream_info(EVENTS_STREAM)).state.messages == 0


# --- servers, URLs, credentials, the database ------------------------------------------------


def closed_port() -> int:
    return devservers.free_port()  # free now, and nothing of ours listens on it


@pytest.mark.parametrize(
    ("nats_url", "expected"),
    [
        ("nats://127.0.0.1:notaport", "cannot connect to NATS"),
        ("nats://127.0.0.1:99999", "cannot connect to NATS"),
        ("nats://:@", "cannot connect to NATS"),
        ("http://[::1", "cannot connect to NATS"),
        ("CLOSED", "connection refused"),
    ],
    ids=["port-not-a-number", "port-out-of-range", "no-host", "broken-ipv6", "unreachable"],
)
async def test_a_malformed_or_unreachable_nats_url_fails_clearly_at_start(
    nats_url: str, expected: str, database_url: str
) -> None:
    if nats_url == "CLOSED":
        nats_url = f"nats://admin:{SECRET}@127.0.0.1:{closed_port()}"
    env = base_env(NATS_URL=nats_url, DATABASE_URL=database_url)
    started = time.monotonic()
    results = await asyncio.gather(
        cli("run", "trash-processor", env=env),
        cli("publish", "--count", "1", env=env),
        cli("provision", "--plan", env=env),
    )
    for status, output in results:
        assert_clear_failure(status, output, expected)
    assert time.monotonic() - started < 45, "no endless retry at start-up"


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:notaport/filetrash", "cannot connect to PostgreSQL"),
        ("not a url at all", "cannot connect to PostgreSQL"),
        ("CLOSED", "connection refused"),
        ("MISSING", "does not exist"),
    ],
    ids=["port-not-a-number", "not-a-url", "unreachable", "no-such-database"],
)
async def test_a_malformed_or_unreachable_database_url_fails_clearly_at_start(
    database_url: str, expected: str, nats_server: NatsServer, pg_server: PostgresServer
) -> None:
    if database_url == "CLOSED":
        database_url = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/filetrash"
    elif database_url == "MISSING":
        database_url = pg_server.url_for("no_such_database_here")
    env = base_env(NATS_URL=nats_server.url, DATABASE_URL=database_url)
    results = await asyncio.gather(
        cli("run", "audit-logger", env=env),
        cli("provision", "--plan", env=env),
        cli("purge", env=env),
    )
    for status, output in results:
        assert_clear_failure(status, output, expected)


async def test_wrong_nats_credentials_fail_clearly_without_showing_them(
    nats_server_factory: Callable[..., NatsServer], database_url: str
) -> None:
    server = nats_server_factory(users={"filetrash": "right-password"})
    url = f"nats://filetrash:{SECRET}@127.0.0.1:{server.port}"
    env = base_env(NATS_URL=url, DATABASE_URL=database_url)
    for args in (("run", "trash-processor"), ("publish", "--count", "1")):
        status, output = await cli(*args, env=env)
        assert_clear_failure(status, output, "authorization violation")


async def test_a_database_without_the_migrations_is_refused_and_nothing_is_taken(
    nats_server: NatsServer, database_url: str
) -> None:
    """Streams and consumers provisioned, the database not: services and purge refuse to
    start, and leave every message where it is."""
    from generated.topology import CONSUMERS, STREAMS
    from handwritten.runtime.connect import connect_nats
    from handwritten.runtime.provision import provision

    nc = await connect_nats(nats_server.url, name="edge")
    try:
        js = nc.jetstream()
        await provision(js, STREAMS, CONSUMERS, apply=True)
        simulator = DeletionSimulator(random.Random(4))
        for _ in range(5):
            await PublishFileDeleted(JetStreamPublisher(js)).publish(simulator.next_event())
        env = base_env(NATS_URL=nats_server.url, DATABASE_URL=database_url)
        results = await asyncio.gather(
            cli("run", "trash-processor", env=env),
            cli("run", "audit-logger", env=env),
            cli("purge", env=env),
        )
        for status, output in results:
            assert status == 2, output
            assert_clear_failure(status, output, "lacks migration(s)", "filetrash provision")
        infos = await consumer_infos(js)
    finally:
        await nc.close()
    for durable, info in infos.items():
        assert (info.num_pending, info.num_ack_pending) == (5, 0), durable


async def test_publishing_before_provisioning_says_so_at_once(
    nats_server: NatsServer, database_url: str
) -> None:
    env = base_env(NATS_URL=nats_server.url, DATABASE_URL=database_url)
    started = time.monotonic()
    status, output = await cli("publish", "--count", "3", "--rate", "0", env=env)
    assert_clear_failure(status, output, "no stream captures files.deleted", "filetrash provision")
    assert time.monotonic() - started < 20, "not retried for the whole retry budget"


def test_the_fault_hook_refuses_nonsense() -> None:
    """FILETRASH_FAULT is a test hook, but a typo must not silently disable it."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "handwritten.cli", "run", "trash-processor"],
        cwd=REPO_ROOT,
        env=base_env(FILETRASH_FAULT="after-insret", NATS_URL="nats://127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_clear_failure(result.returncode, result.stdout + result.stderr, "after-insret")
