"""Fuzzing the real server over real UDP: thousands of malformed, mutated,
oversized and hostile datagrams (and a few from ``oscsend``, an independent OSC
implementation) interleaved with valid ones. The server must reject them,
count them, keep answering, keep the audio stream continuous and still obey a
valid scene afterwards."""

from __future__ import annotations

import math
import random
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from adaptive.cue import DEFAULT_BANK
from bridge.audio import read_tcp_blocks
from bridge.protocol import MAX_DATAGRAM_BYTES, Direction, ProtocolError, decode_osc, encode_osc
from app.server import Server, ServerSettings
from tests.helpers import OscListener

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits

SEED = 20261121
DATAGRAMS = 4000


# --------------------------------------------------------------------------- raw OSC building
def _osc_string(text: bytes) -> bytes:
    return text + b"\x00" * (4 - len(text) % 4)


def raw_osc(address: bytes, tags: bytes, args: list[bytes]) -> bytes:
    """An OSC datagram from raw parts (any type tags, any argument bytes)."""
    return _osc_string(address) + _osc_string(b"," + tags) + b"".join(args)


def f32(value: float) -> bytes:
    return struct.pack(">f", value)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


def s(text: str | bytes) -> bytes:
    return _osc_string(text.encode() if isinstance(text, str) else text)


# Valid messages the fuzz is built from. None of them can change the cue:
# emotions stay near "calm" (the explore cue), no /adaptive/cue, no emotion point.
VALID = [
    encode_osc("intensity", intensity=0.5),
    encode_osc("intensity", intensity=1.0),
    encode_osc("scene", emotion="calm", intensity=0.7, location="forest"),
    encode_osc("emotion", emotion="calm"),
    encode_osc("emotion", emotion="relaxed"),
    encode_osc("location", location="cave"),
    encode_osc("intensity", intensity=0.25),
    encode_osc("ping", sequence=7),
]

ADDRESSES = [b"/adaptive/intensity", b"/adaptive/scene", b"/adaptive/emotion", b"/adaptive/ping",
             b"/adaptive/hello", b"/adaptive/subscribe", b"/adaptive/stinger", b"/adaptive/cue",
             b"/adaptive/emotion/point", b"/adaptive/location"]


