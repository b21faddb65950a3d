"""The protocol: one table of every message between a game engine and the
server, and everything derived from it — OSC decoding and encoding, JSON
(ZeroMQ) decoding, validation with the allowed range in every error,
``docs/protocol.md`` and the JSON Schema (DESIGN.md, "Protocol principles").

Design for the weakest client: OSC arguments are ``i`` (int32), ``f`` (float32)
and ``s`` (string) only; a float argument also accepts ``i`` and ``d``.
Addresses are exact (no pattern matching). Times travel inside the arguments,
never in bundle timetags, as two ``i``: whole seconds and microseconds of
*server time* (seconds since the session started), so they stay exact for 68
years; session frames travel as ``i`` (int32: 12.4 hours at 48 kHz). Every
message stays under :data:`MAX_DATAGRAM_BYTES`.

Over ZeroMQ the same messages are JSON objects ``{"type": NAME, ARG: value, ...}``
with the same argument names; there, frames and times have no size limit.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_DATAGRAM_BYTES = 1400
"""Largest OSC datagram sent or accepted (fits one Ethernet frame with UDP/IP headers)."""

MAX_STRING_CHARS = 64
"""Longest string argument (names, locations) accepted."""

ERROR_MESSAGE_CHARS = 1000
"""Longest text of an ``error`` message (it stays well inside one datagram)."""

PROTOCOL_VERSION = 1


class Direction(enum.Enum):
    """Who sends a message."""

    TO_SERVER = "to server"
    TO_CLIENT = "to client"


class ArgType(enum.Enum):
    """OSC type tag of an argument, and its JSON type."""

    INT = "i"
    FLOAT = "f"
    STRING = "s"

    @property
    def json_type(self) -> str:
        return {"i": "integer", "f": "number", "s": "string"}[self.value]


@dataclass(frozen=True)
class Arg:
    """One argument: name (with its unit), type, allowed values, meaning."""

    name: str
    type: ArgType
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    max_chars: int = MAX_STRING_CHARS
    default: Any = None
    """The value of an optional argument that is left out (None: the argument
    is required). Optional arguments come last; an OSC message may end before
    them and a JSON message may omit them."""

    @property
    def optional(self) -> bool:
        """Whether the argument may be left out (it then takes :attr:`default`)."""
        return self.default is not None

    def allowed(self) -> str:
        """The allowed values, in words, for error messages and docs."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is ArgType.STRING:
            return f"a string of at most {self.max_chars} characters"
        kind = "an integer" if self.type is ArgType.INT else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {self.minimum:g} to {self.maximum:g}"
        return kind


@dataclass(frozen=True)
class Message:
    """One message of the protocol."""

    name: str
    address: str
    direction: Direction
    args: tuple[Arg, ...]
    summary: str
    reply: str | None = None  # the name of the message sent back, if any
    role: str | None = None
    """The least role a client needs to send it (``audience`` < ``listener``
    < ``control``; :mod:`bridge.access`), or None: anyone (hello, goodbye, ping)."""

    @property
    def required_args(self) -> int:
        """How many arguments must be present (the rest are optional)."""
        return sum(1 for arg in self.args if not arg.optional)

    @property
    def signature(self) -> str:
        """OSC type tags, e.g. ``"ff"``."""
        return "".join(arg.type.value for arg in self.args)


def _time_args() -> tuple[Arg, ...]:
    return (
        Arg("frame", ArgType.INT, "session frame the event happens on", 0, 2**31 - 1),
        Arg("time_s", ArgType.INT, "server time of the frame: whole seconds since the session started", 0, 2**31 - 1),
        Arg("time_us", ArgType.INT, "server time of the frame: microseconds past time_s", 0, 999_999),
    )


_NAME = "a name from the cue bank"
STREAMS = ("events", "midi", "audio")

MAPPING_PATH_CHARS = 200
"""Longest mapping key path accepted (``locations.forest.cues.explore.region``)."""

MAPPING_VALUE_CHARS = 1000
"""Longest mapping value text (JSON or TOML) in a set or a reply; it stays inside one datagram."""

MAPPING_TEXT_BYTES = 1000
"""Bytes of mapping TOML per ``mapping_text`` message (UTF-8, cut between characters)."""

ROLES = ("audience", "listener", "control")
"""The roles of a client, from the least to the most allowed (each may do all
that the ones before it may): :mod:`bridge.access`, docs/network.md."""

COOKIE_CHARS = 16
"""Characters of a ``retry`` cookie (hex of 64 bits of HMAC-SHA256)."""

