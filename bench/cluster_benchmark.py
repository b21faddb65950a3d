"""Sessions on a local Ray cluster (docs/cluster.md): how the directory
places them across nodes, and how long a client waits from its hello to its
first audio block when every hello goes to one node.

A head and ``--workers`` worker nodes start as separate ``ray start``
processes (app/local_cluster.py); ``adaptive cluster`` serves on each with
``--max-sessions``; ``--sessions`` clients each say hello with session
``new`` to the first node, follow the redirect when there is one, open their
session's TCP audio and read its first block, one after another. Each node's
server process is then measured (CPU time over ``--hold-s`` seconds of
playing, RSS).

    .venv/bin/python bench/cluster_benchmark.py               # print the figures
    .venv/bin/python bench/cluster_benchmark.py --write-docs  # and rewrite its section of docs/benchmarks.md

Needs Ray (``pip install '.[cluster]'``). Takes about a minute and a half.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.local_cluster import LocalCluster  # noqa: E402
from bench.docs_section import machine_facts, publish  # noqa: E402
from bridge.audio import read_tcp_blocks  # noqa: E402
from bridge.client import AdaptiveClient  # noqa: E402

TITLE = "## Sessions on a Ray cluster"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def node_processes() -> dict[int, str]:
    """pid -> command line of every Ray node actor process (``ray::SessionNode``) running now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("ray::SessionNode"):
            found[int(entry.name)] = cmdline
    return found


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head (default 1)")
    parser.add_argument("--sessions", type=int, default=6, help="sessions to place (default 6)")
    parser.add_argument("--max-sessions", type=int, default=4, help="each node's --max-sessions (default 4)")
    parser.add_argument("--hold-s", type=float, default=20.0, help="seconds of playing to measure CPU over")
    parser.add_argument("--write-docs", action="store_true", help="rewrite its section of docs/benchmarks.md")
    parser.add_argument("--load", default="", help="what else ran on the machine (published with the figures)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="adaptive-cluster-bench-"))
    endpoints_file = work / "nodes.json"
    started = time.monotonic()
    cluster = LocalCluster(workers=args.workers, num_cpus=1, log_dir=work)
    cluster_s = time.monotonic() - started
    driver = None
    clients, sockets = [], []
    try:
        command = [sys.executable, "-m", "app.cli", "cluster", "--address", cluster.address, "--endpoints-file",
                   str(endpoints_file), "--osc-port", "0", "--audio-tcp-port", "0", "--zmq-audio-port", "0",
                   "--zmq-control-port", "0", "--zmq-events-port", "0", "--generator", "rule_based",
                   "--realtime-priority", "0", "--max-sessions", str(args.max_sessions)]
        with open(work / "driver.log", "wb") as out:
            driver = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if endpoints_file.exists() and len(json.loads(endpoints_file.read_text())) == args.workers + 1:
                break
            if driver.poll() is not None:
                raise SystemExit("adaptive cluster stopped:\n" + (work / "driver.log").read_text()[-3000:])
            time.sleep(0.2)
        else:
            raise SystemExit("the nodes did not serve in 120 s:\n" + (work / "driver.log").read_text()[-3000:])
        serving_s = time.monotonic() - started
        nodes = json.loads(endpoints_file.read_text())
        by_port = {values["osc_port"]: name for name, values in nodes.items()}
        first = next(iter(nodes.values()))
        rows = []
        for n in range(args.sessions):
            hello_s = time.monotonic()
            client = AdaptiveClient(first["host"], first["osc_port"], session="new", client_name=f"bench-{n}")
            clients.append(client)
            try:
                welcome = client.hello(timeout=30.0)
            except PermissionError as error:
                rows.append({"n": n, "refused": str(error)})
                continue
            welcome_s = time.monotonic() - hello_s
            audio = client.connect_audio(timeout=5.0)
            sockets.append(audio)
            audio.settimeout(15.0)
            next(read_tcp_blocks(audio))
            rows.append({"n": n, "node": by_port[client.port], "redirected": client.redirected_from is not None,
                         "welcome_ms": welcome_s * 1000, "first_audio_ms": (time.monotonic() - hello_s) * 1000,
                         "session_id": welcome["session_id"]})
        processes = node_processes()
        before = {pid: cpu_s(pid) for pid in processes}
        time.sleep(args.hold_s)
        per_process = {pid: ((cpu_s(pid) - before[pid]) / args.hold_s * 100, rss_mb(pid)) for pid in processes}
    finally:
        for sock in sockets:
            sock.close()
        for client in clients:
            client.close()
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGTERM)
            try:
                driver.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(driver.pid, signal.SIGKILL)
        cluster.close()
    leftovers = cluster.leftover_pids()

    placed = [row for row in rows if "node" in row]
    refused = [row for row in rows if "refused" in row]
    per_node = {name: sum(1 for row in placed if row["node"] == name) for name in nodes}
    facts = machine_facts()
    lines = [TITLE, "",
             "`bench/cluster_benchmark.py` (docs/cluster.md): a local Ray cluster of a head and "
             f"{args.workers} worker node(s), each a separate `ray start` process group (`--num-cpus 1`, an 80 MB "
             f"object store, no dashboard), `adaptive cluster` serving on every node with `--max-sessions "
             f"{args.max_sessions}` (the node's default session and {args.max_sessions - 1} placed ones), the "
             f"rule-based generator. {args.sessions} clients, one after another, say hello with session `new` to "
             "the first node, follow `session_elsewhere` when sent on, and read their session's first TCP audio "
             "block.", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {facts['cpu']}, {facts['cores']} cores, {facts['memory_gb']:.0f} GB, {facts['os']}, Python "
             f"{facts['python']}. Load: {args.load or 'none stated'}.", "",
             "| figure | value |", "|---|---|",
             f"| `ray start` of the head and {args.workers} worker(s) | {cluster_s:.1f} s |",
             f"| until every node served (`adaptive cluster`: import, default session) | {serving_s:.1f} s after the "
             "first `ray start` |",
             f"| sessions placed per node (the directory's rule: fewest first, a tie to the node asked) | "
             + ", ".join(f"{name}: {count}" for name, count in per_node.items()) + " |",
             f"| sessions refused (every node at its cap) | {len(refused)} |"]
    for label, redirected in (("on the node asked", False), ("sent to another node", True)):
        chosen = [row for row in placed if row["redirected"] is redirected]
        if chosen:
            welcome = [row["welcome_ms"] for row in chosen]
            audio = [row["first_audio_ms"] for row in chosen]
            lines.append(f"| hello to welcome, {label} ({len(chosen)} sessions) | median {statistics.median(welcome):.0f} "
                         f"ms, max {max(welcome):.0f} ms |")
            lines.append(f"| hello to first audio block, {label} | median {statistics.median(audio):.0f} ms, max "
                         f"{max(audio):.0f} ms |")
    for pid, (cpu_percent, rss) in sorted(per_process.items()):
        lines.append(f"| a node's server process (pid {pid}): CPU over {args.hold_s:g} s of playing, RSS | "
                     f"{cpu_percent:.1f} % of a core, {rss:.0f} MB |")
    lines += [f"| processes of the cluster left after the teardown | {len(leftovers)} |", "",
              "The first session goes to the node asked (both nodes hold none: a tie), the next to the other node "
              "(the fewest sessions), and so on alternately; a redirected hello costs one more round trip to the "
              "other node plus the directory's answer (a Ray actor call, about a millisecond on loopback), "
              "small beside making the session (its synthesizers: 0.4-3 s, docs/sessions.md)."]
    publish("\n".join(lines), args.write_docs, REPO / "docs" / "benchmarks.md", TITLE)
    return 0 if not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