def certainly_invalid(rng: random.Random) -> tuple[str, bytes]:
    """A datagram the server must reject, and the kind of rejection."""
    kind = rng.choice(["nan", "inf", "oversized", "unknown_address", "wrong_tags", "huge_string", "bundle",
                       "unsupported_tag", "out_of_range", "empty"])
    if kind in ("nan", "inf"):
        value = math.nan if kind == "nan" else rng.choice([math.inf, -math.inf])
        address = rng.choice([b"/adaptive/intensity", b"/adaptive/emotion/point", b"/adaptive/scene"])
        if address == b"/adaptive/scene":
            return kind, raw_osc(address, b"sfs", [s("calm"), f32(value), s("forest")])
        if address == b"/adaptive/emotion/point":
            return kind, raw_osc(address, b"ff", [f32(value), f32(0.1)])
        return kind, raw_osc(address, b"f", [f32(value)])
    if kind == "oversized":
        return kind, raw_osc(b"/adaptive/location", b"s", [s("x" * rng.randint(MAX_DATAGRAM_BYTES, 4000))])
    if kind == "unknown_address":
        address = rng.choice([b"/adaptive/volume", b"/adaptive", b"/", b"/adaptive/intensity/", b"/ADAPTIVE/scene",
                              b"/adaptive/welcome", b"/adaptive/pong", b"/adaptive/*", b"/adaptive/err\xc3\xa9"])
        return kind, raw_osc(address, b"f", [f32(0.5)])
    if kind == "wrong_tags":
        return kind, rng.choice([
            raw_osc(b"/adaptive/intensity", b"s", [s("0.5")]),
            raw_osc(b"/adaptive/scene", b"fss", [f32(0.5), s("calm"), s("forest")]),
            raw_osc(b"/adaptive/emotion", b"i", [i32(3)]),
            raw_osc(b"/adaptive/ping", b"f", [f32(1.0)]),
            raw_osc(b"/adaptive/intensity", b"ff", [f32(0.5), f32(0.5)]),
            raw_osc(b"/adaptive/intensity", b"", []),
        ])
    if kind == "huge_string":  # too long for an argument but inside one datagram
        return kind, raw_osc(b"/adaptive/emotion", b"s", [s("calm" * rng.randint(20, 300))])
    if kind == "bundle":
        inner = VALID[0]
        return kind, b"#bundle\x00" + b"\x00" * 7 + b"\x01" + i32(len(inner)) + inner
    if kind == "unsupported_tag":
        tag = rng.choice([b"b", b"h", b"t", b"T", b"F", b"N", b"I", b"[", b"m", b"c", b"r", b"S"])
        size = {b"h": 8, b"t": 8}.get(tag, 0 if tag in (b"T", b"F", b"N", b"I", b"[") else 4)
        return kind, raw_osc(b"/adaptive/intensity", tag, [b"\x00\x00\x00\x04" * (size // 4)])
    if kind == "out_of_range":
        return kind, rng.choice([
            raw_osc(b"/adaptive/intensity", b"f", [f32(rng.choice([-0.001, 1.001, 1e30, -1e30, 3.4e38]))]),
            raw_osc(b"/adaptive/emotion", b"s", [s(rng.choice(["unknown", "", "CALM", "calm ", "\u00e9motion"]))]),
            raw_osc(b"/adaptive/stinger", b"s", [s("no_such_stinger")]),
            raw_osc(b"/adaptive/cue", b"s", [s("no_such_cue")]),
            raw_osc(b"/adaptive/ping", b"i", [i32(-1)]),
            raw_osc(b"/adaptive/subscribe", b"s", [s("audio")]),  # not_allowed: no hello from this source
            raw_osc(b"/adaptive/hello", b"iiiss", [i32(0), i32(48000), i32(2), s("s16"), s("x")]),
            raw_osc(b"/adaptive/hello", b"iiiss", [i32(9), i32(48000), i32(3), s("s16"), s("x")]),
        ])
    return kind, b""


def mutated(rng: random.Random) -> bytes:
    """A valid message, mutated: bit flips, truncation, insertion, deletion, splicing."""
    data = bytearray(rng.choice(VALID + [encode_osc("scene", emotion="calm", intensity=0.3, location="x" * 60)]))
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "truncate", "insert", "delete", "byte", "splice", "tag"])
        if op == "flip" and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == "truncate" and data:
            del data[rng.randrange(len(data)):]
        elif op == "insert":
            i = rng.randint(0, len(data))
            data[i:i] = rng.randbytes(rng.randint(1, 12))
        elif op == "delete" and data:
            i = rng.randrange(len(data))
            del data[i:i + rng.randint(1, 8)]
        elif op == "byte" and data:
            data[rng.randrange(len(data))] = rng.choice([0, 0xFF, 0x2C, 0x2F, 0x80, ord("s"), ord("f"), ord("i")])
        elif op == "splice":
            other = rng.choice(VALID)
            i = rng.randint(0, len(data))
            data[i:] = other[rng.randrange(len(other)):]
        elif op == "tag":
            comma = data.find(b",")
            if comma >= 0 and comma + 1 < len(data):
                data[comma + 1] = ord(rng.choice("ifsdbhtTFNI[]mcrS\x00 "))
    return bytes(data)


def random_bytes(rng: random.Random) -> bytes:
    prefix = rng.choice([b"", b"/", b"/adaptive/", b"/adaptive/intensity\x00", b"#bundle\x00", b","])
    return prefix + rng.randbytes(rng.choice([0, 1, 3, 4, 7, 16, 64, 300, 1399, 1400, 1401, 2000]))


# --------------------------------------------------------------------------- the test
@pytest.fixture
def server():
    ports = {name: 0 for name in ServerSettings.model_fields if name.endswith("_port")}  # any free ports
    settings = ServerSettings(bank=DEFAULT_BANK, lookahead_ms=60.0, block_frames=256, **ports)
    server = Server(settings)
    server.start()
    yield server
    server.close()


def _oscsend_cases(port: int) -> list[list[str]]:
    base = ["oscsend", "127.0.0.1", str(port)]
    return [
        base + ["/adaptive/intensity", "f", "nan"],
        base + ["/adaptive/intensity", "f", "inf"],
        base + ["/adaptive/intensity", "f", "-1e38"],
        base + ["/adaptive/emotion", "s", "unknown"],
        base + ["/adaptive/scene", "sfs", "calm", "0.5", "x"],  # valid (any location)
        base + ["/adaptive/scene", "sfi", "calm", "0.5", "3"],
        base + ["/adaptive/intensity", "d", "0.5"],  # a double is accepted for a float
        base + ["/adaptive/intensity", "h", "1"],
        base + ["/adaptive/intensity", "T"],
        base + ["/adaptive/intensity", "N"],
        base + ["/adaptive/ping", "i", "2147483647"],
        base + ["/adaptive/unknown", "s", "x" * 200],
        base + ["/adaptive/emotion", "s", "x" * 1500],
        base + ["/adaptive/intensity", "b", "00ff00"],
        base + ["/adaptive/intensity", "ff", "0.5", "0.5"],
        base + ["/adaptive/intensity"],
    ]


def send_fuzz(server: Server, fuzz: socket.socket, rng: random.Random, before: dict) -> dict[str, int]:
    """Send DATAGRAMS fuzz datagrams from ``fuzz`` (never letting the server fall
    a socket buffer behind); how many of each kind were sent."""
    target = ("127.0.0.1", server.osc.port)
    sent = {"invalid": 0, "oversized": 0, "mutated": 0, "random": 0, "valid": 0}
    for index in range(DATAGRAMS):
        roll = rng.random()
        if roll < 0.35:
            kind, datagram = certainly_invalid(rng)
            sent["invalid"] += 1
            sent["oversized"] += kind == "oversized"
        elif roll < 0.7:
            datagram = mutated(rng)
            sent["mutated"] += 1
        elif roll < 0.85:
            datagram = random_bytes(rng)
            sent["random"] += 1
        else:
            datagram = rng.choice(VALID)
            sent["valid"] += 1
        fuzz.sendto(datagram, target)
        if index % 40 == 39:
            # Stay inside the socket buffer (every datagram must reach the
            # server): let it catch up, however busy the machine is.
            catch_up_deadline = time.monotonic() + 2.0
            while (server.osc.counters["received"] - before.get("received", 0) < index + 1 - 40
                   and time.monotonic() < catch_up_deadline):
                time.sleep(0.001)
            try:
                while fuzz.recv(65536):  # drain the errors sent back
                    pass
            except BlockingIOError:
                pass
    return sent


def test_the_server_survives_a_fuzz_and_still_obeys_valid_input(server):
    rng = random.Random(SEED)
    listener = OscListener(server.osc.port)
    audio = socket.create_connection(("127.0.0.1", server.audio_tcp.port), timeout=5)
    blocks: list = []  # (receipt monotonic, sequence)

    def read_audio() -> None:
        try:
            for header, _ in read_tcp_blocks(audio):
                blocks.append((time.monotonic(), header.sequence))
        except OSError:
            pass

    reader = threading.Thread(target=read_audio, daemon=True)
    reader.start()
    fuzz = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never says hello: errors come back here
    fuzz.bind(("127.0.0.1", 0))
    fuzz.setblocking(False)
    try:
        listener.send("hello", reply_port=listener.reply_port, sample_rate_hz=48000, channels=2,
                      sample_format="s16", client_name="fuzz-test")
        listener.wait_for(lambda: listener.of("welcome"))
        listener.send("scene", emotion="calm", intensity=0.8, location="forest")
        # The music plays from the server's start; calm in the forest keeps explore.
        listener.wait_for(lambda: [b for b in listener.of("beat") if b["cue"] == "explore"])

        before = dict(server.osc.counters)
        sent = send_fuzz(server, fuzz, rng, before)
        oscsend = shutil.which("oscsend")
        oscsend_cases = _oscsend_cases(server.osc.port) if oscsend else []
        oscsend_sent = sum(subprocess.run(command, check=False, timeout=10, capture_output=True).returncode == 0
                           for command in oscsend_cases)  # oscsend refuses some (e.g. a blob it cannot parse)
        assert oscsend_sent >= len(oscsend_cases) - 2

        total = DATAGRAMS + oscsend_sent
        counters = server.osc.counters
        try:
            listener.wait_for(lambda: counters["received"] - before.get("received", 0) >= total, timeout_seconds=10)
        except AssertionError:
            raise AssertionError(f"received {counters['received'] - before.get('received', 0)} of {total}: {dict(counters)}") from None
        fuzz_end = time.monotonic()

        # Still answering.
        pongs_before = len(listener.of("pong"))
        listener.send("ping", sequence=4242)
        listener.wait_for(lambda: [p for p in listener.of("pong")[pongs_before:] if p["sequence"] == 4242])
        welcomes_before = len(listener.of("welcome"))
        listener.send("hello", reply_port=listener.reply_port, sample_rate_hz=48000, channels=2,
                      sample_format="s16", client_name="fuzz-test")
        listener.wait_for(lambda: len(listener.of("welcome")) > welcomes_before)

        # A valid scene after the fuzz still takes effect: calm (explore) -> angry (combat).
        listener.send("cue", cue="")
        listener.send("emotion", emotion="angry")
        listener.wait_for(lambda: [c for c in listener.of("cue_change") if c["cue"] == "combat"], timeout_seconds=8)
        time.sleep(0.3)

        assert server.realtime.failure is None
        assert server.realtime.running
        assert counters["internal_errors"] == 0, "a datagram raised inside the server (see the log)"
        received = counters["received"] - before.get("received", 0)
        rejected = counters["rejected"] - before.get("rejected", 0)
        assert received >= total
        # Every certainly-invalid datagram, and nearly all random and mutated ones, were rejected.
        assert rejected >= sent["invalid"] + oscsend_sent - 3  # three oscsend messages are valid
        assert rejected <= total - sent["valid"]
        assert counters["rejected_too_large"] - before.get("rejected_too_large", 0) >= sent["oversized"]
        for code in ("malformed", "unknown_address", "wrong_arguments", "out_of_range", "unknown_name", "too_large",
                     "not_allowed"):
            assert counters[f"rejected_{code}"] > 0, code
        # The render thread never stopped: audio is continuous and still arriving after the fuzz.
        sequences = [sequence for _, sequence in list(blocks)]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), "gap in the audio stream"
        assert any(arrival > fuzz_end + 0.2 for arrival, _ in list(blocks))
        assert server.realtime.counters["sink_drops"] == 0
    finally:
        fuzz.close()
        listener.close()
        server.close()
        audio.close()
        reader.join(2)


