"""How long `just generate` takes, on the real spec and on synthetic specs of growing size.

Each run is the recipe's own command, `python -m generator generate`, as a process (start-up
and imports included, as a user waits for them), writing into a temporary directory so the
committed generated/ is never touched. The synthetic specs have N channels, N messages, N
send and N receive operations (each with its durable consumer), in one stream.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_SPEC = REPO_ROOT / "asyncapi" / "asyncapi.yaml"


@dataclass(frozen=True)
class GenerationTiming:
    spec: str
    channels: int
    seconds: float
    runs: list[float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LinearFit:
    """seconds ≈ intercept + per_channel × channels (least squares over the synthetic specs)."""

    intercept: float
    per_channel: float
    r_squared: float
    growth: float
    """Cost per channel between the two largest specs over that between the two smallest:
    about 1 for linear growth, 2 and more for quadratic."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_spec(channels: int) -> str:
    """An AsyncAPI document with `channels` channels, each with its own message (a payload
    with a nested object, patterns, bounds, uuid and date-time formats), a send operation and
    a receive operation with a durable consumer; one stream and one dead-letter stream."""
    out = [
        "asyncapi: 3.0.0",
        "id: urn:filetrash:bench-synthetic",
        "info:",
        f"  title: Synthetic spec with {channels} channels",
        "  version: 1.0.0",
        "defaultContentType: application/json",
        "x-jetstream-streams:",
        "  SYNTH:",
        "    subjects: [synth.>]",
        "    retention: limits",
        "    storage: file",
        "    max_age: P7D",
        "    duplicate_window: PT2M",
        "  SYNTH_DLQ:",
        "    subjects: [dlq.synth.>]",
        "    retention: limits",
        "    storage: file",
        "    max_age: P30D",
        "channels:",
        "  deadLetters:",
        "    address: dlq.synth.{consumer}",
        "    parameters:",
        "      consumer:",
        "        description: Durable name of the consumer that gave up.",
        "    messages:",
        "      DeadLetter:",
        "        $ref: '#/components/messages/DeadLetter'",
        "    bindings:",
        "      nats:",
        "        jetstream:",
        "          stream: SYNTH_DLQ",
    ]
    for i in range(channels):
        out += [
            f"  channel{i}:",
            f"    address: synth.c{i}",
            f"    description: Synthetic channel number {i}.",
            "    messages:",
            f"      Thing{i}Event:",
            f"        $ref: '#/components/messages/Thing{i}Event'",
            "    bindings:",
            "      nats:",
            "        jetstream:",
            "          stream: SYNTH",
        ]
    out.append("operations:")
    for i in range(channels):
        out += [
            f"  publishThing{i}:",
            "    action: send",
            "    channel:",
            f"      $ref: '#/channels/channel{i}'",
            f"  consumeThing{i}:",
            "    action: receive",
            "    channel:",
            f"      $ref: '#/channels/channel{i}'",
            "    x-jetstream-consumer:",
            f"      durable: consumer-{i}",
            "      ack_policy: explicit",
            "      deliver_policy: all",
            "      ack_wait: PT30S",
            "      max_deliver: 5",
            "      max_ack_pending: 1000",
            "      dead_letter: deadLetters",
        ]
    out += [
        "components:",
        "  messages:",
        "    DeadLetter:",
        "      name: DeadLetter",
        "      contentType: application/octet-stream",
        "      payload:",
        "        type: string",
    ]
    for i in range(channels):
        out += [
            f"    Thing{i}Event:",
            f"      name: Thing{i}Event",
            "      payload:",
            f"        $ref: '#/components/schemas/Thing{i}EventPayload'",
        ]
    out.append("  schemas:")
    for i in range(channels):
        out += [
            f"    Thing{i}EventPayload:",
            "      type: object",
            f"      title: Thing{i}Event",
            "      additionalProperties: false",
            "      required: [eventId, eventType, timestamp, data]",
            "      properties:",
            "        eventId:",
            "          type: string",
            "          format: uuid",
            "        eventType:",
            "          type: string",
            f"          const: Thing{i}Event",
            "        timestamp:",
            "          type: string",
            "          format: date-time",
            "        data:",
            f"          $ref: '#/components/schemas/Thing{i}'",
            f"    Thing{i}:",
            "      type: object",
            f"      title: Thing{i}",
            "      additionalProperties: false",
            "      required: [name, size, owner]",
            "      properties:",
            "        name:",
            "          type: string",
            "          minLength: 1",
            "          maxLength: 255",
            "          pattern: '^[^/]+$'",
            "        size:",
            "          type: integer",
            "          minimum: 0",
            "        owner:",
            "          type: string",
            "          format: uuid",
            "        note:",
            "          type: string",
            "          description: Free text.",
        ]
    return "\n".join(out) + "\n"


def time_generate(spec: Path, out_dir: Path, repeats: int) -> list[float]:
    """Wall-clock seconds of `python -m generator generate` on `spec`, `repeats` times."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "generator",
                "generate",
                "--spec",
                str(spec),
                "--out",
                str(out_dir),
                "--quiet",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        runs.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise RuntimeError(f"generate failed on {spec}:\n{result.stderr[-3000:]}")
    return runs


def measure(sizes: tuple[int, ...], repeats: int, work_dir: Path) -> list[GenerationTiming]:
    timings = []
    runs = time_generate(REAL_SPEC, work_dir / "real", repeats)
    timings.append(GenerationTiming("asyncapi/asyncapi.yaml", 5, statistics.median(runs), runs))
    for size in sizes:
        spec = work_dir / f"synthetic-{size}.yaml"
        spec.write_text(synthetic_spec(size), encoding="utf-8")
        runs = time_generate(spec, work_dir / f"out-{size}", repeats)
        timings.append(
            GenerationTiming(f"synthetic, {size} channels", size, statistics.median(runs), runs)
        )
    return timings


def fit(timings: list[GenerationTiming]) -> LinearFit | None:
    points = sorted((t.channels, t.seconds) for t in timings if t.spec.startswith("synthetic"))
    if len(points) < 2:
        return None
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    r_squared = 1 - residual / total if total > 0 else 1.0
    first = (ys[1] - ys[0]) / (xs[1] - xs[0])
    last = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    growth = last / first if first > 0 else float("inf")
    return LinearFit(
        intercept=round(intercept, 3),
        per_channel=round(slope, 5),
        r_squared=round(r_squared, 4),
        growth=round(growth, 2),
    )
