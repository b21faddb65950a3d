"""Many sessions in one server (app/sessions.py, docs/sessions.md), as a game
sees them over OSC: each hello names a session, every later message goes to
it, and callbacks come back only from it. On fake clocks, with no thread
started: render threads are driven block by block (``run_once``), datagrams
are handed to ``OscServer.handle`` and what it would send is recorded."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from adaptive.mapping import ResolvedMapping
from adaptive.recording import replay
from app.sessions import SessionHost, recording_path
from app.settings import ServerSettings, StartMode
from bridge.access import ClientTable
from bridge.osc_server import OscServer
from bridge.protocol import Direction, ProtocolError, decode_osc, encode_osc
from tests.helpers import FakeClock

BLOCK_FRAMES = 1024


class Served:
    """A SessionHost of the tone bank and an OscServer routing through it, on
    a fake clock; each session's blocks are collected (audio and events)."""

    def __init__(self, tmp_path, bank, factory=None, placement=None, **settings) -> None:
        self.clock = FakeClock()
        self.settings = ServerSettings(bank=tmp_path / "bank.toml", osc_port=0, block_frames=BLOCK_FRAMES,
                                       lookahead_ms=40.0, record=tmp_path / "run.jsonl", generator="rule_based",
                                       realtime_priority=0, start=StartMode.WAIT, **settings)
        self.clients = ClientTable(self.clock)
        self.host = SessionHost(self.settings, bank, ResolvedMapping.from_bank(bank), self.clients, clock=self.clock,
                                realtime_options={"clock": self.clock, "sleep": self.clock.sleep}, placement=placement)
        if factory is not None:  # factory(build, session_id) makes the sessions after the default one
            self.host._factory = lambda session_id: factory(self.host.build, session_id)
        default = self.host.default
        self.osc = OscServer(bank, default.realtime.submit, default.realtime.server_time_seconds, 48_000,
                             default.endpoint.welcome, port=0, clients=self.clients, clock=self.clock,
                             sessions=self.host)
        self.sent: list[tuple[tuple[str, int], bytes]] = []
        self.osc._send_now = lambda address, datagram: self.sent.append((address, datagram))
        self.audio: dict[str, list[np.ndarray]] = {}
        self.host.add_started_listener(self._attach)
        self.host.add_ended_listener(self.osc.session_ended)  # as the server does (and ZeroMQ's, TCP's)
        self._attach(default)

    def _attach(self, hosted) -> None:
        hosted.realtime.add_sink(self.osc.sink_for(hosted.session_id))
        blocks = self.audio.setdefault(hosted.session_id, [])
        hosted.realtime.add_sink(lambda block: blocks.append(block.audio.copy()))

    def send(self, name, port, wait_for_builds=True, **values) -> list[tuple[int, str, dict]]:
        """One message from 127.0.0.1:port; what came back: (port, name,
        values), once every session it asked for was made (the welcome of a
        new session comes from the builder thread), or at once (``wait_for_builds=False``)."""
        self.sent.clear()
        datagram = encode_osc(name, **values)
        try:
            self.osc.handle(datagram, ("127.0.0.1", port))
        except ProtocolError as error:
            self.osc._reject(("127.0.0.1", port), error, len(datagram))
        if wait_for_builds:
            self.host.wait_for_builds(10.0)
        return self.received()

    def received(self) -> list[tuple[int, str, dict]]:
        out = []
        for address, datagram in self.sent:
            decoded = decode_osc(datagram, Direction.TO_CLIENT)
            out.append((address[1], decoded.message.name, decoded.values))
        self.sent.clear()
        return out

    def hello(self, port, session="") -> dict:
        (_, name, values), = self.send("hello", port, reply_port=port, sample_rate_hz=48_000, channels=2,
                                       sample_format="s16", client_name=f"game-{port}", role="", cookie="",
                                       proof="", session=session)
        assert name in ("welcome", "error"), name
        return {"type": name, **values}

    def play(self, seconds: float) -> list[tuple[int, str, dict]]:
        """Render every session for ``seconds`` of the fake clock, block by
        block; the callbacks sent meanwhile."""
        for _ in range(int(seconds * 48_000 / BLOCK_FRAMES)):
            for session_id in self.host.session_ids():
                realtime = self.host.hosted(session_id).realtime
                while realtime.run_once() == 0.0:
                    pass
            self.clock.advance(BLOCK_FRAMES / 48_000)
            self.osc.flush()
        return self.received()

    def close(self) -> None:
        self.host.close()
        self.host.default.realtime.stop()
        self.host.default.session.close()
        self.osc._socket.close()


