"""Fixtures with real servers, all started by the tests themselves and always cleaned up.

- `nats_server`: a fresh nats-server (JetStream, file storage) per test; `.stop()`, `.kill()`,
  `.start()` and `.restart()` keep its port and store directory.
- `nats_server_factory`: makes more servers, e.g. with `users=` or `token=` authentication.
- `pg_server`: one PostgreSQL for the session (`DATABASE_URL` if set, else a pgserver cluster).
- `restartable_pg_server`: `pg_server` for tests that stop it; skips for an external server,
  and starts it again afterwards if the test left it stopped.
- `database_url`: a new, empty database on `pg_server` for one test, dropped afterwards.
- `clean_env`: no NATS_URL, DATABASE_URL, NATS_CREDS or NATS_CA in the environment.
- `server_env`: NATS_URL and DATABASE_URL pointing at this test's `nats_server` and database.
- `dev_dir`: an empty directory for `filetrash up`; whatever runs there is stopped afterwards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `tests.support` is not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from handwritten.runtime import devservers  # noqa: E402
from handwritten.runtime.servers import ServerUrls, read_dev_record  # noqa: E402
from tests.support.servers import NatsServer, PostgresServer  # noqa: E402

SERVER_ENV_VARS = ("NATS_URL", "DATABASE_URL", "NATS_CREDS", "NATS_CA")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _print_log(title: str, text: str, lines: int = 60) -> None:
    tail = "\n".join(text.splitlines()[-lines:])
    print(f"\n----- {title} (last {lines} lines) -----\n{tail}")


@pytest.fixture
def nats_server_factory(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., NatsServer]]:
    servers: list[NatsServer] = []

    def make(**options: Any) -> NatsServer:
        server = NatsServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        if _failed(request):
            _print_log(f"nats-server {server.url} log", server.log_text())
        server.close()


@pytest.fixture
def nats_server(nats_server_factory: Callable[..., NatsServer]) -> NatsServer:
    return nats_server_factory()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.from_env()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def restartable_pg_server(
    pg_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[PostgresServer]:
    if not pg_server.can_restart:
        pytest.skip("PostgreSQL comes from DATABASE_URL: this test must stop it, and cannot")
    yield pg_server
    if _failed(request):
        _print_log("PostgreSQL log", pg_server.log_text())
    pg_server.start()


@pytest.fixture
async def database_url(pg_server: PostgresServer) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield pg_server.url_for(name)
    if pg_server.can_restart:
        pg_server.start()  # in case the test stopped it
    admin = await asyncpg.connect(pg_server.url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SERVER_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def server_env(
    clean_env: pytest.MonkeyPatch, nats_server: NatsServer, database_url: str
) -> ServerUrls:
    clean_env.setenv("NATS_URL", nats_server.url)
    clean_env.setenv("DATABASE_URL", database_url)
    return ServerUrls(nats_server.url, database_url, "env")


@pytest.fixture
def dev_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="filetrash-dev-"))
    path = root / ".dev"
    try:
        yield path
    finally:
        if _failed(request):
            for log in sorted((path / "logs").glob("*.log")):
                _print_log(str(log), log.read_text(errors="replace"))
        try:
            devservers.down(path)
        finally:
            _kill_leftovers(path)
            shutil.rmtree(root, ignore_errors=True)


def _kill_leftovers(path: Path) -> None:
    """Last resort when `down` failed: kill whatever the dev directory's record names."""
    record = read_dev_record(path) or {}
    for section in ("nats", "postgres"):
        pid = (record.get(section) or {}).get("pid")
        if isinstance(pid, int) and devservers.process_alive(pid):
            cmdline = devservers.process_cmdline(pid) or []
            if any(str(path) in arg for arg in cmdline):
                devservers.terminate(pid, timeout=5.0)
