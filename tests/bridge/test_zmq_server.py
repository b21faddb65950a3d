"""The ZeroMQ endpoint over real loopback sockets: JSON control on a ROUTER,
callbacks on a PUB, the same messages as OSC."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

zmq = pytest.importorskip("zmq")

from adaptive.cue import DEFAULT_BANK  # noqa: E402
from adaptive.cue import load_bank  # noqa: E402
from adaptive.scene import SceneUpdate, StingerTrigger  # noqa: E402
from adaptive.events import MidiNoteEvent, MusicEvent  # noqa: E402
from bridge.protocol import PROTOCOL_VERSION, Direction, decode_json  # noqa: E402
from bridge.zmq_server import ZmqServer  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

RATE = 48_000
WELCOME = {"session_id": "abc123", "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 9001}
TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def bank():
    return load_bank(DEFAULT_BANK)


@pytest.fixture
def server(bank):
    submitted: list = []
    server = ZmqServer(bank, submitted.append, lambda: 12.25, RATE, WELCOME, control_port=0, events_port=0)
    server.submitted = submitted
    server.start()
    yield server
    server.close()


@pytest.fixture
def client(server):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_endpoint)
    yield sock
    sock.close(linger=0)


def request(sock, message: dict | bytes) -> dict:
    """Send one frame and return the decoded JSON reply (fails after 2 s)."""
    sock.send(message if isinstance(message, bytes) else json.dumps(message).encode())
    assert sock.poll(TIMEOUT_MS), "no reply within 2 s"
    frames = sock.recv_multipart()
    decode_json(frames[-1], Direction.TO_CLIENT)  # every reply is a valid message of the table
    return json.loads(frames[-1])


HELLO = {"type": "hello", "reply_port": 1, "sample_rate_hz": 48000, "channels": 2, "sample_format": "s16",
         "client_name": "test"}


def test_hello_is_answered_with_welcome(server, client):
    assert server.control_endpoint.startswith("tcp://127.0.0.1:")
    assert server.events_endpoint == f"tcp://127.0.0.1:{server.events_port}"
    reply = request(client, HELLO)
    client_id = reply.pop("client_id")
    assert reply == {"type": "welcome", "protocol_version": PROTOCOL_VERSION, "session_id": "abc123",
                     "sample_rate_hz": RATE, "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 9001,
                     "time_s": 12, "time_us": 250_000, "role": "control", "lease_s": 30}
    assert len(client_id) == 32 and server.clients.by_id(client_id).transport == "zmq"
    assert server.counters["hellos"] == 1


def test_ping_is_answered_with_pong_carrying_server_times(server, client):
    reply = request(client, {"type": "ping", "sequence": 77})
    assert reply == {"type": "pong", "sequence": 77, "receive_time_s": 12, "receive_time_us": 250_000,
                     "send_time_s": 12, "send_time_us": 250_000}


def test_a_req_client_gets_its_reply_through_the_envelope(server):
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_endpoint)
    try:
        assert request(sock, {"type": "ping", "sequence": 1})["type"] == "pong"
        assert request(sock, {"type": "nope"})["code"] == "unknown_address"
    finally:
        sock.close(linger=0)


@pytest.mark.integration
def test_scene_messages_reach_submit_as_engine_inputs(server, client):
    client.send(json.dumps({"type": "scene", "emotion": "calm", "intensity": 0.5, "location": "forest"}).encode())
    client.send(json.dumps({"type": "emotion_point", "valence": -0.5, "arousal": 1}).encode())
    client.send(json.dumps({"type": "subscribe", "stream": "midi"}).encode())  # validated, not answered
    assert wait_until(lambda: len(server.submitted) == 2)
    assert server.submitted == [SceneUpdate(emotion="calm", intensity=0.5, location="forest"),
                                SceneUpdate(valence=-0.5, arousal=1.0)]
    assert server.counters["inputs"] == 2
    # nothing was answered: the next reply is the pong
    assert request(client, {"type": "ping", "sequence": 2})["type"] == "pong"


@pytest.mark.integration
def test_a_stinger_reaches_submit(server, client, bank):
    if not bank.stingers:
        pytest.skip("the bank lists no stingers")
    name = bank.stingers[0].name
    client.send(json.dumps({"type": "stinger", "stinger": name}).encode())
    assert wait_until(lambda: server.submitted)
    assert server.submitted == [StingerTrigger(name)]


@pytest.mark.parametrize(("message", "code", "mentions"), [
    (b'{"type": "scene", ', "malformed", "invalid JSON"),
    (b"[1, 2]", "malformed", "JSON object"),
    ({"type": "teleport"}, "unknown_address", "teleport"),
    ({"type": "welcome"}, "unknown_address", "welcome"),  # a to-client message
    ({"type": "scene", "emotion": "calm", "intensity": 0.5}, "wrong_arguments", "missing location"),
    ({"type": "intensity", "intensity": 0.5, "volume": 1}, "wrong_arguments", "unknown volume"),
    ({"type": "intensity", "intensity": "loud"}, "wrong_arguments", "intensity"),
    ({"type": "intensity", "intensity": 1.5}, "out_of_range", "from 0 to 1"),
    ({"type": "subscribe", "stream": "video"}, "out_of_range", "'events'"),
    ({"type": "emotion", "emotion": "bored-ish"}, "unknown_name", "bored-ish"),
    ({"type": "cue", "cue": "no-such-cue"}, "unknown_name", "no-such-cue"),
    (b'{"type": "ping", "sequence": 1, "pad": "' + b"x" * 70_000 + b'"}', "too_large", "65536"),
    # Hostile shapes: each was an internal error with a traceback logged and no answer (issue 13).
    (b"[" * 10_000 + b"]" * 10_000, "malformed", "nested too deeply"),
    (b'{"type": "intensity", "intensity": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "malformed", "nested too deeply"),
    (b'{"type": "ping", "sequence": ' + b"9" * 5000 + b"}", "out_of_range", "digits"),
    (b'{"type": "ping", "sequence": 1}\xff', "malformed", "invalid JSON"),
    (b"\xff\xfe\x00", "malformed", "invalid JSON"),
    ({"type": "ping", "sequence": 2 ** 80}, "out_of_range", "sequence"),
])
def test_bad_messages_get_an_error_and_the_server_keeps_answering(server, client, message, code, mentions):
    reply = request(client, message)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert mentions in reply["message"]
    assert server.counters["rejected"] == 1
    assert server.counters[f"rejected_{code}"] == 1
    assert not server.submitted
    assert request(client, {"type": "ping", "sequence": 3})["type"] == "pong"


def test_a_bug_in_a_handler_is_answered_counted_and_logged_once_per_window(server, client, caplog):
    def broken(*args):
        raise RuntimeError("a bug")

    server.dispatcher.dispatch = broken
    with caplog.at_level("ERROR", logger="adaptive.zmq"):
        for sequence in range(50):
            reply = request(client, {"type": "ping", "sequence": sequence})
            assert (reply["type"], reply["code"]) == ("error", "internal")
            assert "RuntimeError" in reply["message"] and "nothing changed" in reply["message"]
    assert server.counters["internal_errors"] == 50
    logged = [record for record in caplog.records if "internal error" in record.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None  # one traceback per 10 s, not one per message


def test_multi_frame_messages_are_refused(server, client):
    client.send_multipart([b"extra", json.dumps({"type": "ping", "sequence": 1}).encode()])
    assert client.poll(TIMEOUT_MS)
    reply = json.loads(client.recv_multipart()[-1])
    assert (reply["type"], reply["code"]) == ("error", "malformed")


def block(events=(), midi=()):
    return SimpleNamespace(events=list(events), midi=list(midi))


@pytest.mark.integration
def test_callbacks_are_published_on_their_topics(server):
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"events")
    sub.setsockopt(zmq.SUBSCRIBE, b"midi")
    sub.connect(server.events_endpoint)
    events = [MusicEvent(RATE, "bar", {"cue": "explore", "bar_index": 3}),
              MusicEvent(RATE + 24_000, "beat", {"cue": "explore", "bar_index": 3, "beat_in_bar": 2, "bpm": 120.0}),
              MusicEvent(RATE, "scene", {"intensity": 0.5})]  # not a callback
    midi = [MidiNoteEvent(RATE + 10, "explore/bass", 1, 40, 100)]
    received: dict[bytes, list[dict]] = {b"events": [], b"midi": []}
    try:
        deadline = time.monotonic() + 3.0  # PUB/SUB slow joiner: publish until the subscription is in place
        while not (received[b"events"] and received[b"midi"]):
            assert time.monotonic() < deadline, f"nothing received on some topic: {received}"
            server.on_block(block(events, midi))
            while sub.poll(20):
                topic, payload = sub.recv_multipart()
                decode_json(payload, Direction.TO_CLIENT)
                received[topic].append(json.loads(payload))
    finally:
        sub.close(linger=0)
    assert received[b"events"][:2] == [
        {"type": "bar", "frame": RATE, "time_s": 1, "time_us": 0, "cue": "explore", "bar_index": 3},
        {"type": "beat", "frame": RATE + 24_000, "time_s": 1, "time_us": 500_000, "cue": "explore",
         "bar_index": 3, "beat_in_bar": 2, "bpm": 120.0},
    ]
    note = received[b"midi"][0]
    assert note["type"] == "midi" and note["status"] & 0xF0 == 0x90
    assert (note["frame"], note["data1"], note["data2"], note["part"]) == (RATE + 10, 40, 100, "explore/bass")
    assert server.counters["published"] >= 3


@pytest.mark.integration
def test_a_full_outbox_drops_the_oldest_block_and_counts_without_blocking(bank):
    server = ZmqServer(bank, lambda item: None, lambda: 0.0, RATE, WELCOME, control_port=0, events_port=0,
                       outbox_blocks=4)
    server._subscriptions.prefixes = frozenset({b""})  # as if a SUB socket subscribed to every topic
    try:  # not started: nothing drains the outbox
        started = time.monotonic()
        for index in range(10):
            server.on_block(block([MusicEvent(index, "bar", {"cue": "c", "bar_index": index})]))
        server.on_block(block())  # an empty block is not queued
        assert time.monotonic() - started < 0.5
        assert server.counters["dropped_blocks"] == 6
        assert [events[0].frame for events, _ in server._outbox] == [6, 7, 8, 9]
    finally:
        server.close()


@pytest.mark.integration
def test_blocks_for_topics_nobody_subscribes_to_are_not_queued(bank):
    server = ZmqServer(bank, lambda item: None, lambda: 0.0, RATE, WELCOME, control_port=0, events_port=0)
    try:  # not started, so the outbox keeps what was queued
        server.on_block(block([MusicEvent(0, "bar", {"cue": "c", "bar_index": 0})]))
        assert not server._outbox  # no subscriber at all
        server._subscriptions.prefixes = frozenset({b"midi"})
        server.on_block(block([MusicEvent(1, "bar", {"cue": "c", "bar_index": 1})]))
        assert not server._outbox  # events, but only MIDI is subscribed
        server._subscriptions.prefixes = frozenset({b"ev"})  # a prefix of "events" matches it, as in ZeroMQ
        server.on_block(block([MusicEvent(2, "bar", {"cue": "c", "bar_index": 2})]))
        assert [events[0].frame for events, _ in server._outbox] == [2]
    finally:
        server.close()


@pytest.mark.integration
def test_a_port_in_use_raises_oserror(server, bank):
    with pytest.raises(OSError):
        ZmqServer(bank, lambda item: None, lambda: 0.0, RATE, WELCOME, control_port=server.control_port,
                  events_port=0)


@pytest.mark.integration
def test_close_is_prompt_and_idempotent(bank):
    server = ZmqServer(bank, lambda item: None, lambda: 0.0, RATE, WELCOME, control_port=0, events_port=0)
    server.start()
    started = time.monotonic()
    server.close()
    server.close()
    assert time.monotonic() - started < 1.0


@pytest.mark.integration
def test_on_block_wakes_the_zmq_thread_at_once(bank, monkeypatch):
    import bridge.zmq_server

    monkeypatch.setattr(bridge.zmq_server, "POLL_TIMEOUT_MS", 10_000)  # only a wake-up can publish in time
    server = ZmqServer(bank, lambda item: None, lambda: 0.0, RATE, WELCOME, control_port=0, events_port=0)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"events")
    sub.connect(server.events_endpoint)
    server.start()
    try:
        deadline = time.monotonic() + 3.0
        while not sub.poll(20):  # slow joiner: the first blocks may be lost
            assert time.monotonic() < deadline, "no callback: on_block did not wake the ZeroMQ thread"
            server.on_block(block([MusicEvent(0, "bar", {"cue": "c", "bar_index": 0})]))
        assert sub.recv_multipart()[0] == b"events"
    finally:
        sub.close(linger=0)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1.0  # close wakes it too


@pytest.mark.integration
def test_audience_votes_over_zeromq_have_a_voice_per_dealer_and_a_rate_limit(server, client):
    from adaptive.audience import AudienceVote

    other = zmq.Context.instance().socket(zmq.DEALER)
    other.setsockopt(zmq.LINGER, 0)
    other.connect(server.control_endpoint)
    try:
        client.send(json.dumps({"type": "audience_vote", "emotion": "tense", "intensity": 0.5}).encode())
        other.send(json.dumps({"type": "audience_vote", "emotion": "", "valence": 0.5, "arousal": -0.25}).encode())
        assert wait_until(lambda: len(server.submitted) == 2)
        assert sorted(server.submitted, key=lambda vote: vote.emotion or "") == [
            AudienceVote("v2" if server.submitted[0].emotion else "v1", valence=0.5, arousal=-0.25),
            AudienceVote("v1" if server.submitted[0].emotion else "v2", emotion="tense", intensity=0.5)]
        for _ in range(9):  # the clock stands still (12.25 s): 10 votes, then rate_limited
            client.send(json.dumps({"type": "audience_vote", "emotion": "calm"}).encode())
        reply = request(client, {"type": "audience_vote", "emotion": "calm"})
        assert reply["code"] == "rate_limited" and "at most 10 a second" in reply["message"]
        assert server.counters["votes_rate_limited"] == 1
    finally:
        other.close(linger=0)