@pytest.fixture
def served(tmp_path, tone_bank):
    made = []

    def make(factory=None, **settings):
        made.append(Served(tmp_path, tone_bank(), factory, **settings))
        return made[-1]

    yield make
    for each in made:
        each.close()


def cues_sent(messages, port) -> list[str]:
    return [values["cue"] for to, name, values in messages if to == port and name == "cue_change"]


def test_a_hello_naming_a_session_makes_it_and_every_later_message_goes_there(served, tmp_path):
    s = served()
    a, b = s.hello(7001, "arena-a"), s.hello(7002, "arena-b")
    assert (a["type"], a["session_id"], b["session_id"]) == ("welcome", "arena-a", "arena-b")
    assert s.host.session_ids() == ["default", "arena-a", "arena-b"]
    assert s.host.counters["sessions_created"] == 3
    # A scene change in A does not change B's cue: each client hears its own session only.
    s.send("cue", 7001, cue="high")
    s.send("cue", 7002, cue="low")
    heard = s.play(3.0)
    assert cues_sent(heard, 7001) == ["high"] and cues_sent(heard, 7002) == ["low"]
    s.send("cue", 7001, cue="keys")
    heard = s.play(3.0)
    assert cues_sent(heard, 7001) == ["keys"] and cues_sent(heard, 7002) == []
    beats_b = [v for to, name, v in heard if to == 7002 and name == "beat"]
    assert beats_b and {v["cue"] for v in beats_b} == {"low"}
    # Each session records to its own file, and each replays bit for bit to the audio it served.
    s.host.end("arena-b", "request")
    served_b = np.concatenate(s.audio["arena-b"])
    path_b = recording_path(tmp_path / "run.jsonl", "arena-b")
    assert path_b == tmp_path / "run.arena-b.jsonl"
    replayed_b = replay(path_b)
    assert np.array_equal(replayed_b[: len(served_b)], served_b)
    lines = [json.loads(line) for line in path_b.read_text().splitlines()]
    assert [line.get("cue") for line in lines if line.get("type") == "scene"] == ["low"]  # only B's input


def test_a_hello_for_a_new_session_gets_its_id_in_welcome_and_others_join_it_by_that_id(served):
    s = served()
    first = s.hello(7001, "new")
    assert first["type"] == "welcome" and first["session_id"] not in ("default", "new")
    joined = s.hello(7002, first["session_id"])
    assert joined["session_id"] == first["session_id"] and len(s.host) == 2
    assert s.hello(7003)["session_id"] == "default"  # no session named: the default one, as before
    assert s.host.counters["sessions_created"] == 2


@pytest.mark.parametrize("bad", ["two words", "x" * 33, "café", "a/b"])
def test_a_malformed_session_id_is_refused_naming_what_is_allowed(served, bad):
    from pythonosc.osc_message_builder import OscMessageBuilder

    s = served()
    builder = OscMessageBuilder("/adaptive/hello")  # built by hand: the client's own checks would refuse it
    for value in (7001, 48_000, 2, "s16", "g", "", "", "", bad):
        builder.add_arg(value)
    s.sent.clear()
    try:
        s.osc.handle(builder.build().dgram, ("127.0.0.1", 7001))
    except ProtocolError as error:
        s.osc._reject(("127.0.0.1", 7001), error, 0)
    (_, name, values), = s.received()
    assert name == "error" and values["code"] == "out_of_range"
    assert ("letters, digits, _ and -" in values["message"] if len(bad) <= 32
            else "at most 32 characters" in values["message"])
    assert len(s.host) == 1 and s.osc.counters["rejected_out_of_range"] == 1


