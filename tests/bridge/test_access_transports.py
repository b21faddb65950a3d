"""A real server with credentials (on loopback, so the test reaches it): the
Python client proves its role over OSC, ZeroMQ admits only allow-listed CURVE
keys and gives each its role, the TCP audio stream sends nothing before a
client's id, and a closing client says goodbye."""

from __future__ import annotations

import json
import socket
import time

import pytest

zmq = pytest.importorskip("zmq")

from adaptive.cue import DEFAULT_BANK  # noqa: E402
from app.server import Server, ServerSettings  # noqa: E402
from bridge.access import Role, create_credentials  # noqa: E402
from bridge.audio import MAGIC  # noqa: E402
from bridge.client import AdaptiveClient  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("credentials")
    create_credentials(folder)
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0, lookahead_ms=60.0, block_frames=256,
                              credentials=folder)
    server = Server(settings)
    server.start()
    yield server
    server.close()


def client_for(server, role: str) -> AdaptiveClient:
    return AdaptiveClient("127.0.0.1", server.osc.port, client_name=role, role=role,
                          secret=server.credentials.secrets[Role(role)])


def test_osc_roles_are_proved_and_a_listener_may_not_control(server):
    with client_for(server, "listener") as listener:
        welcome = listener.hello()
        assert welcome["role"] == "listener" and server.clients.by_id(welcome["client_id"]) is not None
        inputs = server.osc.counters["inputs"]
        listener.intensity(0.9)
        error = listener.wait_for("error")
        assert error["code"] == "forbidden" and "/adaptive/intensity needs the control role" in error["message"]
        assert server.osc.counters["inputs"] == inputs
        assert float(listener.get_mapping("smoothing.hysteresis")) >= 0  # a listener may read the mapping
    with client_for(server, "control") as control:
        control.hello()
        control.intensity(0.4)
        assert wait_until(lambda: server.osc.counters["inputs"] == inputs + 1)


def test_a_wrong_secret_is_refused(server):
    with AdaptiveClient("127.0.0.1", server.osc.port, role="control", secret="not-the-control-secret") as client:
        with pytest.raises(PermissionError, match="does not match"):
            client.hello()


def test_a_client_says_goodbye_when_it_closes(server):
    client = client_for(server, "audience")
    welcome = client.hello()
    assert welcome["role"] == "audience"
    client.close()
    assert wait_until(lambda: server.clients.by_id(welcome["client_id"]) is None)


