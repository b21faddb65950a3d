"""Sessions on a Ray cluster, end to end (app/cluster.py, docs/cluster.md): a
head and a worker node started as separate ``ray start`` processes
(app/local_cluster.py), ``adaptive cluster`` serving on both, and two
sessions placed on different nodes by the directory. Each client says hello
to the same node; the second is sent to the other node (``session_elsewhere``)
and follows; each sends scene input and gets its audio and callbacks from
the node that hosts its session. The cluster is torn down on failure too,
and no process of it is left.

Needs Ray (``pip install '.[cluster]'``); skipped without it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is the optional extra 'cluster': pip install '.[cluster]' (docs/cluster.md)")

from app.local_cluster import LocalCluster  # noqa: E402
from bridge.audio import read_tcp_blocks  # noqa: E402
from bridge.client import AdaptiveClient  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

pytestmark = pytest.mark.integration  # real processes, sockets and wall-clock waits

REPO = Path(__file__).resolve().parents[2]
NODES_TIMEOUT_S = 150.0
"""Seconds for ``adaptive cluster`` to serve on both nodes (importing the
engine and making each node's default session: 10-30 s, and up to 90 s after the first `ray start` on a
heavily loaded 2-core machine; only a failing run waits this long)."""


def start_driver(cluster: LocalCluster, endpoints_file: Path, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "app.cli", "cluster", "--address", cluster.address,
               "--endpoints-file", str(endpoints_file), "--osc-port", "0", "--audio-tcp-port", "0",
               "--zmq-audio-port", "0", "--zmq-control-port", "0", "--zmq-events-port", "0",
               "--generator", "rule_based", "--realtime-priority", "0", "--start", "wait", "--max-sessions", "3"]
    with open(log_path, "wb") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_driver(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        os.killpg(driver.pid, signal.SIGTERM)  # it stops every node's server and the actors
        try:
            driver.wait(30.0)
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(5.0)


def first_block_s(client: AdaptiveClient, started_s: float) -> tuple[float, object]:
    """Seconds from ``started_s`` to the first audio block of ``client``'s session, and its header."""
    audio = client.connect_audio(timeout=5.0)
    audio.settimeout(10.0)
    header, _ = next(read_tcp_blocks(audio))
    return time.monotonic() - started_s, (header, audio)


def test_two_sessions_on_two_nodes_each_reached_through_any_node(tmp_path):
    started_s = time.monotonic()
    endpoints_file = tmp_path / "nodes.json"
    cluster = LocalCluster(workers=1, num_cpus=1, log_dir=tmp_path)
    driver = None
    clients: list[AdaptiveClient] = []
    sockets = []
    try:
        driver = start_driver(cluster, endpoints_file, tmp_path / "driver.log")

        def two_nodes() -> bool:
            return endpoints_file.exists() and len(json.loads(endpoints_file.read_text())) == 2

        assert wait_until(lambda: two_nodes() or driver.poll() is not None, NODES_TIMEOUT_S, 0.2) and two_nodes(), (
            (tmp_path / "driver.log").read_text(errors="replace")[-3000:] + cluster.log_tail())
        serving_s = time.monotonic() - started_s
        nodes = list(json.loads(endpoints_file.read_text()).values())
        assert len({node["osc_port"] for node in nodes}) == 2
        asked = nodes[0]  # every client says hello to the same node
        other = nodes[1]

        # The first session is placed on the node asked (a tie: no redirect), the second on the other node.
        hello_s = time.monotonic()
        first = AdaptiveClient(asked["host"], asked["osc_port"], session="new", client_name="game-1")
        clients.append(first)
        welcome_1 = first.hello(timeout=20.0)
        first_s, (header_1, audio_1) = first_block_s(first, hello_s)
        sockets.append(audio_1)
        hello_s = time.monotonic()
        second = AdaptiveClient(asked["host"], asked["osc_port"], session="new", client_name="game-2")
        clients.append(second)
        welcome_2 = second.hello(timeout=20.0)
        second_s, (header_2, audio_2) = first_block_s(second, hello_s)
        sockets.append(audio_2)
        assert first.redirected_from is None and (first.port, welcome_1["audio_tcp_port"]) == (
            asked["osc_port"], asked["audio_tcp_port"])
        assert second.redirected_from["port"] == asked["osc_port"]
        assert (second.port, welcome_2["audio_tcp_port"]) == (other["osc_port"], other["audio_tcp_port"])
        session_1, session_2 = welcome_1["session_id"], welcome_2["session_id"]
        assert session_1 != session_2 and second.redirected_from["session_id"] == session_2

        # Scene input to each: each hears its own cue, from its own node.
        for client, cue in ((first, "combat"), (second, "sorrow")):
            client.subscribe("events")
            client.cue(cue)
        heard = {}
        for client in (first, second):
            for decoded in client.messages(timeout=30.0):
                if decoded.message.name == "cue_change":
                    heard[client.client_name] = decoded.values["cue"]
                    break
        assert heard == {"game-1": "combat", "game-2": "sorrow"}

        # A hello to the other node for the first session is sent to the node that hosts it.
        third = AdaptiveClient(other["host"], other["osc_port"], session=session_1, client_name="game-1b")
        clients.append(third)
        assert third.hello(timeout=20.0)["session_id"] == session_1
        assert third.port == asked["osc_port"] and third.redirected_from["port"] == other["osc_port"]

        print(f"\ncluster figures: nodes serving {serving_s:.1f} s after 'ray start'; hello to first audio "
              f"{first_s * 1000:.0f} ms (placed on the node asked), {second_s * 1000:.0f} ms (redirected to the "
              f"other node); first blocks at frames {header_1.first_frame} and {header_2.first_frame}")
    finally:
        for sock in sockets:
            sock.close()
        for client in clients:
            client.close()
        if driver is not None:
            stop_driver(driver)
        cluster.close()
    assert cluster.leftover_pids() == []
    assert driver.returncode == 0, (tmp_path / "driver.log").read_text(errors="replace")[-3000:]
    assert "sessions default, " in (tmp_path / "driver.log").read_text(errors="replace")