PROOF_CHARS = 64
"""Characters of a hello's proof (hex of an HMAC-SHA256)."""

CLIENT_ID_CHARS = 32
"""Characters of a client id (hex of 128 random bits)."""

SESSION_ID_CHARS = 32
"""Longest session id (letters, digits, ``_`` and ``-``; :mod:`bridge.sessions`)."""

HOST_CHARS = 253
"""Longest host name in a ``session_elsewhere`` (a DNS name's limit, RFC 1035)."""

DEFAULT_SESSION = "default"
"""The session a server plays from its start to its end; a hello that names no session joins it."""

NEW_SESSION = "new"
"""What a hello's ``session`` says to ask for a new session with an id the server chooses."""

VOTES_PER_S = 10
"""Audience votes a client may send per second (a token bucket of as many
tokens, refilled at this rate on the session clock; :class:`bridge.dispatch.Dispatcher`)."""

SESSION_END_REASONS = ("request", "idle", "failed", "server_stop")
"""Why a session ended (``session_ended``)."""


def _client_id_arg() -> Arg:
    return Arg("client_id", ArgType.STRING, "the welcome's client_id, when sent from another socket than the "
               "hello's ('' = the client that said hello from this socket)", max_chars=CLIENT_ID_CHARS, default="")


MESSAGES: tuple[Message, ...] = (
    # ------------------------------------------------------------ to the server
    Message("hello", "/adaptive/hello", Direction.TO_SERVER, (
        Arg("reply_port", ArgType.INT, "UDP port on the sender's host that replies and callbacks go to", 1, 65535),
        Arg("sample_rate_hz", ArgType.INT, "the client's audio output rate (informational: the audio streams "
            "stay at the session's rate, in welcome and every block header; a client at another rate resamples)",
            8000, 192000),
        Arg("channels", ArgType.INT, "the client's output channels (informational: the audio streams are stereo)", 1, 2),
        Arg("sample_format", ArgType.STRING, "PCM format the client prefers (informational: each audio block "
            "header states the format the server streams)", choices=("s16", "f32")),
        Arg("client_name", ArgType.STRING, "free text naming the client, for logs"),
        Arg("role", ArgType.STRING, "the role asked for (docs/network.md); '' = control on a server without "
            "credentials", choices=("", *ROLES), default=""),
        Arg("cookie", ArgType.STRING, "the cookie of the server's retry ('' on the first hello)",
            max_chars=COOKIE_CHARS, default=""),
        Arg("proof", ArgType.STRING, "hex HMAC-SHA256 of the role's secret over 'adaptive-hello|COOKIE|ROLE|REPLY_PORT' "
            "('' on a server without credentials)", max_chars=PROOF_CHARS, default=""),
        Arg("session", ArgType.STRING, f"the session to join: '' = {DEFAULT_SESSION!r} (the server's first "
            f"session); {NEW_SESSION!r} = a new one with an id the server chooses; any other id (letters, digits, _ "
            "and -) joins that session, made on demand if there is none (docs/sessions.md)",
            max_chars=SESSION_ID_CHARS, default=""),
    ), "Say hello. Answered with welcome (the client is verified: callbacks start going to reply_port; welcome's "
       "session_id names the session joined) or, from a source not yet verified or when the role needs its proof, "
       "with retry (say hello again with its cookie).",
       reply="welcome"),
    Message("goodbye", "/adaptive/goodbye", Direction.TO_SERVER, (
        _client_id_arg(),
    ), "Leave: the server forgets the client (its streams stop, its lease and its place under the caps end)."),
    Message("scene", "/adaptive/scene", Direction.TO_SERVER, (
        Arg("emotion", ArgType.STRING, "a named emotion (calm, tense, angry, ...)"),
        Arg("intensity", ArgType.FLOAT, "how intense the scene is", 0.0, 1.0),
        Arg("location", ArgType.STRING, "where the player is; cues may be limited to locations"),
    ), "Set the whole scene state at once.", role="control"),
    Message("emotion", "/adaptive/emotion", Direction.TO_SERVER, (
        Arg("emotion", ArgType.STRING, "a named emotion (calm, tense, angry, ...)"),
    ), "Set the emotion by name.", role="control"),
    Message("emotion_point", "/adaptive/emotion/point", Direction.TO_SERVER, (
        Arg("valence", ArgType.FLOAT, "unpleasant (-1) to pleasant (+1)", -1.0, 1.0),
        Arg("arousal", ArgType.FLOAT, "calm (-1) to excited (+1)", -1.0, 1.0),
    ), "Set the emotion as a point on the valence/arousal plane.", role="control"),
    Message("intensity", "/adaptive/intensity", Direction.TO_SERVER, (
        Arg("intensity", ArgType.FLOAT, "how intense the scene is; drives the layer gains", 0.0, 1.0),
    ), "Set the intensity.", role="control"),
    Message("location", "/adaptive/location", Direction.TO_SERVER, (
        Arg("location", ArgType.STRING, "where the player is"),
    ), "Set the location.", role="control"),
    Message("cue", "/adaptive/cue", Direction.TO_SERVER, (
        Arg("cue", ArgType.STRING, f"{_NAME}; an empty string hands the choice back to the mapping"),
    ), "Force a cue, bypassing the mapping.", role="control"),
    Message("stinger", "/adaptive/stinger", Direction.TO_SERVER, (
        Arg("stinger", ArgType.STRING, _NAME),
    ), "Play a stinger at its quantized boundary.", role="control"),
    Message("play_theme", "/adaptive/play_theme", Direction.TO_SERVER, (
        Arg("theme", ArgType.STRING, _NAME),
    ), "Play a theme of the bank now: its head motif, varied for the current emotion, in the playing key, "
       "quantized like a stinger (its [themes.NAME] quantize); the theme callback marks its start.", role="control"),
    Message("subscribe", "/adaptive/subscribe", Direction.TO_SERVER, (
        Arg("stream", ArgType.STRING, "what to receive at reply_port ('audio' sends nothing over OSC: audio "
            "comes over the TCP stream of welcome's audio_tcp_port or ZeroMQ PUB)", choices=STREAMS),
        _client_id_arg(),
    ), "Start receiving a stream (events: beats, bars, cues, transitions, stingers; midi: note events).", role="audience"),
    Message("unsubscribe", "/adaptive/unsubscribe", Direction.TO_SERVER, (
        Arg("stream", ArgType.STRING, "what to stop receiving", choices=STREAMS),
        _client_id_arg(),
    ), "Stop receiving a stream.", role="audience"),
    Message("ping", "/adaptive/ping", Direction.TO_SERVER, (
        Arg("sequence", ArgType.INT, "chosen by the client to match the pong", 0, 2**31 - 1),
    ), "Clock sync (NTP-style): the client notes its send and receive times around the pong.", reply="pong"),
    Message("mapping_set", "/adaptive/mapping/set", Direction.TO_SERVER, (
        Arg("path", ArgType.STRING, "a mapping key, dotted: smoothing.hysteresis, "
            "locations.forest.cues.explore.region, transitions.2.exit (docs/mapping.md)", max_chars=MAPPING_PATH_CHARS),
        Arg("value", ArgType.STRING, "the new value as JSON (0.3, [[0, -60], [1, 0]]) or TOML (-inf, "
            "{ valence = [0, 1], arousal = [-1, 0] }); a bare word is a string (next_bar)",
            max_chars=MAPPING_VALUE_CHARS),
    ), "Set one value of the live mapping; it is checked against the bank and takes effect at the next bar line. "
       "Answered with mapping_value (the value now in force) or mapping_error (nothing changed).",
       reply="mapping_value", role="control"),
    Message("mapping_get", "/adaptive/mapping/get", Direction.TO_SERVER, (
        Arg("path", ArgType.STRING, "a mapping key, dotted, as for mapping_set", max_chars=MAPPING_PATH_CHARS),
    ), "Read one value of the live mapping. Answered with mapping_value or mapping_error.", reply="mapping_value", role="listener"),
    Message("mapping_export", "/adaptive/mapping/export", Direction.TO_SERVER, (),
            "Ask for the whole live mapping as TOML. Answered with mapping_text messages (in order; join their texts).",
            reply="mapping_text", role="listener"),
    Message("audience_vote", "/adaptive/audience/vote", Direction.TO_SERVER, (
        Arg("emotion", ArgType.STRING, "a named emotion of the mapping (calm, tense, ...), or '' to vote for the "
            "point valence, arousal"),
        Arg("valence", ArgType.FLOAT, "with emotion '': unpleasant (-1) to pleasant (+1); else leave it 0",
            -1.0, 1.0, default=0.0),
        Arg("arousal", ArgType.FLOAT, "with emotion '': calm (-1) to excited (+1); else leave it 0",
            -1.0, 1.0, default=0.0),
        Arg("intensity", ArgType.FLOAT, "how intense the scene should be, 0 to 1; -1 = no opinion",
            -1.0, 1.0, default=-1.0),
    ), f"Vote as the audience (docs/audience.md): each client's latest vote within the mapping's [audience] "
       f"window_s counts once; the votes are aggregated every interval_ms and move the scene as the mapping's "
       f"[audience] says. At most {VOTES_PER_S} votes a second per client (more are answered with a "
       f"rate_limited error).", role="audience"),
    Message("audience_weight", "/adaptive/audience/weight", Direction.TO_SERVER, (
        Arg("weight", ArgType.FLOAT, "how much the audience moves the scene against the control client's own "
            "scene input: 0 = ignore the audience, 1 = the audience alone", 0.0, 1.0),
    ), "Set the audience's weight from the next aggregation on, in place of the mapping's [audience] weight "
       "(docs/audience.md).", role="control"),
    Message("session_end", "/adaptive/session/end", Direction.TO_SERVER, (
        Arg("session_id", ArgType.STRING, "the session to end ('' = the sender's own); the default session "
            "ends only with the server", max_chars=SESSION_ID_CHARS, default=""),
    ), "End a session now: its music stops, its recording is closed, its clients are told (session_ended) and "
       "forgotten (they say hello again to join another). Answered with session_ended.",
       reply="session_ended", role="control"),
    # ------------------------------------------------------------ to the client
    Message("welcome", "/adaptive/welcome", Direction.TO_CLIENT, (
        Arg("protocol_version", ArgType.INT, "this protocol's version", 1, 2**31 - 1),
        Arg("session_id", ArgType.STRING, "the session the client joined (every later message of this client "
            "goes to it)", max_chars=SESSION_ID_CHARS),
        Arg("sample_rate_hz", ArgType.INT, "the session's sample rate: frames count at this rate", 8000, 192000),
        Arg("block_frames", ArgType.INT, "frames per audio block", 1, 2**31 - 1),
        Arg("lookahead_ms", ArgType.FLOAT, "how far ahead of playback the server renders and sends", 0.0, 10_000.0),
        Arg("audio_tcp_port", ArgType.INT, "TCP port of the plain audio stream (0: none)", 0, 65535),
        *(_time_args()[1:]),
        Arg("client_id", ArgType.STRING, "this client's id: subscribe, unsubscribe and goodbye from another socket "
            "carry it, and the TCP audio stream wants it first on a server with credentials", max_chars=CLIENT_ID_CHARS),
        Arg("role", ArgType.STRING, "the role granted", choices=ROLES),
        Arg("lease_s", ArgType.INT, "a client that sends nothing (a ping will do) for this many seconds is dropped",
            1, 86_400),
    ), "Answer to hello: the session's clock, where its audio stream is, and the client's id, role and lease."),
    Message("session_ended", "/adaptive/session/ended", Direction.TO_CLIENT, (
        Arg("session_id", ArgType.STRING, "the session that ended", max_chars=SESSION_ID_CHARS),
        Arg("reason", ArgType.STRING, "request: a session_end; idle: no client for the server's session_idle_s; "
            "failed: its render thread stopped on an error (logged); server_stop: the server stops",
            choices=SESSION_END_REASONS),
    ), "A session ended: sent to its clients (who are forgotten: say hello again to join another) and as the "
       "answer to session_end."),
    Message("session_elsewhere", "/adaptive/session/elsewhere", Direction.TO_CLIENT, (
        Arg("session_id", ArgType.STRING, "the session asked for ('new': the id chosen for it); say hello with "
            "this id at the node below", max_chars=SESSION_ID_CHARS),
        Arg("host", ArgType.STRING, "the host (address or name) of the node that hosts it", max_chars=HOST_CHARS),
        Arg("osc_port", ArgType.INT, "that node's OSC UDP port", 1, 65535),
        Arg("zmq_control_port", ArgType.INT, "that node's ZeroMQ ROUTER port (0: none)", 0, 65535),
        Arg("audio_tcp_port", ArgType.INT, "that node's TCP audio port (0: none)", 0, 65535),
    ), "Answer to a hello, from a node of a cluster (docs/cluster.md), for a session that another node hosts or "
       "that the cluster's directory places on another node: nothing was joined here; say the same hello, with "
       "this session_id, to that node (the Python client, the Unity package and the Godot addon do it "
       "themselves, at most 3 times in a row). A single server never sends it."),
    Message("retry", "/adaptive/retry", Direction.TO_CLIENT, (
        Arg("cookie", ArgType.STRING, "say hello again, the same, with this cookie (and, with a role to prove, the "
            "proof over it); it stays valid for 30 to 60 s and only from this address", max_chars=COOKIE_CHARS),
    ), "Answer to a hello from a source that has not yet shown it receives at reply_port, or whose role needs a "
       "proof: no larger than the hello (no amplification), sent to reply_port (no reflection)."),
    Message("pong", "/adaptive/pong", Direction.TO_CLIENT, (
        Arg("sequence", ArgType.INT, "the ping's sequence", 0, 2**31 - 1),
        Arg("receive_time_s", ArgType.INT, "server time the ping arrived: whole seconds", 0, 2**31 - 1),
        Arg("receive_time_us", ArgType.INT, "... and microseconds", 0, 999_999),
        Arg("send_time_s", ArgType.INT, "server time the pong left: whole seconds", 0, 2**31 - 1),
        Arg("send_time_us", ArgType.INT, "... and microseconds", 0, 999_999),
    ), "Answer to ping. offset = ((receive - t_client_send) + (send - t_client_receive)) / 2."),
    Message("beat", "/adaptive/beat", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("cue", ArgType.STRING, "the cue whose grid the beat is on"),
        Arg("bar_index", ArgType.INT, "bar since the cue started, from 0", 0, 2**31 - 1),
        Arg("beat_in_bar", ArgType.INT, "beat within the bar, from 1", 1, 16),
        Arg("bpm", ArgType.FLOAT, "tempo", 20.0, 300.0),
    ), "A beat, sent ahead of its time."),
    Message("bar", "/adaptive/bar", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("cue", ArgType.STRING, "the cue whose grid the bar is on"),
        Arg("bar_index", ArgType.INT, "bar since the cue started, from 0", 0, 2**31 - 1),
    ), "A downbeat, sent ahead of its time."),
    Message("cue_change", "/adaptive/cue_change", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("cue", ArgType.STRING, "the cue (or segment, or bridge) starting"),
        Arg("previous", ArgType.STRING, "the cue before it ('' at the start)"),
    ), "A cue's downbeat."),
    Message("transition", "/adaptive/transition", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("phase", ArgType.STRING, "start or end of the transition", choices=("start", "end")),
        Arg("from_cue", ArgType.STRING, "the outgoing cue"),
        Arg("to_cue", ArgType.STRING, "the incoming cue"),
    ), "A transition starts (on its quantized boundary) or ends."),
    Message("stinger_played", "/adaptive/stinger_played", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("stinger", ArgType.STRING, "the stinger"),
    ), "A stinger starts."),
    Message("theme", "/adaptive/theme", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("theme", ArgType.STRING, "the theme"),
    ), "A theme starts (asked for with play_theme)."),
    Message("midi", "/adaptive/midi", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("status", ArgType.INT, "MIDI status byte (0x80 note off, 0x90 note on, 0xB0 control change, "
            "0xC0 program change; low nibble = channel)", 0x80, 0xEF),
        Arg("data1", ArgType.INT, "note number, controller or program", 0, 127),
        Arg("data2", ArgType.INT, "velocity or controller value (0 for program change)", 0, 127),
        Arg("part", ArgType.STRING, "the part: cue/layer, stinger/name or bridge"),
    ), "A MIDI event as played."),
    Message("mapping_value", "/adaptive/mapping/value", Direction.TO_CLIENT, (
        Arg("path", ArgType.STRING, "the mapping key asked for or set", max_chars=MAPPING_PATH_CHARS),
        Arg("value", ArgType.STRING, "its value as strict JSON (RFC 8259); the infinities, which JSON "
            "lacks, as the strings \"inf\" and \"-inf\" (mapping_set reads them back)", max_chars=MAPPING_VALUE_CHARS),
    ), "Answer to mapping_get and mapping_set."),
    Message("mapping_text", "/adaptive/mapping/text", Direction.TO_CLIENT, (
        Arg("index", ArgType.INT, "this part's number, from 0", 0, 2**31 - 1),
        Arg("count", ArgType.INT, "how many parts the mapping was cut into", 1, 2**31 - 1),
        Arg("text", ArgType.STRING, "the part: UTF-8 TOML, at most 1000 bytes", max_chars=MAPPING_TEXT_BYTES),
    ), "Answer to mapping_export: one part of the live mapping's TOML."),
    Message("mapping_error", "/adaptive/mapping/error", Direction.TO_CLIENT, (
        Arg("path", ArgType.STRING, "the key that was set or read, or the mapping file that was reloaded",
            max_chars=MAPPING_PATH_CHARS),
        Arg("message", ArgType.STRING, "every problem, each with its key (and line, for a file) and what is allowed",
            max_chars=ERROR_MESSAGE_CHARS),
    ), "A mapping_set or mapping_get was refused, or an edited mapping file is invalid (sent to every client "
       "that said hello); the last good mapping keeps playing."),
    Message("mapping_changed", "/adaptive/mapping/changed", Direction.TO_CLIENT, (
        *_time_args(),
        Arg("source", ArgType.STRING, "where the new mapping came from: its file, or 'live' for mapping_set",
            max_chars=MAPPING_PATH_CHARS),
    ), "A new mapping takes effect (on a bar line of the playing cue), sent to events subscribers."),
    Message("error", "/adaptive/error", Direction.TO_CLIENT, (
        Arg("code", ArgType.STRING, "what kind of error",
            choices=("malformed", "unknown_address", "wrong_arguments", "out_of_range", "unknown_name",
                     "too_large", "not_allowed", "internal", "forbidden", "rate_limited")),
        Arg("message", ArgType.STRING, "what was wrong and what is allowed", max_chars=ERROR_MESSAGE_CHARS),
    ), "The server rejected a message from this client; nothing else changed."),
)

