"""What the server does with a message, whatever transport carried it: the
shared half of the OSC and ZeroMQ endpoints. A transport only frames bytes.

* :class:`Dispatcher` holds one handler per message a client may send, bound
  from the protocol table (:data:`bridge.protocol.MESSAGES`): it validates
  scene and stinger messages against the cue bank and hands them to the
  session, answers ``hello``, ``ping`` and the live-mapping messages, and
  tells the transport's :class:`Peer` what only the transport can do
  (remember a client's reply port, its subscriptions).
* :func:`error_reply` is the one ``error`` answer to a rejected message.
* :func:`event_messages` and :meth:`MidiChannels.messages` turn what a
  rendered block produced into callback messages ``(name, values)``, which
  each transport encodes its own way (:func:`bridge.protocol.encode_osc` or
  ``encode_json``).
"""

from __future__ import annotations

import collections
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from adaptive.audience import AudienceVote, AudienceWeight, check_vote
from adaptive.cue import CueBank
from adaptive.emotion import named_emotion
from adaptive.events import EventKind
from adaptive.scene import SceneUpdate, StingerTrigger, ThemeTrigger, validate_update
from adaptive.synth import PERCUSSION_CHANNEL
from bridge.protocol import (DEFAULT_SESSION, ERROR_MESSAGE_CHARS, MAPPING_PATH_CHARS, MAX_STRING_CHARS, MESSAGES,
                             PROTOCOL_VERSION, VOTES_PER_S, Decoded, Direction, ProtocolError)
from bridge.sessions import SessionDirectory, SessionElsewhere, SessionEndpoint, SingleSession

log = logging.getLogger("adaptive.dispatch")

Reply = tuple[str, dict[str, Any]]
"""A message to send back: its name in the protocol table and its values."""


