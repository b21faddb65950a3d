"""Roles, credentials, cookies, leases and caps (bridge/access.py), and how the
OSC endpoint applies them: no reflection or amplification towards a source that
has not shown it receives, every forbidden message refused naming the role it
needs, silent clients dropped. All on a fake clock; datagrams are handed to
``OscServer.handle`` and what it would send is recorded, not sent."""

from __future__ import annotations

import struct

import pytest

from adaptive.cue import DEFAULT_BANK, load_bank
from adaptive.mapping import ResolvedMapping
from bridge.access import (ClientTable, CookieJar, Role, create_credentials, hello_proof, is_loopback,
                           load_credentials)
from bridge.mapping_watch import MappingControl
from bridge.osc_server import OscServer
from bridge.protocol import BY_NAME, Direction, ProtocolError, decode_osc, encode_osc
from tests.bridge.test_dispatch import SAMPLE_VALUES
from tests.helpers import FakeClock

REMOTE = ("192.0.2.7", 40_000)  # TEST-NET-1 (RFC 5737): nothing is ever sent there, sends are recorded
REPLY_PORT = 40_001


@pytest.fixture(scope="module")
def bank():
    return load_bank(DEFAULT_BANK)


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    folder = tmp_path_factory.mktemp("credentials")
    create_credentials(folder)
    return load_credentials(folder)


