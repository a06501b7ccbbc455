"""The benchmark is not a test, but its harness must keep working: one tiny run of every part,
checking that each scenario ran, did its work and made it into the report. No timing is
asserted anywhere — this machine is shared and slow runs are not failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("ceiling", "naive", "filetrash", "filetrash ×2")


def test_one_tiny_run_of_the_bench_produces_the_report(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILETRASH_")}
    tiny = ["--n", "200", "--latency-seconds", "2", "--rate", "100"]
    quick_generation = ["--generation-sizes", "2,4", "--generation-repeats", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", *tiny, *quick_generation, "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = result.stdout
    for scenario in SCENARIOS:
        assert f"| {scenario} |" in report, scenario
    for heading in (
        "### Throughput",
        "### Latency",
        "### Generation",
        "### Targets",
        "### Machine",
    ):
        assert heading in report, heading
    assert (tmp_path / "latest.md").read_text(encoding="utf-8").strip() == report.strip()

    results = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    runs = {run["scenario"]: run for run in results["throughput"]}
    assert set(runs) == set(SCENARIOS)
    for name, run in runs.items():
        assert run["events"] == 200 and run["seconds"] > 0, name
        if name != "ceiling":
            assert (run["rows"], run["trash_events"]) == (200, 200), name
    assert len(runs["filetrash ×2"]["peak_rss_mib"]) == 2
    assert results["ratios"]["filetrash/ceiling"] is not None
    assert results["ratios"]["filetrash/naive"] is not None
    latency = results["latency"]
    assert latency["events"] == 200 and latency["to_row_ms"]["p99"] >= latency["to_row_ms"]["p50"]
    assert [g["channels"] for g in results["generation"]] == [5, 2, 4]
    assert results["generation_fit"] is not None
    assert results["machine"]["cores"] >= 1 and results["machine"]["postgresql"]
