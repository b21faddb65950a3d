"""The audio stream: how rendered PCM blocks leave the server.

The render thread hands each block it renders (float32, shape
``(n_frames, channels)``, samples in [-1, 1]) to the transports here:

* ``ZmqAudioPublisher`` — a ZeroMQ PUB socket; each block is one multipart
  message ``[b"audio", header, pcm]``.
* ``TcpAudioServer`` — a plain TCP stream for engines without a ZeroMQ library
  (Unity): blocks are written back to back, ``header`` then ``pcm``, with
  nothing else on the stream. The first bytes a client receives are a block
  header; a client that starts reading mid-stream resyncs on the magic.

Sessions (docs/sessions.md): one set of ports carries every session. A TCP
connection is tied to a session by the ``client_id`` token it sends first
(the ``authorize`` hook answers with the token's session); ZeroMQ blocks of
session ``ID`` go on topic ``session/ID/audio`` (the default session's on
``audio``, as before sessions existed).

Both encode a block once and never block the render thread: a slow or
vanished client loses its oldest blocks (counted in ``dropped_blocks``); the
music and the other clients carry on. A TCP client that reads nothing for
2 s is disconnected (``dropped_clients``), freeing its slot. Clients find gaps by the sequence
number and place blocks on the session clock by ``first_frame``.

Wire format of one block (all fields little-endian, no padding; the header is
32 bytes, ``struct`` format ``<4sIQIHHII``):

| Offset | Field            | Type  | Meaning |
|-------:|------------------|-------|---------|
| 0      | `magic`          | 4 bytes | `b"ADA1"` (0x41 0x44 0x41 0x31) |
| 4      | `sequence`       | u32   | block number, +1 per block rendered, wraps modulo 2**32 |
| 8      | `first_frame`    | u64   | session frame (audio frames since the session started) of the block's first frame |
| 16     | `n_frames`       | u32   | frames in the block |
| 20     | `channels`       | u16   | interleaved channels per frame (the server sends 2: left, right) |
| 22     | `sample_format`  | u16   | 1 = signed 16-bit integer LE, 3 = 32-bit IEEE float LE |
| 24     | `sample_rate_hz` | u32   | the session's sample rate, Hz |
| 28     | `reserved`       | u32   | 0 |
| 32     | PCM              | `n_frames * channels * bytes_per_sample` bytes | interleaved samples, frame by frame: L0 R0 L1 R1 … |

int16 samples are ``round(clip(x, -1, 1) * 32767)``, read back as
``s / 32767``; float32 samples are the rendered values unchanged.

A reader rejects a header (``ValueError``) whose magic, sample format,
channel count (1..8), sample rate (> 0) or reserved field is wrong, or whose
PCM would exceed ``MAX_PCM_BYTES``.

This module is transport only (``bridge/``); the engine (``adaptive/``) never
imports it.
"""

from __future__ import annotations

import collections
import enum

try:  # the kernel's send queue of a socket (SIOCOUTQ): Linux and most Unixes
    import fcntl
    import termios
except ImportError:  # Windows: the small SO_SNDBUF alone bounds what the kernel holds
    pass
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from bridge.protocol import DEFAULT_SESSION

MAGIC = b"ADA1"
HEADER = struct.Struct("<4sIQIHHII")
HEADER_BYTES = HEADER.size  # 32
MAX_CHANNELS = 8
MAX_PCM_BYTES = 16 * 1024 * 1024
"""Largest PCM payload a reader accepts, bytes (bounds memory on a corrupt header)."""

_U32 = 2**32
_U64 = 2**64
_INT16_SCALE = 32767.0

assert HEADER_BYTES == 32


class SampleFormat(enum.IntEnum):
    """How samples are written on the wire (the header's ``sample_format``)."""

    INT16 = 1
    """Signed 16-bit integer, little-endian, full scale 32767."""
    FLOAT32 = 3
    """32-bit IEEE float, little-endian, full scale 1.0."""

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per sample: 2 for INT16, 4 for FLOAT32."""
        return 2 if self is SampleFormat.INT16 else 4

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the wire samples (explicitly little-endian)."""
        return np.dtype("<i2") if self is SampleFormat.INT16 else np.dtype("<f4")


