"""Sessions as the transports see them: which session a message goes to.

A server holds many sessions on one set of ports (docs/sessions.md). Every
transport routes through a :class:`SessionDirectory`: a hello opens (joins or
creates) a session, and every later message of that client goes to the
client's session (:attr:`bridge.access.Client.session_id`). What a transport
needs of one session is a :class:`SessionEndpoint`: its bank, where its
inputs go, its clock, its welcome fields and its live mapping.

The directory that creates and ends sessions lives in the composition root
(:class:`app.sessions.SessionHost`); a transport made without one serves a
single session (:class:`SingleSession`), as before sessions existed.

Session ids are 1 to :data:`~bridge.protocol.SESSION_ID_CHARS` letters,
digits, ``_`` and ``-``. ``default`` is the server's first session and ends
only with the server; ``new`` in a hello asks for a new session with an id
the server chooses.

ZeroMQ topics (:func:`session_topic`): the default session publishes on the
bare topics (``audio``, ``events``, ``midi``), as before sessions existed;
session ``ID`` publishes on ``session/ID/audio`` and so on. A subscription
to ``audio`` matches no other session's topic, and ``session/ID/`` matches
only session ``ID``'s (the ``/`` ends the id).
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from adaptive.cue import CueBank
from bridge.protocol import DEFAULT_SESSION, NEW_SESSION, SESSION_ID_CHARS, ProtocolError

__all__ = ["DEFAULT_SESSION", "NEW_SESSION", "SessionDirectory", "SessionElsewhere", "SessionEndpoint",
           "SingleSession", "check_session_id", "opened", "session_topic"]

SESSION_ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{SESSION_ID_CHARS}}}")
"""What a session id may be: 1 to 32 letters, digits, ``_`` and ``-``."""

ALLOWED_SESSION_IDS = (f"'' (the {DEFAULT_SESSION!r} session), {NEW_SESSION!r} (a new one), or 1 to "
                       f"{SESSION_ID_CHARS} letters, digits, _ and -")
"""What a hello's ``session`` may say, in words (for error messages)."""


def check_session_id(text: str) -> str:
    """The session a hello's ``session`` argument names: ``''`` is
    :data:`DEFAULT_SESSION`; ``new`` is returned as is (the directory
    chooses an id).

    Raises:
        ProtocolError: ``out_of_range``: characters other than letters,
            digits, ``_`` and ``-``, or longer than SESSION_ID_CHARS.
    """
    if text == "":
        return DEFAULT_SESSION
    if not SESSION_ID_PATTERN.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ProtocolError("out_of_range", f"session {shown!r} is not a session id (allowed: {ALLOWED_SESSION_IDS})")
    return text


def session_topic(session_id: str, topic: bytes) -> bytes:
    """The ZeroMQ topic of ``topic`` (``b"audio"``, ``b"events"``,
    ``b"midi"``) for session ``session_id``: the bare topic for the default
    session, ``session/ID/TOPIC`` for the others."""
    if session_id == DEFAULT_SESSION:
        return topic
    return b"session/" + session_id.encode("ascii") + b"/" + topic


class SessionElsewhere(ProtocolError):
    """A hello's session lives on another node of a cluster (docs/cluster.md):
    the transports answer ``session_elsewhere`` with that node's endpoints
    (:func:`bridge.dispatch.error_reply`) instead of an ``error``, and the
    client says the same hello there. Raised (through the future of
    :meth:`SessionDirectory.opening`) by a directory that places sessions
    across nodes (:class:`app.sessions.SessionHost` with a placement).

    Args:
        session_id: the session (its id, also for a hello that asked for ``new``).
        host: the hosting node's host (address or name, at most
            :data:`~bridge.protocol.HOST_CHARS` characters).
        osc_port: its OSC port (1..65535).
        zmq_control_port: its ZeroMQ ROUTER port (0: none).
        audio_tcp_port: its TCP audio port (0: none).

    Attributes:
        values: the ``session_elsewhere`` message's arguments.
        code: ``not_allowed`` (what an ``error`` would say, for a transport
            that cannot send the redirect).
    """

    def __init__(self, session_id: str, host: str, osc_port: int, zmq_control_port: int = 0,
                 audio_tcp_port: int = 0) -> None:
        super().__init__("not_allowed", f"session {session_id!r} is on another node: say hello to "
                                        f"udp://{host}:{osc_port} (OSC) or tcp://{host}:{zmq_control_port} (ZeroMQ)")
        self.values = {"session_id": session_id, "host": host, "osc_port": int(osc_port),
                       "zmq_control_port": int(zmq_control_port), "audio_tcp_port": int(audio_tcp_port)}


