"""Scenario 5 — clustered JetStream: three nats-servers on loopback, every stream and consumer
with three replicas — the deployment override `filetrash provision --replicas 3`, not code.
Mid-run the FILE_EVENTS leader is killed (SIGKILL), then, once it is back, a follower. No
acknowledged deletion is lost and the services go on without a restart.

Run twice: with nats-server's default fsync (every two minutes) and with
`sync_interval: always`. The cost of the latter is measured by
`test_publish_rate_with_and_without_sync_always`: both clusters side by side, publishing in
alternating rounds so that the machine's other load falls on both alike.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from nats.js import JetStreamContext

from generated.publishers import PublishFileDeleted
from handwritten.filetrash.publisher import DeletionSimulator
from tests.app.service_harness import REPO_ROOT, Servers
from tests.faults.harness import (
    DELETION_CONSUMERS,
    EVENTS_STREAM,
    Fleet,
    fault_servers,
    published_ids,
    reconcile_run,
    wait_processed,
    wait_ready,
    wait_until,
)
from tests.faults.table import RecordResult
from tests.support.cluster import ClusterNode, NatsCluster

pytestmark = pytest.mark.faults

SEQUENTIAL = 300
"""Deletions published one at a time (each waits for its PubAck) to measure the latency."""
PIPELINED = 1200
"""Deletions published 64 at a time to measure the throughput."""
COUNT = 2000
RATE = 100.0
SEED = 5005


@pytest.fixture(params=["default", "always"], ids=["sync-default", "sync-always"])
def nats_cluster(request: pytest.FixtureRequest) -> Iterator[NatsCluster]:
    cluster = NatsCluster(3, sync_always=request.param == "always")
    try:
        yield cluster.start()
    finally:
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            print(cluster.logs())
        cluster.close()


def provision_with_replicas(nats_url: str, database_url: str) -> None:
    """The deployment override, through the command people run."""
    result = subprocess.run(
        [sys.executable, "-m", "handwritten.cli", "provision", "--replicas", "3"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "NATS_URL": nats_url, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def leader(js: JetStreamContext, stream: str = EVENTS_STREAM) -> str | None:
    info = await js.stream_info(stream)
    return info.cluster.leader if info.cluster else None


async def all_current(js: JetStreamContext) -> bool:
    """Every replica of the events stream and of its two durables is back and caught up."""
    infos = [await js.stream_info(EVENTS_STREAM)]
    infos += [await js.consumer_info(EVENTS_STREAM, d) for d in DELETION_CONSUMERS]
    for info in infos:
        cluster = info.cluster
        if cluster is None or cluster.leader is None or len(cluster.replicas or []) != 2:
            return False
        if not all(peer.current and not peer.offline for peer in cluster.replicas or []):
            return False
    return True


async def measure_publish_rate(
    servers: Servers, rng: random.Random
) -> tuple[dict[str, int], list[UUID]]:
    """Publish rates on the R3 stream: one at a time, and 64 in flight."""
    publisher = PublishFileDeleted(servers.publisher)
    simulator = DeletionSimulator(rng)
    ids: list[UUID] = []
    started = time.perf_counter()
    for _ in range(SEQUENTIAL):
        event = simulator.next_event()
        await publisher.publish(event)
        ids.append(event.event_id)
    sequential = SEQUENTIAL / (time.perf_counter() - started)
    events = [simulator.next_event() for _ in range(PIPELINED)]
    started = time.perf_counter()
    for chunk in range(0, PIPELINED, 64):
        batch = events[chunk : chunk + 64]
        await asyncio.gather(*(publisher.publish(event) for event in batch))
    pipelined = PIPELINED / (time.perf_counter() - started)
    ids += [event.event_id for event in events]
    return {"one_at_a_time_per_s": round(sequential), "64_in_flight_per_s": round(pipelined)}, ids


async def kill_and_restart(
    cluster: NatsCluster, js: JetStreamContext, victim: ClusterNode, *, was_leader: bool
) -> dict[str, float]:
    """SIGKILL `victim`; wait for a leader without it; start it again; wait until every
    replica is current. Returns how long each step took."""
    killed_at = time.monotonic()
    await asyncio.to_thread(victim.kill)

    async def led_by_another() -> bool:
        return (await leader(js)) not in (None, victim.name)

    elected = await wait_until(led_by_another, timeout=30, what="a leader without the victim")
    await asyncio.sleep(1.0)  # down for a while, while publishing and consuming go on
    await asyncio.to_thread(victim.start)
    caught_up = await wait_until(lambda: all_current(js), timeout=60, what="replicas current")
    return {
        "election_s" if was_leader else "leader_check_s": round(elected, 1),
        "down_s": round(time.monotonic() - killed_at - caught_up, 1),
        "catch_up_s": round(caught_up, 1),
    }


async def test_killing_the_stream_leader_then_a_follower_loses_no_acknowledged_event(
    nats_cluster: NatsCluster, database_url: str, fault_dir: Path, record_result: RecordResult
) -> None:
    sync = "always" if nats_cluster.sync_always else "default (2 min)"
    rng = random.Random(SEED + 1)  # not the publisher's seed: its ids would be duplicates
    await asyncio.to_thread(provision_with_replicas, nats_cluster.url, database_url)
    async with fault_servers(nats_cluster.url, database_url, replicas=3) as servers:
        info = await servers.js.stream_info(EVENTS_STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        rates, measured = await measure_publish_rate(servers, rng)
        fleet = Fleet(fault_dir, servers.env())
        try:
            services = [
                fleet.service("trash-processor", label="trash-processor-1"),
                fleet.service("trash-processor", label="trash-processor-2"),
                fleet.service("audit-logger"),
            ]
            await wait_ready(*services)
            publisher = fleet.publisher(COUNT, rate=RATE, seed=SEED)
            await asyncio.sleep(2.0)
            first = await leader(servers.js)
            assert first is not None and publisher.alive
            leader_kill = await kill_and_restart(
                nats_cluster, servers.js, nats_cluster.node(first), was_leader=True
            )
            current = await leader(servers.js)
            follower = next(n for n in nats_cluster.nodes if n.name not in (current, first))
            assert publisher.alive, "the second fault, too, must land while publishing"
            follower_kill = await kill_and_restart(
                nats_cluster, servers.js, follower, was_leader=False
            )
            recovered_from = time.monotonic()
            assert await publisher.wait(timeout=120) == 0, publisher.tail()
            deletions = measured + published_ids(publisher)
            assert len(deletions) == SEQUENTIAL + PIPELINED + COUNT
            await wait_processed(servers, deletions, timeout=120)
            recovery = time.monotonic() - recovered_from
            for process in services:
                assert process.alive, f"{process.label} died:\n{process.tail()}"
            for process in services:
                assert await process.terminate() == 0, process.tail()
        finally:
            fleet.kill_all()
        outcome = await reconcile_run(servers, deletions)
    record_result(
        f"5 cluster R3, sync {sync}",
        published=outcome.published,
        processed=outcome.processed,
        lost=outcome.lost,
        duplicated=outcome.duplicated,
        dead_lettered=outcome.dead_letters,
        recovery_s=recovery,
        publish_rate=rates,
        leader_killed={"node": first, **leader_kill},
        follower_killed={"node": follower.name, **follower_kill},
    )
    outcome.assert_exact()


ROUNDS = 3
ROUND_SEQUENTIAL = 400
ROUND_PIPELINED = 2000
IN_FLIGHT = 128


async def publish_round(servers: Servers, simulator: DeletionSimulator) -> tuple[float, float]:
    """Events per second: one at a time (latency), then `IN_FLIGHT` at a time (throughput)."""
    publisher = PublishFileDeleted(servers.publisher)
    started = time.perf_counter()
    for _ in range(ROUND_SEQUENTIAL):
        await publisher.publish(simulator.next_event())
    sequential = ROUND_SEQUENTIAL / (time.perf_counter() - started)
    events = [simulator.next_event() for _ in range(ROUND_PIPELINED)]
    started = time.perf_counter()
    for chunk in range(0, ROUND_PIPELINED, IN_FLIGHT):
        await asyncio.gather(*(publisher.publish(e) for e in events[chunk : chunk + IN_FLIGHT]))
    return sequential, ROUND_PIPELINED / (time.perf_counter() - started)


async def test_publish_rate_with_and_without_sync_always(
    database_url: str, record_result: RecordResult
) -> None:
    """The price of `sync_interval: always` on a 3-replica stream, measured in one run."""
    clusters = {"default": NatsCluster(3), "always": NatsCluster(3, sync_always=True)}
    rates: dict[str, list[tuple[float, float]]] = {mode: [] for mode in clusters}
    try:
        for cluster in clusters.values():
            await asyncio.to_thread(cluster.start)
        async with (
            fault_servers(clusters["default"].url, database_url, replicas=3) as default,
            fault_servers(clusters["always"].url, database_url, replicas=3) as always,
        ):
            servers = {"default": default, "always": always}
            simulator = DeletionSimulator(random.Random(SEED + 2))
            for _ in range(ROUNDS):
                for mode in ("default", "always"):
                    rates[mode].append(await publish_round(servers[mode], simulator))
            stored = {
                mode: (await each.js.stream_info(EVENTS_STREAM)).state.messages
                for mode, each in servers.items()
            }
    finally:
        for cluster in clusters.values():
            cluster.close()

    def median(values: list[float]) -> int:
        return round(sorted(values)[len(values) // 2])

    summary = {
        mode: {
            "one_at_a_time_per_s": median([s for s, _ in rounds]),
            f"{IN_FLIGHT}_in_flight_per_s": median([p for _, p in rounds]),
        }
        for mode, rounds in rates.items()
    }
    published = ROUNDS * (ROUND_SEQUENTIAL + ROUND_PIPELINED)
    record_result(
        "5b publish rate, R3 default vs sync always",
        published=2 * published,
        processed=None,
        lost=sum(max(published - n, 0) for n in stored.values()),
        duplicated=sum(max(n - published, 0) for n in stored.values()),
        dead_lettered=None,
        recovery_s=None,
        sync_default=summary["default"],
        sync_always=summary["always"],
    )
    assert stored == {"default": published, "always": published}, (
        "every PubAck'ed event stored once"
    )
