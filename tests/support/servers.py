"""Real servers for tests: started on free ports in temporary directories, stoppable,
killable and restartable on the same port and data, so fault tests can break them.

Every method is synchronous and returns only once the server is really ready (JetStream
healthy, PostgreSQL answering `SELECT 1`) or really gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, urlsplit, urlunsplit

from handwritten.runtime import devservers


class NatsServer:
    """A nats-server with JetStream on file storage, owned by the test that made it.

    `users` (name → password) or `token` turn on authentication; `extra_config` is appended
    to the configuration file as is.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        token: str | None = None,
        extra_config: str = "",
    ) -> None:
        if users and token:
            raise ValueError("nats-server takes either users or a token, not both")
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="filetrash-nats-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store_dir = self.workdir / "store"
        self.config_path = self.workdir / "nats.conf"
        self.log_path = self.workdir / "nats.log"
        self.users = dict(users or {})
        self.token = token
        self.extra_config = extra_config
        self.port = devservers.free_port()
        self.monitor_port = devservers.free_port(avoid=frozenset({self.port}))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL without credentials (what an unauthenticated client would use)."""
        return f"nats://127.0.0.1:{self.port}"

    def url_with_user(self, user: str) -> str:
        return f"nats://{quote(user, safe='')}:{quote(self.users[user], safe='')}@127.0.0.1:{self.port}"

    def url_with_token(self) -> str:
        assert self.token is not None, "this server was started without a token"
        return f"nats://{quote(self.token, safe='')}@127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _auth_config(self) -> str:
        if self.token is not None:
            return f"authorization {{\n  token: {json.dumps(self.token)}\n}}\n"
        if self.users:
            entries = "\n".join(
                f"    {{user: {json.dumps(u)}, password: {json.dumps(p)}}}"
                for u, p in self.users.items()
            )
            return f"authorization {{\n  users: [\n{entries}\n  ]\n}}\n"
        return ""

    def start(self) -> NatsServer:
        """Start (again) on the same ports and store directory; blocks until JetStream is ready."""
        if self.running:
            return self
        self.config_path.write_text(
            devservers.render_nats_config(
                port=self.port,
                monitor_port=self.monitor_port,
                store_dir=self.store_dir,
                server_name=f"filetrash-test-{self.port}",
                extra=self._auth_config() + self.extra_config,
            ),
            encoding="utf-8",
        )
        # Tied to the main thread only: a worker thread's exit would kill the server too.
        in_main_thread = threading.current_thread() is threading.main_thread()
        process = devservers.spawn_nats(
            self.config_path, self.log_path, die_with_parent=in_main_thread
        )
        self._process = process
        try:
            devservers.wait_nats_ready(
                self.port,
                self.monitor_port,
                alive=lambda: process.poll() is None,
                log_path=self.log_path,
            )
        except devservers.DevServerError:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean shutdown that flushes JetStream) and wait for the exit."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with whatever JetStream had not flushed lost."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill the server and remove its directory (when we created it)."""
        self.kill()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PostgresServer:
    """PostgreSQL for tests: the one `DATABASE_URL` names, else a pgserver cluster of our own
    in a temporary directory, listening on a free TCP port."""

    # Durability against an OS crash is useless in tests; a killed server loses nothing anyway.
    TEST_SETTINGS: Mapping[str, str] = {"fsync": "off", "full_page_writes": "off"}

    def __init__(self, external_url: str | None = None) -> None:
        self.external_url = external_url
        self.workdir: Path | None = None
        self.port: int | None = None

    @classmethod
    def from_env(cls) -> PostgresServer:
        return cls(os.environ.get("DATABASE_URL") or None)

    @property
    def can_restart(self) -> bool:
        """False for an external server: tests that stop or restart PostgreSQL skip then."""
        return self.external_url is None

    @property
    def data_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "postgres.log"

    @property
    def url(self) -> str:
        """An admin URL (the `postgres` database, or the external URL)."""
        if self.external_url is not None:
            return self.external_url
        assert self.port is not None, "start() the server first"
        return devservers.pg_url(self.port, "postgres")

    def url_for(self, database: str) -> str:
        """The URL of another database on the same server."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + quote(database, safe="")))

    def start(self) -> PostgresServer:
        """Start (again) on the same port and data directory; blocks until it answers."""
        if self.external_url is not None:
            return self
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="filetrash-pg-"))
            self.port = devservers.free_port()
        assert self.port is not None
        if devservers.pg_running(self.data_dir) is not None:
            return self
        devservers.pg_prepare(self.data_dir, self.log_path, sync=False)
        postmaster = devservers.pg_start(
            self.data_dir, self.port, self.log_path, settings=self.TEST_SETTINGS
        )
        devservers.wait_pg_ready(
            self.port,
            alive=lambda: devservers.process_alive(postmaster.pid),
            log_path=self.log_path,
        )
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while our own server runs."""
        if self.workdir is None:
            return None
        postmaster = devservers.pg_running(self.data_dir)
        return postmaster.pid if postmaster else None

    def _require_own(self, what: str) -> None:
        if self.external_url is not None:
            raise RuntimeError(f"cannot {what} the external PostgreSQL named by DATABASE_URL")

    def stop(self) -> None:
        """A clean shutdown (`pg_ctl stop -m fast`), waiting until the server is gone."""
        self._require_own("stop")
        if self.workdir is not None:
            devservers.pg_stop(self.data_dir, mode="fast")

    def kill(self) -> None:
        """An immediate shutdown: no checkpoint, crash recovery at the next start."""
        self._require_own("kill")
        if self.workdir is not None:
            devservers.pg_stop(self.data_dir, mode="immediate")

    def restart(self) -> PostgresServer:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        if self.workdir is None:
            return ""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop our own server and remove its directory; an external one is left alone."""
        if self.external_url is not None or self.workdir is None:
            return
        try:
            devservers.pg_stop(self.data_dir, mode="immediate")
        except devservers.DevServerError:
            postmaster = devservers.pg_running(self.data_dir)
            if postmaster is not None:
                devservers.terminate(postmaster.pid, timeout=5.0)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