def test_the_host_refuses_a_malformed_id_itself_too(served):
    s = served()
    with pytest.raises(ProtocolError) as caught:
        s.host.open("two words")
    assert caught.value.code == "out_of_range" and s.host.counters["refused_bad_id"] == 1


def test_at_the_cap_a_hello_is_refused_naming_the_cap_and_the_music_goes_on(served):
    s = served(max_sessions=2)
    assert s.hello(7001, "a")["type"] == "welcome"
    refused = s.hello(7002, "b")
    assert refused["type"] == "error" and refused["code"] == "not_allowed"
    assert "2 sessions" in refused["message"] and "max_sessions" in refused["message"]
    assert "--max-sessions 2" in refused["message"]
    assert s.host.counters["refused_at_cap"] == 1 and s.host.session_ids() == ["default", "a"]
    assert s.hello(7003, "a")["type"] == "welcome"  # joining one that exists is no new session
    s.send("cue", 7001, cue="high")
    assert cues_sent(s.play(2.0), 7001) == ["high"]
    assert all(s.host.hosted(i).realtime.counters["blocks"] > 0 for i in ("default", "a"))


def test_a_session_without_clients_ends_after_the_idle_time_and_the_default_never_does(served, tmp_path):
    s = served(session_idle_s=30)
    s.hello(7001, "a")
    s.play(0.5)
    s.clock.advance(100.0)
    s.send("ping", 7001, sequence=1)  # a client that keeps its lease keeps the session
    assert s.host.tick() == [] and s.host.tick() == []
    s.send("goodbye", 7001)
    assert s.host.tick() == []  # its idle time starts now
    s.clock.advance(29.0)
    assert s.host.tick() == []
    s.clock.advance(1.0)
    assert s.host.tick() == ["a"]
    assert s.host.session_ids() == ["default"] and s.host.counters["sessions_ended_idle"] == 1
    assert s.host.counters["blocks_of_ended_sessions"] > 0
    lines = (tmp_path / "run.a.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "end"  # its recording is closed
    s.clock.advance(1000.0)
    assert s.host.tick() == [] and s.host.session_ids() == ["default"]  # no client, and it plays on


def test_a_control_client_ends_a_session_and_its_clients_are_told(served):
    s = served()
    s.hello(7001, "a"), s.hello(7002, "a"), s.hello(7003)
    answer = s.send("session_end", 7003, session_id="a")
    assert (7003, "session_ended", {"session_id": "a", "reason": "request"}) in answer
    told = [(port, values["reason"]) for port, name, values in answer if name == "session_ended" and port != 7003]
    assert sorted(told) == [(7001, "request"), (7002, "request")]
    assert s.host.session_ids() == ["default"] and s.host.counters["sessions_ended_request"] == 1
    # Its clients are forgotten: their next message goes to the default session, as a sender without hello's.
    assert s.clients.count("a") == 0
    (_, name, values), = s.send("session_end", 7003, session_id="default")
    assert name == "error" and values["code"] == "not_allowed" and "ends only with the server" in values["message"]
    (_, name, values), = s.send("session_end", 7003, session_id="gone")
    assert name == "error" and values["code"] == "unknown_name" and "no session 'gone'" in values["message"]


def test_a_mapping_change_in_one_session_leaves_the_others_alone(served):
    s = served()
    s.hello(7001, "a"), s.hello(7002, "b")
    before = s.send("mapping_get", 7002, path="smoothing.hysteresis")[0][2]["value"]
    (_, name, values), = s.send("mapping_set", 7001, path="smoothing.hysteresis", value="0.31")
    assert (name, values["value"]) == ("mapping_value", "0.31")
    assert s.send("mapping_get", 7001, path="smoothing.hysteresis")[0][2]["value"] == "0.31"
    assert s.send("mapping_get", 7002, path="smoothing.hysteresis")[0][2]["value"] == before != "0.31"
    assert s.host.default.mapping.current is s.host.hosted("b").mapping.current  # still the shared initial one


def test_a_ping_is_answered_on_the_clock_of_the_senders_session(served):
    s = served()
    s.play(1.0)  # the default session has played a second before session a starts
    s.hello(7001, "a")
    s.play(0.5)
    (_, name, pong), = s.send("ping", 7001, sequence=5)
    a_seconds = pong["receive_time_s"] + pong["receive_time_us"] / 1e6
    assert name == "pong" and a_seconds == pytest.approx(s.host.hosted("a").realtime.server_time_seconds())
    assert a_seconds < s.host.default.realtime.server_time_seconds() - 0.9


def generation_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "adaptive-generation"}


