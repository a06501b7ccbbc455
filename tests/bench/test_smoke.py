"""The benchmark is not a test, but its harness must keep working: one tiny run of every part,
checking that each contender ran on each service, did all its work and made it into the
report. No timing is asserted anywhere — this machine is shared and slow runs are not
failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.services import CONTENDERS, SERVICES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
N = 200
RATIOS = (
    "filetrash/raw",
    "filetrash/faststream",
    "nats cpu filetrash/raw",
    "postgres cpu filetrash/raw",
)


def test_one_tiny_run_of_the_bench_produces_the_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILETRASH_")}
    tiny = ["--n", str(N), "--n-others", str(N), "--rounds", "1"]
    tiny += ["--latency-seconds", "2", "--rate", "100"]
    quick_generation = ["--generation-sizes", "2,4", "--generation-repeats", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", *tiny, *quick_generation, "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = result.stdout
    for service in SERVICES:
        assert f"#### {service}: {N} events" in report, service
    for contender in CONTENDERS:
        assert f"| {contender} |" in report, contender
    for heading in (
        "### Throughput",
        "### Goals (issue 14)",
        "### Latency",
        "### Generation",
        "### Targets",
        "### Machine",
    ):
        assert heading in report, heading
    assert (tmp_path / "latest.md").read_text(encoding="utf-8").strip() == report.strip()

    results = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    runs = {(run["service"], run["scenario"]): run for run in results["throughput"]}
    assert set(runs) == {(s, c) for s in SERVICES for c in CONTENDERS}
    for (service, contender), run in runs.items():
        assert run["events"] == N and run["seconds"] > 0, (service, contender)
        work = run["work"]
        # Nothing left on the durable: every event delivered and its ack confirmed.
        assert work["pending + unacked"] == 0, (service, contender, work)
        if contender == "ceiling":
            continue  # acks only
        # Every row (and trash event) of every event: the raw and FastStream contenders do
        # the same work as filetrash, counted by the harness, not by them.
        expected = {name: N for name in SERVICES[service].checks}
        if SERVICES[service].keep_trash_events:
            expected["trash events"] = N
        assert {k: v for k, v in work.items() if k in expected} == expected, (service, contender)
    for service in SERVICES:
        summary = results["services"][service]
        assert set(summary["contenders"]) == set(CONTENDERS), service
        ratios = summary["ratios"]
        assert set(RATIOS) <= set(ratios), service
        assert ratios["filetrash/raw"] is not None and ratios["filetrash/faststream"] is not None
        # A server's CPU over 200 events may stay under one clock tick (10 ms): no ratio then.
        assert all(ratios[r] is None or ratios[r] >= 0 for r in RATIOS), (service, ratios)
        goals = summary["goals"]
        assert len(goals) == 4 and all(g["met"] is not None for g in goals[:2]), goals
    latency = results["latency"]
    assert latency["events"] == 200 and latency["to_row_ms"]["p99"] >= latency["to_row_ms"]["p50"]
    assert [g["channels"] for g in results["generation"]] == [5, 2, 4]
    assert results["generation_fit"] is not None
    assert results["machine"]["cores"] >= 1 and results["machine"]["postgresql"]


def test_the_client_microbenchmark_runs_and_reports_each_path() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench.natsio_micro", "--messages", "512", "--repeats", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "µs" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| receive (publish + receive)",
        "| receive with a Nats-Msg-Id header",
        "| acks with a reply subject",
        "| publishes with headers",
    ]
