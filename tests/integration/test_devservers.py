"""`filetrash up`, `down` and `status` as a developer runs them: the real CLI in a subprocess,
with CI=true and no terminal, on a fresh directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import asyncpg
import nats
import nats.errors
import pytest
from nats.js.api import StreamConfig

from handwritten.runtime import devservers
from handwritten.runtime.servers import ServersNotConfigured, resolve_servers

pytestmark = pytest.mark.integration


def filetrash(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script the way CI does: no stdin, no terminal, CI=true."""
    script = Path(sys.executable).with_name("filetrash")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "handwritten.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL", "TERM")}
    env["CI"] = "true"
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def up_ok(dev_dir: Path, *args: str) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    result = filetrash("up", "--dev-dir", str(dev_dir), *args, cwd=dev_dir.parent)
    assert result.returncode == 0, result.stderr
    return json.loads((dev_dir / "servers.json").read_text()), result


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.05)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children_of(pid: int) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _ppid(int(p.name)) == pid
    ]


def assert_gone(pid: int) -> None:
    """Dead, and not a zombie of ours: init reaps the servers' orphans, we must not hold any."""
    assert not devservers.process_alive(pid), f"process {pid} still runs"
    wait_until(
        lambda: not Path(f"/proc/{pid}").exists() or _ppid(pid) != os.getpid(),
        what=f"process {pid} to be reaped",
    )