BY_NAME = {message.name: message for message in MESSAGES}
BY_ADDRESS = {message.address: message for message in MESSAGES}


class ProtocolError(ValueError):
    """A message the server cannot accept.

    Attributes:
        code: one of the ``error`` message's codes.
        message: what was wrong and what is allowed (also ``str(error)``).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Decoded:
    """A validated message: its table entry and its arguments by name."""

    message: Message
    values: dict[str, Any] = field(default_factory=dict)


def _check_value(message: Message, arg: Arg, value: Any) -> Any:
    where = f"{message.address} argument {arg.name!r}"
    if arg.type is ArgType.STRING:
        if not isinstance(value, str):
            raise ProtocolError("wrong_arguments", f"{where} must be a string (type s), got {type(value).__name__}")
        if len(value) > arg.max_chars:
            raise ProtocolError("out_of_range", f"{where} is {len(value)} characters long (allowed: {arg.allowed()})")
        if arg.choices is not None and value not in arg.choices:
            raise ProtocolError("out_of_range", f"{where} is {value!r} (allowed: {arg.allowed()})")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        tag = "i" if arg.type is ArgType.INT else "f"
        raise ProtocolError("wrong_arguments", f"{where} must be a number (type {tag}), got {type(value).__name__}")
    if arg.type is ArgType.INT:
        if not isinstance(value, int):
            raise ProtocolError("wrong_arguments", f"{where} must be an integer (type i), got {value!r}")
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ProtocolError("out_of_range", f"{where} is {value!r} (allowed: {arg.allowed()}, finite)")
    if (arg.minimum is not None and value < arg.minimum) or (arg.maximum is not None and value > arg.maximum):
        raise ProtocolError("out_of_range", f"{where} is {value!r} (allowed: {arg.allowed()})")
    return value


def validate(message: Message, values: list[Any]) -> Decoded:
    """Check positional ``values`` against ``message``'s arguments.

    Raises:
        ProtocolError: wrong count, wrong type or out of range, naming the
            argument and what is allowed.
    """
    required, total = message.required_args, len(message.args)
    if not required <= len(values) <= total:
        names = ", ".join(f"{a.name} ({a.type.value}{', optional' if a.optional else ''})"
                          for a in message.args) or "none"
        count = f"{required} to {total}" if required != total else str(total)
        raise ProtocolError(
            "wrong_arguments",
            f"{message.address} takes {count} argument{'s' if total != 1 else ''} ({names}), got {len(values)}",
        )
    values = list(values) + [arg.default for arg in message.args[len(values):]]
    return Decoded(message, {arg.name: _check_value(message, arg, value) for arg, value in zip(message.args, values)})


def decode_osc(datagram: bytes, direction: Direction = Direction.TO_SERVER) -> Decoded:
    """Parse and validate one OSC datagram (a message, not a bundle).

    Raises:
        ProtocolError: oversized, not OSC, a bundle, an unknown address, or
            arguments that do not fit (see :func:`validate`).
    """
    from pythonosc.osc_message import OscMessage, ParseError

    if len(datagram) > MAX_DATAGRAM_BYTES:
        raise ProtocolError("too_large", f"datagram of {len(datagram)} bytes (allowed: at most {MAX_DATAGRAM_BYTES})")
    if datagram.startswith(b"#bundle"):
        raise ProtocolError("malformed", "OSC bundles are not accepted (allowed: single OSC messages)")
    try:
        parsed = OscMessage(datagram)
        address, params = parsed.address, list(parsed.params)
    except (ParseError, ValueError, IndexError, TypeError, UnicodeDecodeError) as error:
        raise ProtocolError("malformed", f"not an OSC message ({error.args[0] if error.args else error})") from None
    _check_osc_layout(datagram, address, params)
    message = BY_ADDRESS.get(address)
    if message is None or message.direction is not direction:
        known = ", ".join(m.address for m in MESSAGES if m.direction is direction)
        shown = address if len(address) <= 64 else address[:61] + "..."
        raise ProtocolError("unknown_address", f"unknown address {shown!r} (allowed: {known})")
    return validate(message, params)


def _padded(length: int) -> int:
    """Bytes an OSC string of ``length`` bytes takes: NUL-terminated, padded to 4."""
    return (length + 4) & ~3


def _check_osc_layout(datagram: bytes, address: str, params: list[Any]) -> None:
    """OSC 1.0 fixes every argument's size; python-osc reads truncated
    arguments without complaint (a missing float becomes 0.0), so check that
    the datagram is exactly as long as its type tags say.

    Raises:
        ProtocolError: unsupported type tags, or a length that does not match.
    """
    start = _padded(len(address.encode()))
    end = datagram.find(b"\x00", start)
    tags = datagram[start + 1 : end].decode("ascii", "replace") if end > start else ""
    unsupported = sorted(set(tags) - set("ifsd"))
    if unsupported:
        raise ProtocolError("wrong_arguments", f"OSC type tag {unsupported[0]!r} is not accepted (allowed: i, f, s, d)")
    expected = start + _padded(len(tags) + 1)
    for tag, value in zip(tags, params):
        expected += {"i": 4, "f": 4, "d": 8}.get(tag, 0)
        if tag == "s":
            expected += _padded(len(str(value).encode()))
    if len(datagram) != expected or len(tags) != len(params):
        raise ProtocolError(
            "malformed",
            f"not an OSC message: {len(datagram)} bytes where type tags ',{tags}' need {expected} (truncated?)",
        )


def encode_osc(name: str, **values: Any) -> bytes:
    """Build the OSC datagram of message ``name`` from its arguments.

    Raises:
        ProtocolError: the values do not fit the table (a bug in the caller),
            or the datagram would exceed :data:`MAX_DATAGRAM_BYTES`.
        KeyError: an unknown message name.
    """
    from pythonosc.osc_message_builder import OscMessageBuilder

    message = BY_NAME[name]
    decoded = validate(message, [values.get(arg.name, arg.default) for arg in message.args])
    builder = OscMessageBuilder(address=message.address)
    for arg in message.args:
        builder.add_arg(decoded.values[arg.name], arg.type.value)
    datagram = builder.build().dgram
    if len(datagram) > MAX_DATAGRAM_BYTES:
        raise ProtocolError("too_large", f"{message.address} would be {len(datagram)} bytes")
    return datagram


MAX_JSON_BYTES = 64 * 1024
"""The largest JSON control message (bytes) the server decodes; a larger one
gets ``too_large`` (ZeroMQ disconnects a peer at 1 MiB before reading it)."""


def decode_json(text: bytes | str, direction: Direction = Direction.TO_SERVER) -> Decoded:
    """Parse and validate one JSON message ``{"type": NAME, ARG: value, ...}``.

    Raises:
        ProtocolError: invalid JSON (with line and column), not an object, an
            unknown type, missing or extra arguments, wrong types, out of range.
    """
    if len(text) > MAX_JSON_BYTES:
        raise ProtocolError("too_large", f"message of {len(text)} bytes (allowed: at most {MAX_JSON_BYTES})")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        raise ProtocolError("malformed", f"invalid JSON: {getattr(error, 'msg', error)}{where}") from None
    except RecursionError:  # [[[[...: json's decoder recurses once per level
        raise ProtocolError("malformed", "invalid JSON: nested too deeply (allowed: a flat object of "
                                         "strings and numbers)") from None
    except ValueError as error:  # an integer of more than sys.get_int_max_str_digits() digits
        raise ProtocolError("out_of_range", f"invalid JSON: {str(error)[:120]} (allowed: numbers within the "
                                            "ranges of docs/protocol.md)") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("malformed", 'a message must be a JSON object with a string "type"')
    message = BY_NAME.get(data["type"])
    if message is None or message.direction is not direction:
        known = ", ".join(m.name for m in MESSAGES if m.direction is direction)
        shown = data["type"] if len(data["type"]) <= 64 else data["type"][:61] + "..."
        raise ProtocolError("unknown_address", f"unknown message type {shown!r} (allowed: {known})")
    names = [arg.name for arg in message.args]
    extra = sorted(set(data) - set(names) - {"type"})
    missing = [arg.name for arg in message.args if arg.name not in data and not arg.optional]
    if extra or missing:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])
        raise ProtocolError("wrong_arguments", f"{message.name}: {'; '.join(parts)} (arguments: {', '.join(names)})")
    return validate(message, [data.get(arg.name, arg.default) for arg in message.args])


def encode_json(name: str, **values: Any) -> bytes:
    """The JSON form of message ``name`` (validated like :func:`encode_osc`)."""
    message = BY_NAME[name]
    decoded = validate(message, [values.get(arg.name, arg.default) for arg in message.args])
    # Strict JSON (RFC 8259): validate() has refused NaN and the infinities, and allow_nan=False makes sure.
    return json.dumps({"type": name, **decoded.values}, separators=(",", ":"), allow_nan=False).encode()


def json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of every JSON message, from the table."""
    variants = []
    for message in MESSAGES:
        properties: dict[str, Any] = {"type": {"const": message.name}}
        for arg in message.args:
            prop: dict[str, Any] = {"type": arg.type.json_type, "description": arg.description}
            if arg.choices is not None:
                prop["enum"] = list(arg.choices)
            elif arg.type is ArgType.STRING:
                prop["maxLength"] = arg.max_chars
            if arg.minimum is not None:
                prop["minimum"] = arg.minimum
            if arg.maximum is not None:
                prop["maximum"] = arg.maximum
            if arg.optional:
                prop["default"] = arg.default
            properties[arg.name] = prop
        variants.append({
            "title": message.name,
            "description": f"{message.summary} ({message.direction.value})",
            "type": "object",
            "properties": properties,
            "required": ["type", *(arg.name for arg in message.args if not arg.optional)],
            "additionalProperties": False,
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "adaptive protocol messages",
        "oneOf": variants,
    }


def protocol_markdown() -> str:
    """``docs/protocol.md``'s message reference, from the table."""
    lines = []
    for direction in Direction:
        lines += [f"### Messages {direction.value}", ""]
        for message in (m for m in MESSAGES if m.direction is direction):
            lines += [f"#### `{message.address}` — {message.name}", "", message.summary, ""]
            if message.reply:
                lines += [f"Answered with `{BY_NAME[message.reply].address}`.", ""]
            if message.direction is Direction.TO_SERVER:
                lines += [f"Role needed: {message.role or 'none (any sender)'}.", ""]
            lines += [f"OSC type tags: `,{message.signature}`", "",
                      "| # | argument | type | allowed | meaning |", "|---|---|---|---|---|"]
            for index, arg in enumerate(message.args):
                allowed = arg.allowed() + (f"; optional (default {arg.default!r})" if arg.optional else "")
                lines.append(f"| {index} | `{arg.name}` | `{arg.type.value}` | {allowed} | {arg.description} |")
            lines.append("")
    return "\n".join(lines)


GENERATED_BEGIN = "<!-- generated from bridge/protocol.py: python -m bridge.protocol -->"
GENERATED_END = "<!-- end of generated reference -->"


def write_docs(root: Path | None = None) -> None:
    """Rewrite the generated part of ``docs/protocol.md`` (between the markers)
    and ``docs/protocol.schema.json`` from the table."""

    root = root or Path(__file__).resolve().parent.parent
    page = root / "docs" / "protocol.md"
    text = page.read_text(encoding="utf-8")
    head, _, rest = text.partition(GENERATED_BEGIN)
    _, _, tail = rest.partition(GENERATED_END)
    page.write_text(f"{head}{GENERATED_BEGIN}\n\n{protocol_markdown()}\n{GENERATED_END}{tail}", encoding="utf-8")
    (root / "docs" / "protocol.schema.json").write_text(json.dumps(json_schema(), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_docs()
    print("wrote docs/protocol.md and docs/protocol.schema.json")