def test_one_generation_thread_serves_every_session(served):
    before = generation_threads()  # other tests' sessions may not have been closed
    s = served()
    for port, session_id in ((7001, "a"), (7002, "b"), (7003, "c")):
        s.hello(port, session_id)
    s.play(0.5)
    scheduler = s.host.generation
    workers = [s.host.hosted(session_id).session.generation for session_id in s.host.session_ids()]
    assert len(workers) == 4 and all(worker.scheduler is scheduler and worker.shared for worker in workers)
    assert len({id(worker) for worker in workers}) == 4  # each session keeps its own misses and fallbacks
    assert len(generation_threads() - before) == 1  # one thread for 4 sessions
    # Deadlines compare across sessions: a session's frame f plays at its start + f / rate on the one clock.
    a = s.host.hosted("a")
    assert a.session.generation.time_of_frame(48_000) == pytest.approx(
        s.clock() - a.realtime.server_time_seconds() + 1.0)
    parts_of_a = set(a.session.generation.streams)
    s.send("session_end", 7001, session_id="a")
    assert not parts_of_a & set(scheduler.streams)  # its parts are withdrawn, the others' stay
    assert len(generation_threads() - before) == 1 and scheduler.thread_alive()


def test_recordings_of_other_sessions_go_beside_the_default_one(tmp_path):
    assert recording_path(tmp_path / "run.jsonl", "default") == tmp_path / "run.jsonl"
    assert recording_path(tmp_path / "run.jsonl", "arena-2") == tmp_path / "run.arena-2.jsonl"


def test_over_zeromq_a_hello_names_a_session_and_its_callbacks_go_out_on_its_topics(served):
    import json as json_module

    from bridge.sessions import session_topic
    from bridge.zmq_server import ZmqServer

    s = served()
    zmq_server = ZmqServer(s.host.default.session.bank, s.host.default.realtime.submit,
                           s.host.default.realtime.server_time_seconds, 48_000, s.host.default.endpoint.welcome,
                           control_port=0, events_port=0, clients=s.clients, clock=s.clock, sessions=s.host)
    replies, published = [], []
    zmq_server._reply = lambda identity, envelope, payload: replies.append((identity, json_module.loads(payload)))
    zmq_server._publish = lambda topic, payload: published.append((topic, json_module.loads(payload)["type"]))
    try:
        hello = {"type": "hello", "reply_port": 1, "sample_rate_hz": 48_000, "channels": 2, "sample_format": "s16",
                 "client_name": "zmq-game", "session": "arena-z"}
        zmq_server.handle(json_module.dumps(hello).encode(), b"peer-1", host="127.0.0.1")
        assert replies == []  # welcomed once the session is made, through the ZeroMQ thread's queue
        s.host.wait_for_builds(10.0)
        while zmq_server._late_replies:
            zmq_server._reply(*zmq_server._late_replies.popleft())
        (_, welcome), = replies
        assert (welcome["type"], welcome["session_id"]) == ("welcome", "arena-z")
        zmq_server.handle(b'{"type": "cue", "cue": "high"}', b"peer-1", host="127.0.0.1")
        hosted = s.host.hosted("arena-z")
        zmq_server._subscriptions.prefixes = frozenset({session_topic("arena-z", b"events")})
        hosted.realtime.add_sink(zmq_server.sink_for("arena-z"))
        s.host.default.realtime.add_sink(zmq_server.sink_for("default"))
        zmq_server._running = True
        s.play(2.0)
        zmq_server._publish_outbox()
        assert published and {topic for topic, _ in published} == {b"session/arena-z/events"}
        assert ("session/arena-z/events".encode(), "cue_change") in published
        assert hosted.realtime.counters["inputs"] == 1 and s.host.default.realtime.counters["inputs"] == 0
    finally:
        zmq_server._running = False
        zmq_server.close()


