"""A node of a cluster (docs/cluster.md): its session host asks a placement
where each session it does not hold lives, makes those placed here, and
answers the others with the hosting node's endpoints (``session_elsewhere``),
which the Python client follows. The host on fake clocks as in
tests/app/test_sessions.py; the client against two real UDP sockets."""

from __future__ import annotations


import pytest

from bridge.client import AdaptiveClient
from bridge.protocol import DEFAULT_SESSION, Direction, ProtocolError, decode_osc, encode_osc
from bridge.sessions import SessionElsewhere
from tests.app.test_sessions import Served
from tests.helpers import FakeClusterNode

OTHER_NODE = SessionElsewhere("x", "10.0.0.7", 9100, 9103, 9101)


class FakePlacement:
    """The cluster's directory as one node sees it: ``elsewhere`` maps a
    session id to the node hosting it; the rest is placed here, or refused
    with ``refuse`` (an exception to raise)."""

    def __init__(self, elsewhere: dict[str, SessionElsewhere] | None = None) -> None:
        self.elsewhere = dict(elsewhere or {})
        self.refuse: Exception | None = None
        self.asked: list[str] = []
        self.forgotten: list[str] = []

    def place(self, session_id: str) -> SessionElsewhere | None:
        self.asked.append(session_id)
        if self.refuse is not None:
            raise self.refuse
        return self.elsewhere.get(session_id)

    def forget(self, session_id: str) -> None:
        self.forgotten.append(session_id)


@pytest.fixture
def node(tmp_path, tone_bank):
    made = []

    def make(placement: FakePlacement) -> Served:
        made.append(Served(tmp_path, tone_bank(), placement=placement))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_session_on_another_node_is_answered_with_its_endpoints_and_nothing_is_made_here(node):
    far = SessionElsewhere("arena-far", "10.0.0.7", 9100, 9103, 9101)
    placement = FakePlacement({"arena-far": far})
    s = node(placement)
    replies = s.send("hello", 7001, reply_port=7001, sample_rate_hz=48_000, channels=2, sample_format="s16",
                     client_name="game", role="", cookie="", proof="", session="arena-far")
    assert replies == [(7001, "session_elsewhere", {"session_id": "arena-far", "host": "10.0.0.7", "osc_port": 9100,
                                                    "zmq_control_port": 9103, "audio_tcp_port": 9101})]
    assert s.host.session_ids() == [DEFAULT_SESSION] and placement.asked == ["arena-far"]
    assert s.host.counters["hellos_elsewhere"] == 1 and s.osc.counters["hellos_elsewhere"] == 1
    assert s.osc.counters["rejected"] == 0  # a redirect is not a refusal
    assert s.clients.count("arena-far") == 0


def test_a_session_placed_here_is_made_here_and_forgotten_by_the_directory_when_it_ends(node):
    placement = FakePlacement()
    s = node(placement)
    welcome = s.hello(7001, "new")
    assert welcome["type"] == "welcome" and welcome["session_id"] not in ("new", DEFAULT_SESSION)
    session_id = welcome["session_id"]
    # The id was chosen before asking, so a redirect could have named it.
    assert placement.asked == [session_id] and s.host.session_ids() == [DEFAULT_SESSION, session_id]
    # A second hello for it is answered at once, without asking again.
    assert s.hello(7002, session_id)["session_id"] == session_id and placement.asked == [session_id]
    s.host.end(session_id, "request")
    assert placement.forgotten == [session_id]


def test_the_default_session_is_every_nodes_own_and_never_placed(node):
    placement = FakePlacement({DEFAULT_SESSION: OTHER_NODE})
    s = node(placement)
    assert s.hello(7001, "")["session_id"] == DEFAULT_SESSION
    assert s.hello(7002, DEFAULT_SESSION)["session_id"] == DEFAULT_SESSION
    assert placement.asked == []


def test_a_full_cluster_or_an_unreachable_directory_refuses_with_a_clear_error_and_the_node_plays_on(node):
    placement = FakePlacement()
    s = node(placement)
    placement.refuse = ProtocolError("not_allowed", "every node of the cluster holds its max_sessions")
    refused = s.hello(7001, "arena-1")
    assert (refused["type"], refused["code"]) == ("error", "not_allowed")
    assert "every node" in refused["message"]
    placement.refuse = ConnectionError("the directory's node is gone")
    failed = s.hello(7002, "arena-2")
    assert (failed["type"], failed["code"]) == ("error", "internal")
    assert "directory" in failed["message"] and s.host.counters["placement_failed"] == 1
    assert placement.forgotten == ["arena-1", "arena-2"]  # nothing was made for them here
    assert s.host.session_ids() == [DEFAULT_SESSION]
    placement.refuse = None
    assert s.hello(7003, "arena-2")["session_id"] == "arena-2"  # asked again, it is made