def read_some(sock: socket.socket, n_bytes: int, timeout_s: float = 3.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while len(data) < n_bytes:
        chunk = sock.recv(n_bytes - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_tcp_audio_sends_nothing_before_a_client_id_and_blocks_after_one(server):
    with socket.create_connection(("127.0.0.1", server.audio_tcp.port)) as stranger:
        stranger.sendall(b"0123456789abcdef0123456789abcdef\n")  # no client's id
        answer = read_some(stranger, 4096)
        assert answer.startswith(b"ERR ") and MAGIC not in answer and b"client_id" in answer
    with client_for(server, "listener") as listener:
        welcome = listener.hello()
        with socket.create_connection(("127.0.0.1", server.audio_tcp.port)) as reader:
            reader.sendall(welcome["client_id"].encode() + b"\n")
            assert read_some(reader, 64).startswith(MAGIC)
    assert server.audio_tcp.unauthorized_clients >= 1


def zmq_client(server, role: str | None):
    """A DEALER on the control socket with the role's CURVE key (None: a key nobody allow-listed)."""
    folder = server.credentials.folder
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if role is None:
        public, secret = zmq.curve_keypair()
    else:
        public, secret = zmq.auth.load_certificate(folder / "clients" / f"{role}.key_secret")
    sock.curve_publickey, sock.curve_secretkey = public, secret
    sock.curve_serverkey = server.credentials.curve_public_key
    sock.connect(server.zmq.control_endpoint)
    return sock


def ask(sock, message: dict, timeout_ms: int = 3000) -> dict | None:
    """Send and wait for the reply; None if it cannot be sent (a DEALER with no connected peer, e.g. a
    stranger's key refused by the server, blocks on send: hence SNDTIMEO) or no reply comes."""
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    try:
        sock.send(json.dumps(message).encode())
    except zmq.Again:
        return None
    if not sock.poll(timeout_ms):
        return None
    return json.loads(sock.recv_multipart()[-1])


HELLO = {"type": "hello", "reply_port": 1, "sample_rate_hz": 48000, "channels": 2, "sample_format": "s16",
         "client_name": "zmq"}


def test_zeromq_admits_allow_listed_keys_with_their_role(server):
    import zmq.auth  # noqa: F401  (load_certificate)

    listener = zmq_client(server, "listener")
    control = zmq_client(server, "control")
    stranger = zmq_client(server, None)
    try:
        assert ask(listener, HELLO)["role"] == "listener"
        refused = ask(listener, {"type": "intensity", "intensity": 0.5})
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        assert "needs the control role" in refused["message"]
        assert ask(listener, {"type": "hello", **{k: v for k, v in HELLO.items() if k != "type"},
                              "role": "control"})["code"] == "forbidden"  # a key cannot ask above its role
        assert ask(control, {"type": "ping", "sequence": 3})["type"] == "pong"
        assert ask(stranger, {"type": "ping", "sequence": 3}, timeout_ms=1000) is None  # never admitted
    finally:
        for sock in (listener, control, stranger):
            sock.close(linger=0)


def test_mapping_value_over_zeromq_is_strict_json(server):
    control = zmq_client(server, "control")
    try:
        reply = ask(control, {"type": "mapping_set", "path": "smoothing.valence_per_second", "value": "inf"})
        assert reply["type"] == "mapping_value" and reply["value"] == '"inf"'

        def refuse(constant):
            raise AssertionError(f"not JSON: {constant}")

        assert json.loads(reply["value"], parse_constant=refuse) == "inf"
        again = ask(control, {"type": "mapping_set", "path": "smoothing.valence_per_second",
                              "value": reply["value"]})  # what the server wrote reads back
        assert again == reply
    finally:
        control.close(linger=0)
    time.sleep(0.1)


@pytest.mark.parametrize("keepalive", [True, False])
def test_the_python_client_keeps_its_lease_with_pings(keepalive):
    from bridge.access import ClientTable
    from bridge.osc_server import OscServer
    from adaptive.cue import load_bank

    osc = OscServer(load_bank(DEFAULT_BANK), lambda item: None, time.monotonic, 48_000,
                    {"session_id": "s", "block_frames": 1024, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                    port=0, clients=ClientTable(lease_s=1.5))
    osc.start()
    try:
        with AdaptiveClient("127.0.0.1", osc.port, keepalive=keepalive) as client:
            welcome = client.hello()
            assert welcome["lease_s"] == 1
            time.sleep(3.5)  # more than twice the lease
            assert (osc.clients.by_id(welcome["client_id"]) is not None) == keepalive
    finally:
        osc.close()


def test_zeromq_callbacks_reach_only_allow_listed_keys(server):
    def subscriber(role):
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        public, secret = (zmq.curve_keypair() if role is None else
                          zmq.auth.load_certificate(server.credentials.folder / "clients" / f"{role}.key_secret"))
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey = server.credentials.curve_public_key
        sock.setsockopt(zmq.SUBSCRIBE, b"events")
        sock.connect(server.zmq.events_endpoint)
        return sock

    import zmq.auth  # noqa: F401

    audience, stranger = subscriber("audience"), subscriber(None)
    try:
        with client_for(server, "control") as control:  # some scene, so beats are played
            control.hello()
            control.scene("calm", 0.5, "forest")
            assert audience.poll(5000), "no callback for an allow-listed key within 5 s"
            assert json.loads(audience.recv_multipart()[1])["type"]
            assert not stranger.poll(500)
    finally:
        audience.close(linger=0)
        stranger.close(linger=0)