class SlowFactory:
    """Makes sessions the host's way, but each one other than the default
    waits until the test lets it go (as loading synthesizers and a generator
    takes seconds), or fails when told to."""

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.started = threading.Event()
        self.made: list[str] = []
        self.fail_with: Exception | None = None

    def __call__(self, build, session_id):
        if session_id != "default":
            self.started.set()
            assert self.release.wait(10.0), "the test never let the build go"
            self.made.append(session_id)
            if self.fail_with is not None:
                raise self.fail_with
        return build(session_id)


def test_while_a_session_is_being_made_other_clients_are_answered_at_once(served):
    slow = SlowFactory()
    s = served(factory=slow)
    slow.release.set()
    assert s.hello(7001, "a")["type"] == "welcome"  # made before the slow one below
    slow.release.clear()
    assert s.send("hello", 7002, wait_for_builds=False, reply_port=7002, sample_rate_hz=48_000, channels=2,
                  sample_format="s16", client_name="late", role="", cookie="", proof="", session="b") == []
    assert slow.started.wait(10.0) and s.host.building_ids() == ["b"]
    # Session b is being made: a ping from a client of session a, and one from the default session, get pongs now.
    (port, name, _), = s.send("ping", 7001, wait_for_builds=False, sequence=1)
    assert (port, name) == (7001, "pong")
    (port, name, _), = s.send("ping", 7003, wait_for_builds=False, sequence=2)
    assert (port, name) == (7003, "pong")
    s.send("cue", 7001, wait_for_builds=False, cue="high")
    assert cues_sent(s.play(2.0), 7001) == ["high"]  # session a plays and calls back meanwhile
    assert s.host.hosted("a").realtime.counters["inputs"] == 1
    # Once b is made its hello is welcomed, from the builder thread, at its reply port.
    slow.release.set()
    s.host.wait_for_builds(10.0)
    (port, name, values), = s.received()
    assert (port, name, values["session_id"]) == (7002, "welcome", "b")
    assert s.clients.count("b") == 1 and s.osc.counters["hellos_waiting"] == 2  # a's hello and b's


def test_two_hellos_for_the_same_new_session_make_it_once_and_both_are_welcomed(served):
    slow = SlowFactory()
    s = served(factory=slow)
    for port in (7001, 7002):
        s.send("hello", port, wait_for_builds=False, reply_port=port, sample_rate_hz=48_000, channels=2,
               sample_format="s16", client_name=f"p{port}", role="", cookie="", proof="", session="arena")
    slow.release.set()
    s.host.wait_for_builds(10.0)
    welcomes = sorted((port, values["session_id"]) for port, name, values in s.received() if name == "welcome")
    assert welcomes == [(7001, "arena"), (7002, "arena")]
    assert slow.made == ["arena"] and s.host.counters["sessions_created"] == 2  # the default one and arena
    assert s.host.counters["hellos_joined_build"] == 1 and s.clients.count("arena") == 2


