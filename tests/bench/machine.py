"""What the benchmark ran on, and how much CPU a process (or PostgreSQL) used, from /proc."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from handwritten.runtime import devservers

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    ram_gib: float
    os: str
    python: str
    nats_py: str
    asyncpg: str
    pydantic: str
    nats_server: str
    postgresql: str
    date: str
    load: str = ""
    """/proc/loadavg's 1, 5 and 15 minute load averages when the bench began."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _nats_server_version() -> str:
    try:
        out = subprocess.run(
            [str(devservers.nats_server_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError, devservers.DevServerError):
        return "?"
    return out.strip().removeprefix("nats-server: ")


async def describe(database_url: str) -> Machine:
    conn = await asyncpg.connect(database_url)
    try:
        pg = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        ram_gib=_ram_gib(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        nats_py=_version("nats-py"),
        asyncpg=_version("asyncpg"),
        pydantic=_version("pydantic"),
        nats_server=_nats_server_version(),
        postgresql=pg,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load=load_average(),
    )


def load_average() -> str:
    """'1.20 0.90 0.50': the runnable processes averaged over 1, 5 and 15 minutes."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- CPU and memory of processes ------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its ')' splits cleanly.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of `pid` (and of its reaped children, if asked)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the command name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def process_tree_cpu(root: int) -> float:
    """CPU of a process, of its live children and of the children it already reaped:
    PostgreSQL's postmaster with its backends."""
    total = cpu_seconds(root, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == root:
            total += cpu_seconds(int(entry.name))
    return total


def peak_rss_mib(pid: int) -> float | None:
    """The most resident memory the process ever had (VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
