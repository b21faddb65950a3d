"""ZeroMQ: the same messages as OSC (:mod:`bridge.osc_server`), as JSON.

Two sockets, both owned by one thread (``adaptive-zmq``), because ZeroMQ
sockets are not thread-safe:

* a **ROUTER** (control) socket: a client (DEALER, or REQ — see below) sends
  one JSON message per frame, ``{"type": NAME, ARG: value, ...}``, validated
  against the protocol table (:func:`bridge.protocol.decode_json`) and the cue
  bank. ``hello`` is answered with ``welcome``, ``ping`` with ``pong``,
  anything rejected with ``error`` (to that client only); scene inputs go to
  the real-time session; ``subscribe``/``unsubscribe`` are validated and
  otherwise ignored (a SUB socket filters by topic itself).
* a **PUB** (callbacks) socket: multipart ``[topic, json]`` messages, topic
  ``b"events"`` (``beat``, ``bar``, ``cue_change``, ``transition``,
  ``stinger_played``) and ``b"midi"`` (``midi``). Subscribe to the topic on a
  SUB socket. These are the default session's; session ``ID``'s callbacks
  go on ``session/ID/events`` and ``session/ID/midi``
  (:func:`bridge.sessions.session_topic`, docs/sessions.md). (It is an XPUB: the server reads the subscriptions, so it does
  no work for a topic that nobody subscribes to.)

The render thread calls :meth:`ZmqServer.on_block` (a sink of the real-time
session), which only appends the block's events and MIDI to a bounded queue
and wakes the ZeroMQ thread through a local socket pair; it never blocks.
When the queue is full the oldest block is dropped (counted). PUB sends never
block either: at a subscriber's high-water mark libzmq drops that
subscriber's messages.

Every control message that is answered gets exactly one reply; the others
(scene inputs, subscribe, unsubscribe) get none unless rejected. A plain REQ
socket must receive a reply before it may send again, so a REQ client should
either set ``zmq.REQ_RELAXED`` (and ``zmq.REQ_CORRELATE``) or use a DEALER.
A REQ client's envelope (the empty delimiter frame) is echoed in replies.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Any, Callable

from adaptive.cue import CueBank
from bridge.access import ClientTable, Credentials, Role, make_curve_server
from bridge.audio import XpubSubscriptions
from bridge.dispatch import Dispatcher, MidiChannels, PendingHello, error_reply, event_messages, single_session, wire_events
from bridge.log_limit import RateLimitedLog
from bridge.protocol import DEFAULT_SESSION, ProtocolError, decode_json, encode_json
from bridge.sessions import SessionDirectory, SessionElsewhere, session_topic

log = logging.getLogger("adaptive.zmq")

OUTBOX_BLOCKS = 256
"""Blocks of callbacks waiting to be published before the oldest is dropped."""

SNDHWM_MESSAGES = 1000
"""ZeroMQ send high-water mark of each socket, in messages (per peer)."""

RCVHWM_MESSAGES = 1000
"""ZeroMQ receive high-water mark of the control socket, in messages (per peer)."""

MAX_FRAME_BYTES = 1024 * 1024
"""A peer that sends a message larger than this (bytes) is disconnected by
libzmq (``zmq.MAXMSGSIZE``), so it cannot make the server buffer much; frames
over 64 KiB but within this get a ``too_large`` error."""

POLL_TIMEOUT_MS = 100
"""How long (milliseconds) the ZeroMQ thread waits for input or a wake-up
before checking whether it should stop."""

LATE_REPLIES = 256
"""Answers made on other threads (``mapping_set``) waiting for the ZeroMQ thread."""

RECEIVE_BATCH = 64
"""Control messages (at most) handled per poll before the outbox is drained."""

TOPIC_EVENTS = b"events"
TOPIC_MIDI = b"midi"


class _ZmqPeer:
    """A control message's sender, as the dispatcher sees it (:class:`bridge.dispatch.Peer`):
    replies go back by its routing id, and its SUB socket filters topics itself.
    Its role is its CURVE key's (every message is authenticated), or control
    on a server without credentials."""

    def __init__(self, server: ZmqServer, identity: bytes, envelope: list[bytes], host: str, role: Role | None,
                 session_id: str = DEFAULT_SESSION) -> None:
        self.server, self.identity, self.envelope, self.host, self.role = server, identity, envelope, host, role
        self.session_id = session_id
        """The session its messages go to: its client's, else the default."""
        self.voice_key = identity
        """Who it is for audience votes: its ROUTER routing id."""

    def hello(self, values: dict[str, Any]) -> tuple[str, dict[str, Any]] | PendingHello:
        role = self.role
        if values["role"]:
            asked = Role(values["role"])
            if not role.allows(asked.value):
                raise ProtocolError("forbidden", f"hello asks for the {asked.value} role and this client's CURVE key "
                                                 f"is allow-listed for {role.value} (docs/network.md)")
            role = asked
        session = self.server.sessions.opening(values.get("session", ""))
        if session.done():
            return self._join(values, role, session.result())
        # Being made (on the session host's builder thread): welcomed through the ZeroMQ thread when it is.
        return PendingHello(session, lambda made: self._join(values, role, made), self.reply_later,
                            lambda error: self.server._reject_later(self.identity, self.envelope, error))

    def _join(self, values: dict[str, Any], role: Role, session: Any) -> tuple[str, dict[str, Any]]:
        client = self.server.clients.add("zmq", self.identity, self.host, role, name=values["client_name"],
                                         sample_format=values["sample_format"], session_id=session.session_id)
        log.info("ZeroMQ: hello from %s (%s, role %s, session %s)", values["client_name"] or "a client", self.host,
                 role.value, session.session_id)
        return ("welcome", {"client_id": client.client_id, "role": role.value,
                            "lease_s": int(self.server.clients.lease_s), "_session": session.session_id})

    def goodbye(self, client_id: str) -> None:
        client = self.server.clients.get("zmq", self.identity)
        if client is not None:
            self.server.clients.remove(client)

    def subscribe(self, stream: str, subscribed: bool, client_id: str) -> None:
        pass  # validated; the SUB socket's own subscriptions do the filtering

    def reply_later(self, replies: list[tuple[str, dict[str, Any]]]) -> None:
        self.server._reply_later(self.identity, self.envelope, replies)


