"""The protocol table and its codecs: wire bytes, round trips, every way a
message can be wrong, and the docs and JSON Schema generated from the table."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol import (
    BY_NAME,
    MAX_DATAGRAM_BYTES,
    MESSAGES,
    ArgType,
    Direction,
    ProtocolError,
    decode_json,
    decode_osc,
    encode_json,
    encode_osc,
    json_schema,
    protocol_markdown,
)

ROOT = Path(__file__).resolve().parents[2]

# Wire-format fixtures, as literal bytes (OSC 1.0: padded address, ",tags", big-endian args).
INTENSITY_HALF = b"/adaptive/intensity\x00,f\x00\x00?\x00\x00\x00"
POINT = b"/adaptive/emotion/point\x00,ff\x00>\x80\x00\x00\xbf\x80\x00\x00"  # valence 0.25, arousal -1
STINGER_HIT = b"/adaptive/stinger\x00\x00\x00,s\x00\x00hit\x00"


def test_wire_fixtures_decode():
    assert decode_osc(INTENSITY_HALF).values == {"intensity": 0.5}
    assert decode_osc(POINT).values == {"valence": 0.25, "arousal": -1.0}
    decoded = decode_osc(STINGER_HIT)
    assert decoded.message.name == "stinger" and decoded.values == {"stinger": "hit"}


def test_encoding_gives_the_fixture_bytes():
    assert encode_osc("intensity", intensity=0.5) == INTENSITY_HALF
    assert encode_osc("emotion_point", valence=0.25, arousal=-1.0) == POINT
    assert encode_osc("stinger", stinger="hit") == STINGER_HIT


def _value(arg):
    if arg.type is ArgType.STRING:
        if arg.choices:
            return st.sampled_from(arg.choices)
        return st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=min(64, arg.max_chars))
    if arg.type is ArgType.INT:
        return st.integers(int(arg.minimum), int(arg.maximum))
    # float32 on the wire: draw values that float32 holds exactly
    return st.floats(arg.minimum, arg.maximum, width=32, allow_nan=False)


@st.composite
def messages(draw):
    message = draw(st.sampled_from(MESSAGES))
    return message, {arg.name: draw(_value(arg)) for arg in message.args}


@given(messages())
def test_osc_round_trip(item):
    message, values = item
    decoded = decode_osc(encode_osc(message.name, **values), message.direction)
    assert decoded.message is message
    assert decoded.values == values


@given(messages())
def test_json_round_trip_and_schema(item):
    message, values = item
    text = encode_json(message.name, **values)
    jsonschema.validate(json.loads(text), json_schema())
    assert decode_json(text, message.direction).values == values


def test_every_datagram_fits_the_limit():
    for message in MESSAGES:
        values = {}
        for arg in message.args:
            if arg.type is ArgType.STRING:
                values[arg.name] = arg.choices[0] if arg.choices else "x" * arg.max_chars
            else:
                values[arg.name] = arg.maximum if arg.type is ArgType.FLOAT else int(arg.maximum)
        assert len(encode_osc(message.name, **values)) <= MAX_DATAGRAM_BYTES


@pytest.mark.parametrize(("datagram", "code", "says"), [
    (b"", "malformed", "not an OSC message"),
    (b"\xff\x00garbage", "malformed", "not an OSC message"),
    (INTENSITY_HALF[:-2], "malformed", "not an OSC message"),  # truncated mid-argument
    (INTENSITY_HALF[:-4], "malformed", "truncated"),  # the argument missing entirely
    (b"/adaptive/intensity\x00,T\x00\x00", "wrong_arguments", "type tag 'T'"),
    (b"#bundle\x00" + b"\x00" * 8, "malformed", "bundles"),
    (b"/adaptive/louder\x00\x00\x00\x00,f\x00\x00?\x00\x00\x00", "unknown_address", "/adaptive/intensity"),
    (b"/adaptive/intensity\x00,s\x00\x00hi\x00\x00", "wrong_arguments", "must be a number"),
    (b"/adaptive/intensity\x00,\x00\x00\x00", "wrong_arguments", "takes 1 argument (intensity (f)), got 0"),
    (b"/adaptive/intensity\x00,ff\x00?\x00\x00\x00?\x00\x00\x00", "wrong_arguments", "got 2"),
    (b"/adaptive/intensity\x00,f\x00\x00@\x00\x00\x00", "out_of_range", "from 0 to 1"),  # 2.0
    (b"/adaptive/intensity\x00,f\x00\x00\x7f\xc0\x00\x00", "out_of_range", "finite"),  # NaN
    (b"/adaptive/intensity\x00,f\x00\x00\x7f\x80\x00\x00", "out_of_range", "finite"),  # inf
    (b"/adaptive/subscribe\x00,s\x00\x00video\x00\x00\x00", "out_of_range", "'events', 'midi', 'audio'"),
    (b"/adaptive/beat\x00\x00,i\x00\x00\x00\x00\x00\x01", "unknown_address", "allowed"),  # a to-client message
    (b"/adaptive/intensity\x00,f\x00\x00" + b"\x00" * 1400, "too_large", "at most 1400"),
])
def test_bad_datagrams_are_refused_with_a_clear_reason(datagram, code, says):
    with pytest.raises(ProtocolError) as info:
        decode_osc(datagram)
    assert info.value.code == code
    assert says in str(info.value)


def test_an_int_is_accepted_where_a_float_is_expected_but_not_the_reverse():
    assert decode_osc(encode_raw("/adaptive/intensity", ",i", (1).to_bytes(4, "big"))).values == {"intensity": 1.0}
    with pytest.raises(ProtocolError, match="integer"):
        decode_osc(encode_raw("/adaptive/ping", ",f", b"?\x00\x00\x00"))


def encode_raw(address: str, tags: str, payload: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        data += b"\x00"
        return data + b"\x00" * (-len(data) % 4)
    return pad(address.encode()) + pad(tags.encode()) + payload


@pytest.mark.parametrize(("text", "code", "says"), [
    (b"{", "malformed", "line 1"),
    (b"[1, 2]", "malformed", "JSON object"),
    (b'{"type": "louder"}', "unknown_address", "intensity"),
    (b'{"type": "intensity"}', "wrong_arguments", "missing intensity"),
    (b'{"type": "intensity", "intensity": 0.5, "volume": 1}', "wrong_arguments", "unknown volume"),
    (b'{"type": "intensity", "intensity": true}', "wrong_arguments", "must be a number"),
    (b'{"type": "intensity", "intensity": NaN}', "out_of_range", "finite"),
    (b'{"type": "scene", "emotion": "calm", "intensity": 0.5, "location": "' + b"x" * 80 + b'"}',
     "out_of_range", "at most 64"),
])
def test_bad_json_is_refused_with_a_clear_reason(text, code, says):
    with pytest.raises(ProtocolError) as info:
        decode_json(text)
    assert info.value.code == code
    assert says in str(info.value)


def test_docs_are_generated_from_the_table():
    document = (ROOT / "docs" / "protocol.md").read_text()
    assert protocol_markdown() in document, "docs/protocol.md is out of date: run python -m bridge.protocol"
    for message in MESSAGES:
        assert message.address in document


def test_schema_file_is_the_generated_schema():
    on_disk = json.loads((ROOT / "docs" / "protocol.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema()))


def test_directions_and_replies_are_consistent():
    for message in MESSAGES:
        assert message.address.startswith("/adaptive/")
        if message.reply:
            assert BY_NAME[message.reply].direction is Direction.TO_CLIENT
    assert len({m.address for m in MESSAGES}) == len(MESSAGES)
    assert math.isfinite(BY_NAME["beat"].args[-1].maximum)


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed; ./run test installs it")
@pytest.mark.parametrize(("args", "expected_name", "expected"), [
    (["/adaptive/intensity", "f", "0.75"], "intensity", {"intensity": 0.75}),
    (["/adaptive/emotion/point", "ff", "0.5", "-0.25"], "emotion_point", {"valence": 0.5, "arousal": -0.25}),
    (["/adaptive/scene", "sfs", "tense", "0.5", "forest"], "scene",
     {"emotion": "tense", "intensity": 0.5, "location": "forest"}),
    (["/adaptive/ping", "i", "42"], "ping", {"sequence": 42}),
])
def test_an_independent_osc_implementation_is_understood(args, expected_name, expected):
    """liblo's oscsend (not python-osc) sends; the table's decoder reads it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5.0)
        port = receiver.getsockname()[1]
        subprocess.run(["oscsend", "127.0.0.1", str(port), *args], check=True, timeout=10)
        datagram, _ = receiver.recvfrom(65536)
    decoded = decode_osc(datagram)
    assert decoded.message.name == expected_name
    assert decoded.values == expected


@st.composite
def mutated_datagrams(draw):
    message, values = draw(messages())
    datagram = bytearray(encode_osc(message.name, **values))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        position = draw(st.integers(0, max(len(datagram) - 1, 0)))
        if action == "flip" and datagram:
            datagram[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del datagram[position:]
        else:
            datagram[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(datagram)


@given(st.one_of(st.binary(max_size=2000), mutated_datagrams()))
def test_fuzzed_datagrams_decode_or_are_refused_cleanly(datagram):
    """Whatever arrives: a valid message with values inside their ranges, or a
    ProtocolError — never another exception."""
    for direction in Direction:
        try:
            decoded = decode_osc(datagram, direction)
        except ProtocolError as error:
            assert error.code in BY_NAME["error"].args[0].choices
            continue
        for arg in decoded.message.args:
            value = decoded.values[arg.name]
            if arg.type is not ArgType.STRING:
                assert math.isfinite(value) and arg.minimum <= value <= arg.maximum