def split_time(frame: int, sample_rate_hz: int) -> tuple[int, int]:
    """Server time of ``frame`` (seconds since the session started) as
    (whole seconds, microseconds)."""
    seconds, remainder = divmod(frame, sample_rate_hz)
    return int(seconds), int(remainder * 1_000_000 // sample_rate_hz)


def split_seconds(seconds: float) -> tuple[int, int]:
    """``seconds`` (>= 0) as (whole seconds, microseconds)."""
    whole = int(seconds)
    return whole, min(999_999, int(round((seconds - whole) * 1_000_000)))


def to_input(decoded: Decoded, bank: CueBank, mapping: Any = None) -> SceneUpdate | StingerTrigger | ThemeTrigger:
    """The engine input for a scene or stinger message, its names checked
    against ``mapping`` (a :class:`adaptive.mapping.ResolvedMapping`: its
    emotions and stinger names) or, without one, the bank and built-in emotions.

    Raises:
        ProtocolError: ``unknown_name`` for a name the bank or the emotion
            table does not have (with the allowed names), ``out_of_range``
            for values the engine refuses.
    """
    name, values = decoded.message.name, decoded.values
    if name == "play_theme":
        try:
            bank.theme(values["theme"])
        except KeyError as error:
            raise ProtocolError("unknown_name", str(error.args[0])) from None
        return ThemeTrigger(values["theme"])
    if name == "stinger":
        try:
            (mapping.stinger if mapping is not None else bank.stinger)(values["stinger"])
        except KeyError as error:
            raise ProtocolError("unknown_name", str(error.args[0])) from None
        return StingerTrigger(values["stinger"])
    update = SCENE_INPUTS[name](values)
    try:
        if mapping is not None:
            validate_update(update, bank, mapping.emotion)
        else:
            validate_update(update, bank)
    except KeyError as error:
        raise ProtocolError("unknown_name", str(error.args[0])) from None
    except ValueError as error:
        raise ProtocolError("out_of_range", str(error)) from None
    return update


SCENE_INPUTS: dict[str, Callable[[dict[str, Any]], SceneUpdate]] = {
    "scene": lambda v: SceneUpdate(emotion=v["emotion"], intensity=v["intensity"], location=v["location"]),
    "emotion": lambda v: SceneUpdate(emotion=v["emotion"]),
    "emotion_point": lambda v: SceneUpdate(valence=v["valence"], arousal=v["arousal"]),
    "intensity": lambda v: SceneUpdate(intensity=v["intensity"]),
    "location": lambda v: SceneUpdate(location=v["location"]),
    "cue": lambda v: SceneUpdate(cue=v["cue"]),
}
"""The scene update each scene message makes (``stinger`` makes a :class:`StingerTrigger`)."""


def _name(text: str | None) -> str:
    """A cue name as a callback carries it (a protocol string: at most MAX_STRING_CHARS)."""
    return (text or "")[:MAX_STRING_CHARS]


def _path(text: str) -> str:
    """A file path as a callback carries it: its last MAPPING_PATH_CHARS characters."""
    return text[-MAPPING_PATH_CHARS:]


EVENT_MESSAGES: dict[EventKind, tuple[str, bool, Callable[[EventKind, dict[str, Any]], dict[str, Any]]]] = {
    EventKind.BEAT: ("beat", True, lambda kind, d: {"cue": _name(d["cue"]), "bar_index": d["bar_index"],
                                                    "beat_in_bar": d["beat_in_bar"], "bpm": d["bpm"]}),
    EventKind.BAR: ("bar", True, lambda kind, d: {"cue": _name(d["cue"]), "bar_index": d["bar_index"]}),
    EventKind.CUE_CHANGE: ("cue_change", True, lambda kind, d: {"cue": _name(d["cue"]),
                                                                "previous": _name(d["previous"])}),
    EventKind.TRANSITION_START: ("transition", True, lambda kind, d: {
        "phase": "start", "from_cue": _name(d["cue"]), "to_cue": _name(d["to"])}),
    EventKind.TRANSITION_END: ("transition", True, lambda kind, d: {
        "phase": "end", "from_cue": _name(d["cue"]), "to_cue": _name(d["to"])}),
    EventKind.STINGER: ("stinger_played", True, lambda kind, d: {"stinger": d["name"]}),
    EventKind.THEME: ("theme", True, lambda kind, d: {"theme": d["name"]}),
    EventKind.MAPPING: ("mapping_changed", True, lambda kind, d: {"source": _path(d["source"])}),
    EventKind.MAPPING_ERROR: ("mapping_error", False, lambda kind, d: {"path": _path(d["path"]),
                                                                       "message": d["message"]}),
}
"""Music event kind -> (callback message, whether it carries the event's
frame and time, its values from the event's data). Kinds not listed (scene,
follow, gains, error: internal, one per input) are not sent."""


def wire_events(events: list) -> list:
    """The events of ``events`` that :func:`event_messages` sends, so a sink
    can skip (and not wake its thread for) a block of only internal events
    (scene, follow, gains: one per input)."""
    return [event for event in events if event.kind in EVENT_MESSAGES]


def event_messages(events: list, sample_rate_hz: int) -> list[Reply]:
    """Callback messages for a block's music events, in order (see :data:`EVENT_MESSAGES`)."""
    out = []
    for event in events:
        entry = EVENT_MESSAGES.get(event.kind)
        if entry is None:
            continue
        name, stamped, values = entry
        if stamped:
            time_s, time_us = split_time(event.frame, sample_rate_hz)
            out.append((name, {"frame": event.frame, "time_s": time_s, "time_us": time_us,
                               **values(event.kind, event.data)}))
        else:
            out.append((name, values(event.kind, event.data)))
    return out


class MidiChannels:
    """Gives each part a MIDI channel on first use (percussion parts share
    channel 10), the same way for every transport."""

    def __init__(self, part_info: dict) -> None:
        self.part_info = part_info
        self._channels: dict[str, int] = {}

    def channel(self, part: str) -> int:
        """The 0-based MIDI channel of ``part``."""
        if part not in self._channels:
            info = self.part_info.get(part)
            if info is not None and info.percussion:
                self._channels[part] = PERCUSSION_CHANNEL
            else:
                melodic = [c for c in range(16) if c != PERCUSSION_CHANNEL]
                taken = sum(1 for c in self._channels.values() if c != PERCUSSION_CHANNEL)
                self._channels[part] = melodic[taken % len(melodic)]
        return self._channels[part]

    def messages(self, midi: list, sample_rate_hz: int) -> list[Reply]:
        """``midi`` callback messages for a block's note events."""
        out = []
        for event in midi:
            time_s, time_us = split_time(event.frame, sample_rate_hz)
            status = (0x90 if event.kind == 1 else 0x80) | self.channel(event.part)
            out.append(("midi", {"frame": event.frame, "time_s": time_s, "time_us": time_us, "status": status,
                                 "data1": event.pitch, "data2": event.velocity, "part": _name(event.part)}))
        return out


def welcome_values(sample_rate_hz: int, now_seconds: float, welcome: dict[str, Any]) -> dict[str, Any]:
    """Arguments of the ``welcome`` answer to ``hello``: the protocol version,
    the session's rate, server time now (seconds since the session started)
    and the endpoint's own fields (session_id, block_frames, lookahead_ms,
    audio_tcp_port)."""
    time_s, time_us = split_seconds(now_seconds)
    return {"protocol_version": PROTOCOL_VERSION, "sample_rate_hz": sample_rate_hz, "time_s": time_s,
            "time_us": time_us, **welcome}


def pong_values(sequence: int, received_seconds: float, sent_seconds: float) -> dict[str, Any]:
    """Arguments of the ``pong`` answer to ``ping``: the ping's sequence and the
    server times (seconds since the session started) it arrived and the pong leaves."""
    receive_s, receive_us = split_seconds(received_seconds)
    send_s, send_us = split_seconds(sent_seconds)
    return {"sequence": sequence, "receive_time_s": receive_s, "receive_time_us": receive_us,
            "send_time_s": send_s, "send_time_us": send_us}


def error_reply(error: ProtocolError) -> Reply:
    """The ``error`` answer to a rejected message: its code and its text, cut
    to ERROR_MESSAGE_CHARS characters and as many UTF-8 bytes (so it fits one
    datagram whatever the script), with ``...`` where it was cut. A hello
    for a session on another node of a cluster
    (:class:`bridge.sessions.SessionElsewhere`) is answered with
    ``session_elsewhere`` and that node's endpoints instead."""
    if isinstance(error, SessionElsewhere):
        return ("session_elsewhere", dict(error.values))
    text = error.message
    if len(text) > ERROR_MESSAGE_CHARS or len(text.encode()) > ERROR_MESSAGE_CHARS:
        text = text[: ERROR_MESSAGE_CHARS - 3].encode()[: ERROR_MESSAGE_CHARS - 3].decode("utf-8", "ignore") + "..."
    return ("error", {"code": error.code, "message": text})


@dataclass(frozen=True)
class PendingHello:
    """What :meth:`Peer.hello` answers while the session the hello names is
    being made (:meth:`bridge.sessions.SessionDirectory.opening`): the
    dispatcher answers nothing now and, once ``session`` is done (on the
    thread that made it), calls ``join`` and sends the welcome with ``send``,
    or the refusal with ``refuse``.

    Attributes:
        session: the future :class:`bridge.sessions.SessionEndpoint`.
        join: adds the client to that session; returns ``("welcome",
            {client_id, role, lease_s, _session})`` as :meth:`Peer.hello`
            does. Raises ProtocolError (a cap on clients).
        send: sends replies to the client from any thread; must not block.
        refuse: answers (and counts) a refusal from any thread; must not block.
    """

    session: Future
    join: Callable[[SessionEndpoint], Reply]
    send: Callable[[list[Reply]], None]
    refuse: Callable[[ProtocolError], None]


MAX_VOTERS = 100_000
"""Voters a dispatcher remembers (their voice and token bucket); beyond, the
one silent longest is forgotten (it then starts again with a full bucket)."""


@dataclass
class _Voter:
    """One client's voice (a short id recorded with its votes instead of its
    client id, which is a credential) and its token bucket (:data:`VOTES_PER_S`)."""

    voice: str
    tokens: float
    last_s: float

    def take(self, now_s: float) -> bool:
        """Spend a token at session time ``now_s`` (seconds); False when none is left."""
        self.tokens = min(float(VOTES_PER_S), self.tokens + max(0.0, now_s - self.last_s) * VOTES_PER_S)
        self.last_s = max(self.last_s, now_s)
        if self.tokens < 1.0 - 1e-9:  # 0.1 s is a token, whatever the rounding of the clock's seconds
            return False
        self.tokens = max(0.0, self.tokens - 1.0)
        return True


class Voters:
    """The voices and vote rate limits of a dispatcher's clients, by
    (session, the peer's ``voice_key``). Thread-safe."""

    def __init__(self, max_voters: int = MAX_VOTERS) -> None:
        self.max_voters = max_voters
        self._voters: collections.OrderedDict[tuple[str, Any], _Voter] = collections.OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def take(self, session_id: str, key: Any, now_s: float) -> str | None:
        """The voice of ``key`` in ``session_id`` if it may vote at session
        time ``now_s`` (a token spent), else None (over :data:`VOTES_PER_S`)."""
        with self._lock:
            voter = self._voters.get((session_id, key))
            if voter is None:
                self._next += 1
                voter = self._voters[(session_id, key)] = _Voter(f"v{self._next}", float(VOTES_PER_S), now_s)
                if len(self._voters) > self.max_voters:
                    self._voters.popitem(last=False)
            else:
                self._voters.move_to_end((session_id, key))
            return voter.voice if voter.take(now_s) else None


class Peer(Protocol):
    """What only the transport that carried a message can do for its sender.

    Attributes:
        role: what the sender may do (:class:`bridge.access.Role`), or None:
            nothing but hello, goodbye and ping (a server with credentials, a
            sender that has not said hello).
        session_id: the session its messages go to: its client's (the one
            its hello joined), or :data:`bridge.protocol.DEFAULT_SESSION` for
            a sender that said no hello (optional: absent means the default).
        voice_key: who it is, stable across its messages (its client id, or
            its source address): one voice and one vote rate limit each.
    """

    role: Any

    def hello(self, values: dict[str, Any]) -> Reply | PendingHello:
        """The sender said hello (``values``: the message's). Returns
        ``("welcome", {client_id, role, lease_s, _session})`` once the client
        is known (``_session``: the id of the session it joined, from
        :meth:`bridge.sessions.SessionDirectory.opening`; absent: the default),
        ``("retry", {cookie})`` to ask for the cookie round trip first, or a
        :class:`PendingHello` while its session is being made.

        Raises:
            ProtocolError: a hello the transport refuses (a wrong proof, a cap).
        """

    def goodbye(self, client_id: str) -> None:
        """The sender (or the client ``client_id``) leaves."""

    def subscribe(self, stream: str, subscribed: bool, client_id: str) -> None:
        """The sender (or the client ``client_id``) (un)subscribed to ``stream``.

        Raises:
            ProtocolError: the transport cannot do it for this sender yet.
        """

    def reply_later(self, replies: list[Reply]) -> None:
        """Send ``replies`` to the sender from another thread (the answer to a
        ``mapping_set``, from the mapping thread). Must not block."""


def forbidden(address: str, needed: str, role: Any) -> ProtocolError:
    """The ``forbidden`` error of a message that needs role ``needed`` from a sender with ``role`` (or None)."""
    has = f"has the {role.value} role" if role is not None else "has no role yet"
    return ProtocolError("forbidden", f"{address} needs the {needed} role (or a higher one; roles: audience < "
                                      f"listener < control) and this sender {has}: say /adaptive/hello with role "
                                      f"{needed!r} and its proof first (docs/network.md)")


def single_session(bank: CueBank, submit: Callable[[Any], None], server_time_seconds: Callable[[], float],
                   sample_rate_hz: int, welcome: dict[str, Any], mapping: Any = None,
                   part_info: dict | None = None) -> SingleSession:
    """The directory of a transport made for one session (the arguments of
    :class:`Dispatcher`): every hello joins it."""
    return SingleSession(SessionEndpoint(DEFAULT_SESSION, bank, submit, server_time_seconds, sample_rate_hz, welcome,
                                         mapping, part_info or {}))


class Dispatcher:
    """One handler per message a client may send, bound from the protocol
    table; every transport hands each decoded message to :meth:`dispatch`.

    Every message but hello goes to the sender's session (``peer.session_id``,
    looked up in ``sessions``); a hello opens the session it names.

    Args:
        bank: the cue bank (names are checked against it before an input is queued).
        submit: hands a validated input to the real-time session (thread-safe).
        server_time_seconds: the session's server time now (seconds since it started).
        sample_rate_hz: the session rate.
        welcome: fields of the ``welcome`` message besides the clock
            (session_id, block_frames, lookahead_ms, audio_tcp_port).
        mapping: the live mapping (:class:`bridge.mapping_watch.MappingControl`):
            answers mapping_set/get/export and names emotions and stingers.
        counters: where ``hellos``, ``pings`` and ``inputs`` are counted (the transport's).
        sessions: the server's sessions (:class:`bridge.sessions.SessionDirectory`);
            None: the one session the arguments above describe.
    """

    def __init__(self, bank: CueBank, submit: Callable[[Any], None], server_time_seconds: Callable[[], float],
                 sample_rate_hz: int, welcome: dict[str, Any], mapping: Any = None,
                 counters: collections.Counter | None = None, sessions: SessionDirectory | None = None) -> None:
        self.bank = bank
        self.submit = submit
        self.server_time_seconds = server_time_seconds
        self.sample_rate_hz = sample_rate_hz
        self.welcome = welcome
        self.mapping = mapping
        self.counters = counters if counters is not None else collections.Counter()
        self.sessions = sessions if sessions is not None else single_session(
            bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping)
        self.voters = Voters()
        """Each voting client's voice and vote rate limit."""
        by_kind = {"hello": self._hello, "goodbye": self._goodbye, "ping": self._ping, "subscribe": self._subscribe,
                   "unsubscribe": self._subscribe, "mapping_set": self._mapping, "mapping_get": self._mapping,
                   "mapping_export": self._mapping, "stinger": self._input, "play_theme": self._input,
                   "session_end": self._session_end, "audience_vote": self._vote,
                   "audience_weight": self._audience_weight, **dict.fromkeys(SCENE_INPUTS, self._input)}
        self.handlers: dict[str, Callable[[Decoded, Peer, float], list[Reply]]] = {
            message.name: by_kind[message.name] for message in MESSAGES if message.direction is Direction.TO_SERVER}
        """Every message a client may send (the protocol table's ``TO_SERVER``
        messages; a KeyError above names one without a handler) -> its handler."""

    def dispatch(self, decoded: Decoded, peer: Peer, received_seconds: float | None = None) -> list[Reply]:
        """Act on one validated message from ``peer`` that arrived at server
        time ``received_seconds`` of the default session (default: now); the
        replies to send back to it.

        Raises:
            ProtocolError: anything the server cannot accept (a message of a
                client whose session has ended: ``unknown_name``).
        """
        needed = decoded.message.role
        if needed is not None and (peer.role is None or not peer.role.allows(needed)):
            self.counters["forbidden"] += 1
            raise forbidden(decoded.message.address, needed, peer.role)
        return self.handlers[decoded.message.name](decoded, peer, received_seconds)

    def endpoint(self, peer: Peer) -> SessionEndpoint:
        """The session of ``peer``'s messages.

        Raises:
            ProtocolError: ``unknown_name``: its session has ended (counted ``ended_session``).
        """
        session_id = getattr(peer, "session_id", DEFAULT_SESSION)
        endpoint = self.sessions.get(session_id)
        if endpoint is None:
            self.counters["ended_session"] += 1
            raise ProtocolError("unknown_name", f"session {session_id!r} has ended: say /adaptive/hello again "
                                                "(session '' joins the default session, 'new' makes a new one)")
        return endpoint

    def _hello(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        answer = peer.hello(decoded.values)
        if isinstance(answer, PendingHello):
            # Answered when the session is made, on the thread that made it: this thread goes on serving.
            self.counters["hellos_waiting"] += 1
            answer.session.add_done_callback(lambda future: self._hello_made(future, answer))
            return []
        return self._welcome(answer)

    def _hello_made(self, future: Future, pending: PendingHello) -> None:
        """The session of a waiting hello is made (or failed): the client
        joins it and is welcomed, or gets the refusal. Never raises (it runs
        as a future's callback)."""
        try:
            try:
                replies = self._welcome(pending.join(future.result()))
            except ProtocolError:
                raise
            except Exception as error:  # a failed or cancelled build, a bug: an error reply and a counter
                self.counters["internal_errors"] += 1
                log.error("internal error answering a hello: %r", error, exc_info=True)
                raise ProtocolError("internal", f"the server failed making the session ({type(error).__name__}); "
                                                "it is counted, the other sessions play on") from None
        except ProtocolError as error:
            try:
                pending.refuse(error)
            except Exception:
                log.exception("cannot send a hello's refusal")
            return
        try:
            pending.send(replies)
        except Exception:
            log.exception("cannot send a welcome")

    def _welcome(self, answer: Reply) -> list[Reply]:
        """The replies to a hello that ``Peer.hello`` answered with ``answer``."""
        name, values = answer
        if name != "welcome":
            self.counters["retries"] += 1
            return [(name, values)]
        self.counters["hellos"] += 1
        values = dict(values)
        endpoint = self.sessions.get(values.pop("_session", DEFAULT_SESSION))
        if endpoint is None:  # it ended between the hello's open and now
            raise ProtocolError("unknown_name", "the session asked for ended while joining it: say hello again")
        return [("welcome", {**welcome_values(endpoint.sample_rate_hz, endpoint.server_time_seconds(),
                                              endpoint.welcome), **values})]

    def _goodbye(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        peer.goodbye(decoded.values["client_id"])
        return []

    def _ping(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        endpoint = self.endpoint(peer)
        self.counters["pings"] += 1
        if received is None or endpoint.session_id != DEFAULT_SESSION:
            # The transport stamps arrival on the default session's clock; another
            # session's clock is read here, microseconds later on the same thread.
            received = endpoint.server_time_seconds()
        return [("pong", pong_values(decoded.values["sequence"], received, endpoint.server_time_seconds()))]

    def _subscribe(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        peer.subscribe(decoded.values["stream"], decoded.message.name == "subscribe", decoded.values["client_id"])
        return []

    def _mapping(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        from bridge.mapping_watch import mapping_replies

        mapping = self.endpoint(peer).mapping
        if decoded.message.name == "mapping_set" and mapping is not None:
            # Checked and applied on the session's mapping thread; its answer comes later.
            return mapping.request_set(decoded.values["path"], decoded.values["value"], peer.reply_later)
        return mapping_replies(decoded.message.name, decoded.values, mapping)

    def _input(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        endpoint = self.endpoint(peer)
        mapping = endpoint.mapping
        endpoint.submit(to_input(decoded, endpoint.bank, mapping.current if mapping is not None else None))
        self.counters["inputs"] += 1
        return []

    def _vote(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        """An audience vote: rate-limited per client on the session clock
        (:data:`VOTES_PER_S`; counted ``votes_rate_limited``), checked like a
        scene input, handed to the session with the client's voice."""
        endpoint = self.endpoint(peer)
        if received is None or endpoint.session_id != DEFAULT_SESSION:
            received = endpoint.server_time_seconds()
        voice = self.voters.take(endpoint.session_id, getattr(peer, "voice_key", None), received)
        if voice is None:
            self.counters["votes_rate_limited"] += 1
            raise ProtocolError("rate_limited", f"{decoded.message.address}: more than {VOTES_PER_S} votes a second "
                                                f"from this client (allowed: at most {VOTES_PER_S} a second; only "
                                                "each client's latest vote counts anyway)")
        values = decoded.values
        intensity = values["intensity"]
        if -1.0 < intensity < 0.0:
            raise ProtocolError("out_of_range", f"{decoded.message.address} argument 'intensity' is {intensity!r} "
                                                "(allowed: a number from 0 to 1, or -1 for no opinion)")
        if values["emotion"]:
            if values["valence"] != 0.0 or values["arousal"] != 0.0:
                raise ProtocolError("wrong_arguments", f"{decoded.message.address}: a vote names an emotion "
                                                       f"({values['emotion']!r}) or gives a point (emotion '' and "
                                                       "valence, arousal), not both (allowed: valence and arousal "
                                                       "0 with a name)")
            vote = AudienceVote(voice, emotion=values["emotion"], intensity=None if intensity < 0 else intensity)
        else:
            vote = AudienceVote(voice, valence=values["valence"], arousal=values["arousal"],
                                intensity=None if intensity < 0 else intensity)
        mapping = endpoint.mapping
        try:
            check_vote(vote, mapping.current.emotion if mapping is not None else named_emotion)
        except KeyError as error:
            raise ProtocolError("unknown_name", str(error.args[0])) from None
        except ValueError as error:
            raise ProtocolError("out_of_range", str(error)) from None
        endpoint.submit(vote)
        self.counters["votes"] += 1
        return []

    def _audience_weight(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        self.endpoint(peer).submit(AudienceWeight(decoded.values["weight"]))
        self.counters["inputs"] += 1
        return []

    def _session_end(self, decoded: Decoded, peer: Peer, received: float | None) -> list[Reply]:
        session_id = decoded.values["session_id"] or getattr(peer, "session_id", DEFAULT_SESSION)
        self.sessions.end(session_id, "request")
        self.counters["sessions_ended"] += 1
        return [("session_ended", {"session_id": session_id, "reason": "request"})]
