"""OSC over UDP: the control input of the server and its callback output.

Three threads, none of them the render thread:

* the **receive thread** reads datagrams, decodes and validates them against
  the protocol table (:mod:`bridge.protocol`) and the cue bank, answers
  ``hello`` and ``ping`` at once, and hands scene inputs to the real-time
  session (which stamps them with the frame at which they take effect); a
  hello naming a session that is being made is welcomed later, from the
  thread that makes it (:meth:`app.sessions.SessionHost.opening`), so the
  receive thread never waits for a session to be made;
* the render thread calls :meth:`OscServer.on_block` (a sink of the real-time
  session) which only appends the block's events and MIDI to a bounded queue;
* the **send thread** encodes callbacks and sends them to every client
  subscribed to them.

A slow or vanished client cannot stall anything: the outgoing queue is
bounded and drops its oldest entries (counted) when full, and UDP sends never
block. Bad input is answered with an ``error`` message to the sender (at its
``hello`` reply port if it said hello, else at its source port), counted, and
logged (one line per kind of error per 10 s, with the count of the others:
:class:`bridge.log_limit.RateLimitedLog`); nothing else changes.

Who may do what (:mod:`bridge.access`, docs/network.md):

* A client exists once its hello is **verified**: it came from loopback
  (which no other machine can claim as its source), or it carried the cookie
  of the server's ``retry``, which went to its (host, reply_port) — so the
  client receives there. Until then a source gets at most one reply per
  datagram, no larger than the datagram (an ``error`` is cut to fit, anything
  else is withheld and counted); streams and multi-part replies go only to
  clients.
* Without credentials every sender has the control role (as on loopback
  before roles existed). With credentials a client has the role its hello
  proved (HMAC over the cookie); a sender that is no client has none.
* A client is known by the source address of its hello, or by its
  ``client_id`` (in ``welcome``), which ``subscribe``, ``unsubscribe`` and
  ``goodbye`` from another socket carry. Any message renews its lease; a
  client silent for the lease is dropped (counted ``clients_expired``).
"""

from __future__ import annotations

import collections
import hmac
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from adaptive.cue import CueBank
from bridge.access import Client, ClientTable, CookieJar, Credentials, Role, hello_proof, is_loopback
from bridge.dispatch import Dispatcher, MidiChannels, PendingHello, error_reply, event_messages, single_session, wire_events
from bridge.log_limit import RateLimitedLog
from bridge.protocol import DEFAULT_SESSION, ROLES, ProtocolError, decode_osc, encode_osc
from bridge.sessions import SessionDirectory, SessionElsewhere

log = logging.getLogger("adaptive.osc")

OUTBOX_BLOCKS = 256
"""Blocks of callbacks waiting to be sent before the oldest is dropped."""


RECEIVE_BUFFER_BYTES = 1 << 20
"""Socket receive buffer asked for (bytes): about 10 000 small datagrams, so a
burst of input waits in the kernel instead of being dropped."""

OscClient = Client
"""A client that said hello (:class:`bridge.access.Client`): where to send, what it subscribed to."""

EXPIRE_EVERY_S = 1.0
"""How often (seconds) the receive thread drops clients whose lease ran out."""


@dataclass(frozen=True)
class _OscPeer:
    """The sender of one datagram, as the dispatcher sees it (:class:`bridge.dispatch.Peer`)."""

    server: OscServer
    source: tuple[str, int]
    client: Client | None
    role: Role | None
    request_bytes: int = 0  # the datagram's size: what an unverified source may get back

    @property
    def session_id(self) -> str:
        """The session its messages go to: its client's, else the default."""
        return self.client.session_id if self.client is not None else DEFAULT_SESSION

    @property
    def voice_key(self) -> str:
        """Who it is for audience votes: its client's id, else its source address."""
        return self.client.client_id if self.client is not None else f"{self.source[0]}:{self.source[1]}"

    def hello(self, values: dict[str, Any]) -> tuple[str, dict[str, Any]] | PendingHello:
        return self.server._hello(values, self.source, self.request_bytes)

    def goodbye(self, client_id: str) -> None:
        self.server._goodbye(self._client(client_id, "goodbye"))

    def subscribe(self, stream: str, subscribed: bool, client_id: str) -> None:
        self.server._subscribe(stream, subscribed, self._client(client_id, "subscribe" if subscribed else "unsubscribe"))

    def _client(self, client_id: str, name: str) -> Client:
        if self.client is None:
            raise ProtocolError("not_allowed", f"/adaptive/{name} needs a client: say /adaptive/hello from this "
                                               "socket first, or add the client_id of your welcome as the last "
                                               f"argument (/adaptive/{name} {'s' if name == 'goodbye' else 'ss'} "
                                               f"{'' if name == 'goodbye' else 'STREAM '}CLIENT_ID)")
        return self.client

    def reply_later(self, replies: list[tuple[str, dict[str, Any]]]) -> None:
        # From the mapping thread; UDP sendto is safe from any thread and never blocks.
        self.server._send_replies(self.source, self.client, replies, self.request_bytes)