@dataclass(frozen=True)
class AudioHeader:
    """One decoded 32-byte block header.

    ``sequence`` is the block number (mod 2**32), ``first_frame`` the session
    frame of the block's first frame, ``n_frames`` the frames in the block,
    ``channels`` samples per frame, ``sample_rate_hz`` the session rate in Hz.
    """

    sequence: int
    first_frame: int
    n_frames: int
    channels: int
    sample_format: SampleFormat
    sample_rate_hz: int

    @property
    def pcm_bytes(self) -> int:
        """Length of the PCM payload that follows the header, bytes."""
        return self.n_frames * self.channels * self.sample_format.bytes_per_sample

    def pack(self) -> bytes:
        """The 32 header bytes for this header."""
        return HEADER.pack(MAGIC, self.sequence, self.first_frame, self.n_frames, self.channels,
                           int(self.sample_format), self.sample_rate_hz, 0)


def encode_block(sequence: int, first_frame: int, audio: np.ndarray, sample_rate_hz: int,
                 sample_format: SampleFormat | int = SampleFormat.INT16) -> tuple[bytes, bytes]:
    """Encode one rendered block as ``(header, pcm)`` bytes.

    ``sequence``: block number (stored modulo 2**32). ``first_frame``: session
    frame of the block's first frame (0 <= first_frame < 2**64).
    ``audio``: float array, shape ``(n_frames, channels)``, samples in
    [-1, 1] (int16 clips outside that range; NaN becomes 0).
    ``sample_rate_hz``: the session's sample rate, Hz.
    ``sample_format``: ``SampleFormat.INT16`` (default) or ``FLOAT32``.
    """
    fmt = _sample_format(sample_format)
    audio = np.asarray(audio)
    if audio.ndim != 2 or not 1 <= audio.shape[1] <= MAX_CHANNELS:
        raise ValueError(f"audio must have shape (n_frames, channels) with 1..{MAX_CHANNELS} channels, "
                         f"got shape {audio.shape}")
    if not 0 <= first_frame < _U64:
        raise ValueError(f"first_frame must be in [0, 2**64), got {first_frame}")
    if not 0 < sample_rate_hz < _U32:
        raise ValueError(f"sample_rate_hz must be in (0, 2**32), got {sample_rate_hz}")
    n_frames, channels = audio.shape
    if fmt is SampleFormat.INT16:
        samples = np.clip(audio.astype(np.float64), -1.0, 1.0)  # +-inf -> +-1; NaN stays NaN ...
        not_a_number = np.isnan(samples)
        if not_a_number.any():
            samples[not_a_number] = 0.0  # ... and becomes 0 (np.nan_to_num costs ~5x more)
        samples *= _INT16_SCALE
        pcm = np.round(samples).astype("<i2").tobytes()
    else:
        pcm = np.ascontiguousarray(audio, dtype="<f4").tobytes()
    header = AudioHeader(sequence % _U32, first_frame, n_frames, channels, fmt, sample_rate_hz)
    if header.pcm_bytes > MAX_PCM_BYTES:
        raise ValueError(f"block of {header.pcm_bytes} PCM bytes exceeds MAX_PCM_BYTES = {MAX_PCM_BYTES}")
    return header.pack(), pcm


