"""A 3-node nats-server cluster on loopback for fault tests: distinct client, cluster and
monitoring ports, one server_name and one store directory per node, every node routed to the
others. Nodes can be killed, stopped and started again on the same ports and data.

`sync_always` puts `sync_interval: always` in each node's JetStream block: fsync before every
acknowledgement, instead of the default of every two minutes.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from handwritten.runtime import devservers

HOST = "127.0.0.1"
CLUSTER_NAME = "filetrash-faults"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _quote(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid quoted string in nats-server's format


class ClusterNode:
    """One nats-server of the cluster; `start` returns once its JetStream is healthy."""

    def __init__(self, name: str, workdir: Path, ports: dict[str, int]) -> None:
        self.name = name
        self.workdir = workdir
        self.port = ports["client"]
        self.cluster_port = ports["cluster"]
        self.monitor_port = ports["monitor"]
        self.store_dir = workdir / "store"
        self.config_path = workdir / "nats.conf"
        self.log_path = workdir / "nats.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def write_config(self, routes: list[int], *, sync_always: bool) -> None:
        jetstream = [f"  store_dir: {_quote(str(self.store_dir))}"]
        if sync_always:
            jetstream.append("  sync_interval: always")
        self.config_path.write_text(
            "\n".join(
                [
                    f"server_name: {_quote(self.name)}",
                    f"listen: {_quote(f'{HOST}:{self.port}')}",
                    f"http: {_quote(f'{HOST}:{self.monitor_port}')}",
                    "jetstream {",
                    *jetstream,
                    "}",
                    "cluster {",
                    f"  name: {_quote(CLUSTER_NAME)}",
                    f"  listen: {_quote(f'{HOST}:{self.cluster_port}')}",
                    "  routes: [",
                    *(f"    {_quote(f'nats-route://{HOST}:{port}')}" for port in routes),
                    "  ]",
                    "}",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def spawn(self) -> None:
        """Start the process without waiting (a node alone never becomes healthy)."""
        if self.running:
            return
        in_main_thread = threading.current_thread() is threading.main_thread()
        self._process = devservers.spawn_nats(
            self.config_path, self.log_path, die_with_parent=in_main_thread
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        process = self._process
        assert process is not None, f"{self.name} was never started"
        devservers.wait_nats_ready(
            self.port,
            self.monitor_port,
            alive=lambda: process.poll() is None,
            log_path=self.log_path,
            timeout=timeout,
        )

    def start(self) -> ClusterNode:
        self.spawn()
        self.wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL: the process dies at once (what the OS had already written survives)."""
        self._end(signal.SIGKILL, 10.0)

    def stop(self, timeout: float = 30.0) -> None:
        self._end(signal.SIGTERM, timeout)

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

    def varz(self, path: str = "jsz") -> dict[str, Any]:
        with _no_proxy.open(f"http://{HOST}:{self.monitor_port}/{path}", timeout=2.0) as reply:
            data: dict[str, Any] = json.loads(reply.read())
            return data

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


class NatsCluster:
    """`size` clustered nats-servers with JetStream, in a temporary directory of their own."""

    def __init__(self, size: int = 3, *, sync_always: bool = False) -> None:
        if size < 3:
            raise ValueError("a JetStream cluster needs at least 3 nodes for a quorum")
        self.sync_always = sync_always
        self.workdir = Path(tempfile.mkdtemp(prefix="filetrash-cluster-"))
        taken: set[int] = set()

        def port() -> int:
            chosen = devservers.free_port(avoid=frozenset(taken))
            taken.add(chosen)
            return chosen

        self.nodes = [
            ClusterNode(
                f"n{index}",
                self.workdir / f"n{index}",
                {"client": port(), "cluster": port(), "monitor": port()},
            )
            for index in range(1, size + 1)
        ]
        for node in self.nodes:
            node.workdir.mkdir(parents=True)
            others = [n.cluster_port for n in self.nodes if n is not node]
            node.write_config(others, sync_always=sync_always)

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as NATS_URL takes them."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start every node; return once each is healthy and all agree on a meta leader
        whose followers are current (before that, API requests may go unanswered)."""
        for node in self.nodes:
            node.spawn()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_ready(max(1.0, deadline - time.monotonic()))
        while not self.meta_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no settled JetStream meta group after {timeout:.0f}s")
            time.sleep(0.1)
        return self

    def meta_ready(self) -> bool:
        leaders = set()
        for node in self.nodes:
            try:
                meta = node.varz("jsz").get("meta_cluster") or {}
            except OSError:
                return False
            replicas = meta.get("replicas") or []
            if not meta.get("leader") or len(replicas) != len(self.nodes) - 1:
                return False
            if node.name == meta["leader"] and not all(r.get("current") for r in replicas):
                return False
            leaders.add(meta["leader"])
        return len(leaders) == 1

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"----- {n.name} -----\n{n.log_text()[-4000:]}" for n in self.nodes)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
