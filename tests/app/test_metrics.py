"""The services' Prometheus metrics and health endpoints, read from real running processes
(`filetrash run trash-processor --metrics-port N`) and checked against what the reconciliation
counts in PostgreSQL and the streams."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from handwritten.runtime import devservers
from tests.app.service_harness import Servers, ServiceProcess, provisioned, wait_until
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def servers(nats_server: NatsServer, database_url: str) -> AsyncIterator[Servers]:
    async with provisioned(nats_server.url, database_url) as servers:
        yield servers


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


async def fetch(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, port, path)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text; 0 when it is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{([^}}]*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_metrics_count_what_the_reconciliation_counts(
    servers: Servers, tmp_path: Path
) -> None:
    port = devservers.free_port()
    process = ServiceProcess(
        "trash-processor", servers.env(FILETRASH_METRICS_PORT=str(port)), tmp_path / "tp.log"
    )
    try:

        async def ready() -> bool:
            return (await fetch(port, "/readyz"))[0] == 200

        await wait_until(ready, timeout=30, what="the trash-processor to be ready")
        assert (await fetch(port, "/healthz"))[0] == 200
        published = await servers.publish(30, seed=5)
        await servers.js.publish("files.deleted", b"not json at all")
        deletions = [p.event.event_id for p in published]
        durable = {"durable": "trash-processor"}

        async def counted() -> bool:
            text = (await fetch(port, "/metrics"))[1]
            acked = sample(text, "filetrash_messages_total", outcome="acked", **durable)
            letters = sample(text, "filetrash_messages_total", outcome="dead_lettered", **durable)
            return acked >= 30 and letters >= 1

        await wait_until(counted, timeout=30, what="the metrics to count 30 acks, 1 dead letter")
        counts = await servers.counts(deletions)
        status, text = await fetch(port, "/metrics")
        assert status == 200
        assert counts.trashed_rows == 30
        assert sample(text, "filetrash_messages_total", outcome="acked", **durable) == 30
        assert sample(text, "filetrash_dead_letters_total", reason="invalid-json", **durable) == 1
        assert sample(text, "filetrash_messages_total", outcome="retried", **durable) == 0
        handled = sample(text, "filetrash_batch_duration_seconds_count", **durable) + sample(
            text, "filetrash_handler_duration_seconds_count", **durable
        )
        assert handled >= 1
        assert sample(text, "filetrash_end_to_end_duration_seconds_count", **durable) == 30
        assert sample(text, "filetrash_in_flight_messages", **durable) == 0
        assert sample(text, "filetrash_ready", **durable) == 1
        assert "filetrash_nats_reconnects_total" in text
        assert (await fetch(port, "/nothing"))[0] == 404
    finally:
        assert await process.terminate() == 0, process.output()
    assert (await fetch(port, "/healthz"))[0] == 0  # the port closed with the process


async def test_readiness_says_why_not() -> None:
    """Not connected, not bound, database silent: each is its own reason, in that order."""
    from nats.aio.client import Client

    from handwritten.runtime.consume import ConsumeStats
    from handwritten.runtime.metrics import ServiceMetrics

    stats = ConsumeStats()
    metrics = ServiceMetrics("d", "S", stats, Client())
    assert await metrics.readiness() == (False, "not connected to NATS")
    assert not metrics.ready_now()
