"""OSC over UDP: the control input of the server and its callback output.

Three threads, none of them the render thread:

* the **receive thread** reads datagrams, decodes and validates them against
  the protocol table (:mod:`bridge.protocol`) and the cue bank, answers
  ``hello`` and ``ping`` at once, and hands scene inputs to the real-time
  session (which stamps them with the frame at which they take effect);
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
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from adaptive.cue import CueBank
from bridge.dispatch import Dispatcher, MidiChannels, error_reply, event_messages, wire_events
from bridge.log_limit import RateLimitedLog
from bridge.protocol import ProtocolError, decode_osc, encode_osc

log = logging.getLogger("adaptive.osc")

OUTBOX_BLOCKS = 256
"""Blocks of callbacks waiting to be sent before the oldest is dropped."""


RECEIVE_BUFFER_BYTES = 1 << 20
"""Socket receive buffer asked for (bytes): about 10 000 small datagrams, so a
burst of input waits in the kernel instead of being dropped."""

@dataclass
class OscClient:
    """A client that said hello: where to send, and what it subscribed to."""

    host: str
    reply_port: int
    name: str = ""
    sample_format: str = "s16"
    streams: set[str] = field(default_factory=lambda: {"events"})

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.reply_port)


@dataclass(frozen=True)
class _OscPeer:
    """The sender of one datagram, as the dispatcher sees it (:class:`bridge.dispatch.Peer`)."""

    server: OscServer
    source: tuple[str, int]

    def hello(self, values: dict[str, Any]) -> None:
        self.server._hello(values, self.source)

    def subscribe(self, stream: str, subscribed: bool) -> None:
        self.server._subscribe(stream, subscribed, self.source)

    def reply_later(self, replies: list[tuple[str, dict[str, Any]]]) -> None:
        self.server._send_replies(self.source, replies)  # UDP sendto: safe from any thread, never blocks


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
    ) -> None:
        self.bank = bank
        self.submit = submit
        self.server_time_seconds = server_time_seconds
        self.sample_rate_hz = sample_rate_hz
        self.welcome = welcome
        self.part_info = part_info or {}
        self.mapping = mapping  # a bridge.mapping_watch.MappingControl, or None
        self.clients: dict[tuple[str, int], OscClient] = {}  # by the source address that said hello
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
        self._lock = threading.Lock()  # guards clients
        # Streams some client subscribes to, replaced (never mutated) under the
        # lock; the render thread reads it to skip blocks nobody wants.
        self._wanted_streams: frozenset[str] = frozenset()
        self._sender_waiting = False  # the send thread is (about to be) asleep on _outbox_ready
        self._running = False
        self._threads: list[threading.Thread] = []
        self._midi = MidiChannels(self.part_info)
        self.dispatcher = Dispatcher(bank, submit, server_time_seconds, sample_rate_hz, welcome, mapping,
                                     self.counters)

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
                    self._reject(source, error)
            except Exception as error:  # a bug must not stop the server: count it, answer, keep serving
                self.counters["internal_errors"] += 1
                self._log.error("internal", "OSC: internal error handling a datagram from %s:%d: %r", *source, error,
                                exc_info=True)
                try:
                    self._send_now(self._reply_address(source), encode_osc("error", code="internal", message=(
                        f"the server failed handling this message ({type(error).__name__}); it is counted, "
                        "nothing changed")))
                except Exception:
                    self.counters["send_errors"] += 1

    def handle(self, datagram: bytes, source: tuple[str, int], received_seconds: float | None = None) -> None:
        """Decode one datagram from ``source`` that arrived at server time
        ``received_seconds`` (default: now), dispatch it (:class:`bridge.dispatch.Dispatcher`)
        and send the replies.

        Raises:
            ProtocolError: anything the server cannot accept.
        """
        replies = self.dispatcher.dispatch(decode_osc(datagram), _OscPeer(self, source), received_seconds)
        if replies:
            self._send_replies(source, replies)

    def _send_replies(self, source: tuple[str, int], replies: list[tuple[str, dict[str, Any]]]) -> None:
        address = self._reply_address(source)
        for name, values in replies:
            self._send_now(address, encode_osc(name, **values))

    def _is_own_address(self, address: tuple[str, int]) -> bool:
        """Whether ``address`` is this server's own OSC socket."""
        return address[1] == self.port and (address[0] == self.host or address[0].startswith("127.")
                                            or self.host in ("0.0.0.0", ""))

    def _hello(self, values: dict[str, Any], source: tuple[str, int]) -> None:
        if self._is_own_address((source[0], values["reply_port"])):
            raise ProtocolError("not_allowed", f"reply_port {values['reply_port']} is the server's own OSC port "
                                               "(allowed: the port the client listens on)")
        client = OscClient(source[0], values["reply_port"], values["client_name"], values["sample_format"])
        with self._lock:
            self.clients[source] = client
            self._update_wanted_streams()
        log.info("OSC: hello from %s (%s:%d, replies to port %d)", values["client_name"] or "a client",
                 source[0], source[1], values["reply_port"])

    def _subscribe(self, stream: str, subscribed: bool, source: tuple[str, int]) -> None:
        client = self._client_for(source)
        if client is None:
            name = "subscribe" if subscribed else "unsubscribe"
            raise ProtocolError("not_allowed", f"/adaptive/{name} needs /adaptive/hello first (to know the reply port)")
        with self._lock:
            (client.streams.add if subscribed else client.streams.discard)(stream)
            self._update_wanted_streams()

    def _update_wanted_streams(self) -> None:
        """Recompute the streams any client wants (call with the lock held)."""
        self._wanted_streams = frozenset(stream for client in self.clients.values() for stream in client.streams)

    def _client_for(self, source: tuple[str, int]) -> OscClient | None:
        """The client that said hello from ``source`` (host, source port)."""
        with self._lock:
            return self.clients.get(source)

    def _reply_address(self, source: tuple[str, int]) -> tuple[str, int]:
        client = self._client_for(source)
        return client.address if client is not None else source

    def _reject(self, source: tuple[str, int], error: ProtocolError) -> None:
        self.counters["rejected"] += 1
        self.counters[f"rejected_{error.code}"] += 1
        self._log.warning(f"rejected_{error.code}", "OSC: rejected a datagram from %s:%d: %s", source[0], source[1],
                          error.message)
        name, values = error_reply(error)
        self._send_now(self._reply_address(source), encode_osc(name, **values))

    def _send_now(self, address: tuple[str, int], datagram: bytes) -> None:
        try:
            self._socket.sendto(datagram, address)
            self.counters["sent"] += 1
        except OSError:
            self.counters["send_errors"] += 1

    # ------------------------------------------------------------------ output
    def on_block(self, block: Any) -> None:
        """Sink of the real-time session (called on the render thread): queue
        the block's events and MIDI for the send thread. Never blocks.

        Only what some client subscribes to is queued, and the send thread is
        woken only when it sleeps: waking another thread costs the render
        thread far more than the rest of this sink."""
        wanted = self._wanted_streams
        events = wire_events(block.events) if "events" in wanted and block.events else ()
        midi = block.midi if "midi" in wanted else ()
        if not events and not midi:
            return
        if len(self._outbox) == self._outbox.maxlen:
            self.counters["dropped_blocks"] += 1
        self._outbox.append((list(events), list(midi)))
        if self._sender_waiting:
            with self._outbox_ready:
                self._outbox_ready.notify()

    def broadcast(self, name: str, values: dict[str, Any]) -> None:
        """Send message ``name`` to every client that said hello, whatever it
        subscribed to (e.g. ``mapping_error`` from the mapping watch), from
        any thread. Never blocks (UDP)."""
        datagram = encode_osc(name, **values)
        with self._lock:
            addresses = [client.address for client in self.clients.values()]
        for address in addresses:
            self._send_now(address, datagram)

    def _send_loop(self) -> None:
        while self._running:
            with self._outbox_ready:
                # Set before looking at the outbox: a block queued after this
                # line sees the flag and notifies (under the lock, so after we wait).
                self._sender_waiting = True
                if not self._outbox:
                    self._outbox_ready.wait(0.1)
                self._sender_waiting = False
            while self._outbox:
                events, midi = self._outbox.popleft()
                with self._lock:
                    clients = list(self.clients.values())
                for stream, messages in (("events", event_messages(events, self.sample_rate_hz)),
                                         ("midi", self._midi.messages(midi, self.sample_rate_hz))):
                    targets = [c.address for c in clients if stream in c.streams]
                    for name, values in messages if targets else ():
                        datagram = encode_osc(name, **values)
                        for address in targets:
                            self._send_now(address, datagram)
