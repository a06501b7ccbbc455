"""connect_nats and connect_db against real servers: credentials, TLS, clear errors, and no
secret in any message or log line."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from handwritten.runtime import devservers
from handwritten.runtime.connect import (
    DatabaseUnavailable,
    NatsUnavailable,
    connect_db,
    connect_nats,
)
from tests.support.servers import NatsServer, PostgresServer

pytestmark = pytest.mark.integration

PASSWORD = "pw-Zq81-secret"
TOKEN = "tok-Xy42-secret"


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_connects_and_uses_jetstream(nats_server: NatsServer, clean_env: object) -> None:
    nc = await connect_nats(nats_server.url, name="test-plain")
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
        assert nc.options["max_reconnect_attempts"] == -1
        assert nc.options["name"] == "test-plain"
    finally:
        await nc.close()


async def test_no_server_is_unavailable_quickly(clean_env: object) -> None:
    port = devservers.free_port()
    started = time.monotonic()
    with pytest.raises(NatsUnavailable) as error:
        await connect_nats(f"nats://alice:{PASSWORD}@127.0.0.1:{port}", name="test")
    assert time.monotonic() - started < 15
    message = str(error.value)
    assert message.startswith(f"cannot connect to NATS at nats://alice:***@127.0.0.1:{port}: ")
    assert "connection refused" in message
    assert PASSWORD not in message
    assert error.value.__cause__ is None


class TestAuthentication:
    async def test_without_credentials_is_refused_clearly(
        self, nats_server_factory: Callable[..., NatsServer], clean_env: object
    ) -> None:
        server = nats_server_factory(users={"alice": PASSWORD})
        with pytest.raises(NatsUnavailable) as error:
            await connect_nats(server.url, name="test")
        message = str(error.value)
        assert "authorization violation" in message
        assert "NATS_URL" in message and "NATS_CREDS" in message
        assert PASSWORD not in message

    async def test_wrong_password_is_refused_without_showing_it(
        self, nats_server_factory: Callable[..., NatsServer], clean_env: object
    ) -> None:
        server = nats_server_factory(users={"alice": PASSWORD})
        with pytest.raises(NatsUnavailable) as error:
            await connect_nats(f"nats://alice:wrong-{PASSWORD}@127.0.0.1:{server.port}", name="t")
        assert f"nats://alice:***@127.0.0.1:{server.port}" in str(error.value)
        assert "authorization violation" in str(error.value)
        assert PASSWORD not in str(error.value)

    async def test_user_and_password_in_url(
        self, nats_server_factory: Callable[..., NatsServer], clean_env: object
    ) -> None:
        server = nats_server_factory(users={"alice": PASSWORD})
        nc = await connect_nats(server.url_with_user("alice"), name="test-user")
        try:
            assert (await nc.jetstream().account_info()).limits is not None
        finally:
            await nc.close()

    async def test_token_in_url(
        self, nats_server_factory: Callable[..., NatsServer], clean_env: object
    ) -> None:
        server = nats_server_factory(token=TOKEN)
        nc = await connect_nats(server.url_with_token(), name="test-token")
        try:
            assert (await nc.jetstream().account_info()).limits is not None
        finally:
            await nc.close()

    async def test_wrong_token_is_refused_without_showing_it(
        self, nats_server_factory: Callable[..., NatsServer], clean_env: object
    ) -> None:
        server = nats_server_factory(token=TOKEN)
        with pytest.raises(NatsUnavailable) as error:
            await connect_nats(f"nats://{TOKEN}-wrong@127.0.0.1:{server.port}", name="t")
        assert f"nats://***@127.0.0.1:{server.port}" in str(error.value)
        assert TOKEN not in str(error.value)

    async def test_missing_creds_file_is_named(
        self, nats_server: NatsServer, clean_env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        clean_env.setenv("NATS_CREDS", str(tmp_path / "nope.creds"))
        with pytest.raises(NatsUnavailable, match=r"NATS_CREDS names .*nope\.creds"):
            await connect_nats(nats_server.url, name="t")


async def test_reconnects_forever_and_logs_without_secrets(
    nats_server_factory: Callable[..., NatsServer],
    clean_env: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = nats_server_factory(users={"alice": PASSWORD})
    caplog.set_level(logging.INFO, logger="handwritten.runtime.connect")
    nc = await connect_nats(server.url_with_user("alice"), name="test-reconnect")
    try:
        server.kill()
        await wait_for(lambda: not nc.is_connected, what="the client to notice")
        # More failed attempts than the first connection is allowed: it must keep trying.
        await wait_for(
            lambda: (
                sum(
                    "Connect call failed" in r.getMessage() or "refused" in r.getMessage()
                    for r in caplog.records
                )
                > 5
            ),
            timeout=20,
            what="several failed reconnect attempts",
        )
        assert not nc.is_closed
        server.start()
        await wait_for(lambda: nc.is_connected, timeout=20, what="the reconnection")
        assert (await nc.jetstream().account_info()).limits is not None
    finally:
        await nc.close()
    text = caplog.text
    assert "disconnected" in text and "reconnected to" in text
    assert "alice:***@" in text
    assert PASSWORD not in text


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    files = {name: tmp_path / name for name in ("ca.key", "ca.pem", "key.pem", "cert.pem")}
    csr, ext = tmp_path / "server.csr", tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(files["ca.key"]),
        "-out",
        str(files["ca.pem"]),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(files["key.pem"]),
        "-out",
        str(csr),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(files["ca.pem"]),
        "-CAkey",
        str(files["ca.key"]),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        str(ext),
        "-out",
        str(files["cert.pem"]),
    )
    return files


class TestTls:
    @pytest.fixture
    def tls_server(
        self, nats_server_factory: Callable[..., NatsServer], tls_files: dict[str, Path]
    ) -> NatsServer:
        return nats_server_factory(
            extra_config=(
                "tls {\n"
                f'  cert_file: "{tls_files["cert.pem"]}"\n'
                f'  key_file: "{tls_files["key.pem"]}"\n'
                "}\n"
            )
        )

    async def test_tls_url_with_nats_ca(
        self, tls_server: NatsServer, tls_files: dict[str, Path], clean_env: pytest.MonkeyPatch
    ) -> None:
        clean_env.setenv("NATS_CA", str(tls_files["ca.pem"]))
        nc = await connect_nats(f"tls://127.0.0.1:{tls_server.port}", name="test-tls")
        try:
            assert (await nc.jetstream().account_info()).limits is not None
            assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        finally:
            await nc.close()

    async def test_untrusted_certificate_is_unavailable(
        self, tls_server: NatsServer, clean_env: object
    ) -> None:
        with pytest.raises(NatsUnavailable, match=r"(?i)certificate|tls"):
            await connect_nats(f"tls://127.0.0.1:{tls_server.port}", name="test-tls")

    async def test_missing_ca_file_is_named(
        self, nats_server: NatsServer, clean_env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        clean_env.setenv("NATS_CA", str(tmp_path / "missing.pem"))
        with pytest.raises(NatsUnavailable, match=r"NATS_CA names .*missing\.pem"):
            await connect_nats(nats_server.url, name="t")


class TestDatabase:
    async def test_pool_works(self, database_url: str) -> None:
        pool = await connect_db(database_url)
        try:
            assert await pool.fetchval("SELECT 1") == 1
        finally:
            await pool.close()

    async def test_database_fixture_is_empty_and_private(self, database_url: str) -> None:
        pool = await connect_db(database_url)
        try:
            tables = await pool.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            )
            assert tables == 0
            await pool.execute("CREATE TABLE only_here (id int)")
        finally:
            await pool.close()

    async def test_no_server_is_unavailable(self) -> None:
        port = devservers.free_port()
        url = f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/filetrash"
        with pytest.raises(DatabaseUnavailable) as error:
            await connect_db(url)
        message = str(error.value)
        assert message.startswith(
            f"cannot connect to PostgreSQL at postgresql://app:***@127.0.0.1:{port}/"
        )
        assert "connection refused" in message
        assert PASSWORD not in message

    async def test_missing_database_is_named(self, pg_server: PostgresServer) -> None:
        with pytest.raises(DatabaseUnavailable, match='"no_such_db" does not exist'):
            await connect_db(pg_server.url_for("no_such_db"))

    async def test_stop_and_start_keep_port_and_data(
        self, restartable_pg_server: PostgresServer, database_url: str
    ) -> None:
        pool = await connect_db(database_url)
        try:
            await pool.execute("CREATE TABLE kept (id int)")
        finally:
            await pool.close()
        port = restartable_pg_server.port
        restartable_pg_server.stop()
        assert restartable_pg_server.pid is None
        with pytest.raises(DatabaseUnavailable, match="connection refused"):
            await connect_db(database_url)
        restartable_pg_server.start()
        assert restartable_pg_server.port == port
        pool = await connect_db(database_url)
        try:
            assert await pool.fetchval("SELECT count(*) FROM kept") == 0
        finally:
            await pool.close()


def test_nats_server_fixture_restarts_on_same_port_and_store(nats_server: NatsServer) -> None:
    port, store = nats_server.port, nats_server.store_dir
    first_pid = nats_server.pid
    nats_server.restart()
    assert (nats_server.port, nats_server.store_dir) == (port, store)
    assert nats_server.pid not in (None, first_pid)
    nats_server.kill()
    assert not nats_server.running and devservers.port_is_free(port)
    nats_server.start()
    assert devservers.nats_healthy(port, nats_server.monitor_port)