class OscServer:
    """The OSC endpoint of a session.

    Args:
        bank: the cue bank (names are checked against it before an input is queued).
        submit: hands a validated input to the real-time session (thread-safe).
        server_time_seconds: the session's server time now (seconds since it started).
        sample_rate_hz: the session rate.
        welcome: fields of the ``welcome`` message besides the clock
            (session_id, block_frames, lookahead_ms, audio_tcp_port).
        host, port: where to listen (loopback by default; port 0 = any free port).
        part_info: the session's parts (for MIDI channels: percussion on 10).
        mapping: the live mapping (:class:`bridge.mapping_watch.MappingControl`):
            answers mapping_set/get/export and names emotions and stingers.
        credentials: role secrets to check hello proofs against (None: no
            credentials, every sender has the control role).
        clients: the session's client table (shared with the other
            transports; default: one of this endpoint's own).
        cookies: the cookie jar of the hello round trip (default: a new secret).
        trust_loopback: treat loopback sources as verified (no cookie round
            trip without credentials); tests turn it off.
        clock: monotonic seconds for leases and cookies (tests pass a fake one).
        sessions: the server's sessions (:class:`bridge.sessions.SessionDirectory`):
            a hello opens one, every other message goes to its sender's; None:
            the one session the arguments above describe. Callbacks of session
            ``ID`` come through :meth:`sink_for` and go to its clients only.

    Attributes:
        counters: ``received``, ``inputs``, ``hellos``, ``retries``, ``pings``,
            ``rejected``, ``rejected_<code>``, ``forbidden``, ``sent``,
            ``withheld_unverified`` (replies to unverified sources not sent:
            larger than the request, or a second one), ``goodbyes``,
            ``clients_expired`` (in :attr:`clients`' counters too), ...

    Raises:
        OSError: the port cannot be bound (in use, not allowed).
    """

    def __init__(
        self,
        bank: CueBank,
        submit: Callable[[Any], None],
        server_time_seconds: Callable[[], float],
        sample_rate_hz: int,
        welcome: dict[str, Any],
        host: str = "127.0.0.1",
        port: int = 9000,
        part_info: dict | None = None,
        mapping: Any = None,
        *,
        credentials: Credentials | None = None,
        clients: ClientTable | None = None,
        cookies: CookieJar | None = None,
        trust_loopback: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sessions: SessionDirectory | None = None,
    ) -> None:
        self.bank = bank
        self.submit = submit
        self.server_time_seconds = server_time_seconds
        self.sample_rate_hz = sample_rate_hz
        self.welcome = welcome
        self.part_info = part_info or {}
        self.mapping = mapping  # a bridge.mapping_watch.MappingControl, or None
        self.credentials = credentials
        self.clients = clients if clients is not None else ClientTable(clock)
        self.cookies = cookies if cookies is not None else CookieJar(clock=clock)
        self.trust_loopback = trust_loopback
        self.clock = clock
        self._next_expiry_s = clock() + EXPIRE_EVERY_S
        self.counters = collections.Counter()
        self._log = RateLimitedLog(log)  # one line per kind of rejection per 10 s, with a count
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # room for bursts of input (the kernel caps it at net.core.rmem_max)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass
        self._socket.bind((host, port))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.host = host
        self._outbox: collections.deque = collections.deque(maxlen=OUTBOX_BLOCKS)
        self._outbox_ready = threading.Condition()
        self._lock = threading.Lock()  # guards _wanted_streams
        # The streams some client of the default session subscribes to (and
        # per other session), replaced (never mutated) under the lock; render
        # threads read them to skip blocks nobody wants.
        self._wanted_streams: frozenset[str] = frozenset()
        self._wanted_by_session: dict[str, frozenset[str]] = {}
        self._sender_waiting = False  # the send thread is (about to be) asleep on _outbox_ready
        self._running = False
        self._threads: list[threading.Thread] = []
        self.sessions = sessions if sessions is not None else single_session(
            bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping, self.part_info)
        self._midi: dict[str, MidiChannels] = {}  # per session, made on the send thread
        self.dispatcher = Dispatcher(bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping,
                                     self.counters, sessions=self.sessions)
        self.clients.add_listener(self._update_wanted_streams)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the receive and send threads."""
        self._running = True
        for name, target in (("adaptive-osc-receive", self._receive_loop), ("adaptive-osc-send", self._send_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout_seconds: float = 2.0) -> None:
        """Stop the threads and close the socket."""
        self._running = False
        with self._outbox_ready:
            self._outbox_ready.notify_all()
        for thread in self._threads:
            thread.join(timeout_seconds)
        self._socket.close()
        self._log.flush()

    # ------------------------------------------------------------------ input
    def _receive_loop(self) -> None:
        while self._running:
            if self.clock() >= self._next_expiry_s:
                self.expire_clients()
            try:
                datagram, source = self._socket.recvfrom(65536)
                received = self.server_time_seconds()
            except socket.timeout:
                continue
            except OSError:
                if self._running:
                    self.counters["receive_errors"] += 1
                    continue
                return
            self.counters["received"] += 1
            if self._is_own_address(source):
                self.counters["ignored_own"] += 1  # never answer ourselves: that would loop for ever
                continue
            try:
                try:
                    self.handle(datagram, source, received)
                except ProtocolError as error:
                    self._reject(source, error, len(datagram))
            except Exception as error:  # a bug must not stop the server: count it, answer, keep serving
                self.counters["internal_errors"] += 1
                self._log.error("internal", "OSC: internal error handling a datagram from %s:%d: %r", *source, error,
                                exc_info=True)
                try:  # answered like any refusal: in full to a client, within the request's size to a stranger
                    self._send_error(source, ProtocolError("internal", (
                        f"the server failed handling this message ({type(error).__name__}); it is counted, "
                        "nothing changed")), len(datagram))
                except Exception:
                    self.counters["send_errors"] += 1

    def expire_clients(self) -> list[Client]:
        """Drop the clients whose lease ran out (the receive thread calls it
        every :data:`EXPIRE_EVERY_S`); returns them."""
        self._next_expiry_s = self.clock() + EXPIRE_EVERY_S
        return self.clients.expire()  # logged there (the table is shared: another transport may expire them)

    def handle(self, datagram: bytes, source: tuple[str, int], received_seconds: float | None = None) -> None:
        """Decode one datagram from ``source`` that arrived at server time
        ``received_seconds`` (default: now), check the sender's role, dispatch
        it (:class:`bridge.dispatch.Dispatcher`) and send the replies: to a
        client at its reply port; to a source not verified, at most one, no
        larger than ``datagram``.

        Raises:
            ProtocolError: anything the server cannot accept.
        """
        decoded = decode_osc(datagram)
        client = self.clients.get("osc", source)
        client_id = decoded.values.get("client_id", "")
        if client_id:
            client = self.clients.by_id(client_id)
            if client is None or client.transport != "osc" or client.host != source[0]:
                raise ProtocolError("not_allowed", f"client_id {client_id!r} is no OSC client of this session "
                                                   "from this host (its lease may have run out: say /adaptive/hello "
                                                   "again and use the new welcome's client_id)")
        if client is not None:
            self.clients.renew(client)
            role = client.role
        else:
            role = Role.CONTROL if self.credentials is None else None
        replies = self.dispatcher.dispatch(decoded, _OscPeer(self, source, client, role, len(datagram)),
                                           received_seconds)
        if not replies:
            return
        if replies[0][0] == "retry":  # to where the streams would go: whoever receives there learns the cookie
            self._send_limited((source[0], decoded.values["reply_port"]), [encode_osc(replies[0][0], **replies[0][1])],
                               len(datagram), verified=False)
            return
        if replies[0][0] == "welcome":
            client = self.clients.get("osc", source)
        self._send_replies(source, client, replies, len(datagram))

    def _send_replies(self, source: tuple[str, int], client: Client | None, replies: list[tuple[str, dict[str, Any]]],
                      request_bytes: int) -> None:
        """Send ``replies`` to ``client`` at its reply port, or to ``source``
        if it is none (limited as :meth:`_send_limited` if not verified).
        Called from the receive thread and, for a ``mapping_set``'s answer, the mapping thread."""
        address = client.address if client is not None else source
        datagrams = [encode_osc(name, **values) for name, values in replies]
        self._send_limited(address, datagrams, request_bytes, verified=client is not None or self._trusted(source))

    def _trusted(self, source: tuple[str, int]) -> bool:
        """Whether ``source`` is verified by where it is: loopback (when trusted)."""
        return self.trust_loopback and is_loopback(source[0])

    def _send_limited(self, address: tuple[str, int], datagrams: list[bytes], request_bytes: int,
                      verified: bool) -> None:
        """Send ``datagrams`` to ``address``; to one not verified, only the
        first and only if it is no larger than the request (counted otherwise)."""
        if not verified:
            if len(datagrams) > 1 or len(datagrams[0]) > request_bytes:
                self.counters["withheld_unverified"] += 1
                self._log.log(logging.DEBUG, "withheld_unverified", "OSC: withheld %d replies (%d bytes) to %s:%d, "
                              "not verified", len(datagrams), sum(map(len, datagrams)), *address)
                return
        for datagram in datagrams:
            self._send_now(address, datagram)

    def _is_own_address(self, address: tuple[str, int]) -> bool:
        """Whether ``address`` is this server's own OSC socket."""
        return address[1] == self.port and (address[0] == self.host or address[0].startswith("127.")
                                            or self.host in ("0.0.0.0", ""))

    def _hello(self, values: dict[str, Any], source: tuple[str, int],
               request_bytes: int = 0) -> tuple[str, dict[str, Any]] | PendingHello:
        host, reply_port = source[0], values["reply_port"]
        if self._is_own_address((host, reply_port)):
            raise ProtocolError("not_allowed", f"reply_port {reply_port} is the server's own OSC port "
                                               "(allowed: the port the client listens on)")
        role = values["role"] or ("control" if self.credentials is None else "")
        if not role:
            raise ProtocolError("forbidden", "this server has credentials: say /adaptive/hello with a role "
                                             f"({', '.join(ROLES)}) and, after its retry, the proof of that role's "
                                             "secret (docs/network.md)")
        if self.credentials is not None or not self._trusted(source):
            cookie = values["cookie"]
            if not cookie or not self.cookies.check(host, reply_port, cookie):
                if cookie:
                    self.counters["stale_cookies"] += 1
                return ("retry", {"cookie": self.cookies.cookie(host, reply_port)})

        def join(session: Any) -> tuple[str, dict[str, Any]]:
            client = self.clients.add("osc", source, host, Role(role), reply_address=(host, reply_port),
                                      name=values["client_name"], sample_format=values["sample_format"],
                                      session_id=session.session_id)
            log.info("OSC: hello from %s (%s:%d, replies to port %d, role %s, session %s)",
                     values["client_name"] or "a client", source[0], source[1], reply_port, role, session.session_id)
            return ("welcome", {"client_id": client.client_id, "role": role, "lease_s": int(self.clients.lease_s),
                                "_session": session.session_id})

        def refuse(error: ProtocolError) -> None:  # a refusal after the session was made (or failed)
            error.reply_to = (host, reply_port)
            self._reject(source, error, request_bytes)

        try:  # from here on (host, reply_port) is verified: a refusal goes there in full
            if self.credentials is not None:
                self._check_proof(role, values["cookie"], reply_port, values["proof"])
            session = self.sessions.opening(values.get("session", ""))
            if session.done():
                return join(session.result())
        except ProtocolError as error:
            error.reply_to = (host, reply_port)
            raise
        # Being made (on the session host's builder thread): welcomed from there when it is.
        return PendingHello(session, join, lambda replies: self._send_replies(
            source, self.clients.get("osc", source), replies, request_bytes), refuse)

    def _check_proof(self, role: str, cookie: str, reply_port: int, proof: str) -> None:
        secret = self.credentials.secrets.get(Role(role))
        if secret is None:
            offered = ", ".join(r.value for r in self.credentials.secrets) or "none"
            raise ProtocolError("forbidden", f"role {role!r} has no secret on this server, so it cannot be taken "
                                             f"over OSC (roles with a secret: {offered})")
        if not hmac.compare_digest(proof.encode(), hello_proof(secret, cookie, role, reply_port).encode()):
            self.counters["bad_proofs"] += 1
            raise ProtocolError("forbidden", f"the proof for role {role!r} does not match (allowed: hex HMAC-SHA256 "
                                             f"of the {role} secret over 'adaptive-hello|COOKIE|{role}|{reply_port}'"
                                             "; docs/network.md)")

    def _goodbye(self, client: Client) -> None:
        if self.clients.remove(client):
            log.info("OSC: goodbye from %s (%s:%d)", client.name or "a client", *client.key)

    def _subscribe(self, stream: str, subscribed: bool, client: Client) -> None:
        with self._lock:
            (client.streams.add if subscribed else client.streams.discard)(stream)
        self._update_wanted_streams()

    def _update_wanted_streams(self) -> None:
        """Recompute, per session, the streams any client wants (when clients or subscriptions change)."""
        clients = self.clients.clients("osc")
        with self._lock:
            wanted: dict[str, set[str]] = {}
            for client in clients:
                wanted.setdefault(client.session_id, set()).update(client.streams)
            self._wanted_streams = frozenset(wanted.pop(DEFAULT_SESSION, ()))
            self._wanted_by_session = {session_id: frozenset(streams) for session_id, streams in wanted.items()}

    def _reject(self, source: tuple[str, int], error: ProtocolError, request_bytes: int = 0) -> None:
        if isinstance(error, SessionElsewhere):  # not a refusal: the session is on another node of the cluster
            self.counters["hellos_elsewhere"] += 1
            self._send_error(source, error, request_bytes)
            return
        self.counters["rejected"] += 1
        self.counters[f"rejected_{error.code}"] += 1
        self._log.warning(f"rejected_{error.code}", "OSC: rejected a datagram from %s:%d: %s", source[0], source[1],
                          error.message)
        self._send_error(source, error, request_bytes)

    def _send_error(self, source: tuple[str, int], error: ProtocolError, request_bytes: int) -> None:
        """Answer ``source`` with ``error``: in full to a client (at its reply
        port) or a trusted source; to a source not verified, cut to fit the
        request's ``request_bytes`` (or withheld, counted)."""
        name, values = error_reply(error)
        reply_to = getattr(error, "reply_to", None)  # a hello's verified reply address
        if reply_to is not None:
            self._send_now(reply_to, encode_osc(name, **values))
            return
        client = self.clients.get("osc", source)
        if client is not None or self._trusted(source):
            self._send_now(client.address if client is not None else source, encode_osc(name, **values))
            return
        if name != "error":  # session_elsewhere only to a verified address
            self.counters["withheld_unverified"] += 1
            return
        datagram = fit_error(values["code"], values["message"], request_bytes)
        if datagram is None:
            self.counters["withheld_unverified"] += 1
        else:
            self._send_now(source, datagram)

    def _send_now(self, address: tuple[str, int], datagram: bytes) -> None:
        try:
            self._socket.sendto(datagram, address)
            self.counters["sent"] += 1
        except OSError:
            self.counters["send_errors"] += 1

    # ------------------------------------------------------------------ output
    def on_block(self, block: Any) -> None:
        """Sink of the default session's real-time session: see :meth:`sink_for`."""
        self._on_block(block, DEFAULT_SESSION)

    def sink_for(self, session_id: str) -> Callable[[Any], None]:
        """The sink of session ``session_id``'s real-time session (called on
        its render thread): it queues the block's events and MIDI for the send
        thread, which sends them to that session's clients. Never blocks.

        Only what some client of the session subscribes to is queued, and the
        send thread is woken only when it sleeps: waking another thread costs
        the render thread far more than the rest of this sink."""
        if session_id == DEFAULT_SESSION:
            return self.on_block
        return lambda block: self._on_block(block, session_id)

    def _on_block(self, block: Any, session_id: str) -> None:
        wanted = (self._wanted_streams if session_id == DEFAULT_SESSION
                  else self._wanted_by_session.get(session_id, ()))
        events = wire_events(block.events) if "events" in wanted and block.events else ()
        midi = block.midi if "midi" in wanted else ()
        if not events and not midi:
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.counters["dropped_blocks"] += 1
        # (events, midi) of the default session, (events, midi, session_id) of another
        self._outbox.append((list(events), list(midi)) if session_id == DEFAULT_SESSION
                            else (list(events), list(midi), session_id))
        if self._sender_waiting:
            with self._outbox_ready:
                self._outbox_ready.notify()

    def broadcast(self, name: str, values: dict[str, Any], session_id: str | None = None) -> None:
        """Send message ``name`` to every client that said hello (of session
        ``session_id``; None: of every session), whatever it subscribed to
        (e.g. ``mapping_error`` from the mapping watch), from any thread.
        Never blocks (UDP)."""
        self.send_to(self.clients.clients("osc", session_id), name, values)

    def send_to(self, clients: list[Client], name: str, values: dict[str, Any]) -> None:
        """Send message ``name`` to ``clients`` (those of them on OSC), from any thread. Never blocks (UDP)."""
        datagram = encode_osc(name, **values)
        for client in clients:
            if client.transport == "osc" and client.address is not None:
                self._send_now(client.address, datagram)

    def session_ended(self, session_id: str, reason: str, clients: list[Client]) -> None:
        """Session ``session_id`` ended: tell its ``clients`` (already forgotten) with ``session_ended``."""
        self._midi.pop(session_id, None)
        self.send_to(clients, "session_ended", {"session_id": session_id, "reason": reason})

    def _send_loop(self) -> None:
        while self._running:
            with self._outbox_ready:
                # Set before looking at the outbox: a block queued after this
                # line sees the flag and notifies (under the lock, so after we wait).
                self._sender_waiting = True
                if not self._outbox:
                    self._outbox_ready.wait(0.1)
                self._sender_waiting = False
            self.flush()

    def flush(self) -> None:
        """Send the callbacks of every queued block to the clients of its
        session subscribed to them (the send thread does it; tests call it
        with no thread started)."""
        while self._outbox:
            entry = self._outbox.popleft()
            events, midi = entry[0], entry[1]
            session_id = entry[2] if len(entry) > 2 else DEFAULT_SESSION
            clients = self.clients.clients("osc", session_id)
            channels = self._midi.get(session_id)
            if channels is None:
                session = self.sessions.get(session_id)
                channels = self._midi[session_id] = MidiChannels(session.part_info if session is not None
                                                                 else self.part_info)
            for stream, messages in (("events", event_messages(events, self.sample_rate_hz)),
                                     ("midi", channels.messages(midi, self.sample_rate_hz))):
                targets = [c.address for c in clients if stream in c.streams]
                for name, values in messages if targets else ():
                    datagram = encode_osc(name, **values)
                    for address in targets:
                        self._send_now(address, datagram)


def fit_error(code: str, message: str, limit_bytes: int) -> bytes | None:
    """The ``error`` datagram of ``code`` and ``message``, its message cut (at
    a character) so the datagram is at most ``limit_bytes``; None when even an
    empty message does not fit."""
    empty = len(encode_osc("error", code=code, message=""))
    if empty > limit_bytes:
        return None
    # An OSC string of n bytes takes n + 1 rounded up to 4: n = 4k + 3 bytes take 4 more than the empty one.
    room = ((limit_bytes - empty) // 4) * 4 + 3
    text = message.encode("utf-8")[:room].decode("utf-8", "ignore")
    datagram = encode_osc("error", code=code, message=text)
    return datagram if len(datagram) <= limit_bytes else None
