"""Server resolution, URL redaction and port choice: no servers needed."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from handwritten.cli import main
from handwritten.runtime import devservers
from handwritten.runtime.servers import (
    ServersNotConfigured,
    ServerUrls,
    redact,
    resolve_servers,
    scrub,
)

DEV_NATS = "nats://127.0.0.1:40001"
DEV_DB = "postgresql://postgres@127.0.0.1:40002/filetrash"
ENV_NATS = "nats://nats.example:4222"
ENV_DB = "postgresql://app:pw@db.example:5432/filetrash"


def write_record(dev_dir: Path, *, running: bool = True) -> None:
    dev_dir.mkdir(parents=True, exist_ok=True)
    record = {"nats_url": DEV_NATS, "database_url": DEV_DB, "running": running}
    (dev_dir / "servers.json").write_text(json.dumps(record))


class TestResolveServers:
    def test_environment_wins_over_dev_servers(self, tmp_path: Path) -> None:
        write_record(tmp_path)
        urls = resolve_servers(tmp_path, environ={"NATS_URL": ENV_NATS, "DATABASE_URL": ENV_DB})
        assert urls == ServerUrls(ENV_NATS, ENV_DB, "env")

    def test_environment_alone_needs_no_dev_dir(self, tmp_path: Path) -> None:
        urls = resolve_servers(
            tmp_path / "missing", environ={"NATS_URL": ENV_NATS, "DATABASE_URL": ENV_DB}
        )
        assert urls.source == "env"

    def test_dev_servers_when_environment_is_empty(self, tmp_path: Path) -> None:
        write_record(tmp_path)
        assert resolve_servers(tmp_path, environ={}) == ServerUrls(DEV_NATS, DEV_DB, "dev")

    def test_blank_variables_count_as_unset(self, tmp_path: Path) -> None:
        write_record(tmp_path)
        urls = resolve_servers(tmp_path, environ={"NATS_URL": " ", "DATABASE_URL": ""})
        assert urls == ServerUrls(DEV_NATS, DEV_DB, "dev")

    @pytest.mark.parametrize(
        ("environ", "expected"),
        [
            ({"NATS_URL": ENV_NATS}, ServerUrls(ENV_NATS, DEV_DB, "mixed")),
            ({"DATABASE_URL": ENV_DB}, ServerUrls(DEV_NATS, ENV_DB, "mixed")),
        ],
    )
    def test_each_url_is_resolved_on_its_own(
        self, tmp_path: Path, environ: dict[str, str], expected: ServerUrls
    ) -> None:
        write_record(tmp_path)
        assert resolve_servers(tmp_path, environ=environ) == expected

    def test_nothing_configured_says_what_to_do(self, tmp_path: Path) -> None:
        with pytest.raises(ServersNotConfigured) as error:
            resolve_servers(tmp_path, environ={})
        message = str(error.value)
        assert "filetrash up" in message
        assert "NATS_URL" in message and "DATABASE_URL" in message

    def test_one_variable_without_dev_servers_names_the_missing_one(self, tmp_path: Path) -> None:
        with pytest.raises(ServersNotConfigured, match=r"^DATABASE_URL not set"):
            resolve_servers(tmp_path, environ={"NATS_URL": ENV_NATS})

    def test_stopped_dev_servers_are_not_used(self, tmp_path: Path) -> None:
        write_record(tmp_path, running=False)
        with pytest.raises(ServersNotConfigured, match="stopped: run `filetrash up`"):
            resolve_servers(tmp_path, environ={})

    def test_corrupt_record_is_not_used(self, tmp_path: Path) -> None:
        (tmp_path / "servers.json").write_text("{not json")
        with pytest.raises(ServersNotConfigured):
            resolve_servers(tmp_path, environ={})

    def test_defaults_to_process_environment_and_cwd(
        self, tmp_path: Path, clean_env: pytest.MonkeyPatch
    ) -> None:
        write_record(tmp_path / ".dev")
        clean_env.chdir(tmp_path)
        clean_env.setenv("DATABASE_URL", ENV_DB)
        assert resolve_servers() == ServerUrls(DEV_NATS, ENV_DB, "mixed")

    def test_error_never_shows_a_secret(self, tmp_path: Path) -> None:
        with pytest.raises(ServersNotConfigured) as error:
            resolve_servers(tmp_path, environ={"DATABASE_URL": ENV_DB})
        assert "pw" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://alice:s3cret@host:4222", "nats://alice:***@host:4222"),
        ("nats://t0ken@host:4222", "nats://***@host:4222"),
        ("tls://t0ken@host", "tls://***@host"),
        ("nats://a:p1@h1:4222,nats://b:p2@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
        ("postgresql://app:pw@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("postgresql://app@db:5432/x", "postgresql://app@db:5432/x"),
        ("postgresql://postgres:@db/x", "postgresql://postgres:@db/x"),
        (
            "postgresql://db/x?user=app&password=pw&sslmode=require",
            "postgresql://db/x?user=app&password=***&sslmode=require",
        ),
        ("postgresql://u:p%40ss@h1:5432,h2:5432/x", "postgresql://u:***@h1:5432,h2:5432/x"),
        ("nats://us:er:pa:ss@host", "nats://us:***@host"),
        ("nats://user:p@ss@host", "nats://user:***@host"),
        ("nats://[::1", "nats://[::1"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_redact_unparseable_url_still_hides_userinfo() -> None:
    assert redact("nats://user:s3cret@[::1") == "nats://***@[::1"


def test_scrub_removes_raw_and_decoded_secrets() -> None:
    url = "postgresql://app:p%40ss@db/x"
    assert scrub("auth failed for p@ss and p%40ss", url) == "auth failed for *** and ***"
    assert scrub("token t0k is wrong", "nats://t0k@host") == "token *** is wrong"


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestChoosePort:
    def test_first_free_preference_wins(self) -> None:
        free = devservers.free_port()
        assert devservers.choose_port(what="x", requested=None, preferred=(None, free)) == (
            free,
            "",
        )

    def test_taken_preference_is_skipped_and_reported(self, occupied_port: int) -> None:
        port, note = devservers.choose_port(what="x", requested=None, preferred=(occupied_port,))
        assert port != occupied_port
        assert devservers.port_is_free(port)
        assert note == f"; port {occupied_port} in use"

    def test_taken_requested_port_is_an_error(self, occupied_port: int) -> None:
        with pytest.raises(devservers.PortUnavailable, match=f"port {occupied_port} .* in use"):
            devservers.choose_port(what="NATS", requested=occupied_port, preferred=())

    def test_avoided_ports_are_not_chosen(self) -> None:
        free = devservers.free_port()
        port, _ = devservers.choose_port(
            what="x", requested=None, preferred=(free,), avoid=frozenset({free})
        )
        assert port != free


def test_nats_config_is_quoted_and_complete(tmp_path: Path) -> None:
    text = devservers.render_nats_config(
        port=1234, monitor_port=5678, store_dir=tmp_path / 'we"ird', server_name="n"
    )
    assert 'listen: "127.0.0.1:1234"' in text
    assert 'http: "127.0.0.1:5678"' in text
    assert json.dumps(str(tmp_path / 'we"ird')) in text


def test_nats_server_binary_comes_from_this_environment() -> None:
    binary = devservers.nats_server_binary()
    assert binary.parent != Path("/usr/sbin")
    assert binary.is_file()


class TestCli:
    def test_status_of_nothing_exits_3(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["status", "--dev-dir", str(tmp_path / ".dev")]) == 3
        out = capsys.readouterr().out
        assert "nats" in out and "postgres" in out and "stopped" in out

    def test_down_of_nothing_is_fine(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["down", "--dev-dir", str(tmp_path / ".dev")]) == 0
        assert "not running" in capsys.readouterr().out

    def test_port_in_use_is_one_line_and_exit_2(
        self, tmp_path: Path, occupied_port: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["up", "--dev-dir", str(tmp_path / ".dev"), "--nats-port", str(occupied_port)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("filetrash: error: NATS port") and err.count("\n") == 1
        assert "Traceback" not in err

    def test_unknown_command_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit) as exit_:
            main(["frobnicate"])
        assert exit_.value.code == 2