def decode_header(data: bytes) -> AudioHeader:
    """Decode exactly 32 header bytes; ``ValueError`` says what is wrong."""
    if len(data) != HEADER_BYTES:
        raise ValueError(f"audio block header must be {HEADER_BYTES} bytes, got {len(data)}")
    magic, sequence, first_frame, n_frames, channels, fmt, rate_hz, reserved = HEADER.unpack(data)
    if magic != MAGIC:
        raise ValueError(f"audio block header has bad magic {magic!r}, expected {MAGIC!r}")
    if fmt not in (f.value for f in SampleFormat):
        raise ValueError(f"audio block header has unknown sample_format {fmt} "
                         f"(allowed: 1 = int16, 3 = float32)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"audio block header has channels = {channels}, allowed 1..{MAX_CHANNELS}")
    if rate_hz == 0:
        raise ValueError("audio block header has sample_rate_hz = 0, must be > 0")
    if reserved != 0:
        raise ValueError(f"audio block header has reserved = {reserved}, must be 0")
    header = AudioHeader(sequence, first_frame, n_frames, channels, SampleFormat(fmt), rate_hz)
    if header.pcm_bytes > MAX_PCM_BYTES:
        raise ValueError(f"audio block header announces {header.pcm_bytes} PCM bytes, "
                         f"more than MAX_PCM_BYTES = {MAX_PCM_BYTES}")
    return header


def decode_block(header: AudioHeader, pcm: bytes) -> np.ndarray:
    """Decode a block's PCM into float32 samples, shape ``(n_frames, channels)``, full scale 1.0."""
    if len(pcm) != header.pcm_bytes:
        raise ValueError(f"audio block PCM must be {header.pcm_bytes} bytes for {header.n_frames} frames "
                         f"x {header.channels} channels of {header.sample_format.name}, got {len(pcm)}")
    samples = np.frombuffer(pcm, dtype=header.sample_format.dtype)
    if header.sample_format is SampleFormat.INT16:
        out = (samples.astype(np.float32) / np.float32(_INT16_SCALE))
    else:
        out = samples.astype(np.float32)  # a copy: writable, native byte order
    return out.reshape(header.n_frames, header.channels)


def read_tcp_blocks(sock: socket.socket, recv_bytes: int = 65536) -> Iterator[tuple[AudioHeader, np.ndarray]]:
    """Read blocks from a TCP audio stream until the peer closes it.

    Yields ``(AudioHeader, samples)`` with samples float32 of shape
    ``(n_frames, channels)``. Handles partial reads; bytes before the first
    valid header (a stream joined mid-block) are skipped by searching for the
    magic. Socket timeouts and errors propagate to the caller.
    ``recv_bytes``: largest single ``recv``, bytes.
    """
    buf = bytearray()

    def fill(n_bytes: int) -> bool:
        while len(buf) < n_bytes:
            chunk = sock.recv(max(recv_bytes, n_bytes - len(buf)))
            if not chunk:
                return False
            buf.extend(chunk)
        return True

    while True:
        start = buf.find(MAGIC)
        if start < 0:
            del buf[:max(0, len(buf) - (len(MAGIC) - 1))]  # keep a possible magic prefix
            chunk = sock.recv(recv_bytes)
            if not chunk:
                return
            buf.extend(chunk)
            continue
        del buf[:start]
        if not fill(HEADER_BYTES):
            return
        try:
            header = decode_header(bytes(buf[:HEADER_BYTES]))
        except ValueError:
            del buf[:1]  # the magic was inside PCM: look further
            continue
        end = HEADER_BYTES + header.pcm_bytes
        if not fill(end):
            return
        pcm = bytes(buf[HEADER_BYTES:end])
        del buf[:end]
        yield header, decode_block(header, pcm)


def _sample_format(value: SampleFormat | int) -> SampleFormat:
    try:
        return SampleFormat(value)
    except ValueError:
        raise ValueError(f"sample_format must be 1 (int16) or 3 (float32), got {value!r}") from None


# --------------------------------------------------------------------------- TCP


@dataclass(frozen=True)
class TcpClientStats:
    """A snapshot of one connected TCP audio client.

    ``address``: the client's (host, port). ``queued_blocks``: blocks waiting
    in its queue. ``sent_blocks``: blocks fully written to its socket.
    ``dropped_blocks``: blocks dropped because its queue was full.
    """

    address: tuple[str, int]
    queued_blocks: int
    sent_blocks: int
    dropped_blocks: int


class _TcpClient:
    """One connection. ``offer`` (the render thread) writes a block straight
    to the non-blocking socket when nothing is waiting before it, which is
    the usual case: one ``send`` call, no thread wake-up. What the kernel does
    not take at once (the rest of a block: ``pending``, never dropped, or the
    stream would lose its framing; then whole blocks: ``queue``, bounded,
    oldest dropped) is written by the client's writer thread, which waits for
    the socket with ``select`` and gives up on a client that takes no data for
    ``send_timeout_seconds``."""

    def __init__(self, server: TcpAudioServer, sock: socket.socket, address: tuple[str, int]):
        self.server = server
        self.sock = sock
        self.address = address
        self.queue: collections.deque[bytes] = collections.deque()
        self.pending = b""  # the unsent rest of the block being written
        self.cond = threading.Condition()
        self.closed = False
        self.sent_blocks = 0
        self.dropped_blocks = 0
        self.lagging = False  # the kernel holds more than a block for it: every block goes through the queue
        self.session_id = DEFAULT_SESSION  # the session whose blocks it receives (set when authorized)
        self.thread = threading.Thread(target=self._run, name=f"audio-tcp-writer-{address[1]}", daemon=True)

    def offer(self, data: bytes) -> bool:
        """Send or queue one encoded block; drop the oldest queued block if the
        queue is full. True if one was dropped. Never blocks beyond the
        writer's brief hold of the queue lock."""
        with self.cond:
            if self.closed:
                return False
            if not self.pending and not self.queue and not self.lagging:
                try:
                    sent = self.sock.send(data)
                except OSError:  # BlockingIOError: the kernel buffer is full; others: the writer will find out
                    sent = 0
                if sent == len(data):
                    self.sent_blocks += 1
                    return False
                self.pending = data[sent:]
                self.lagging = True
                self.cond.notify()
                return False
            dropped = len(self.queue) >= self.server.queue_blocks
            if dropped:
                self.queue.popleft()
                self.dropped_blocks += 1
            self.queue.append(data)
            self.cond.notify()
        return dropped

    def stop(self) -> None:
        with self.cond:
            self.closed = True
            self.queue.clear()
            self.pending = b""
            self.cond.notify()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a writer waiting in select
        except OSError:
            pass

    def _peer_closed(self) -> bool:
        """True if the peer has closed its end (readable with EOF, or an error)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            # Clients send nothing meaningful on the audio stream: read and discard it.
            return self.sock.recv(4096) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _write_pending(self) -> None:
        """Write ``pending`` (and nothing else) to the end, waiting for the
        socket at most ``send_timeout_seconds`` in all.

        Raises:
            OSError: the peer is gone, or took nothing for that long (TimeoutError).
        """
        deadline = time.monotonic() + self.server.send_timeout_seconds
        while True:
            with self.cond:
                data = self.pending
                if not data or self.closed:
                    return
            _, writable, _ = select.select([], [self.sock], [], max(0.0, deadline - time.monotonic()))
            if not writable:
                raise TimeoutError(f"audio client {self.address} took no data for {self.server.send_timeout_seconds} s")
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
            with self.cond:
                if self.closed:
                    return
                self.pending = data[sent:]
                if not self.pending:
                    self.sent_blocks += 1

    def _run(self) -> None:
        try:
            if not self.server._authorize(self):
                return
            drained_at = time.monotonic()  # the last time the kernel took some of its data
            unsent_before: int | None = None
            while True:
                with self.cond:
                    while not self.pending and not self.queue and not self.closed:
                        if not self.cond.wait(self.server.idle_check_seconds):
                            break
                    if self.closed:
                        return
                    pending, queued = bool(self.pending), bool(self.queue)
                    next_bytes = len(self.queue[0]) if queued else 0
                if not pending and not queued:
                    if self.lagging and (_unsent_bytes(self.sock) or 0) == 0:
                        with self.cond:
                            self.lagging = False  # caught up: blocks may go straight to the socket again
                    if self._peer_closed():
                        return
                    continue
                if not pending:
                    # The user-space queue acts before the kernel buffer: the next block goes to the
                    # socket only once the kernel holds less than a block for this client; meanwhile
                    # the queue drops its oldest blocks, so a slow reader stays near real time.
                    unsent = _unsent_bytes(self.sock)
                    if unsent is not None and unsent >= next_bytes:
                        now = time.monotonic()
                        if unsent_before is None or unsent < unsent_before:
                            drained_at = now
                        unsent_before = unsent
                        if now - drained_at > self.server.send_timeout_seconds:
                            raise TimeoutError(f"audio client {self.address} read nothing for "
                                               f"{self.server.send_timeout_seconds} s")
                        with self.cond:
                            self.lagging = True
                        time.sleep(KERNEL_POLL_SECONDS)  # not on the condition: a block offered must not wake it
                        continue
                    drained_at, unsent_before = time.monotonic(), None
                    with self.cond:
                        if not self.pending and self.queue:
                            self.pending = self.queue.popleft()
                        if not unsent and not self.queue:
                            self.lagging = False  # caught up: the render thread may send the next block itself
                self._write_pending()
        except TimeoutError:  # it read nothing for send_timeout_seconds: it frees its slot
            self.server._count_dropped_client()
        except (OSError, ValueError):  # reset, broken pipe: the client is gone
            pass
        finally:
            with self.cond:
                self.closed = True
                self.queue.clear()
                self.pending = b""
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._remove(self)


KERNEL_POLL_SECONDS = 0.005
"""How often a lagging client's writer looks whether the kernel has sent its data."""


def _unsent_bytes(sock: socket.socket) -> int | None:
    """Bytes the kernel holds for ``sock`` not yet acknowledged by the peer
    (Linux ``SIOCOUTQ``), or None where that cannot be asked."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError, NameError):
        return None


QUEUE_BLOCKS = 16
"""Blocks each TCP client's queue holds before its oldest is dropped (16
blocks of 1024 frames: 341 ms at 48 kHz)."""

SEND_BUFFER_BYTES = 16 * 1024
"""The kernel send buffer asked for per TCP client (``SO_SNDBUF``; Linux
doubles it and keeps a minimum). Small on purpose: a slow reader must fill
the bounded queue in user space, which drops its oldest blocks, and not a
kernel buffer that autotunes to megabytes and never drops (a reader at 1/10
real time fell 40 s behind with 4 MB queued in the kernel, issue 13)."""

SEND_TIMEOUT_SECONDS = 2.0
"""A TCP client that reads nothing for this long (the kernel takes none of
its data) is disconnected and counted, freeing its slot."""


class TcpAudioServer:
    """Streams audio blocks to any number of TCP clients (the wire format is in the module docstring).

    **It serves the game first.** A client that reads slowly loses its oldest
    blocks: its user-space queue is bounded (``queue_blocks``) and the kernel
    buffer in front of it is small (``send_buffer_bytes``), so the queue acts
    first and what the client receives stays within about ``queue_blocks``
    blocks (plus the two kernel buffers) of real time; it is never
    disconnected for being slow. A client that reads **nothing** for
    ``send_timeout_seconds`` is disconnected and counted (``dropped_clients``),
    freeing its slot, so connections that never read cannot keep the game's
    own audio client out for longer than that.

    ``host``, ``port``: where to listen; loopback by default, port 0 picks a
    free port (read ``.port``). ``sample_format``: one format for every
    client, int16 by default. ``queue_blocks``: each client's queue length in
    blocks; when full, its oldest block is dropped (:data:`QUEUE_BLOCKS`).
    ``send_timeout_seconds``: see :data:`SEND_TIMEOUT_SECONDS` (it may
    reconnect and resync). ``max_clients``: further connections are closed at
    once. ``send_buffer_bytes``: the kernel send buffer per client
    (:data:`SEND_BUFFER_BYTES`; None: the OS default, which autotunes to
    megabytes). ``authorize``: called with ``(socket, (host, port))`` on the
    client's own thread before any audio is sent to it; the socket is
    blocking with a timeout of ``send_timeout_seconds`` meanwhile (it may read
    a token the client sends first); False or an exception closes the
    connection (counted in ``unauthorized_clients``); True serves it the
    default session's blocks, a string the blocks of the session of that id.
    None: every client is served the default session's blocks.

    Listening starts in the constructor; ``close()`` (or leaving a ``with``
    block) stops it. ``publish`` is meant to be called from one thread, the
    render thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 sample_format: SampleFormat | int = SampleFormat.INT16, queue_blocks: int = QUEUE_BLOCKS,
                 send_timeout_seconds: float = SEND_TIMEOUT_SECONDS, max_clients: int = 16,
                 send_buffer_bytes: int | None = SEND_BUFFER_BYTES,
                 authorize: Callable[[socket.socket, tuple[str, int]], bool] | None = None):
        if queue_blocks < 1:
            raise ValueError(f"queue_blocks must be >= 1, got {queue_blocks}")
        if not send_timeout_seconds > 0:
            raise ValueError(f"send_timeout_seconds must be > 0, got {send_timeout_seconds}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients}")
        self.sample_format = _sample_format(sample_format)
        self.queue_blocks = queue_blocks
        self.send_timeout_seconds = send_timeout_seconds
        self.max_clients = max_clients
        self.send_buffer_bytes = send_buffer_bytes
        self.idle_check_seconds = 0.1
        """How often an idle writer checks whether its client has gone, seconds."""
        self.dropped_blocks = 0
        """Blocks dropped over all clients, past and present, because a queue was full."""
        self.rejected_clients = 0
        """Connections refused because ``max_clients`` were connected."""
        self.dropped_clients = 0
        """Clients disconnected because they read nothing for ``send_timeout_seconds``."""
        self.unauthorized_clients = 0
        """Connections closed because ``authorize`` refused them."""
        self.authorize = authorize
        self._lock = threading.Lock()
        self._clients: tuple[_TcpClient, ...] = ()  # served (authorized): publish reads it without the lock
        self._by_session: dict[str, tuple[_TcpClient, ...]] = {}  # the same, per session (replaced, never mutated)
        self._connections: set[_TcpClient] = set()  # every connection holding a slot
        self._closed = threading.Event()
        self._listener = socket.create_server((host, port), family=_family(host), backlog=16)
        self._listener.settimeout(0.05)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name="audio-tcp-accept", daemon=True)
        self._accept_thread.start()

    @property
    def client_count(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    def client_stats(self) -> list[TcpClientStats]:
        """A snapshot of every connected client."""
        return [TcpClientStats(c.address, len(c.queue), c.sent_blocks, c.dropped_blocks) for c in self._clients]

    def publish(self, sequence: int, first_frame: int, audio: np.ndarray, sample_rate_hz: int) -> None:
        """Send one rendered block of the default session to its clients without blocking.

        ``sequence``: block number; ``first_frame``: session frame of the
        block's first frame; ``audio``: float32, shape ``(n_frames, 2)``;
        ``sample_rate_hz``: session rate, Hz. The block is encoded once and
        queued per client; a full queue loses its oldest block.
        """
        self.publish_encoded(*encode_block(sequence, first_frame, audio, sample_rate_hz, self.sample_format))

    def has_clients(self, session_id: str | None = None) -> bool:
        """Whether any client (of session ``session_id``; None: of any) is connected now."""
        if session_id is None:
            return bool(self._clients)
        return bool(self._by_session.get(session_id))

    def publish_encoded(self, header: bytes, pcm: bytes, session_id: str = DEFAULT_SESSION) -> None:
        """As :meth:`publish`, for a block of session ``session_id`` already
        encoded (in this server's ``sample_format``) by :func:`encode_block`:
        lets several transports share one encoding. Call it from that
        session's render thread only."""
        clients = self._by_session.get(session_id)  # a tuple, replaced (never mutated) by other threads
        if not clients:
            return
        data = header + pcm
        for client in clients:
            if client.offer(data):
                self.dropped_blocks += 1

    def drop_session(self, session_id: str) -> int:
        """Disconnect every client of session ``session_id`` (it ended); returns how many."""
        with self._lock:
            clients = self._by_session.get(session_id, ())
        for client in clients:
            client.stop()
        return len(clients)

    def close(self, timeout_seconds: float = 2.0) -> None:
        """Close the listener and every client, joining threads (at most about ``timeout_seconds``)."""
        if self._closed.is_set():
            return
        self._closed.set()
        deadline = time.monotonic() + timeout_seconds
        self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        with self._lock:
            clients = tuple(self._connections)
        for client in clients:
            client.stop()
        for client in clients:
            client.thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> TcpAudioServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, address = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self._closed.is_set():
                sock.close()
                return
            with self._lock:
                connected = len(self._connections)
            if connected >= self.max_clients:
                self.rejected_clients += 1
                sock.close()
                continue
            sock.setblocking(False)  # see _TcpClient: the render thread must never wait on it
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.send_buffer_bytes is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)
            client = _TcpClient(self, sock, address[:2])
            with self._lock:
                self._connections.add(client)  # it holds a slot from now (authorizing too)
            client.thread.start()  # authorizes it, then adds it to the clients served

    def _authorize(self, client: _TcpClient) -> bool:
        """Run ``authorize`` for ``client`` (on its thread, before any audio
        reaches it) and add it to the clients served; False if refused."""
        if self.authorize is not None:
            sock = client.sock
            try:
                sock.settimeout(self.send_timeout_seconds)
                allowed = self.authorize(sock, client.address)
            except Exception:  # a hook that fails refuses: nothing reaches an unchecked client
                allowed = False
            if not allowed:
                self.unauthorized_clients += 1
                return False
            if isinstance(allowed, str):
                client.session_id = allowed
            sock.setblocking(False)
        with self._lock:
            if self._closed.is_set():
                return False
            self._clients = self._clients + (client,)
            self._by_session = {**self._by_session,
                                client.session_id: self._by_session.get(client.session_id, ()) + (client,)}
        return True

    def _count_dropped_client(self) -> None:
        with self._lock:
            self.dropped_clients += 1

    def _remove(self, client: _TcpClient) -> None:
        with self._lock:
            self._clients = tuple(c for c in self._clients if c is not client)
            by_session = dict(self._by_session)
            remaining = tuple(c for c in by_session.get(client.session_id, ()) if c is not client)
            if remaining:
                by_session[client.session_id] = remaining
            else:
                by_session.pop(client.session_id, None)
            self._by_session = by_session
            self._connections.discard(client)


