"""A real ``adaptive serve`` subprocess on free loopback ports, for the engine clients' tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_ports

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A running server: its OSC and TCP audio ports, its recording, and the process."""

    osc_port: int
    audio_tcp_port: int
    record: Path
    process: subprocess.Popen

    def stop(self) -> tuple[str, str]:
        """SIGTERM, wait, and return (stdout, stderr); idempotent."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=20)
        return out, err


def raw_osc(address: str, *args: int | float | str) -> bytes:
    """An OSC datagram of ``args`` typed as Python types them (int: i, float: f, str: s), unchecked by the
    protocol table: for a message with values out of range or of the wrong type."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    for value in args:
        builder.add_arg(value, "i" if isinstance(value, int) else "f" if isinstance(value, float) else "s")
    return builder.build().dgram


from tests.helpers import FakeClusterNode  # noqa: E402,F401  (the clients' tests use it from here)


def session_elsewhere(session_id: str, host: str, osc_port: int, zmq_control_port: int = 0,
                      audio_tcp_port: int = 0) -> bytes:
    """A ``session_elsewhere`` datagram as a node of a cluster sends it (encoded by the server's encoder)."""
    from bridge.protocol import encode_osc

    return encode_osc("session_elsewhere", session_id=session_id, host=host, osc_port=osc_port,
                      zmq_control_port=zmq_control_port, audio_tcp_port=audio_tcp_port)




@pytest.fixture
def served(tmp_path):
    yield from _serve(tmp_path, [])


@pytest.fixture
def served_with_credentials(tmp_path):
    """As ``served``, with a credentials folder (``.credentials``: its loaded secrets and keys)."""
    from bridge.access import create_credentials, load_credentials

    create_credentials(tmp_path / "credentials")
    for server in _serve(tmp_path, ["--credentials", str(tmp_path / "credentials")]):
        server.credentials = load_credentials(tmp_path / "credentials")
        yield server


def _serve(tmp_path, extra: list[str]):
    osc, audio, zmq_audio, control, events = free_ports(5)
    record = tmp_path / "session.jsonl"
    command = [sys.executable, "-m", "app.cli", "serve", "--osc-port", str(osc), "--audio-tcp-port", str(audio),
               "--zmq-audio-port", str(zmq_audio), "--zmq-control-port", str(control),
               "--zmq-events-port", str(events), "--record", str(record), *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    server = Served(osc, audio, record, process)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while not any(f"udp://127.0.0.1:{osc}" in line for line in lines):
            line = process.stdout.readline()
            if not line or time.monotonic() > deadline:
                out, err = server.stop()
                pytest.fail(f"adaptive serve did not start: {''.join(lines)}{out}{err[-3000:]}")
            lines.append(line)
        yield server
    finally:
        if process.returncode is None:
            server.stop()
