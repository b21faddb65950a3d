"""The transport-independent half of the server: one handler per message a
client may send, one error answer, one event-to-callback table."""

from __future__ import annotations

import collections

import pytest

from adaptive.cue import DEFAULT_BANK, load_bank
from adaptive.events import EventKind, MusicEvent
from adaptive.scene import SceneUpdate
from bridge.access import Role
from bridge.dispatch import EVENT_MESSAGES, Dispatcher, error_reply, event_messages
from bridge.protocol import BY_NAME, ERROR_MESSAGE_CHARS, MESSAGES, Direction, ProtocolError, validate


class RecordingPeer:
    def __init__(self, role=Role.CONTROL) -> None:
        self.calls: list[tuple] = []
        self.role = role

    def hello(self, values):
        self.calls.append(("hello", values["client_name"]))
        return ("welcome", {"client_id": "c" * 32, "role": "control", "lease_s": 30})

    def goodbye(self, client_id):
        self.calls.append(("goodbye", client_id))

    def subscribe(self, stream, subscribed, client_id):
        self.calls.append(("subscribe", stream, subscribed))

    def reply_later(self, replies):
        self.calls.append(("reply_later", replies))


@pytest.fixture(scope="module")
def bank():
    return load_bank(DEFAULT_BANK)


def decoded(name, *values):
    return validate(BY_NAME[name], list(values))


def test_every_message_a_client_may_send_has_a_handler(bank):
    dispatcher = Dispatcher(bank, lambda item: None, lambda: 1.5, 48_000, {})
    assert set(dispatcher.handlers) == {m.name for m in MESSAGES if m.direction is Direction.TO_SERVER}


def test_dispatch_answers_hello_and_ping_and_submits_inputs(bank):
    submitted, counters, peer = [], collections.Counter(), RecordingPeer()
    dispatcher = Dispatcher(bank, submitted.append, lambda: 2.25, 48_000,
                            {"session_id": "s", "block_frames": 1024, "lookahead_ms": 40.0, "audio_tcp_port": 1},
                            counters=counters)
    replies = dispatcher.dispatch(decoded("hello", 9100, 48_000, 2, "s16", "unit"), peer)
    assert [name for name, _ in replies] == ["welcome"] and replies[0][1]["time_s"] == 2
    assert dispatcher.dispatch(decoded("ping", 7), peer, received_seconds=1.0)[0][1]["sequence"] == 7
    assert dispatcher.dispatch(decoded("subscribe", "midi"), peer) == []
    assert dispatcher.dispatch(decoded("intensity", 0.5), peer) == []
    assert submitted == [SceneUpdate(intensity=0.5)]
    assert peer.calls == [("hello", "unit"), ("subscribe", "midi", True)]
    assert (counters["hellos"], counters["pings"], counters["inputs"]) == (1, 1, 1)
    with pytest.raises(ProtocolError, match="unknown_name|not known|allowed"):
        dispatcher.dispatch(decoded("emotion", "nonsense"), peer)


def test_an_error_text_is_cut_to_the_same_limit_in_characters_and_bytes():
    ascii_text = error_reply(ProtocolError("malformed", "x" * 5000))[1]["message"]
    assert len(ascii_text) == ERROR_MESSAGE_CHARS and ascii_text.endswith("...")
    wide_text = error_reply(ProtocolError("malformed", "é" * 900))[1]["message"]
    assert len(wide_text.encode()) <= ERROR_MESSAGE_CHARS and wide_text.endswith("...")
    assert error_reply(ProtocolError("malformed", "short"))[1] == {"code": "malformed", "message": "short"}


def test_internal_events_are_not_sent_and_wire_events_are():
    internal = {EventKind.SCENE, EventKind.FOLLOW, EventKind.GAINS, EventKind.ERROR, EventKind.AUDIENCE}
    assert set(EVENT_MESSAGES) == set(EventKind) - internal
    events = [MusicEvent(48_000, EventKind.BAR, {"cue": "c" * 100, "bar_index": 3}),
              MusicEvent(48_000, EventKind.GAINS, {"cue": "c", "layers": {}})]
    assert event_messages(events, 48_000) == [("bar", {"frame": 48_000, "time_s": 1, "time_us": 0,
                                                       "cue": "c" * 64, "bar_index": 3})]