AUTH_LINE_BYTES = 80
"""Longest token line a TCP audio client may send first (a 32-character client_id and ``\n`` fit)."""

AUTH_TIMEOUT_SECONDS = 2.0
"""How long a TCP audio client has to send its token line on a server with credentials."""

REFUSAL_LINE = b"ERR the audio stream needs the client_id of a welcome, then a newline, first (docs/network.md)\n"
"""What a TCP audio client whose token is refused reads before the connection closes."""


def token_authorizer(accept: Callable[[str, str], bool | str], timeout_seconds: float = AUTH_TIMEOUT_SECONDS
                     ) -> Callable[[socket.socket, tuple[str, int]], bool | str]:
    """An ``authorize`` hook for :class:`TcpAudioServer` on a server with
    credentials: the connection must first send a token (the ``client_id`` of
    a welcome, then ``\n``: see :data:`AUTH_LINE_BYTES`) within
    ``timeout_seconds`` that ``accept(token, peer host)`` accepts (True, or
    the id of the token's session, whose blocks it then receives); a refused
    one is told why in one text line (:data:`REFUSAL_LINE`) and closed
    (counted in ``unauthorized_clients``)."""

    def authorize(sock: socket.socket, address: tuple[str, int]) -> bool | str:
        line = _read_line(sock, AUTH_LINE_BYTES, timeout_seconds)
        token = line.decode("ascii", "replace").strip()
        accepted = accept(token, address[0]) if line else False
        return accepted if accepted else _refuse(sock)

    return authorize