def processes_using(path: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and devservers.process_alive(int(entry.name)):
            cmdline = devservers.process_cmdline(int(entry.name)) or []
            if any(str(path) in arg for arg in cmdline):
                found.append(int(entry.name))
    return found


@pytest.fixture
def occupy() -> Iterator[Callable[[int], None]]:
    """Make sure a port is in use: listen on it ourselves unless something else already does."""
    with ExitStack() as stack:

        def occupy_port(port: int) -> None:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:
                assert not devservers.port_is_free(port)

        yield occupy_port


async def connect_admin(dev_dir: Path, url: str) -> nats.aio.client.Client:
    """The dev nats-server has authorization on: connect as the spec's admin role."""
    roles = json.loads((dev_dir / "nats-credentials.json").read_text())["roles"]
    return await nats.connect(url, user="admin", password=roles["admin"], allow_reconnect=False)


async def nats_has_jetstream(dev_dir: Path, url: str) -> bool:
    nc = await connect_admin(dev_dir, url)
    try:
        info = await nc.jetstream().account_info()
        return info is not None
    finally:
        await nc.close()


async def test_up_status_down_on_a_fresh_directory(dev_dir: Path) -> None:
    workdir = dev_dir.parent
    result = filetrash("up", cwd=workdir)  # the default dev dir is ./.dev
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    record = json.loads((dev_dir / "servers.json").read_text())
    urls = dict(re.findall(r"^(NATS_URL|DATABASE_URL)=(\S+)$", result.stdout, re.M))
    assert urls == {"NATS_URL": record["nats_url"], "DATABASE_URL": record["database_url"]}
    assert record["running"] is True
    assert record["database_url"].startswith("postgresql://postgres@127.0.0.1:")
    assert record["database_url"].endswith("/filetrash")
    nats_pid, pg_pid = record["nats"]["pid"], record["postgres"]["pid"]
    assert devservers.process_alive(nats_pid) and devservers.process_alive(pg_pid)
    assert "nats.conf" in " ".join(devservers.process_cmdline(nats_pid) or [])

    assert await nats_has_jetstream(dev_dir, record["nats_url"])
    conn = await asyncpg.connect(record["database_url"])
    try:
        assert await conn.fetchval("SELECT current_database()") == "filetrash"
    finally:
        await conn.close()
    assert resolve_servers(dev_dir, environ={}).nats_url == record["nats_url"]
    # NATS_URL copied from `up`'s output still connects as each command's role.
    copied = resolve_servers(dev_dir, environ={"NATS_URL": record["nats_url"]}, database=False)
    assert copied.nats_credentials == dev_dir / "nats-credentials.json"

    status = filetrash("status", cwd=workdir)  # as the admin role
    assert status.returncode == 4  # servers up, nothing provisioned: the topology drifted
    assert status.stdout.count("(ready)") == 2
    assert "stream FILE_EVENTS: create" in status.stdout

    pg_children = children_of(pg_pid)
    assert pg_children, "a running postmaster has background workers"
    down = filetrash("down", cwd=workdir)
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("(stopped)") == 2
    for pid in (nats_pid, pg_pid, *pg_children):
        assert_gone(pid)
    assert processes_using(dev_dir) == []
    assert devservers.port_is_free(record["nats"]["port"])
    assert devservers.port_is_free(record["postgres"]["port"])

    status = filetrash("status", cwd=workdir)
    assert status.returncode == 3
    assert status.stdout.count("(stopped)") == 2
    with pytest.raises(ServersNotConfigured, match="stopped"):
        resolve_servers(dev_dir, environ={})


async def test_authorization_is_on_by_default_with_private_secrets(dev_dir: Path) -> None:
    record, result = up_ok(dev_dir)
    assert record["nats_auth"] is True
    credentials = dev_dir / "nats-credentials.json"
    passwords = json.loads(credentials.read_text())["roles"]
    assert {"admin", "trash-processor", "publishFileDeleted"} <= set(passwords)
    for private in (credentials, dev_dir / "nats.conf"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    output = result.stdout + result.stderr
    assert "authorization on" in result.stderr
    for secret in passwords.values():
        assert secret not in output
        assert secret not in (dev_dir / "logs" / "nats.log").read_text()
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
        await nats.connect(record["nats_url"], allow_reconnect=False, max_reconnect_attempts=0)
    nc = await nats.connect(
        record["nats_url"],
        user="trash-processor",
        password=passwords["trash-processor"],
        allow_reconnect=False,
    )
    await nc.close()

    # `up` again keeps the passwords; `up --no-auth` reloads the running server without them.
    up_ok(dev_dir)
    assert json.loads(credentials.read_text())["roles"] == passwords
    record, result = up_ok(dev_dir, "--no-auth")
    assert "roles reloaded" in result.stderr
    assert record["nats_auth"] is False
    assert resolve_servers(dev_dir, environ={}).nats_credentials is None

    async def open_to_all() -> bool:
        try:
            nc = await nats.connect(record["nats_url"], allow_reconnect=False)
        except Exception:
            return False
        await nc.close()
        return True

    deadline = time.monotonic() + 10
    while not await open_to_all():
        assert time.monotonic() < deadline, "the server did not reload its configuration"
        await asyncio.sleep(0.1)


def test_up_twice_starts_nothing_new(dev_dir: Path) -> None:
    first, _ = up_ok(dev_dir)
    second, result = up_ok(dev_dir)
    assert second == first
    assert result.stderr.count("already running") == 2
    assert result.stdout.splitlines() == [
        f"NATS_URL={first['nats_url']}",
        f"DATABASE_URL={first['database_url']}",
    ]
    nats_servers = [
        pid
        for pid in processes_using(dev_dir)
        if Path((devservers.process_cmdline(pid) or [""])[0]).name == "nats-server"
    ]
    assert nats_servers == [first["nats"]["pid"]]


def test_concurrent_ups_start_one_set_of_servers(dev_dir: Path) -> None:
    script = Path(sys.executable).with_name("filetrash")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "handwritten.cli"]
    runs = [
        subprocess.Popen(
            [*command, "up", "--dev-dir", str(dev_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert sum(err.count("already running") for _, err in outputs) == 2
    nats_servers = [
        pid
        for pid in processes_using(dev_dir)
        if Path((devservers.process_cmdline(pid) or [""])[0]).name == "nats-server"
    ]
    assert len(nats_servers) == 1


def test_default_ports_in_use_are_avoided(dev_dir: Path, occupy: Callable[[int], None]) -> None:
    occupy(devservers.DEFAULT_NATS_PORT)
    occupy(devservers.DEFAULT_PG_PORT)
    record, result = up_ok(dev_dir)
    assert record["nats"]["port"] != devservers.DEFAULT_NATS_PORT
    assert record["postgres"]["port"] != devservers.DEFAULT_PG_PORT
    assert re.search(
        rf"nats .*\(started; ports? .*\b{devservers.DEFAULT_NATS_PORT} in use", result.stderr
    )
    assert re.search(
        rf"postgres .*\(started; ports? .*\b{devservers.DEFAULT_PG_PORT} in use", result.stderr
    )
    assert devservers.nats_healthy(record["nats"]["port"], record["nats"]["monitor_port"])
    assert devservers.psql(record["postgres"]["port"], "SELECT 1", database="filetrash") == "1"


def test_explicit_port_in_use_is_a_clear_error_and_starts_nothing(
    dev_dir: Path, occupy: Callable[[int], None]
) -> None:
    port = devservers.free_port()
    occupy(port)
    result = filetrash("up", "--dev-dir", str(dev_dir), "--pg-port", str(port), cwd=dev_dir.parent)
    assert result.returncode == 2
    assert result.stderr == (
        f"filetrash: error: PostgreSQL port {port} on 127.0.0.1 is already in use: "
        "choose another port or omit the option to pick a free one\n"
    )
    assert processes_using(dev_dir) == []


def test_requested_ports_are_used(dev_dir: Path) -> None:
    nats_port = devservers.free_port()
    pg_port = devservers.free_port(avoid=frozenset({nats_port}))
    record, _ = up_ok(dev_dir, "--nats-port", str(nats_port), "--pg-port", str(pg_port))
    assert record["nats_url"] == f"nats://127.0.0.1:{nats_port}"
    assert record["database_url"] == f"postgresql://postgres@127.0.0.1:{pg_port}/filetrash"


async def test_data_survives_down_and_up(dev_dir: Path) -> None:
    record, _ = up_ok(dev_dir)
    nc = await connect_admin(dev_dir, record["nats_url"])
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="KEEP", subjects=["keep.>"]))
        await js.publish("keep.one", b"still here")
    finally:
        await nc.close()
    conn = await asyncpg.connect(record["database_url"])
    try:
        await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO kept VALUES (1, 'still here')")
    finally:
        await conn.close()

    assert filetrash("down", "--dev-dir", str(dev_dir), cwd=dev_dir.parent).returncode == 0
    again, _ = up_ok(dev_dir)
    assert again["nats_url"] == record["nats_url"], "the recorded port is reused when free"
    assert again["database_url"] == record["database_url"]
    assert again["nats"]["pid"] != record["nats"]["pid"]

    nc = await connect_admin(dev_dir, again["nats_url"])
    try:
        js = nc.jetstream()
        msg = await js.get_last_msg("KEEP", "keep.one")
        assert msg.data == b"still here"
    finally:
        await nc.close()
    conn = await asyncpg.connect(again["database_url"])
    try:
        assert await conn.fetchval("SELECT note FROM kept WHERE id = 1") == "still here"
    finally:
        await conn.close()


async def test_recorded_port_taken_while_down_moves_the_server(
    dev_dir: Path, occupy: Callable[[int], None]
) -> None:
    record, _ = up_ok(dev_dir)
    nc = await connect_admin(dev_dir, record["nats_url"])
    try:
        await nc.jetstream().add_stream(StreamConfig(name="MOVED", subjects=["moved.>"]))
    finally:
        await nc.close()
    assert filetrash("down", "--dev-dir", str(dev_dir), cwd=dev_dir.parent).returncode == 0

    occupy(record["nats"]["port"])
    occupy(devservers.DEFAULT_NATS_PORT)
    again, result = up_ok(dev_dir)
    assert again["nats"]["port"] != record["nats"]["port"]
    assert f"(started; ports {record['nats']['port']}, 4222 in use)" in result.stderr
    nc = await connect_admin(dev_dir, again["nats_url"])
    try:
        info = await nc.jetstream().stream_info("MOVED")
        assert info.config.subjects == ["moved.>"]
    finally:
        await nc.close()


def test_up_restarts_a_crashed_server_only(dev_dir: Path) -> None:
    record, _ = up_ok(dev_dir)
    devservers.terminate(record["nats"]["pid"], timeout=10)
    again, result = up_ok(dev_dir)
    assert again["nats"]["pid"] != record["nats"]["pid"]
    assert again["nats_url"] == record["nats_url"]
    assert again["postgres"]["pid"] == record["postgres"]["pid"]
    assert "nats      pid" in result.stderr and "(started)" in result.stderr
    assert "already running" in result.stderr


def test_dev_dir_can_be_removed_after_down(dev_dir: Path) -> None:
    up_ok(dev_dir)
    assert filetrash("down", "--dev-dir", str(dev_dir), cwd=dev_dir.parent).returncode == 0
    shutil.rmtree(dev_dir)
    record, _ = up_ok(dev_dir)  # a fresh start after the data is gone works too
    assert devservers.process_alive(record["postgres"]["pid"])


def test_test_servers_die_with_a_killed_test_run(tmp_path: Path) -> None:
    """A test run killed hard (SIGKILL, no teardown) leaves no nats-server behind."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.support.servers import NatsServer\n"
        "server = NatsServer().start()\n"
        "print(server.pid, server.workdir, flush=True)\n"
        "time.sleep(600)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    try:
        assert runner.stdout is not None
        pid, workdir = runner.stdout.readline().split()
        nats_pid = int(pid)
        assert devservers.process_alive(nats_pid)
    finally:
        runner.kill()
        runner.wait()
    wait_until(lambda: not devservers.process_alive(nats_pid), what="nats-server to die")
    shutil.rmtree(workdir, ignore_errors=True)
