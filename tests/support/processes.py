"""The services and the publisher as real processes (`python -m handwritten.cli ...`), each
with its output in a file: started, waited for, terminated (SIGTERM) or killed (SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


class CliProcess:
    """`python -m handwritten.cli ARGS` as a real process; its output goes to a file."""

    def __init__(
        self, label: str, args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.label = label
        self.args = list(args)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "handwritten.cli", *self.args],
            env=dict(env),
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines (`--log-format json`); anything else is skipped."""
        lines = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines

    def cpu_seconds(self) -> float:
        """User plus system CPU time so far (Linux /proc); 0 once the process is gone."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields_after_name = stat.rsplit(")", 1)[1].split()
        return (int(fields_after_name[11]) + int(fields_after_name[12])) / CLK_TCK

    async def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.label} did not exit within {timeout:.0f}s:\n{self.tail()}"
                )
            await asyncio.sleep(0.05)
        self._log.close()
        return status

    async def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL only after `timeout`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await self.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed, nothing acked."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])