OPTIONAL_TOKEN_WAIT_SECONDS = 0.2
"""On a server without credentials that holds more than the default session:
how long a new TCP audio connection may take to send its optional token
(seconds) before it is served the default session."""


def optional_token_authorizer(session_of: Callable[[str, str], str | None], only_default: Callable[[], bool],
                              wait_seconds: float = OPTIONAL_TOKEN_WAIT_SECONDS
                              ) -> Callable[[socket.socket, tuple[str, int]], bool | str]:
    """An ``authorize`` hook for :class:`TcpAudioServer` on a server without
    credentials, where a token is optional: a connection that sends nothing
    is served the default session, one that first sends a ``client_id`` and
    ``\n`` is served that client's session.

    While the server holds only the default session (``only_default()``),
    nothing is read: a connection is served at once, as before sessions
    existed. Otherwise it has ``wait_seconds`` to send its token line; a
    token that ``session_of(token, peer host)`` does not know (None) is
    refused, told why (:data:`REFUSAL_LINE`) and closed."""

    def authorize(sock: socket.socket, address: tuple[str, int]) -> bool | str:
        if only_default():
            return True
        readable, _, _ = select.select([sock], [], [], wait_seconds)
        if not readable:
            return True
        line = _read_line(sock, AUTH_LINE_BYTES, wait_seconds)
        session_id = session_of(line.decode("ascii", "replace").strip(), address[0]) if line else None
        return session_id if session_id is not None else _refuse(sock)

    return authorize