@dataclass(frozen=True)
class SessionEndpoint:
    """What a transport needs of one session.

    Attributes:
        session_id: its id.
        bank: its cue bank (names are checked against it before an input is queued).
        submit: hands a validated input to its real-time session (thread-safe, never blocks).
        server_time_seconds: its server time now (seconds since it started).
        sample_rate_hz: its rate, Hz.
        welcome: fields of ``welcome`` besides the clock (session_id,
            block_frames, lookahead_ms, audio_tcp_port).
        mapping: its live mapping (:class:`bridge.mapping_watch.MappingControl`), or None.
        part_info: its parts (for MIDI channels: percussion on 10).
    """

    session_id: str
    bank: CueBank
    submit: Callable[[Any], None]
    server_time_seconds: Callable[[], float]
    sample_rate_hz: int
    welcome: dict[str, Any]
    mapping: Any = None
    part_info: dict = field(default_factory=dict)


def opened(endpoint: SessionEndpoint) -> Future:
    """A future already done with ``endpoint`` (what :meth:`SessionDirectory.opening`
    answers for a session that exists)."""
    future: Future = Future()
    future.set_result(endpoint)
    return future


class SessionDirectory(Protocol):
    """The sessions of a server, as the transports use them (thread-safe)."""

    def get(self, session_id: str) -> SessionEndpoint | None:
        """The session ``session_id``, or None if there is none (it ended, or never was)."""

    def opening(self, requested: str) -> Future:
        """The session a hello's ``session`` argument names, as a future of
        its :class:`SessionEndpoint`; never waits for a session to be made.
        Done at once when it exists; done later, on another thread, when it
        is being made (failed with a :class:`ProtocolError` if it cannot be).
        Transports answer the hello when it is done (docs/sessions.md).

        Raises:
            ProtocolError: a malformed id (``out_of_range``), or at the cap
                of sessions (``not_allowed``, naming the cap and its setting).
        """

    def open(self, requested: str) -> SessionEndpoint:
        """The session a hello's ``session`` argument names: joined if it
        exists, made if not (``new``: with an id the directory chooses).

        Raises:
            ProtocolError: a malformed id (``out_of_range``), or at the cap
                of sessions (``not_allowed``, naming the cap and its setting).
        """

    def end(self, session_id: str, reason: str) -> None:
        """End session ``session_id`` (``reason``: one of
        :data:`bridge.protocol.SESSION_END_REASONS`).

        Raises:
            ProtocolError: the default session (``not_allowed``) or no such session (``unknown_name``).
        """


class SingleSession:
    """A directory of one session, ``default``: what a transport serves when
    it is made without a session host (every hello joins it; asking for
    another is refused, naming why).

    Args:
        endpoint: the one session.
    """

    def __init__(self, endpoint: SessionEndpoint) -> None:
        self.endpoint = endpoint

    def get(self, session_id: str) -> SessionEndpoint | None:
        return self.endpoint if session_id == DEFAULT_SESSION else None

    def open(self, requested: str) -> SessionEndpoint:
        if check_session_id(requested) != DEFAULT_SESSION:
            raise ProtocolError("not_allowed", f"this endpoint serves one session (allowed: session '' or "
                                               f"{DEFAULT_SESSION!r})")
        return self.endpoint

    def opening(self, requested: str) -> Future:
        return opened(self.open(requested))

    def end(self, session_id: str, reason: str) -> None:
        raise ProtocolError("not_allowed", f"this endpoint serves one session, {DEFAULT_SESSION!r}, which ends only "
                                           "with the server")