def test_a_session_that_cannot_be_made_gets_an_error_reply_and_a_counter_and_the_music_goes_on(served):
    slow = SlowFactory()
    s = served(factory=slow)
    slow.fail_with = OSError("the SoundFont went away")
    slow.release.set()
    (port, name, values), = s.send("hello", 7001, reply_port=7001, sample_rate_hz=48_000, channels=2,
                                   sample_format="s16", client_name="g", role="", cookie="", proof="",
                                   session="broken")
    assert (port, name, values["code"]) == (7001, "error", "internal")
    assert "could not make session 'broken'" in values["message"] and "SoundFont went away" in values["message"]
    assert s.host.counters["sessions_build_failed"] == 1 and s.osc.counters["rejected_internal"] == 1
    assert s.host.session_ids() == ["default"] and s.host.building_ids() == [] and s.clients.count("broken") == 0
    s.send("cue", 7002, cue="high")  # the default session keeps playing and taking input
    s.play(1.0)
    assert s.host.default.realtime.counters["blocks"] > 0 and s.host.default.realtime.counters["inputs"] == 1
    slow.fail_with = None  # the same id can be asked for again, and is made then
    assert s.hello(7001, "broken")["session_id"] == "broken"


def test_sessions_being_made_count_against_the_cap(served):
    slow = SlowFactory()
    s = served(factory=slow, max_sessions=2)
    s.send("hello", 7001, wait_for_builds=False, reply_port=7001, sample_rate_hz=48_000, channels=2,
           sample_format="s16", client_name="a", role="", cookie="", proof="", session="a")
    (port, name, values), = s.send("hello", 7002, wait_for_builds=False, reply_port=7002, sample_rate_hz=48_000,
                                   channels=2, sample_format="s16", client_name="b", role="", cookie="", proof="",
                                   session="b")
    assert (port, name, values["code"]) == (7002, "error", "not_allowed") and "--max-sessions 2" in values["message"]
    slow.release.set()
    s.host.wait_for_builds(10.0)
    assert [(p, n) for p, n, _ in s.received()] == [(7001, "welcome")] and s.host.session_ids() == ["default", "a"]


def test_over_zeromq_a_session_that_cannot_be_made_is_refused_through_the_zeromq_thread(served):
    import json as json_module

    from bridge.zmq_server import ZmqServer

    slow = SlowFactory()
    slow.fail_with = RuntimeError("no synthesizers left")
    s = served(factory=slow)
    zmq_server = ZmqServer(s.host.default.session.bank, s.host.default.realtime.submit,
                           s.host.default.realtime.server_time_seconds, 48_000, s.host.default.endpoint.welcome,
                           control_port=0, events_port=0, clients=s.clients, clock=s.clock, sessions=s.host)
    replies = []
    zmq_server._reply = lambda identity, envelope, payload: replies.append((identity, json_module.loads(payload)))
    try:
        hello = {"type": "hello", "reply_port": 1, "sample_rate_hz": 48_000, "channels": 2, "sample_format": "s16",
                 "client_name": "zmq-game", "session": "doomed"}
        zmq_server.handle(json_module.dumps(hello).encode(), b"peer-1", host="127.0.0.1")
        assert replies == []  # the ZeroMQ thread goes on; the answer comes when the build ends
        slow.release.set()
        s.host.wait_for_builds(10.0)
        while zmq_server._late_replies:
            zmq_server._reply(*zmq_server._late_replies.popleft())
        (identity, error), = replies
        assert (identity, error["type"], error["code"]) == (b"peer-1", "error", "internal")
        assert "no synthesizers left" in error["message"]
        assert zmq_server.counters["rejected_internal"] == 1 and s.clients.count("doomed") == 0
    finally:
        zmq_server.close()
