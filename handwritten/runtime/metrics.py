"""Prometheus metrics, liveness and readiness of one running service, on one HTTP port.

`filetrash run DURABLE --metrics-port N` (or FILETRASH_METRICS_PORT) serves, with the official
client's exposition format:
- GET /metrics — the metrics below, read from the consume loop's counters at each scrape;
- GET /healthz — 200 while the process's event loop answers (liveness);
- GET /readyz  — 200 when connected to NATS, bound to the durable and, for a service that uses
  PostgreSQL, able to run `SELECT 1`; 503 with the reason otherwise (readiness).

The counters are the loop's own (`ConsumeStats`), so a scrape can never disagree with what the
loop did; latencies are histograms observed as work completes; pending, ack pending and
redelivered are the consumer's numbers as last seen from JetStream (refreshed every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from nats.aio.client import Client
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from handwritten.runtime.consume import ConsumeStats

log = logging.getLogger(__name__)

METRICS_PORT_ENV = "FILETRASH_METRICS_PORT"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REFRESH_EVERY = 5.0


class _LoopCollector(Collector):
    """The consume loop's counters and gauges, read at scrape time."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m, stats, durable = self.metrics, self.metrics.stats, self.metrics.durable
        messages = CounterMetricFamily(
            "filetrash_messages",
            "Messages settled by the consume loop, by outcome.",
            labels=["durable", "outcome"],
        )
        for outcome, value in (
            ("acked", stats.acked),
            ("ack_unconfirmed", stats.ack_unconfirmed),
            ("retried", stats.naked),
            ("dead_lettered", stats.dead_lettered),
        ):
            messages.add_metric([durable, outcome], value)
        yield messages
        letters = CounterMetricFamily(
            "filetrash_dead_letters",
            "Messages dead-lettered, by reason.",
            labels=["durable", "reason"],
        )
        for reason, value in sorted(stats.dead_letter_reasons.items()):
            letters.add_metric([durable, reason], value)
        yield letters
        for name, text, value in (
            ("filetrash_fetched_messages", "Messages the loop pulled.", stats.fetched),
            ("filetrash_handler_errors", "Handler calls that raised.", stats.handler_errors),
            ("filetrash_batches", "Batches handed to a batch handler.", stats.batches),
        ):
            counter = CounterMetricFamily(name, text, labels=["durable"])
            counter.add_metric([durable], value)
            yield counter
        gauges = [
            ("filetrash_in_flight_messages", "Pulled and not settled yet.", stats.in_flight),
            ("filetrash_ready", "1 when the service is ready (see /readyz).", int(m.ready_now())),
        ]
        for field, name, text in (
            ("num_pending", "filetrash_consumer_pending_messages", "Not yet delivered (last seen)."),
            ("num_ack_pending", "filetrash_consumer_ack_pending_messages", "Delivered, not acked (last seen)."),
            ("num_redelivered", "filetrash_consumer_redelivered_messages", "Being redelivered (last seen)."),
            ("num_waiting", "filetrash_consumer_waiting_pulls", "Pull requests waiting (last seen)."),
        ):  # fmt: skip
            if field in m.consumer:
                gauges.append((name, text, m.consumer[field]))
        for name, text, value in gauges:
            gauge = GaugeMetricFamily(name, text, labels=["durable"])
            gauge.add_metric([durable], value)
            yield gauge
        reconnects = CounterMetricFamily(
            "filetrash_nats_reconnects", "Reconnections to NATS.", labels=["durable"]
        )
        reconnects.add_metric([durable], m.nc.stats.get("reconnects", 0))
        yield reconnects


class ServiceMetrics:
    """The metrics and health of one service: its durable, its loop's counters, its
    connection, and an optional database check."""

    def __init__(
        self,
        durable: str,
        stream: str,
        stats: ConsumeStats,
        nc: Client,
        *,
        database_ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.durable, self.stream, self.stats, self.nc = durable, stream, stats, nc
        self.database_ready = database_ready
        self.consumer: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_LoopCollector(self))
        self.latency = {
            kind: Histogram(
                f"filetrash_{kind}_duration_seconds",
                text,
                ["durable"],
                registry=self.registry,
                buckets=LATENCY_BUCKETS,
            ).labels(durable)
            for kind, text in (
                ("handler", "One handler call, per message."),
                ("batch", "One batch handler call."),
                ("end_to_end", "From the event's timestamp to its handling."),
            )
        }
        stats.observe = self.observe

    def observe(self, kind: str, seconds: float) -> None:
        histogram = self.latency.get(kind)
        if histogram is not None:
            histogram.observe(seconds)

    def ready_now(self) -> bool:
        return self.nc.is_connected and self.stats.bound

    async def readiness(self) -> tuple[bool, str]:
        if not self.nc.is_connected:
            return False, "not connected to NATS"
        if not self.stats.bound:
            return False, f"not bound to durable {self.durable}"
        if self.database_ready is not None and not await self.database_ready():
            return False, "PostgreSQL does not answer"
        return True, "ready"

    async def refresh(self) -> None:
        """The consumer's numbers from JetStream, every few seconds, for the gauges."""
        js = self.nc.jetstream()
        while True:
            with contextlib.suppress(Exception):
                info = await js.consumer_info(self.stream, self.durable, timeout=2)
                self.consumer = {
                    "num_pending": info.num_pending or 0,
                    "num_ack_pending": info.num_ack_pending or 0,
                    "num_redelivered": info.num_redelivered or 0,
                    "num_waiting": info.num_waiting or 0,
                }
            await asyncio.sleep(REFRESH_EVERY)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/metrics":
                status, kind, body = 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
            elif path == "/healthz":
                status, kind, body = 200, "text/plain", b"alive\n"
            elif path == "/readyz":
                ok, why = await self.readiness()
                status, kind, body = (200 if ok else 503), "text/plain", f"{why}\n".encode()
            else:
                status, kind, body = 404, "text/plain", b"/metrics, /healthz or /readyz\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve(self, port: int, host: str = "127.0.0.1") -> asyncio.Server:
        server = await asyncio.start_server(self._answer, host, port)
        log.info(
            "📈 metrics on http://%s:%d/metrics (health: /healthz, /readyz)",
            host,
            port,
            extra={"step": "metrics", "port": port},
        )
        return server