def test_a_session_placed_here_beyond_this_nodes_cap_is_refused_and_forgotten(node):
    placement = FakePlacement()
    s = node(placement)
    s.host.max_sessions = 1  # the default session fills it
    refused = s.hello(7001, "arena-1")
    assert (refused["type"], refused["code"]) == ("error", "not_allowed") and "max_sessions" in refused["message"]
    assert placement.forgotten == ["arena-1"]


def FakeNode(answer):
    """A :class:`tests.helpers.FakeClusterNode` whose ``answer(values)`` gives ``(message name, its values)``."""
    def encoded(values: dict) -> bytes:
        name, reply = answer(values)
        return encode_osc(name, **reply)

    return FakeClusterNode(encoded)


@pytest.mark.integration  # real UDP sockets on loopback
def test_the_python_client_follows_session_elsewhere_to_the_hosting_node():
    welcome = {"protocol_version": 1, "session_id": "arena-9", "sample_rate_hz": 48_000, "block_frames": 1024,
               "lookahead_ms": 40.0, "audio_tcp_port": 9201, "time_s": 1, "time_us": 0, "client_id": "c" * 32,
               "role": "control", "lease_s": 30}
    hosting = FakeNode(lambda values: ("welcome", {**welcome, "session_id": values["session"]}))
    asked = FakeNode(lambda values: ("session_elsewhere", {
        "session_id": "arena-9", "host": "127.0.0.1", "osc_port": hosting.port, "zmq_control_port": 0,
        "audio_tcp_port": 9201}))
    client = AdaptiveClient("127.0.0.1", asked.port, session="new", keepalive=False)
    try:
        got = client.hello(timeout=5.0)
        assert got["session_id"] == "arena-9"
        assert [h["session"] for h in asked.hellos] == ["new"] and [h["session"] for h in hosting.hellos] == ["arena-9"]
        assert (client.host, client.port, client.session) == ("127.0.0.1", hosting.port, "arena-9")
        assert client.redirected_from["port"] == asked.port
        assert decode_osc(encode_osc("session_elsewhere", **{**OTHER_NODE.values}), Direction.TO_CLIENT).values[
            "host"] == "10.0.0.7"
    finally:
        client.close()
        asked.close()
        hosting.close()


@pytest.mark.integration  # real UDP sockets on loopback
def test_the_python_client_stops_after_too_many_redirects():
    looping = FakeNode(lambda values: ("session_elsewhere", {
        "session_id": "arena-9", "host": "127.0.0.1", "osc_port": looping.port, "zmq_control_port": 0,
        "audio_tcp_port": 0}))
    client = AdaptiveClient("127.0.0.1", looping.port, session="arena-9", keepalive=False)
    try:
        with pytest.raises(PermissionError, match="redirected more than 3 times"):
            client.hello(timeout=5.0)
    finally:
        client.close()
        looping.close()


def test_over_zeromq_a_session_on_another_node_is_answered_with_session_elsewhere(node):
    import json

    from bridge.zmq_server import ZmqServer

    far = SessionElsewhere("arena-z", "10.0.0.8", 9200, 9203, 9201)
    s = node(FakePlacement({"arena-z": far}))
    zmq_server = ZmqServer(s.host.default.session.bank, s.host.default.realtime.submit,
                           s.host.default.realtime.server_time_seconds, 48_000, s.host.default.endpoint.welcome,
                           control_port=0, events_port=0, clients=s.clients, clock=s.clock, sessions=s.host)
    replies = []
    zmq_server._reply = lambda identity, envelope, payload: replies.append(json.loads(payload))
    try:
        hello = {"type": "hello", "reply_port": 1, "sample_rate_hz": 48_000, "channels": 2, "sample_format": "s16",
                 "client_name": "zmq-game", "session": "arena-z"}
        zmq_server.handle(json.dumps(hello).encode(), b"peer-1", host="127.0.0.1")
        s.host.wait_for_builds(10.0)
        while zmq_server._late_replies:
            zmq_server._reply(*zmq_server._late_replies.popleft())
        assert replies == [{"type": "session_elsewhere", **far.values}]
        assert zmq_server.counters["hellos_elsewhere"] == 1 and zmq_server.counters["rejected"] == 0
        assert s.clients.count("arena-z") == 0
    finally:
        zmq_server.close()
