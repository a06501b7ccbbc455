"""The client's per-message path, nats-py's public API against `handwritten.runtime.natsio`,
on a nats-server of its own: process CPU per message, as ratios within one run.

    python -m tests.bench.natsio_micro [--messages 100000] [--repeats 3]

- receive: messages published and received on one connection each, in one process (the
  publishing is the same in both, so the difference is the receiving): a subscription with
  a callback, against `subscribe_inline` (and its connection's inline reader); without
  headers (as the server's ack confirmations come), and with a `Nats-Msg-Id` (as a stream's
  messages are delivered);
- acks: 256 acks with a reply subject per batch, `publish` each, against `publish_all`;
- publishes with headers: 256 messages with `Nats-Msg-Id` and `traceparent` per batch, the
  same two ways.
Figures are `time.process_time()` per message, the best of the repeats; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from handwritten.runtime.natsio import Outgoing, publish_all, subscribe_inline
from tests.support.servers import NatsServer

PAYLOAD = b"x" * 420
MSG_ID = "6f1c1a5e-8a4b-5c1e-9d0e-2f3a4b5c6d7e"
BATCH = 256


async def _receive(url: str, count: int, inline: bool, headers: dict[str, str] | None) -> float:
    nc, publisher = await nats.connect(url), await nats.connect(url)
    got = 0
    all_in: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(msg: Msg) -> None:
        nonlocal got
        got += 1
        if got == count:
            all_in.set_result(None)

    async def callback(msg: Msg) -> None:
        on_message(msg)

    if inline:
        await subscribe_inline(nc, "micro.receive", on_message)
    else:
        await nc.subscribe("micro.receive", cb=callback)
    await nc.flush()
    started = time.process_time()
    for _ in range(count):
        await publisher.publish("micro.receive", PAYLOAD, headers=headers)
    await publisher.flush()
    await all_in
    spent = time.process_time() - started
    await nc.close()
    await publisher.close()
    return spent / count


async def _publish(
    url: str,
    count: int,
    send: Callable[[Client, list[Outgoing]], Awaitable[None]],
    headers: dict[str, str] | None,
) -> float:
    nc = await nats.connect(url)
    rounds = max(1, count // BATCH)
    started = time.process_time()
    for r in range(rounds):
        batch: list[Outgoing] = [
            (
                f"micro.publish.{i}",
                f"_INBOX.micro.{r}.{i}",
                b"+ACK" if headers is None else PAYLOAD,
                None if headers is None else {**headers, "Nats-Msg-Id": f"m-{r}-{i}"},
            )
            for i in range(BATCH)
        ]
        await send(nc, batch)
        await asyncio.sleep(0)  # let the flusher write, as between two batches of the loop
    await nc.flush()
    spent = time.process_time() - started
    await nc.close()
    return spent / (rounds * BATCH)


async def _one_by_one(nc: Client, batch: list[Outgoing]) -> None:
    for subject, reply, payload, headers in batch:
        await nc.publish(subject, payload, reply=reply, headers=dict(headers) if headers else None)


async def measure(url: str, count: int, repeats: int) -> list[tuple[str, float, float]]:
    trace = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    rows = []
    for name, public, ours in (
        (
            "receive (publish + receive)",
            lambda: _receive(url, count, False, None),
            lambda: _receive(url, count, True, None),
        ),
        (
            "receive with a Nats-Msg-Id header",
            lambda: _receive(url, count, False, {"Nats-Msg-Id": MSG_ID}),
            lambda: _receive(url, count, True, {"Nats-Msg-Id": MSG_ID}),
        ),
        (
            "acks with a reply subject",
            lambda: _publish(url, count, _one_by_one, None),
            lambda: _publish(url, count, publish_all, None),
        ),
        (
            "publishes with headers",
            lambda: _publish(url, count, _one_by_one, trace),
            lambda: _publish(url, count, publish_all, trace),
        ),
    ):
        a, b = [], []
        for _ in range(repeats):  # alternating, so that a slow spell touches both
            a.append(await public())
            b.append(await ours())
        rows.append((name, min(a) * 1e6, min(b) * 1e6))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.natsio_micro", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with NatsServer() as server:
        rows = asyncio.run(measure(server.url, args.messages, args.repeats))
    print("| per message | nats-py public API | natsio | ratio |")
    print("|---|---:|---:|---:|")
    for name, public, ours in rows:
        print(f"| {name} | {public:.2f} µs | {ours:.2f} µs | {ours / public:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
