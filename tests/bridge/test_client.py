"""bridge.client and ``adaptive send`` / ``adaptive monitor`` against a real in-process server."""

from __future__ import annotations

import re
import socket
import time

import pytest

from adaptive.cue import DEFAULT_BANK
from app.cli import main
from bridge.client import AdaptiveClient, ClockSync
from bridge.protocol import ProtocolError
from app.server import Server, ServerSettings

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits


@pytest.fixture(scope="module")
def server():
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0,
                              lookahead_ms=60.0, block_frames=256)
    server = Server(settings)
    server.start()
    yield server
    server.close()


@pytest.fixture
def client(server):
    client = AdaptiveClient("127.0.0.1", server.osc.port, client_name="test")
    yield client
    client.close()


def test_hello_returns_the_welcome(server, client):
    welcome = client.hello()
    assert welcome["session_id"] == server.session_id
    assert welcome["sample_rate_hz"] == 48000 and welcome["block_frames"] == 256
    assert welcome["audio_tcp_port"] == server.audio_tcp.port
    assert client.welcome == welcome


def test_hello_without_a_server_times_out_naming_the_address():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    try:
        with AdaptiveClient("127.0.0.1", port) as client:
            with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
                client.hello(timeout=0.2)
    finally:
        silent.close()


def test_bad_values_raise_before_sending(server, client):
    client.hello()
    with pytest.raises(ProtocolError, match="from 0 to 1"):
        client.intensity(2.0)
    with pytest.raises(ProtocolError):
        client.emotion_point(0.0, float("nan"))
    with pytest.raises(ProtocolError):
        client.subscribe("video")
    client.sync_clock(pings=2)  # a round trip: anything sent before has been handled
    assert client.errors == []


def test_clock_sync_maps_server_time_to_local_time_within_a_millisecond(server, client):
    sync = client.sync_clock(pings=16)
    assert isinstance(sync, ClockSync) and sync.samples == 16
    assert 0 <= sync.round_trip_seconds < 0.01
    # The server's clock is time.monotonic() minus its start: read both in the
    # same instant and the true offset (server - local) is known.
    before = time.monotonic()
    server_now = server.realtime.server_time_seconds()
    after = time.monotonic()
    local_now = (before + after) / 2
    true_offset = server_now - local_now
    assert abs(sync.offset_seconds - true_offset) < 0.001
    assert abs(sync.server_to_local(server_now) - local_now) < 0.001
    assert sync.local_to_server(sync.server_to_local(12.5)) == pytest.approx(12.5)


def test_send_then_monitor_prints_beats_with_increasing_frames(server, capsys):
    port = str(server.osc.port)
    assert main(["send", "--port", port, "scene", "calm", "0.5", "forest"]) == 0
    assert main(["send", "--port", port, "emotion_point", "0.3", "-0.2"]) == 0
    assert main(["send", "--port", port, "emotion", "angry"]) == 0  # combat, 140 bpm: more beats in 2 s
    out = capsys.readouterr().out
    assert "sent /adaptive/scene 'calm' 0.5 'forest'" in out
    assert "sent /adaptive/emotion/point 0.3 -0.2" in out

    assert main(["monitor", "--port", port, "--seconds", "2"]) == 0
    captured = capsys.readouterr()
    beats = re.findall(r"^ *(\d+\.\d{3}) s  frame +(\d+)  beat  (\w+) bar (\d+) beat (\d+) \((\d+) bpm\)$",
                       captured.out, re.MULTILINE)
    assert len(beats) >= 3, captured.out
    frames = [int(frame) for _, frame, *_ in beats]
    times = [float(seconds) for seconds, *_ in beats]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert all(abs(t - f / 48000) < 0.001 for t, f in zip(times, frames))
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(("words", "expected"), [
    (["intensity", "loud"], "intensity: intensity 'loud' is not a number"),
    (["intensity", "2"], "from 0 to 1"),
    (["scene", "calm"], "scene takes emotion (string"),
    (["emotion_point", "0.1"], "valence (number: a number from -1 to 1), arousal"),
    (["teleport", "home"], "unknown message 'teleport'"),
])
def test_send_with_bad_arguments_exits_2_with_a_clear_message(server, capsys, words, expected):
    assert main(["send", "--port", str(server.osc.port), *words]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("adaptive: error: ")
    assert expected in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_send_an_unknown_emotion_prints_the_servers_error(server, capsys):
    assert main(["send", "--port", str(server.osc.port), "emotion", "sleepy"]) == 2
    err = capsys.readouterr().err
    assert "the server rejected it (unknown_name)" in err and "sleepy" in err
    assert "Traceback" not in err


def test_send_without_a_server_exits_2(capsys):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        start = time.monotonic()
        assert main(["send", "--port", str(silent.getsockname()[1]), "stinger", "danger"]) == 2
        assert time.monotonic() - start < 5
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert "no answer from an adaptive server" in err and "Traceback" not in err
