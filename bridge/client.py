"""A small Python client of the server's OSC protocol (docs/protocol.md).

Used by the tests and by ``adaptive send`` / ``adaptive monitor``; also a
reference for engine integrations::

    with AdaptiveClient("127.0.0.1", 9000) as client:
        welcome = client.hello()
        client.subscribe("events")
        sync = client.sync_clock()
        client.scene("calm", 0.5, "forest")
        for message in client.messages(timeout=2.0):
            if message.message.name == "beat":
                local = sync.server_to_local(server_seconds(message.values))

Every message is built with :func:`bridge.protocol.encode_osc`, so a value the
table does not allow raises :class:`~bridge.protocol.ProtocolError` before
anything is sent. One socket (bound to 127.0.0.1, any free port) sends and
receives: the server answers to the port given in ``hello``, which is this one.

On a server with credentials (docs/network.md) give the role and its secret::

    with AdaptiveClient("10.0.0.5", 9000, role="listener", secret=LISTENER_SECRET) as client:
        client.hello()   # hello, the server's retry with a cookie, hello with the proof, welcome

After the welcome a thread pings the server every third of the lease so the
client is not dropped, and :meth:`close` says goodbye.

A server holds many sessions (docs/sessions.md); name one to join it (it is
made if there is none), or ask for a new one::

    with AdaptiveClient("127.0.0.1", 9000, session="new") as client:
        session_id = client.hello()["session_id"]   # give it to the other players' clients
        audio = client.connect_audio()              # this session's TCP audio stream
"""

from __future__ import annotations

import itertools
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bridge.access import hello_proof
from bridge.protocol import Decoded, Direction, ProtocolError, decode_osc, encode_osc

__all__ = ["AdaptiveClient", "ClockSync", "OscClient", "server_seconds"]

SESSION_HELLO_TIMEOUT_S = 15.0
"""How long a hello that names a session waits for its welcome by default
(seconds): making a session took 0.45 s on a lightly loaded 2-core machine
and up to 3.2 s on a loaded one (docs/benchmarks.md)."""


MAX_REDIRECTS = 3
"""``session_elsewhere`` answers one :meth:`AdaptiveClient.hello` follows
(a cluster's directory sends a client to the hosting node at once: one)."""


def server_seconds(values: dict[str, Any], prefix: str = "time") -> float:
    """Server time in seconds from a message's ``{prefix}_s`` and ``{prefix}_us`` arguments."""
    return values[f"{prefix}_s"] + values[f"{prefix}_us"] / 1e6


@dataclass(frozen=True)
class ClockSync:
    """The mapping between server time and this process's ``time.monotonic()``.

    Attributes:
        offset_seconds: server time minus local monotonic time, seconds
            (``server = local + offset``), from the ping with the smallest round trip.
        round_trip_seconds: that ping's round trip minus the server's own
            handling time, seconds (the error of the offset is at most half of it).
        samples: pings answered (out of those sent).
    """

    offset_seconds: float
    round_trip_seconds: float
    samples: int

    def server_to_local(self, server_seconds: float) -> float:
        """Local ``time.monotonic()`` seconds of a server time in seconds."""
        return server_seconds - self.offset_seconds

    def local_to_server(self, local_seconds: float) -> float:
        """Server time in seconds of a local ``time.monotonic()`` reading in seconds."""
        return local_seconds + self.offset_seconds