def test_the_fuzz_generators_make_what_they_say():
    """The 'certainly invalid' datagrams are rejected by the decoder itself,
    or are well-formed messages the server rejects on names or permissions."""
    rng = random.Random(SEED)
    for _ in range(500):
        kind, datagram = certainly_invalid(rng)
        try:
            decoded = decode_osc(datagram)
        except ProtocolError:
            continue
        # Decodes: it must be a name or permission the server refuses.
        assert kind == "out_of_range", (kind, datagram)
        assert decoded.message.name in ("emotion", "stinger", "cue", "subscribe"), datagram


# --------------------------------------------------------------------------- bugs the fuzz found
def test_an_unknown_non_ascii_address_is_answered_with_an_error(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    try:
        sock.sendto(raw_osc(("/" + "\u65e5" * 400).encode(), b"f", [f32(0.5)]), ("127.0.0.1", server.osc.port))
        reply, _ = sock.recvfrom(65536)
        assert decode_osc(reply, Direction.TO_CLIENT).values["code"] == "unknown_address"
        assert server.osc.counters["internal_errors"] == 0
    finally:
        sock.close()


def test_a_hello_with_the_servers_own_port_does_not_make_it_talk_to_itself(server):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        before = server.osc.counters["received"]
        sock.sendto(encode_osc("hello", reply_port=server.osc.port, sample_rate_hz=48000, channels=2,
                               sample_format="s16", client_name="loop"), ("127.0.0.1", server.osc.port))
        time.sleep(0.5)
        assert server.osc.counters["received"] - before < 10
    finally:
        sock.close()