class Endpoint:
    """An OscServer on loopback whose sends are recorded, with a fake clock."""

    def __init__(self, bank, credentials=None, trust_loopback=True, **table) -> None:
        self.clock = FakeClock()
        self.submitted = []
        self.mapping = MappingControl(bank, ResolvedMapping.from_bank(bank), self.submitted.append)
        self.server = OscServer(bank, self.submitted.append, lambda: 1.0, 48_000,
                                {"session_id": "s", "block_frames": 1024, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                                port=0, mapping=self.mapping, credentials=credentials, trust_loopback=trust_loopback,
                                clients=ClientTable(self.clock, **table), clock=self.clock)
        self.sent: list[tuple[tuple[str, int], bytes]] = []
        self.server._send_now = lambda address, datagram: self.sent.append((address, datagram))

    def send(self, name, source=REMOTE, **values) -> list[tuple[tuple[str, int], dict]]:
        """Hand one message from ``source`` to the server; what it sent back (address, (name, values))."""
        datagram = encode_osc(name, **values) if isinstance(name, str) else name
        self.sent.clear()
        try:
            self.server.handle(datagram, source)
        except ProtocolError as error:
            self.server._reject(source, error, len(datagram))
        return [(address, _decode(data)) for address, data in self.sent]

    def hello(self, source=REMOTE, reply_port=REPLY_PORT, role="", cookie="", proof="", name="t"):
        return self.send("hello", source, reply_port=reply_port, sample_rate_hz=48_000, channels=2,
                         sample_format="s16", client_name=name, role=role, cookie=cookie, proof=proof)

    def join(self, source=REMOTE, role="", secret=None, reply_port=REPLY_PORT) -> dict:
        """The whole handshake; the welcome's values."""
        (_, (name, retry)), = self.hello(source, reply_port, role)
        assert name == "retry"
        proof = hello_proof(secret, retry["cookie"], role, reply_port) if secret else ""
        (_, (name, welcome)), = self.hello(source, reply_port, role, retry["cookie"], proof)
        assert name == "welcome", welcome
        return welcome

    def close(self):
        self.server._socket.close()


def _decode(datagram: bytes):
    decoded = decode_osc(datagram, Direction.TO_CLIENT)
    return decoded.message.name, decoded.values


@pytest.fixture
def endpoint(bank):
    made = []

    def make(**options):
        made.append(Endpoint(bank, **options))
        return made[-1]

    yield make
    for each in made:
        each.close()


# --------------------------------------------------------------------------- the pieces


def test_roles_are_ordered_audience_listener_control():
    assert Role.CONTROL.allows("listener") and Role.CONTROL.allows("audience") and Role.LISTENER.allows("audience")
    assert not Role.LISTENER.allows("control") and not Role.AUDIENCE.allows("listener")
    assert all(role.allows(None) for role in Role)


def test_loopback_is_this_machine_only():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("*") and not is_loopback("192.168.1.2")


def test_a_cookie_is_good_for_its_address_for_one_to_two_buckets():
    clock = FakeClock(1000.0)
    jar = CookieJar(b"k" * 32, bucket_s=30.0, clock=clock)
    cookie = jar.cookie("192.0.2.7", 9000)
    assert len(cookie) == 16 and jar.check("192.0.2.7", 9000, cookie)
    assert not jar.check("192.0.2.8", 9000, cookie) and not jar.check("192.0.2.7", 9001, cookie)
    clock.advance(30.0)
    assert jar.check("192.0.2.7", 9000, cookie)  # the bucket before
    clock.advance(30.0)
    assert not jar.check("192.0.2.7", 9000, cookie)  # two buckets on: stale
    assert CookieJar(b"j" * 32, clock=clock).cookie("192.0.2.7", 9000) != jar.cookie("192.0.2.7", 9000)


def test_a_proof_depends_on_the_secret_the_cookie_the_role_and_the_port():
    proof = hello_proof(b"secret-secret-secret", "0123456789abcdef", "control", 9001)
    assert len(proof) == 64 and int(proof, 16) >= 0
    others = {hello_proof(b"secret-secret-secreT", "0123456789abcdef", "control", 9001),
              hello_proof(b"secret-secret-secret", "0123456789abcdee", "control", 9001),
              hello_proof(b"secret-secret-secret", "0123456789abcdef", "listener", 9001),
              hello_proof(b"secret-secret-secret", "0123456789abcdef", "control", 9002)}
    assert proof not in others and len(others) == 4


def test_credentials_folder_round_trip_and_its_errors(tmp_path):
    written = create_credentials(tmp_path / "c")
    assert {p.name for p in written} >= {"secrets.toml", "server.key", "server.key_secret", "control.key_secret"}
    loaded = load_credentials(tmp_path / "c")
    assert set(loaded.secrets) == set(Role) and len(set(loaded.secrets.values())) == 3
    assert sorted(role.value for role in loaded.curve_clients.values()) == ["audience", "control", "listener"]
    assert (tmp_path / "c" / "secrets.toml").stat().st_mode & 0o077 == 0  # private
    assert create_credentials(tmp_path / "c") == []  # kept, not overwritten
    (tmp_path / "c" / "secrets.toml").write_text('control = "short"\n')
    with pytest.raises(ValueError, match="at least 16 characters"):
        load_credentials(tmp_path / "c")
    (tmp_path / "c" / "secrets.toml").write_text('admin = "0123456789abcdef0123"\n')
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        load_credentials(tmp_path / "c")
    with pytest.raises(ValueError, match="adaptive credentials"):
        load_credentials(tmp_path / "missing")


def test_the_client_table_caps_per_host_and_per_session_with_a_clear_error():
    table = ClientTable(FakeClock(), max_clients=3, max_clients_per_host=2)
    table.add("osc", ("10.0.0.1", 1), "10.0.0.1", Role.CONTROL)
    table.add("osc", ("10.0.0.1", 2), "10.0.0.1", Role.CONTROL)
    with pytest.raises(ProtocolError, match="10.0.0.1 has 2 clients, the cap per source host") as caught:
        table.add("osc", ("10.0.0.1", 3), "10.0.0.1", Role.CONTROL)
    assert caught.value.code == "not_allowed"
    table.add("osc", ("10.0.0.1", 2), "10.0.0.1", Role.LISTENER)  # the same client again replaces itself
    table.add("zmq", b"id", "10.0.0.2", Role.CONTROL)
    with pytest.raises(ProtocolError, match="its 3 clients"):
        table.add("osc", ("10.0.0.3", 1), "10.0.0.3", Role.CONTROL)
    assert len(table) == 3 and table.counters["refused_at_cap"] == 2


def test_a_silent_client_is_dropped_after_its_lease_and_counted():
    clock = FakeClock()
    table = ClientTable(clock, lease_s=30)
    quiet = table.add("osc", ("10.0.0.1", 1), "10.0.0.1", Role.LISTENER)
    chatty = table.add("osc", ("10.0.0.1", 2), "10.0.0.1", Role.LISTENER)
    clock.advance(29.0)
    table.renew(chatty)
    assert table.expire() == []
    clock.advance(1.0)
    assert table.expire() == [quiet] and table.by_id(quiet.client_id) is None
    assert table.by_id(chatty.client_id) is chatty and table.counters["clients_expired"] == 1


# --------------------------------------------------------------------------- the OSC endpoint


def test_loopback_without_credentials_is_as_easy_as_before(endpoint):
    e = endpoint()
    local = ("127.0.0.1", 50_000)
    (address, (name, welcome)), = e.send(
        "hello", local, reply_port=50_001, sample_rate_hz=48_000, channels=2, sample_format="s16", client_name="x")
    assert address == ("127.0.0.1", 50_001) and name == "welcome" and welcome["role"] == "control"
    assert e.send("scene", ("127.0.0.1", 50_002), emotion="calm", intensity=0.5, location="forest") == []
    assert len(e.submitted) == 1  # a scene from any local socket, no hello needed (the README's oscsend lines)


def test_an_unverified_source_gets_one_retry_no_larger_than_its_hello_at_its_reply_port(endpoint):
    e = endpoint(trust_loopback=False)
    # As `oscsend HOST PORT /adaptive/hello iiiss PORT 48000 2 s16 ""` sends it: the smallest hello there is.
    five_argument_hello = (b"/adaptive/hello\x00,iiiss\x00\x00" + struct.pack(">iii", REPLY_PORT, 48_000, 2)
                           + b"s16\x00" + b"\x00" * 4)
    e.sent.clear()
    e.server.handle(five_argument_hello, REMOTE)
    (address, datagram), = e.sent
    assert address == (REMOTE[0], REPLY_PORT) and len(datagram) <= len(five_argument_hello) == 44
    assert _decode(datagram)[0] == "retry" and len(e.server.clients) == 0
    welcome = e.join()
    assert e.server.clients.by_id(welcome["client_id"]).address == (REMOTE[0], REPLY_PORT)


def test_a_stale_or_foreign_cookie_gets_another_retry_and_no_client(endpoint):
    e = endpoint(trust_loopback=False)
    (_, (_, retry)), = e.hello()
    (_, (name, _)), = e.hello(reply_port=REPLY_PORT + 1, cookie=retry["cookie"])  # for another port
    assert name == "retry"
    e.clock.advance(61.0)
    (_, (name, _)), = e.hello(cookie=retry["cookie"])
    assert name == "retry" and len(e.server.clients) == 0 and e.server.counters["stale_cookies"] == 2


@pytest.mark.parametrize("credentialed", [False, True])
def test_no_message_from_an_unverified_source_gets_more_than_one_reply_no_larger_than_itself(
        endpoint, credentials, credentialed):
    e = endpoint(trust_loopback=False, credentials=credentials if credentialed else None)
    largest_ratio = 0.0
    for name, values in SAMPLE_VALUES.items():
        message = BY_NAME[name]
        datagram = encode_osc(name, **dict(zip((a.name for a in message.args), values)))
        sent = [reply for reply in e.send(datagram) if reply is not None]
        assert len(e.sent) <= 1, name
        for _, data in e.sent:
            largest_ratio = max(largest_ratio, len(data) / len(datagram))
        assert len(e.server.clients) == 0
    garbage = [b"\x00" * 4, b"/adaptive/mapping/export\x00\x00\x00\x00,\x00\x00\x00", b"#bundle\x00" + b"\x00" * 8]
    for datagram in garbage:
        e.send(datagram)
        assert sum(len(d) for _, d in e.sent) <= len(datagram)
    assert largest_ratio <= 1.0
    assert e.server.counters["withheld_unverified"] > 0


def test_streams_go_only_to_verified_clients(endpoint):
    e = endpoint(trust_loopback=False)
    e.hello()  # unverified: no client
    e.send("subscribe", stream="midi")
    assert e.server._wanted_streams == frozenset()
    welcome = e.join()
    e.send("subscribe", stream="midi")
    assert e.server._wanted_streams == {"events", "midi"}
    assert [c.client_id for c in e.server.clients.clients("osc")] == [welcome["client_id"]]


def test_credentials_a_role_is_proved_and_each_forbidden_message_names_the_role_it_needs(endpoint, credentials):
    e = endpoint(credentials=credentials)
    local = ("127.0.0.1", 50_000)
    (_, (name, error)), = e.hello(local)  # no role
    assert name == "error" and error["code"] == "forbidden" and "with a role" in error["message"]
    (_, (name, retry)), = e.hello(local, role="listener")
    assert name == "retry"  # even on loopback: the cookie is the nonce the proof is made over
    wrong = hello_proof(credentials.secrets[Role.AUDIENCE], retry["cookie"], "listener", REPLY_PORT)
    (_, (name, error)), = e.hello(local, role="listener", cookie=retry["cookie"], proof=wrong)
    assert name == "error" and error["code"] == "forbidden" and "does not match" in error["message"]
    welcome = e.join(local, "listener", credentials.secrets[Role.LISTENER])
    assert welcome["role"] == "listener"
    for name, values in SAMPLE_VALUES.items():
        if name in ("hello", "goodbye"):
            continue
        message = BY_NAME[name]
        replies = e.send(name, local, **dict(zip((a.name for a in message.args), values)))
        if message.role == "control":
            (_, (reply, error)), = replies
            assert reply == "error" and error["code"] == "forbidden", name
            assert f"{message.address} needs the control role" in error["message"]
            assert "this sender has the listener role" in error["message"]
    # A listener may vote (audience_vote needs the audience role), nothing else reaches the session.
    assert [type(item).__name__ for item in e.submitted] == ["AudienceVote"]
    e.join(local, "control", credentials.secrets[Role.CONTROL])
    e.send("intensity", local, intensity=0.5)
    assert len(e.submitted) == 2


def test_credentials_a_sender_without_a_hello_may_not_control(endpoint, credentials):
    e = endpoint(credentials=credentials)
    (_, (name, error)), = e.send("intensity", ("127.0.0.1", 50_009), intensity=0.5)
    assert error["code"] == "forbidden" and "has no role yet" in error["message"] and e.submitted == []


def test_a_silent_client_is_dropped_a_pinging_one_is_kept(endpoint):
    e = endpoint(trust_loopback=False)
    silent = e.join(reply_port=REPLY_PORT)
    pinging = e.join(source=(REMOTE[0], 40_100), reply_port=40_101)
    for _ in range(4):
        e.clock.advance(10.0)
        e.send("ping", (REMOTE[0], 40_100), sequence=1)
        e.server.expire_clients()
    assert e.server.clients.by_id(silent["client_id"]) is None
    assert e.server.clients.by_id(pinging["client_id"]) is not None
    assert e.server.clients.counters["clients_expired"] == 1


def test_the_cap_per_host_is_a_clear_error(endpoint):
    e = endpoint(trust_loopback=False, max_clients_per_host=1)
    e.join()
    other = (REMOTE[0], 41_000)
    (_, (_, retry)), = e.hello(other, reply_port=41_001)
    (_, (name, error)), = e.hello(other, reply_port=41_001, cookie=retry["cookie"])
    assert name == "error" and error["code"] == "not_allowed" and "cap per source host" in error["message"]


def test_goodbye_forgets_the_client_from_its_socket_or_with_its_id(endpoint):
    e = endpoint(trust_loopback=False)
    first = e.join()
    e.send("goodbye")
    assert e.server.clients.by_id(first["client_id"]) is None and e.server.clients.counters["goodbyes"] == 1
    second = e.join()
    e.send("goodbye", (REMOTE[0], 45_000), client_id=second["client_id"])
    assert e.server.clients.by_id(second["client_id"]) is None


def test_subscribe_from_a_second_socket_with_the_client_id_and_without_it(endpoint):
    """Issue 16, item 4: hello from one socket, subscribe from another (oscsend opens one per call)."""
    e = endpoint()
    local_hello, local_other = ("127.0.0.1", 50_000), ("127.0.0.1", 50_500)
    (_, (_, welcome)), = e.hello(local_hello, reply_port=50_001)
    (address, (name, error)), = e.send("subscribe", local_other, stream="midi")
    assert address == local_other and name == "error"  # the refusal reaches its sender
    assert "add the client_id of your welcome as the last argument" in error["message"]
    assert e.send("subscribe", local_other, stream="midi", client_id=welcome["client_id"]) == []
    assert e.server.clients.by_id(welcome["client_id"]).streams == {"events", "midi"}
    (_, (name, error)), = e.send("subscribe", local_other, stream="midi", client_id="f" * 32)
    assert name == "error" and "no OSC client of this session" in error["message"]
