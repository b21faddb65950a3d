"""A Ray cluster on this machine, a head and worker nodes as separate
processes, for the cluster test, the cluster benchmark and trying
``adaptive cluster`` (docs/cluster.md).

Each node is its own ``ray start --block`` process (its own GCS or raylet,
its own ``--temp-dir``, its own process group), started with small
resources (``--num-cpus``, ``--object-store-memory``, no dashboard) and
free ports where Ray has fixed defaults. :meth:`LocalCluster.close` stops
them by their process groups (SIGTERM, then SIGKILL after a grace period;
Ray drains a node for up to 30 s on SIGTERM otherwise) and then every
process still naming the cluster's temp folder: nothing is left running,
also when a test fails. Nothing here imports Ray; it runs the ``ray``
command installed beside this Python (``pip install '.[cluster]'``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OBJECT_STORE_BYTES = 80 * 1024 * 1024
"""Each node's object store (Ray's minimum is 75 MiB); the servers pass no large objects through it."""

START_TIMEOUT_S = 90.0
"""Seconds to wait for a node to say it started (16 s for a head on a loaded 2-core machine)."""

STOP_GRACE_S = 3.0
"""Seconds between SIGTERM and SIGKILL of a node's processes."""


def ray_command() -> Path:
    """The ``ray`` command beside this Python.

    Raises:
        FileNotFoundError: Ray is not installed here (``pip install '.[cluster]'``).
    """
    path = Path(sys.executable).parent / "ray"
    if not path.exists():
        found = shutil.which("ray")
        if found is None:
            raise FileNotFoundError(f"no 'ray' command beside {sys.executable}: pip install '.[cluster]'")
        path = Path(found)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalCluster:
    """A head and ``workers`` worker nodes on this machine (separate processes).

    Args:
        workers: worker nodes besides the head (>= 0).
        num_cpus: logical CPUs each node offers Ray (the node actors take none).
        log_dir: where each node's ``ray start`` output goes (default: the temp folder).

    Attributes:
        address: the head's ``HOST:PORT`` (for ``ray start --address``,
            ``ray.init(address=...)``, ``adaptive cluster --address``).
        temp_dir: the cluster's temp folder (each node's ``--temp-dir`` under it).
        processes: each node's ``ray start`` process (the head first).

    Raises:
        FileNotFoundError: no ``ray`` command.
        RuntimeError: a node did not start within :data:`START_TIMEOUT_S` (its output's end in the message);
            what was started is stopped first.
    """

    def __init__(self, workers: int = 1, num_cpus: int = 1, log_dir: Path | None = None) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="adaptive-ray-"))
        self.log_dir = log_dir or self.temp_dir
        self.processes: list[subprocess.Popen] = []
        self._logs: list[Path] = []
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        common = ["--num-cpus", str(num_cpus), "--object-store-memory", str(OBJECT_STORE_BYTES),
                  "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block",
                  "--dashboard-agent-listen-port", str(_free_port()), "--metrics-export-port", str(_free_port()),
                  "--runtime-env-agent-port", str(_free_port())]
        try:
            self._start("head", [str(ray_command()), "start", "--head", "--port", str(port), "--include-dashboard",
                                 "false", "--ray-client-server-port", str(_free_port()), "--dashboard-port",
                                 str(_free_port()), "--temp-dir", str(self.temp_dir / "head"), *common], env)
            for n in range(workers):
                common = [*common[:-6], "--dashboard-agent-listen-port", str(_free_port()), "--metrics-export-port",
                          str(_free_port()), "--runtime-env-agent-port", str(_free_port())]
                self._start(f"worker{n}", [str(ray_command()), "start", "--address", self.address,
                                           "--temp-dir", str(self.temp_dir / f"worker{n}"), *common], env)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log_path = self.log_dir / f"ray-{name}.log"
        self._logs.append(log_path)
        with open(log_path, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if "Ray runtime started" in text:
                return
            if process.poll() is not None:
                break
            time.sleep(0.2)
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the Ray {name} node did not start within {START_TIMEOUT_S:g} s "
                           f"(exit status {process.poll()}); its output ends:\n{tail}")

    def leftover_pids(self) -> list[int]:
        """Processes still running in the nodes' process groups or naming the temp folder (none after :meth:`close`)."""
        groups = {process.pid for process in self.processes}
        marker = str(self.temp_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            state, pgid = fields[0], int(fields[2])
            if state == "Z":  # exited, waiting for its parent to read its status: not running
                continue
            if pgid in groups or marker in cmdline:
                found.append(int(entry.name))
        return found

    def close(self) -> None:
        """Stop every node's processes (SIGTERM to each process group, SIGKILL
        after :data:`STOP_GRACE_S`, then SIGKILL to any process still naming
        the temp folder) and remove the temp folder. Safe to call twice."""
        for process in reversed(self.processes):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.1)
        for process in self.processes:
            _signal_group(process.pid, signal.SIGKILL)
        for pid in self.leftover_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of every node's ``ray start`` output (for a failure's message)."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
                         for path in self._logs if path.exists())

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