class AdaptiveClient:
    """An OSC client of one server.

    Args:
        host: the server's host (an IPv4 address or name).
        port: the server's OSC UDP port.
        client_name: free text sent in ``hello`` (the server logs it).
        role: the role asked for in ``hello`` ("control", "listener",
            "audience"; "": control on a server without credentials).
        secret: that role's secret (text or bytes) on a server with credentials.
        keepalive: ping every third of the welcome's lease so the server keeps the client.
        session: the session to join: "" (the default session), "new" (a
            new one; the welcome's ``session_id`` names it) or a session id
            (joined, or made if there is none).

    Attributes:
        errors: every ``error`` message received, as its values
            (``{"code": ..., "message": ...}``), oldest first.
        welcome: the values of the last ``welcome``, or None before :meth:`hello`.
        redirected_from: after :meth:`hello` followed a ``session_elsewhere``:
            the node first asked (``host``, ``port``) and the redirect's values; else None.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, client_name: str = "python", role: str = "",
                 secret: str | bytes | None = None, keepalive: bool = True, session: str = "") -> None:
        self.host = host
        self.session = session
        self.port = port
        self.client_name = client_name
        self.role = role
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.keepalive = keepalive
        self._keepalive_thread: threading.Thread | None = None
        self.errors: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] | None = None
        self._queue: queue.Queue[Decoded] = queue.Queue()
        self._pongs: dict[int, tuple[float, dict[str, Any]]] = {}
        self._pong_arrived = threading.Condition()
        self._sequence = itertools.count(1)
        self.redirected_from: dict[str, Any] | None = None
        self._address = (socket.gethostbyname(host), port)
        self._sock = self._new_socket(self._address[0])
        self._running = True
        self._thread = threading.Thread(target=self._receive_loop, name="adaptive-client", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ plumbing
    @staticmethod
    def _new_socket(server_address: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Loopback servers answer on loopback; a remote one needs a reachable interface.
        sock.bind(("127.0.0.1" if server_address.startswith("127.") else "0.0.0.0", 0))
        sock.settimeout(0.1)
        return sock

    @property
    def reply_port(self) -> int:
        """The local UDP port replies and callbacks arrive at."""
        return self._sock.getsockname()[1]

    def _receive_loop(self) -> None:
        while self._running:
            try:
                datagram, _ = self._sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                if not self._running:
                    return
                continue  # e.g. ICMP port unreachable reported on Linux: keep listening
            arrival = time.monotonic()
            try:
                decoded = decode_osc(datagram, Direction.TO_CLIENT)
            except ProtocolError as error:
                self.errors.append({"code": "malformed", "message": f"undecodable datagram from the server: {error}"})
                continue
            name = decoded.message.name
            if name == "pong":
                with self._pong_arrived:
                    self._pongs[decoded.values["sequence"]] = (arrival, decoded.values)
                    self._pong_arrived.notify_all()
                continue
            if name == "error":
                self.errors.append(decoded.values)
            elif name == "welcome":
                self.welcome = decoded.values
            self._queue.put(decoded)

    def send(self, name: str, **values: Any) -> None:
        """Encode and send message ``name`` with its arguments.

        Raises:
            ProtocolError: the values do not fit the protocol table (nothing is sent).
            KeyError: an unknown message name.
        """
        self._sock.sendto(encode_osc(name, **values), self._address)

    # ------------------------------------------------------------ receiving
    def messages(self, timeout: float | None = None) -> Iterator[Decoded]:
        """Yield every message received (except pongs) as it arrives, until
        ``timeout`` seconds have passed (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.1 if deadline is None else deadline - time.monotonic()
            if deadline is not None and wait <= 0:
                return
            try:
                yield self._queue.get(timeout=min(wait, 0.1))
            except queue.Empty:
                continue

    def wait_for(self, name: str, timeout: float = 2.0) -> dict[str, Any]:
        """The values of the next message called ``name``; other messages
        received meanwhile are dropped from the queue (``error`` stays in :attr:`errors`).

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        for decoded in self.messages(timeout):
            if decoded.message.name == name:
                return decoded.values
        raise TimeoutError(f"no {name} message from {self.host}:{self.port} within {timeout:g} s")

    # ------------------------------------------------------------ to the server
    def hello(self, sample_rate_hz: int = 48000, channels: int = 2, sample_format: str = "s16",
              timeout: float | None = None) -> dict[str, Any]:
        """Say hello; returns the ``welcome`` values (session_id, sample_rate_hz,
        block_frames, lookahead_ms, audio_tcp_port, time_s, time_us, ...).

        ``timeout``: seconds to wait for the welcome (None: 2 s, or
        :data:`SESSION_HELLO_TIMEOUT_S` when the hello names a session, which
        the server may have to make first).

        On a node of a cluster (docs/cluster.md) that answers
        ``session_elsewhere``, the client moves to the node named there
        (:attr:`host`, :attr:`port` and :attr:`session` change to it; the
        redirect's values are kept in :attr:`redirected_from`) and says the
        same hello again, following at most :data:`MAX_REDIRECTS` of them
        within the same ``timeout``.

        Raises:
            TimeoutError: no welcome within ``timeout`` seconds (is the server running?).
            PermissionError: the server refused the hello (its code and message), or redirected too often.
        """
        if timeout is None:
            timeout = SESSION_HELLO_TIMEOUT_S if self.session else 2.0
        deadline = time.monotonic() + timeout
        for _ in range(MAX_REDIRECTS + 1):
            hello = {"reply_port": self.reply_port, "sample_rate_hz": sample_rate_hz, "channels": channels,
                     "sample_format": sample_format, "client_name": self.client_name, "role": self.role}
            if self.session:
                hello["session"] = self.session
            self.send("hello", **hello)
            for _ in range(3):  # hello; after a retry, hello with its cookie (a stale cookie may need one more)
                name, values = self._answer(("welcome", "retry", "error", "session_elsewhere"), deadline)
                if name == "welcome":
                    self._start_keepalive(values["lease_s"])
                    return values
                if name == "error":
                    raise PermissionError(f"the server refused the hello ({values['code']}): {values['message']}")
                if name == "session_elsewhere":
                    self._move_to(values)
                    break
                cookie = values["cookie"]
                proof = hello_proof(self.secret, cookie, self.role, self.reply_port) if self.secret and self.role else ""
                self.send("hello", **hello, cookie=cookie, proof=proof)
            else:
                raise PermissionError("the server kept asking for the cookie round trip (is the clock of its cookies "
                                      "sane?)")
        raise PermissionError(f"redirected more than {MAX_REDIRECTS} times between the nodes of a cluster (the last: "
                              f"udp://{self.host}:{self.port}); is its directory consistent?")

    def _move_to(self, elsewhere: dict[str, Any]) -> None:
        """Talk to the node a ``session_elsewhere`` names from now on: its
        host and OSC port, the session id it gives. A socket bound to
        loopback is swapped for one on every interface when that node is
        not on loopback (the receive thread picks it up)."""
        self.redirected_from = {"host": self.host, "port": self.port, **elsewhere}
        self.host, self.port, self.session = elsewhere["host"], elsewhere["osc_port"], elsewhere["session_id"]
        self._address = (socket.gethostbyname(self.host), self.port)
        if not self._address[0].startswith("127.") and self._sock.getsockname()[0].startswith("127."):
            old, self._sock = self._sock, self._new_socket(self._address[0])
            old.close()

    def _answer(self, names: tuple[str, ...], deadline: float) -> tuple[str, dict[str, Any]]:
        for decoded in self.messages(max(0.0, deadline - time.monotonic())):
            if decoded.message.name in names:
                return decoded.message.name, decoded.values
        raise TimeoutError(f"no answer from an adaptive server at udp://{self.host}:{self.port} "
                           "in time (is 'adaptive serve' running there?)")

    def _start_keepalive(self, lease_s: int) -> None:
        if not self.keepalive or self._keepalive_thread is not None:
            return

        def ping_every_third_of_the_lease() -> None:
            while self._running:
                for _ in range(max(1, int(lease_s / 3 / 0.1))):
                    if not self._running:
                        return
                    time.sleep(0.1)
                try:
                    self.send("ping", sequence=next(self._sequence) % 2**31)
                except OSError:
                    pass

        self._keepalive_thread = threading.Thread(target=ping_every_third_of_the_lease, name="adaptive-keepalive",
                                                  daemon=True)
        self._keepalive_thread.start()

    def goodbye(self) -> None:
        """Leave: the server forgets this client (its streams stop). :meth:`close` does it too."""
        if self.welcome is not None:
            self.send("goodbye")
            self.welcome = None

    def subscribe(self, stream: str, client_id: str = "") -> None:
        """Start receiving ``stream``: "events", "midi" or "audio" (for the
        client ``client_id`` of another socket's welcome, else this one)."""
        self.send("subscribe", stream=stream, client_id=client_id)

    def unsubscribe(self, stream: str, client_id: str = "") -> None:
        """Stop receiving ``stream``."""
        self.send("unsubscribe", stream=stream, client_id=client_id)

    def scene(self, emotion: str, intensity: float, location: str) -> None:
        """Set the whole scene: a named emotion, intensity 0..1, location."""
        self.send("scene", emotion=emotion, intensity=intensity, location=location)

    def emotion(self, name: str) -> None:
        """Set the emotion by name."""
        self.send("emotion", emotion=name)

    def emotion_point(self, valence: float, arousal: float) -> None:
        """Set the emotion as valence and arousal, each -1..1."""
        self.send("emotion_point", valence=valence, arousal=arousal)

    def intensity(self, x: float) -> None:
        """Set the intensity, 0..1."""
        self.send("intensity", intensity=x)

    def location(self, s: str) -> None:
        """Set the location."""
        self.send("location", location=s)

    def cue(self, name: str) -> None:
        """Force a cue ("" hands the choice back to the mapping)."""
        self.send("cue", cue=name)

    def stinger(self, name: str) -> None:
        """Play a stinger at its quantized boundary."""
        self.send("stinger", stinger=name)

    def vote(self, emotion: str | None = None, valence: float | None = None, arousal: float | None = None,
             intensity: float | None = None) -> None:
        """Vote as the audience (any role; docs/audience.md): a named emotion,
        or a valence/arousal point (each -1..1), and optionally an intensity
        (0..1). At most 10 votes a second count (more get a ``rate_limited``
        error); only the latest vote within the mapping's window counts.

        Raises:
            ValueError: both or neither of a name and a point.
        """
        if (emotion is None) == (valence is None or arousal is None):
            raise ValueError("vote needs an emotion name or a valence and arousal point (exactly one of them)")
        self.send("audience_vote", emotion=emotion or "", valence=0.0 if valence is None else valence,
                  arousal=0.0 if arousal is None else arousal, intensity=-1.0 if intensity is None else intensity)

    def audience_weight(self, weight: float) -> None:
        """Set how much the audience moves the scene, 0..1 (0: ignore it; the control role)."""
        self.send("audience_weight", weight=weight)

    def end_session(self, session_id: str = "", timeout: float = 2.0) -> dict[str, Any]:
        """End session ``session_id`` ('' = this client's own; the control
        role); returns the ``session_ended`` answer's values.

        Raises:
            ValueError: the server refused (the default session, no such session).
            TimeoutError: no answer.
        """
        self.send("session_end", session_id=session_id)
        for decoded in self.messages(timeout):
            if decoded.message.name == "session_ended":
                return decoded.values
            if decoded.message.name == "error":
                raise ValueError(f"the server refused ({decoded.values['code']}): {decoded.values['message']}")
        raise TimeoutError(f"no answer to session_end from {self.host}:{self.port} within {timeout:g} s")

    def connect_audio(self, timeout: float = 2.0) -> socket.socket:
        """A TCP connection to this client's session's audio stream (the
        welcome's audio_tcp_port), which sent the welcome's client_id first,
        so the server streams this session (and, with credentials, lets it
        in). Read it with :func:`bridge.audio.read_tcp_blocks`.

        Raises:
            RuntimeError: before :meth:`hello`, or the server has no TCP audio port.
            OSError: the connection fails.
        """
        if self.welcome is None or not self.welcome["audio_tcp_port"]:
            raise RuntimeError("say hello first: the welcome names the audio port (0: the server has none)")
        sock = socket.create_connection((self._address[0], self.welcome["audio_tcp_port"]), timeout=timeout)
        sock.sendall(self.welcome["client_id"].encode("ascii") + b"\n")
        return sock

    # ------------------------------------------------------------ live mapping
    def _mapping_answer(self, timeout: float) -> tuple[str, dict[str, Any]]:
        for decoded in self.messages(timeout):
            if decoded.message.name in ("mapping_value", "mapping_error", "mapping_text"):
                return decoded.message.name, decoded.values
        raise TimeoutError(f"no answer about the mapping from {self.host}:{self.port} within {timeout:g} s")

    def set_mapping(self, path: str, value: str, timeout: float = 2.0) -> str:
        """Set a live mapping value (``value``: JSON or TOML text); returns the
        value in force, as JSON text.

        Raises:
            ValueError: the server refused it (its message says why).
            TimeoutError: no answer.
        """
        self.send("mapping_set", path=path, value=value)
        name, values = self._mapping_answer(timeout)
        if name != "mapping_value":
            raise ValueError(values.get("message", "unexpected answer"))
        return values["value"]

    def get_mapping(self, path: str, timeout: float = 2.0) -> str:
        """A live mapping value as JSON text.

        Raises:
            ValueError: no such key (the server's message says which keys there are).
            TimeoutError: no answer.
        """
        self.send("mapping_get", path=path)
        name, values = self._mapping_answer(timeout)
        if name != "mapping_value":
            raise ValueError(values.get("message", "unexpected answer"))
        return values["value"]

    def export_mapping(self, timeout: float = 2.0) -> str:
        """The server's whole live mapping as TOML (its ``mapping_text`` parts joined).

        Raises:
            TimeoutError: no answer, or parts missing.
        """
        self.send("mapping_export")
        parts: dict[int, str] = {}
        count = None
        deadline = time.monotonic() + timeout
        while count is None or len(parts) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the live mapping from {self.host}:{self.port} came incomplete "
                                   f"({len(parts)} of {count or '?'} parts within {timeout:g} s)")
            name, values = self._mapping_answer(remaining)
            if name == "mapping_text":
                parts[values["index"]] = values["text"]
                count = values["count"]
        return "".join(parts[index] for index in range(count))

    # ------------------------------------------------------------ clock
    def sync_clock(self, pings: int = 16, timeout: float = 0.5) -> ClockSync:
        """NTP-style clock sync over ``pings`` pings, one at a time.

        For each ping, ``t0`` = local monotonic seconds before sending and
        ``t3`` = at the pong's arrival; the pong carries server seconds ``t1``
        (ping received) and ``t2`` (pong sent). ``offset = ((t1 - t0) + (t2 - t3)) / 2``,
        ``delay = (t3 - t0) - (t2 - t1)``; the sample with the smallest delay wins.

        Args:
            pings: how many pings to send (at least 1).
            timeout: seconds to wait for each pong (a lost one is skipped).

        Raises:
            TimeoutError: no pong at all.
        """
        best: tuple[float, float] | None = None  # (delay, offset)
        answered = 0
        for _ in range(max(1, pings)):
            sequence = next(self._sequence) % 2**31
            t0 = time.monotonic()
            self.send("ping", sequence=sequence)
            deadline = t0 + timeout
            with self._pong_arrived:
                while sequence not in self._pongs and time.monotonic() < deadline:
                    self._pong_arrived.wait(deadline - time.monotonic())
                pong = self._pongs.pop(sequence, None)
            if pong is None:
                continue
            t3, values = pong
            t1 = server_seconds(values, "receive_time")
            t2 = server_seconds(values, "send_time")
            offset = ((t1 - t0) + (t2 - t3)) / 2
            delay = (t3 - t0) - (t2 - t1)
            answered += 1
            if best is None or delay < best[0]:
                best = (delay, offset)
        if best is None:
            raise TimeoutError(f"no pong from {self.host}:{self.port} to {pings} pings")
        return ClockSync(offset_seconds=best[1], round_trip_seconds=best[0], samples=answered)

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Say goodbye (after a welcome), stop the threads and close the socket."""
        try:
            self.goodbye()
        except OSError:
            pass
        self._running = False
        self._thread.join(1.0)
        if self._keepalive_thread is not None:
            self._keepalive_thread.join(1.0)
        self._sock.close()

    def __enter__(self) -> AdaptiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


OscClient = AdaptiveClient
"""The same class, under the name of the brief."""