def _refuse(sock: socket.socket) -> bool:
    """Tell a refused TCP audio connection why (:data:`REFUSAL_LINE`, best
    effort: it may already be gone); returns False, the hook's "refused"."""
    try:
        sock.sendall(REFUSAL_LINE)
    except OSError:
        pass
    return False


def _read_line(sock: socket.socket, limit_bytes: int, timeout_seconds: float) -> bytes:
    """Bytes up to the first ``\n`` (excluded), read within ``timeout_seconds``;
    b"" on timeout, end of stream, or no newline within ``limit_bytes``."""
    deadline = time.monotonic() + timeout_seconds
    data = b""
    try:
        while b"\n" not in data and len(data) < limit_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b""
            sock.settimeout(remaining)
            chunk = sock.recv(limit_bytes - len(data))
            if not chunk:
                return b""
            data += chunk
    except OSError:
        return b""
    line, newline, _ = data.partition(b"\n")
    return line if newline else b""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --------------------------------------------------------------------------- ZeroMQ


class XpubSubscriptions:
    """The topic prefixes SUB sockets subscribe to on one XPUB socket (a PUB
    that reports its subscriptions), so a publisher skips the work for a topic
    nobody wants.

    libzmq reports the first subscription to a prefix as ``b"\\x01" + prefix``
    and the last unsubscription (also when a subscriber disconnects) as
    ``b"\\x00" + prefix``; a subscription matches every topic it prefixes.
    ``prefixes`` is replaced, never mutated, so another thread may call
    :meth:`wants` while the socket's own thread calls :meth:`update`.
    """

    def __init__(self) -> None:
        self.prefixes: frozenset[bytes] = frozenset()

    def update(self, zmq: Any, sock: Any) -> None:
        """Read the subscription messages queued on the XPUB ``sock`` (call
        on the thread that owns it). Never blocks: the socket's event flags
        are checked first, far cheaper than a ``recv`` that raises ``zmq.Again``."""
        if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            return
        prefixes = set(self.prefixes)
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                message = sock.recv(zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            if message[:1] == b"\x01":
                prefixes.add(message[1:])
            elif message[:1] == b"\x00":
                prefixes.discard(message[1:])
        self.prefixes = frozenset(prefixes)

    def wants(self, topic: bytes) -> bool:
        """Whether some subscriber receives ``topic``."""
        return any(topic.startswith(prefix) for prefix in self.prefixes)


class ZmqAudioPublisher:
    """Publishes audio blocks on a ZeroMQ PUB socket as ``[b"audio", header, pcm]``.

    ``endpoint``: where to bind; loopback by default. A port of 0 (or ``*``)
    picks a free port; ``.endpoint`` gives the bound address.
    ``sample_format``: int16 by default. ``sndhwm_messages``: ZeroMQ's send
    high-water mark per subscriber, in messages (blocks). ``context``: a
    ``zmq.Context`` to use (default: the process's shared instance).

    A PUB socket never blocks: at a subscriber's high-water mark libzmq drops
    that subscriber's messages silently (the subscriber sees a gap in the
    sequence numbers). ``dropped_blocks`` counts the sends ZeroMQ refused
    outright (``zmq.Again``). Like every ZeroMQ socket it belongs to one
    thread: call ``publish``, ``has_subscribers`` and ``close`` from the
    render thread. The socket is an XPUB, so the publisher knows whether
    anyone subscribes and skips the work when nobody does.
    """

    TOPIC = b"audio"
    """The default session's topic; session ``ID``'s is ``session/ID/audio`` (:func:`bridge.sessions.session_topic`)."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:0", *,
                 sample_format: SampleFormat | int = SampleFormat.INT16, sndhwm_messages: int = 64,
                 context: object | None = None, curve: Any = None):
        import zmq  # imported here so the TCP stream works without pyzmq installed

        if sndhwm_messages < 1:
            raise ValueError(f"sndhwm_messages must be >= 1, got {sndhwm_messages}")
        self._zmq = zmq
        self.sample_format = _sample_format(sample_format)
        self.sndhwm_messages = sndhwm_messages
        self.dropped_blocks = 0
        """Blocks ZeroMQ refused to queue (``zmq.Again``)."""
        self.sent_blocks = 0
        """Blocks handed to ZeroMQ."""
        # Sessions render on their own threads and share this one socket: the lock is held only for a
        # non-blocking send or a read of queued subscriptions (microseconds), never for a wait.
        self._lock = threading.Lock()
        self._socket = (context or zmq.Context.instance()).socket(zmq.XPUB)  # a PUB that reports subscriptions
        self._subscriptions = XpubSubscriptions()
        self._socket.setsockopt(zmq.SNDHWM, sndhwm_messages)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:  # a bridge.access.Credentials: only allow-listed CURVE keys subscribe
            from bridge.access import make_curve_server

            make_curve_server(self._socket, curve)
        address, _, port = endpoint.rpartition(":")
        if endpoint.startswith("tcp://") and port in ("0", "*"):
            self.endpoint = f"{address}:{self._socket.bind_to_random_port(address)}"
        else:
            self._socket.bind(endpoint)
            self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def publish(self, sequence: int, first_frame: int, audio: np.ndarray, sample_rate_hz: int) -> None:
        """Send one rendered block without blocking (arguments as ``TcpAudioServer.publish``)."""
        self.publish_encoded(*encode_block(sequence, first_frame, audio, sample_rate_hz, self.sample_format))

    def has_subscribers(self, topic: bytes = TOPIC) -> bool:
        """Whether some SUB socket subscribes to ``topic`` (default: the
        default session's audio) now (see :class:`XpubSubscriptions`). Never blocks."""
        with self._lock:
            self._subscriptions.update(self._zmq, self._socket)
        return self._subscriptions.wants(topic)

    def publish_encoded(self, header: bytes, pcm: bytes, topic: bytes = TOPIC) -> None:
        """As :meth:`publish`, for a block already encoded by :func:`encode_block`,
        on ``topic`` (default: the default session's audio)."""
        with self._lock:
            try:
                self._socket.send_multipart([topic, header, pcm], flags=self._zmq.NOBLOCK)
                self.sent_blocks += 1
            except self._zmq.Again:
                self.dropped_blocks += 1

    def close(self) -> None:
        """Close the socket at once (unsent blocks are discarded)."""
        with self._lock:
            self._socket.close(linger=0)

    def __enter__(self) -> ZmqAudioPublisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
