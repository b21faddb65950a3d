"""Audience mode on real sockets: a served show with a control client and a
few audience phones over OSC (docs/audience.md)."""

from __future__ import annotations

import json
import time

import pytest

from adaptive.cue import DEFAULT_BANK
from app.server import Server
from app.settings import ServerSettings
from bridge.client import AdaptiveClient

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits


def test_a_control_client_and_audience_phones_over_osc(tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(f'bank = "{DEFAULT_BANK}"\n[audience]\naggregate = "majority"\ninterval_ms = 100\n'
                       "window_s = 5\n")
    record = tmp_path / "show.jsonl"
    server = Server(ServerSettings(bank=DEFAULT_BANK, mapping=mapping, osc_port=0, audio_tcp_port=0,
                                   zmq_audio_port=0, zmq_control_port=0, zmq_events_port=0, lookahead_ms=60.0,
                                   block_frames=256, record=record, generator="rule_based"))
    server.start()
    clients = []
    try:
        control = AdaptiveClient("127.0.0.1", server.osc.port, client_name="desk")
        clients.append(control)
        control.hello()
        control.scene("calm", 0.4, "")
        phones = [AdaptiveClient("127.0.0.1", server.osc.port, client_name=f"phone-{i}", role="audience")
                  for i in range(4)]
        clients += phones
        for phone in phones:
            assert phone.hello()["role"] == "audience"
        for phone, emotion in zip(phones, ("tense", "tense", "tense", "sad")):
            phone.vote(emotion, intensity=0.8)
        phones[3].vote(valence=-0.4, arousal=0.4)  # its latest: a point nearest "tense"
        phones[0].emotion("joyful")  # an audience phone may not set the scene
        error = phones[0].wait_for("error", timeout=2.0)
        assert error["code"] == "forbidden" and "needs the control role" in error["message"]
        conductor = server.realtime.session.conductor
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            result = conductor.audience.result
            if result is not None and result.voices == 4:
                break
            time.sleep(0.05)
        assert result is not None and (result.voices, result.emotion) == (4, "tense")
        assert server.osc.counters["votes"] == 5
    finally:
        for client in clients:
            client.close()
        server.close()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    votes = [line for line in lines if line.get("type") == "audience_vote"]
    assert len(votes) == 5 and len({line["voice"] for line in votes}) == 4
