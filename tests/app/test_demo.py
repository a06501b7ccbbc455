"""`filetrash demo` end to end: real processes, and an exit status that says the numbers
reconcile — on the fixtures' servers (twice, so the second run meets the first one's data),
and on dev servers it starts and stops itself."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from handwritten.runtime import devservers
from tests.app.service_harness import REPO_ROOT
from tests.support.servers import NatsServer

pytestmark = pytest.mark.integration


async def demo(*args: str, env: dict[str, str], timeout: float = 120.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "handwritten.cli",
        "demo",
        *args,
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        pytest.fail(f"demo did not finish within {timeout}s:\n{output.decode()[-5000:]}")
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", errors="replace")


def base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("NATS_URL", "DATABASE_URL") and not k.startswith("FILETRASH_")
    }


def table(output: str) -> str:
    return output[output.index("Reconciliation") :]


async def test_the_demo_reconciles_on_the_given_servers_and_again_on_reused_ones(
    nats_server: NatsServer, database_url: str
) -> None:
    env = {**base_env(), "NATS_URL": nats_server.url, "DATABASE_URL": database_url}
    status, output = await demo("--count", "50", env=env)
    assert status == 0, output[-6000:]
    assert "Everything reconciles: 50 deletions" in output
    assert "Dev servers" not in output, "NATS_URL and DATABASE_URL were set: no dev servers"
    result = table(output)
    assert "❌" not in result
    assert "rows in trashed_files" in result and "trash-processor #2" in result
    # The article-like flow, service by service.
    for line in (
        "publisher              │ 📤 Published FileDeletedEvent:",
        "│ 📥 Received FileDeletedEvent:",
        "│ 💾 Stored in trashed_files table:",
        "│ 📤 Published FilePlacedInTrashEvent:",
        "│ ✅ Message processed successfully",
        "audit-logger           │ 📝 Audited FileDeletedEvent:",
        "analytics-service      │ 📊 Counted FilePlacedInTrashEvent:",
        "cleanup-service        │ 🧹 Queued for cleanup:",
        "notification-service   │ 🔔 Notified user",
    ):
        assert line in output, line

    status, output = await demo("--count", "10", "--rate", "0", env=env)
    assert status == 0, output[-6000:]
    assert "Everything reconciles: 10 deletions" in output


async def test_without_server_urls_the_demo_runs_its_own_dev_servers(dev_dir: Path) -> None:
    status, output = await demo("--count", "5", "--dev-dir", str(dev_dir), env=base_env())
    assert status == 0, output[-6000:]
    assert "Everything reconciles: 5 deletions" in output
    assert "Stopping the dev servers this demo started" in output
    assert not any(state.running for state in devservers.status(dev_dir))
    # Authorization is on: every service ran under its own role, none was refused anything.
    for label, role in (
        ("trash-processor #1", "trash-processor"),
        ("trash-processor #2", "trash-processor"),
        ("audit-logger", "audit-logger"),
        ("analytics-service", "analytics-service"),
        ("cleanup-service", "cleanup-service"),
        ("notification-service", "notification-service"),
    ):
        assert re.search(
            rf"^{re.escape(label)} +│ 📡 Connecting to NATS at \S+ as role {role}$", output, re.M
        ), label
    assert "NATS refused" not in output and "Violation" not in output
    passwords = json.loads((dev_dir / "nats-credentials.json").read_text())["roles"]
    assert not any(secret in output for secret in passwords.values())
