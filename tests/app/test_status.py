"""`filetrash status` against real servers: what it reads from JetStream (stream use, a
durable's lag, headroom and dead letters by reason, drift from the spec) and its exit codes,
so that it can serve as a check in CI or cron."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.app.service_harness import REPO_ROOT, Servers, running, wait_until


def status(servers: Servers, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "handwritten.cli", "status", *args],
        env=servers.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def consumer(report: dict[str, Any], durable: str) -> dict[str, Any]:
    return next(c for c in report["consumers"] if c["durable"] == durable)


async def test_a_lagging_durable_its_dead_letters_and_the_exit_codes(servers: Servers) -> None:
    await servers.publish(40, seed=9)
    await servers.js.publish("files.deleted", b"not json")
    async with running(servers, "audit-logger") as (audit,):

        async def settled() -> bool:
            return audit.stats.acked == 40 and audit.stats.dead_lettered == 1

        await wait_until(
            settled,
            timeout=30,
            what="the audit-logger to take 40 deletions and dead-letter the poison",
        )
    result = status(servers, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    events = next(s for s in report["streams"] if s["name"] == "FILE_EVENTS")
    assert events["exists"] and events["messages"] == 41 and 0 < events["use"]["max_bytes"] < 0.01
    lagging = consumer(report, "trash-processor")  # not running: everything is pending
    assert lagging["pending"] == 41 and lagging["oldest_needed_seq"] == events["first_seq"]
    per_subject = 41 / 3_600_000  # the spec's max_msgs_per_subject binds files.deleted
    assert lagging["headroom_used"]["max_msgs_per_subject"] == pytest.approx(per_subject)
    assert 0 <= lagging["headroom_used"]["max_age"] < 0.01
    assert events["use"]["max_msgs_per_subject"] == pytest.approx(per_subject)
    done = consumer(report, "audit-logger")
    assert done["pending"] == 0 and done["headroom_used"] == {}
    assert done["dead_letters"] == 1 and done["dead_letter_reasons"] == {"invalid-json": 1}
    assert report["drift"] == [] and report["exit"] == 0

    assert status(servers, "--max-pending", "10").returncode == 5
    text = status(servers).stdout
    assert "trash-processor" in text and "invalid-json 1" in text and "none: the live" in text

    await servers.js.delete_consumer("FILE_EVENTS", "cleanup-service")
    gone = status(servers, "--json")
    assert gone.returncode == 4
    assert consumer(json.loads(gone.stdout), "cleanup-service")["exists"] is False
    assert any("cleanup-service: create" in line for line in json.loads(gone.stdout)["drift"])