@pytest.mark.integration
def test_a_bug_in_an_osc_handler_is_answered_counted_and_logged_once(bank, caplog):
    import socket

    from bridge.osc_server import OscServer
    from bridge.protocol import Direction, decode_osc, encode_osc

    server = OscServer(bank, lambda item: None, lambda: 0.0, 48_000,
                       {"session_id": "t", "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 0}, port=0)

    def broken(*args):
        raise KeyError("a bug")

    server.dispatcher.dispatch = broken
    server.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(2.0)
    try:
        with caplog.at_level("ERROR", logger="adaptive.osc"):
            for sequence in range(20):
                client.sendto(encode_osc("ping", sequence=sequence), ("127.0.0.1", server.port))
                reply = decode_osc(client.recv(65536), Direction.TO_CLIENT)
                assert reply.message.name == "error" and reply.values["code"] == "internal"
                assert "KeyError" in reply.values["message"]
    finally:
        client.close()
        server.close()
    assert server.counters["internal_errors"] == 20
    assert len([r for r in caplog.records if "internal error" in r.getMessage()]) == 1


def test_play_theme_asks_for_a_bank_theme_and_its_start_is_called_back(bank):
    from adaptive.scene import ThemeTrigger

    submitted = []
    dispatcher = Dispatcher(bank, submitted.append, lambda: 0.0, 48_000, {})
    assert dispatcher.dispatch(decoded("play_theme", "hero"), RecordingPeer()) == []
    assert submitted == [ThemeTrigger("hero")]
    with pytest.raises(ProtocolError, match="unknown theme 'villain' \\(allowed: hero\\)"):
        dispatcher.dispatch(decoded("play_theme", "villain"), RecordingPeer())
    events = [MusicEvent(96_000, EventKind.THEME, {"name": "hero", "requested_frame": 90_000})]
    assert event_messages(events, 48_000) == [("theme", {"frame": 96_000, "time_s": 2, "time_us": 0,
                                                         "theme": "hero"})]


# Every message a client may send, with valid arguments, to try each role on.
SAMPLE_VALUES = {
    "hello": (9100, 48_000, 2, "s16", "unit"), "goodbye": (), "ping": (1,), "subscribe": ("midi",),
    "unsubscribe": ("midi",), "scene": ("calm", 0.5, "forest"), "emotion": ("calm",), "emotion_point": (0.1, 0.2),
    "intensity": (0.5,), "location": ("forest",), "cue": ("",), "stinger": ("danger",), "play_theme": ("hero",),
    "mapping_set": ("smoothing.hysteresis", "0.3"), "mapping_get": ("smoothing.hysteresis",), "mapping_export": (),
    "session_end": ("",), "audience_vote": ("calm",), "audience_weight": (0.5,),
}


@pytest.mark.parametrize("role", [None, *Role])
@pytest.mark.parametrize("name", sorted(SAMPLE_VALUES))
def test_each_message_is_refused_to_a_role_below_the_one_it_needs_naming_that_role(bank, name, role):
    message = BY_NAME[name]
    dispatcher = Dispatcher(bank, lambda item: None, lambda: 1.0, 48_000,
                            {"session_id": "s", "block_frames": 1024, "lookahead_ms": 40.0, "audio_tcp_port": 1})
    needed = {"hello": None, "goodbye": None, "ping": None, "subscribe": "audience", "unsubscribe": "audience",
              "audience_vote": "audience", "mapping_get": "listener", "mapping_export": "listener"}.get(name, "control")
    assert message.role == needed
    allowed = needed is None or (role is not None and role.rank >= ["audience", "listener", "control"].index(needed))
    if allowed and name == "session_end":  # allowed, and refused by a one-session endpoint for its own reason
        with pytest.raises(ProtocolError) as caught:
            dispatcher.dispatch(decoded(name, *SAMPLE_VALUES[name]), RecordingPeer(role))
        assert caught.value.code == "not_allowed" and "ends only with the server" in caught.value.message
    elif allowed:
        dispatcher.dispatch(decoded(name, *SAMPLE_VALUES[name]), RecordingPeer(role))
    else:
        with pytest.raises(ProtocolError) as caught:
            dispatcher.dispatch(decoded(name, *SAMPLE_VALUES[name]), RecordingPeer(role))
        assert caught.value.code == "forbidden"
        assert f"needs the {needed} role" in caught.value.message and message.address in caught.value.message
        assert dispatcher.counters["forbidden"] == 1


def test_every_message_a_client_may_send_is_sampled_for_the_role_test():
    assert set(SAMPLE_VALUES) == {m.name for m in MESSAGES if m.direction is Direction.TO_SERVER}


class Voter(RecordingPeer):
    def __init__(self, key, role=Role.AUDIENCE) -> None:
        super().__init__(role)
        self.voice_key = key


def voting_dispatcher(bank, now):
    submitted, counters = [], collections.Counter()
    return Dispatcher(bank, submitted.append, lambda: now[0], 48_000, {}, counters=counters), submitted, counters


def test_audience_votes_are_submitted_with_a_voice_per_client_and_checked_like_scene_input(bank):
    from adaptive.audience import AudienceVote, AudienceWeight

    now = [1.0]
    dispatcher, submitted, counters = voting_dispatcher(bank, now)
    alice, bob = Voter("alice"), Voter("bob")
    assert dispatcher.dispatch(decoded("audience_vote", "tense"), alice) == []
    dispatcher.dispatch(decoded("audience_vote", "", 0.25, -0.5, 0.75), bob)
    dispatcher.dispatch(decoded("audience_vote", "calm", 0.0, 0.0, 0.5), alice)
    assert submitted == [AudienceVote("v1", emotion="tense"), AudienceVote("v2", valence=0.25, arousal=-0.5,
                                                                            intensity=0.75),
                         AudienceVote("v1", emotion="calm", intensity=0.5)]
    assert counters["votes"] == 3
    for values, code, words in ((("glee",), "unknown_name", "unknown emotion 'glee'"),
                                (("calm", 0.5, 0.0), "wrong_arguments", "not both"),
                                (("", 0.0, 0.0, -0.5), "out_of_range", "or -1 for no opinion")):
        with pytest.raises(ProtocolError) as raised:
            dispatcher.dispatch(decoded("audience_vote", *values), Voter("carol"))
        assert raised.value.code == code and words in raised.value.message
    with pytest.raises(ProtocolError, match=r"argument 'valence' is 1.5 \(allowed: a number from -1 to 1\)"):
        validate(BY_NAME["audience_vote"], ["", 1.5, 0.0])
    dispatcher.dispatch(decoded("audience_weight", 0.0), RecordingPeer(Role.CONTROL))
    assert submitted[-1] == AudienceWeight(0.0)


def test_votes_are_rate_limited_per_client_on_the_session_clock(bank):
    now = [10.0]
    dispatcher, submitted, counters = voting_dispatcher(bank, now)
    fast, calm = Voter("fast"), Voter("calm")
    for _ in range(10):  # a full bucket: ten at once
        dispatcher.dispatch(decoded("audience_vote", "tense"), fast)
    with pytest.raises(ProtocolError) as raised:
        dispatcher.dispatch(decoded("audience_vote", "tense"), fast)
    assert raised.value.code == "rate_limited" and "at most 10 a second" in raised.value.message
    dispatcher.dispatch(decoded("audience_vote", "calm"), calm)  # another client is not limited by it
    now[0] = 10.1  # 0.1 s later: one token back
    dispatcher.dispatch(decoded("audience_vote", "tense"), fast)
    with pytest.raises(ProtocolError):
        dispatcher.dispatch(decoded("audience_vote", "tense"), fast)
    assert counters["votes"] == 12 and counters["votes_rate_limited"] == 2 and len(submitted) == 12


def test_an_audience_client_may_vote_but_not_set_the_scene_or_the_weight(bank):
    dispatcher, submitted, counters = voting_dispatcher(bank, [0.0])
    audience = Voter("phone")
    for name, values in (("scene", ("tense", 0.5, "")), ("emotion_point", (0.1, 0.1)), ("audience_weight", (0.0,)),
                         ("mapping_set", ("audience.weight", "0"))):
        with pytest.raises(ProtocolError) as raised:
            dispatcher.dispatch(decoded(name, *values), audience)
        assert raised.value.code == "forbidden" and "needs the control role" in raised.value.message
        assert "has the audience role" in raised.value.message
    assert submitted == [] and counters["forbidden"] == 4
    dispatcher.dispatch(decoded("audience_vote", "tense"), Voter("listener", Role.LISTENER))
    assert len(submitted) == 1