class ZmqServer:
    """The ZeroMQ endpoint of a session (control ROUTER + callback PUB).

    Args:
        bank: the cue bank (names are checked against it before an input is queued).
        submit: hands a validated input to the real-time session (thread-safe).
        server_time_seconds: the session's server time now (seconds since it started).
        sample_rate_hz: the session rate.
        welcome: fields of the ``welcome`` message besides the clock
            (session_id, block_frames, lookahead_ms, audio_tcp_port).
        host: interface to bind both sockets to (loopback by default; an IPv4
            address or ``*``).
        control_port: TCP port of the ROUTER socket (0: any free port).
        events_port: TCP port of the PUB socket (0: any free port).
        part_info: the session's parts (for MIDI channels: percussion on 10).
        mapping: the live mapping (:class:`bridge.mapping_watch.MappingControl`):
            answers mapping_set/get/export and names emotions and stingers.
        outbox_blocks: blocks of callbacks queued before the oldest is dropped.
        sndhwm_messages: ZeroMQ send high-water mark per peer, in messages.
        context: a ``zmq.Context`` (default: the process's shared instance).
        credentials: make both sockets CURVE servers (only allow-listed keys
            connect; start :func:`bridge.access.start_curve_authenticator` on
            the context first); a message's role is its key's. None: plain
            TCP, every sender has the control role.
        clients: the session's client table (shared with the other
            transports; default: one of this endpoint's own).
        clock: monotonic seconds for leases (tests pass a fake one).
        sessions: the server's sessions (:class:`bridge.sessions.SessionDirectory`):
            a hello opens one, every other message goes to its sender's; None:
            the one session the arguments above describe. Callbacks of session
            ``ID`` come through :meth:`sink_for` and go out on its topics.

    Attributes:
        control_endpoint: where the ROUTER is bound, e.g. ``"tcp://127.0.0.1:5555"``.
        events_endpoint: where the PUB is bound.
        control_port, events_port: their TCP ports.
        counters: ``received``, ``inputs``, ``hellos``, ``pings``, ``rejected``,
            ``rejected_<code>``, ``sent`` (replies), ``published`` (callbacks),
            ``dropped_blocks`` (outbox full), ``dropped_messages`` (PUB refused),
            ``send_errors``, ``internal_errors`` (each also answered with an
            ``error`` of code ``internal``; the log says one per 10 s, with a count).

    Raises:
        OSError: a port cannot be bound (in use, not allowed).
    """

    def __init__(
        self,
        bank: CueBank,
        submit: Callable[[Any], None],
        server_time_seconds: Callable[[], float],
        sample_rate_hz: int,
        welcome: dict[str, Any],
        host: str = "127.0.0.1",
        control_port: int = 9003,
        events_port: int = 9004,
        part_info: dict | None = None,
        mapping: Any = None,
        *,
        outbox_blocks: int = OUTBOX_BLOCKS,
        sndhwm_messages: int = SNDHWM_MESSAGES,
        context: Any = None,
        credentials: Credentials | None = None,
        clients: ClientTable | None = None,
        clock: Any = time.monotonic,
        sessions: SessionDirectory | None = None,
    ) -> None:
        import zmq  # imported here so the OSC and TCP transports work without pyzmq

        if outbox_blocks < 1:
            raise ValueError(f"outbox_blocks must be >= 1, got {outbox_blocks}")
        self._zmq = zmq
        self.bank = bank
        self.submit = submit
        self.server_time_seconds = server_time_seconds
        self.sample_rate_hz = sample_rate_hz
        self.welcome = welcome
        self.part_info = part_info or {}
        self.mapping = mapping  # a bridge.mapping_watch.MappingControl, or None
        self.host = host
        self.counters: collections.Counter = collections.Counter()
        self.credentials = credentials
        self.clients = clients if clients is not None else ClientTable(clock)
        self.clock = clock
        self._next_expiry_s = clock() + 1.0
        self._outbox: collections.deque = collections.deque(maxlen=outbox_blocks)
        # Answers made on other threads (mapping_set), sent by the ZeroMQ thread, which owns the socket.
        self._late_replies: collections.deque = collections.deque(maxlen=LATE_REPLIES)
        self._log = RateLimitedLog(log)
        # Read from the XPUB by the ZeroMQ thread, so the render thread can skip blocks nobody wants.
        self._subscriptions = XpubSubscriptions()
        self.sessions = sessions if sessions is not None else single_session(
            bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping, self.part_info)
        self._midi: dict[str, MidiChannels] = {}  # per session, made on the ZeroMQ thread
        self.dispatcher = Dispatcher(bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping,
                                     self.counters, sessions=self.sessions)
        self._running = False
        self._thread: threading.Thread | None = None
        context = context or zmq.Context.instance()
        self._control = self._events = None
        self._wake_reader, self._wake_writer = socket.socketpair()
        try:
            for sock in (self._wake_reader, self._wake_writer):
                sock.setblocking(False)
            self._control = context.socket(zmq.ROUTER)
            self._control.setsockopt(zmq.LINGER, 0)
            self._control.setsockopt(zmq.SNDHWM, sndhwm_messages)
            self._control.setsockopt(zmq.RCVHWM, RCVHWM_MESSAGES)
            self._control.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
            make_curve_server(self._control, credentials)
            self.control_endpoint, self.control_port = _bind(zmq, self._control, host, control_port)
            self._events = context.socket(zmq.XPUB)  # a PUB that tells us its subscriptions
            self._events.setsockopt(zmq.LINGER, 0)
            self._events.setsockopt(zmq.SNDHWM, sndhwm_messages)
            make_curve_server(self._events, credentials)
            self.events_endpoint, self.events_port = _bind(zmq, self._events, host, events_port)
        except BaseException:
            self._close_sockets()
            raise

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the ZeroMQ thread (it owns both sockets from now on)."""
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="adaptive-zmq", daemon=True)
        self._thread.start()

    def close(self, timeout_seconds: float = 2.0) -> None:
        """Stop the thread and close both sockets at once (linger 0: unsent
        messages are discarded). Waits at most ``timeout_seconds`` for the thread."""
        self._running = False
        self._log.flush()
        thread, self._thread = self._thread, None
        if thread is None:
            self._close_sockets()
            return
        self._wake()
        thread.join(timeout_seconds)
        if thread.is_alive():  # the thread still owns the sockets; it closes them when it stops
            log.warning("ZeroMQ: the thread did not stop within %g s", timeout_seconds)

    def _close_sockets(self) -> None:
        for sock in (self._control, self._events):
            if sock is not None:
                sock.close(linger=0)
        for sock in (self._wake_reader, self._wake_writer):
            sock.close()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\x00")
        except OSError:  # full (a wake-up is already pending) or closed
            pass

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self._control, zmq.POLLIN)
        poller.register(self._wake_reader, zmq.POLLIN)
        poller.register(self._events, zmq.POLLIN)
        try:
            while self._running:
                try:
                    ready = dict(poller.poll(POLL_TIMEOUT_MS))
                except zmq.ZMQError:
                    if self._running:
                        self.counters["receive_errors"] += 1
                        continue
                    return
                if self._wake_reader.fileno() in ready or self._wake_reader in ready:
                    self._drain_wake()
                if self._control in ready:
                    self._receive_batch()
                if self._events in ready:
                    self._subscriptions.update(zmq, self._events)
                while self._late_replies:
                    self._reply(*self._late_replies.popleft())
                self._publish_outbox()
                if self.clock() >= self._next_expiry_s:
                    self._next_expiry_s = self.clock() + 1.0
                    self.clients.expire()
        finally:
            self._close_sockets()

    def _drain_wake(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass

    def _receive_batch(self) -> None:
        zmq = self._zmq
        for _ in range(RECEIVE_BATCH):
            try:
                frames = self._control.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            except zmq.ZMQError:
                self.counters["receive_errors"] += 1
                return
            receive_time = self.server_time_seconds()
            self.counters["received"] += 1
            last = frames[-1]
            identity, envelope, payload = frames[0].bytes, [f.bytes for f in frames[1:-1]], last.bytes
            try:
                try:
                    if any(envelope) or len(frames) < 2:
                        raise ProtocolError("malformed", "send one JSON message per frame (allowed: a single "
                                                         "frame, after REQ's empty delimiter if any)")
                    self.handle(payload, identity, envelope, receive_time, role=self._role_of(last),
                                host=_property(last, "Peer-Address"))
                except ProtocolError as error:
                    self._reject(identity, envelope, error)
            except Exception as error:  # a bug must not stop the server: count it, answer, keep serving
                self.counters["internal_errors"] += 1
                self._log.error("internal", "ZeroMQ: internal error handling a message: %r", error, exc_info=True)
                try:
                    self._reply(identity, envelope, encode_json("error", code="internal", message=(
                        f"the server failed handling this message ({type(error).__name__}); it is counted, "
                        "nothing changed")))
                except Exception:
                    self.counters["send_errors"] += 1

    # ------------------------------------------------------------------ input
    def _role_of(self, frame: Any) -> Role:
        """The sender's role: its CURVE key's (the ``User-Id`` the authenticator set), or control without credentials."""
        if self.credentials is None:
            return Role.CONTROL
        return Role(_property(frame, "User-Id"))

    def handle(self, payload: bytes, identity: bytes, envelope: list[bytes] | None = None,
               receive_time_seconds: float | None = None, role: Role | None = None, host: str = "") -> None:
        """Decode, validate and act on one JSON message from ``identity``
        (call on the ZeroMQ thread only: it may reply on the ROUTER).

        Args:
            payload: the message frame (UTF-8 JSON, at most 64 KiB).
            identity: the ROUTER routing id of the sender.
            envelope: frames between identity and payload, echoed in replies.
            receive_time_seconds: server time (seconds) the message arrived (default: now).
            role: the sender's role (default: control without credentials, none with them).
            host: the sender's IP address (for the per-host cap).

        Raises:
            ProtocolError: anything the server cannot accept.
        """
        envelope = envelope or []
        if role is None and self.credentials is None:
            role = Role.CONTROL
        client = self.clients.get("zmq", identity)
        if client is not None:
            self.clients.renew(client)
        peer = _ZmqPeer(self, identity, envelope, host, role,
                        client.session_id if client is not None else DEFAULT_SESSION)
        for name, values in self.dispatcher.dispatch(decode_json(payload), peer, receive_time_seconds):
            self._reply(identity, envelope, encode_json(name, **values))

    def _reject(self, identity: bytes, envelope: list[bytes], error: ProtocolError) -> None:
        if isinstance(error, SessionElsewhere):  # not a refusal: the session is on another node of the cluster
            self.counters["hellos_elsewhere"] += 1
            self._reply(identity, envelope, encode_json(*error_reply(error)))
            return
        self.counters["rejected"] += 1
        self.counters[f"rejected_{error.code}"] += 1
        self._log.warning(f"rejected_{error.code}", "ZeroMQ: rejected a message: %s", error.message)
        name, values = error_reply(error)
        self._reply(identity, envelope, encode_json(name, **values))

    def _reject_later(self, identity: bytes, envelope: list[bytes], error: ProtocolError) -> None:
        """Refuse a message from another thread (a hello whose session could
        not be made): counted as :meth:`_reject`, sent by the ZeroMQ thread."""
        if isinstance(error, SessionElsewhere):  # not a refusal: the session is on another node of the cluster
            self.counters["hellos_elsewhere"] += 1
            self._reply_later(identity, envelope, [error_reply(error)])
            return
        self.counters["rejected"] += 1
        self.counters[f"rejected_{error.code}"] += 1
        self._log.warning(f"rejected_{error.code}", "ZeroMQ: rejected a message: %s", error.message)
        self._reply_later(identity, envelope, [error_reply(error)])

    def _reply_later(self, identity: bytes, envelope: list[bytes], replies: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue ``replies`` to ``identity`` from another thread (the ZeroMQ
        thread sends them); never blocks. Beyond :data:`LATE_REPLIES` waiting,
        the oldest is dropped (counted in ``send_errors``)."""
        for name, values in replies:
            if len(self._late_replies) == self._late_replies.maxlen:
                self.counters["send_errors"] += 1
            self._late_replies.append((identity, envelope, encode_json(name, **values)))
        self._wake()

    def _reply(self, identity: bytes, envelope: list[bytes], payload: bytes) -> None:
        zmq = self._zmq
        try:
            self._control.send_multipart([identity, *envelope, payload], zmq.NOBLOCK)
            self.counters["sent"] += 1
        except zmq.ZMQError:  # zmq.Again included: the peer's queue is full or it left
            self.counters["send_errors"] += 1

    # ------------------------------------------------------------------ output
    def on_block(self, block: Any) -> None:
        """Sink of the default session's real-time session: see :meth:`sink_for`."""
        self._on_block(block, DEFAULT_SESSION, TOPIC_EVENTS, TOPIC_MIDI)

    def sink_for(self, session_id: str) -> Callable[[Any], None]:
        """The sink of session ``session_id``'s real-time session (called on
        its render thread): queue the block's events and MIDI for the ZeroMQ
        thread, which publishes them on the session's topics
        (:func:`bridge.sessions.session_topic`). Never blocks; when the outbox
        is full its oldest block is dropped (``dropped_blocks``). Only topics
        some SUB socket subscribes to are queued."""
        if session_id == DEFAULT_SESSION:
            return self.on_block
        events_topic, midi_topic = session_topic(session_id, TOPIC_EVENTS), session_topic(session_id, TOPIC_MIDI)
        return lambda block: self._on_block(block, session_id, events_topic, midi_topic)

    def _on_block(self, block: Any, session_id: str, events_topic: bytes, midi_topic: bytes) -> None:
        events = wire_events(block.events) if block.events and self._subscriptions.wants(events_topic) else ()
        midi = block.midi if block.midi and self._subscriptions.wants(midi_topic) else ()
        if not events and not midi:
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.counters["dropped_blocks"] += 1
        # (events, midi) of the default session, (events, midi, session_id) of another
        self._outbox.append((list(events), list(midi)) if session_id == DEFAULT_SESSION
                            else (list(events), list(midi), session_id))
        self._wake()

    def broadcast_events(self, events: list, session_id: str = DEFAULT_SESSION) -> None:
        """Publish music events (e.g. a ``mapping_error`` from the mapping
        watch) on session ``session_id``'s events topic, from any thread. Never blocks."""
        self._outbox.append((list(events), []) if session_id == DEFAULT_SESSION else (list(events), [], session_id))
        self._wake()

    def session_ended(self, session_id: str, reason: str, clients: list) -> None:
        """Session ``session_id`` ended: tell its ZeroMQ ``clients`` (already
        forgotten) with ``session_ended``, from any thread. Never blocks."""
        self._midi.pop(session_id, None)
        for client in clients:
            if client.transport == "zmq":
                self._reply_later(client.key, [], [("session_ended", {"session_id": session_id, "reason": reason})])

    def _publish_outbox(self) -> None:
        while self._running:
            try:
                entry = self._outbox.popleft()
            except IndexError:
                return
            events, midi = entry[0], entry[1]
            session_id = entry[2] if len(entry) > 2 else DEFAULT_SESSION
            try:
                channels = self._midi.get(session_id)
                if channels is None:
                    session = self.sessions.get(session_id)
                    channels = self._midi[session_id] = MidiChannels(session.part_info if session is not None
                                                                     else self.part_info)
                for topic, messages in ((session_topic(session_id, TOPIC_EVENTS),
                                         event_messages(events, self.sample_rate_hz)),
                                        (session_topic(session_id, TOPIC_MIDI),
                                         channels.messages(midi, self.sample_rate_hz))):
                    for name, values in messages:
                        self._publish(topic, encode_json(name, **values))
            except Exception:  # e.g. a value outside the table: skip the block, keep serving
                self.counters["internal_errors"] += 1
                log.exception("ZeroMQ: internal error publishing a block's callbacks")

    def _publish(self, topic: bytes, payload: bytes) -> None:
        zmq = self._zmq
        try:
            self._events.send_multipart([topic, payload], zmq.NOBLOCK)
            self.counters["published"] += 1
        except zmq.ZMQError:
            self.counters["dropped_messages"] += 1


def _bind(zmq: Any, sock: Any, host: str, port: int) -> tuple[str, int]:
    """Bind ``sock`` to ``tcp://host:port`` (port 0: any free port); returns
    (endpoint, port).

    Raises:
        OSError: the address cannot be bound (``zmq.ZMQError`` converted, so
            callers handle it like a socket error).
    """
    address = f"tcp://{host}"
    try:
        if port == 0:
            port = sock.bind_to_random_port(address)
        else:
            sock.bind(f"{address}:{port}")
    except zmq.ZMQError as error:
        raise OSError(error.errno, f"{error.strerror} ({address}:{port})") from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), int(port)


def _property(frame: Any, name: str) -> str:
    """A ZeroMQ message property (``User-Id``, ``Peer-Address``), or '' where libzmq has none."""
    try:
        value = frame.get(name)
    except Exception:  # zmq.ZMQError (EINVAL): no such property on this connection
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
