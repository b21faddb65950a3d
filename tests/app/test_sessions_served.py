"""Two sessions on one real server, over its one set of loopback ports: OSC
(the Python client), the TCP audio stream (tied to a session by the token it
sends), and ZeroMQ (callbacks on each session's topics)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from adaptive.cue import DEFAULT_BANK
from app.server import Server, ServerSettings
from bridge.audio import read_tcp_blocks
from bridge.client import AdaptiveClient
from tests.helpers import wait_until

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits


@pytest.fixture
def server(tmp_path):
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0, zmq_control_port=0,
                              zmq_events_port=0, lookahead_ms=60.0, generator="rule_based", realtime_priority=0,
                              record=tmp_path / "run.jsonl")
    server = Server(settings)
    server.start()
    yield server
    server.close()


def test_two_sessions_share_the_ports_and_each_hears_only_itself(server, tmp_path):
    import zmq

    context = zmq.Context.instance()
    default_events, session_events = context.socket(zmq.SUB), context.socket(zmq.SUB)
    for sub in (default_events, session_events):
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVTIMEO, 100)
        sub.connect(server.zmq.events_endpoint)
    default_events.setsockopt(zmq.SUBSCRIBE, b"events")  # what a client of the default session subscribed to
    time.sleep(1.0)  # the default session plays a second before the other one starts
    game = AdaptiveClient("127.0.0.1", server.osc.port, session="new")
    other = AdaptiveClient("127.0.0.1", server.osc.port)
    audio = None
    try:
        welcome = game.hello()
        session_id = welcome["session_id"]
        assert session_id != "default" and other.hello()["session_id"] == "default"
        assert server.sessions.session_ids() == ["default", session_id]
        # Two render loops (render_threads = 2), each session on the one holding fewest: a render thread each here.
        loops = server.sessions.render_loops
        assert len(loops) == 2 and sorted(len(loop) for loop in loops) == [1, 1]
        assert wait_until(lambda: [t.name for t in threading.enumerate()].count("adaptive-render") == 2)
        session_events.setsockopt(zmq.SUBSCRIBE, f"session/{session_id}/events".encode())
        audio = game.connect_audio()
        audio.settimeout(5.0)
        blocks = read_tcp_blocks(audio)
        header, _ = next(blocks)
        # Its own session's stream: its frames count from its own start, a second after the default's.
        assert header.first_frame <= server.sessions.hosted(session_id).realtime.frames_rendered
        assert header.first_frame < server.session.frame - 40_000
        game.cue("combat")
        other.cue("sorrow")
        seen: dict[bytes, set] = {b"events": set(), f"session/{session_id}/events".encode(): set()}

        def heard_both() -> bool:
            for sub in (default_events, session_events):
                try:
                    while True:
                        topic, payload = sub.recv_multipart(zmq.NOBLOCK)
                        message = json.loads(payload)
                        if message["type"] == "cue_change":
                            seen[topic].add(message["cue"])
                except zmq.Again:
                    pass
            return "combat" in seen[f"session/{session_id}/events".encode()] and "sorrow" in seen[b"events"]

        assert wait_until(heard_both, timeout_seconds=25.0), seen
        assert "combat" not in seen[b"events"] and "sorrow" not in seen[f"session/{session_id}/events".encode()]
        # Ending it closes its audio stream and tells its clients; the default session plays on.
        assert other.end_session(session_id, timeout=10.0) == {"session_id": session_id, "reason": "request"}
        assert game.wait_for("session_ended", timeout=10.0)["session_id"] == session_id
        with pytest.raises(StopIteration):
            while True:
                next(blocks)
        assert server.sessions.session_ids() == ["default"] and server.realtime.running
        assert sum(len(loop) for loop in loops) == 1 and server.realtime.loop.running  # the default's plays on
        assert wait_until(lambda: [t.name for t in threading.enumerate()].count("adaptive-render") == 1)
        frame = server.session.frame
        assert wait_until(lambda: server.session.frame > frame + 4096)
        assert (tmp_path / f"run.{session_id}.jsonl").exists() and (tmp_path / "run.jsonl").exists()
    finally:
        if audio is not None:
            audio.close()
        game.close()
        other.close()
        default_events.close()
        session_events.close()


def test_without_a_token_a_tcp_audio_client_gets_the_default_session(server):
    with AdaptiveClient("127.0.0.1", server.osc.port, session="arena") as game:
        game.hello()
        plain = socket.create_connection(("127.0.0.1", server.audio_tcp.port), timeout=5.0)
        try:
            header, _ = next(read_tcp_blocks(plain))  # after the short wait for an optional token
            assert wait_until(lambda: server.audio_tcp.has_clients("default"))
            assert not server.audio_tcp.has_clients("arena")
        finally:
            plain.close()
