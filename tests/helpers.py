"""The tests' one set of helpers: known signals and banks to find things in
the rendered audio exactly, a fake clock, one way to wait for another thread,
free ports. The fixtures built on them (``soundfont``, ``tone_bank``) are in
``tests/conftest.py``."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable

import mido
import numpy as np
import soundfile

from adaptive.offline import render_offline

SAMPLE_RATE_HZ = 48_000


def write_sine(path: Path, frequency_hz: float, seconds: float, amplitude: float = 0.3,
               sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """A stereo sine stem starting at phase 0, with 5 ms raised-cosine fades at
    both ends as well-made stems have (so the stem's own start and end are
    not clicks; whole cycles make it loop seamlessly otherwise)."""
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    tone = amplitude * np.sin(2 * np.pi * frequency_hz * t)
    fade = int(0.005 * sample_rate_hz)
    ramp = (1 - np.cos(np.pi * np.arange(fade) / fade)) / 2
    tone[:fade] *= ramp
    tone[-fade:] *= ramp[::-1]
    tone = tone.astype(np.float32)
    subtype = "FLOAT" if path.suffix == ".wav" else "PCM_24"
    soundfile.write(str(path), np.stack([tone, tone], axis=1), sample_rate_hz, subtype=subtype)


def write_midi(path: Path, tracks: dict[str, list[tuple[float, float, int, int]]]) -> None:
    """A type-1 MIDI file; each track is ``[(start_beats, duration_beats, pitch, velocity)]``."""
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    for name, notes in tracks.items():
        events = []
        for start, duration, pitch, velocity in notes:
            events.append((round(start * 480), 1, pitch, velocity))
            events.append((round((start + duration) * 480), 0, pitch, 0))
        events.sort()
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
        previous = 0
        for tick, kind, pitch, velocity in events:
            kind_name = "note_on" if kind else "note_off"
            track.append(mido.Message(kind_name, note=pitch, velocity=velocity, time=tick - previous))
            previous = tick
        midi.tracks.append(track)
    midi.save(str(path))


TONE_BANK = """
name = "tones"

[[cues]]
name = "low"
bpm = 120
valence = 0.5
arousal = -0.5
loop_bars = 2
  [[cues.layers]]
  name = "tone"
  source = {{ kind = "stem", file = "low.flac" }}
  [[cues.layers]]
  name = "upper"
  source = {{ kind = "stem", file = "upper.flac" }}
  gain_curve = [[0.0, -inf], [0.4, -inf], [0.6, 0.0]]
  fade_beats = 2

[[cues]]
name = "high"
bpm = 90
meter = "3/4"
valence = -0.5
arousal = 0.5
loop_bars = 2
  [[cues.layers]]
  name = "tone"
  source = {{ kind = "stem", file = "high.flac" }}

[[cues]]
name = "keys"
bpm = 100
valence = 0.8
arousal = 0.8
loop_bars = 1
  [[cues.layers]]
  name = "piano"
  program = 0
  source = {{ kind = "midi", file = "parts.mid", track = "beats" }}

[[segments]]
name = "lead_in"
bpm = 120
loop_bars = 1
  [[segments.layers]]
  name = "tone"
  source = {{ kind = "stem", file = "segment.flac" }}

[[stingers]]
name = "hit"
source = {{ kind = "midi", file = "parts.mid", track = "hit" }}
quantize = "{stinger_quantize}"

[[transitions]]
from = "*"
to = "*"
exit = "{exit}"
fade_beats = {fade_beats}
{extra}
"""


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """Index of the first frame where two renders differ (None if identical)."""
    differing = np.flatnonzero(np.any(a != b, axis=1))
    return int(differing[0]) if differing.size else None


def fade_silent_frames(fade_frames: int) -> int:
    """Frames at the start of an equal-power fade-out whose float32 gain still
    rounds to exactly 1.0 (cos(pi t / 2L) > 1 - 2**-25 for t < ~1.6e-4 L), plus
    one: a render that changes on frame b differs from one that does not from
    at most this many frames after b."""
    return int(np.ceil(fade_frames * 1.6e-4)) + 1


def render_frames(session, n_frames: int, block_frames: int = 4096) -> np.ndarray:
    """Render ``n_frames`` from ``session`` into one array."""
    return render_offline(session, session.frame + n_frames, block_frames=min(block_frames, session.max_block_frames))


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free right now (UDP and TCP)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class FakeClock:
    """A clock (seconds) that only moves when told to, or when slept on.

    Args:
        max_sleep_seconds: if given, a sleep longer than this (or not positive)
            fails the test (a pacing loop must sleep in short steps).
    """

    def __init__(self, now: float = 100.0, max_sleep_seconds: float | None = None) -> None:
        self.now = now
        self.max_sleep_seconds = max_sleep_seconds
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        if self.max_sleep_seconds is not None:
            assert 0.0 < seconds <= self.max_sleep_seconds
        self.sleeps += 1
        self.now += seconds


def wait_until(condition: Callable[[], object], timeout_seconds: float = 2.0, poll_seconds: float = 0.005) -> bool:
    """Poll ``condition`` (another thread's doing) until it holds or the time
    runs out; whether it holds. Use as ``assert wait_until(...)``."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_seconds)
    return bool(condition())


class OscListener:
    """A test's OSC client that keeps every datagram it receives, decoded,
    with the time it arrived (for tests that look at everything a server sent,
    not only the next message, as :class:`bridge.client.AdaptiveClient` does).

    Args:
        port: the server's OSC port (on loopback).
        clock: stamps each arrival (default: ``time.monotonic``; a server's
            ``realtime.server_time_seconds`` puts arrivals on its clock).
    """

    def __init__(self, port: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.clock = clock
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.reply_port = self.sock.getsockname()[1]
        self.received: list[tuple[float, object]] = []
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from bridge.protocol import Direction, decode_osc

        while self._running:
            try:
                datagram, _ = self.sock.recvfrom(65536)
            except OSError:
                continue
            self.received.append((self.clock(), decode_osc(datagram, Direction.TO_CLIENT)))

    def send(self, name: str, **values) -> None:
        from bridge.protocol import encode_osc

        self.send_raw(encode_osc(name, **values))

    def send_raw(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, ("127.0.0.1", self.port))

    def hello(self) -> None:
        """Say hello with this listener's port (the welcome is awaited with :meth:`wait_for`)."""
        self.send("hello", reply_port=self.reply_port, sample_rate_hz=48000, channels=2, sample_format="s16",
                  client_name="test")

    def timed(self, name: str) -> list[tuple[float, dict]]:
        """Every ``name`` message so far, with its arrival time."""
        return [(arrival, decoded.values) for arrival, decoded in list(self.received)
                if decoded.message.name == name]

    def of(self, name: str) -> list[dict]:
        """The values of every ``name`` message so far."""
        return [values for _, values in self.timed(name)]

    def wait_for(self, found: Callable[[], object], timeout_seconds: float = 5.0) -> object:
        """``found()`` once it is true (polled), else the test fails."""
        assert wait_until(found, timeout_seconds, poll_seconds=0.01), f"not within {timeout_seconds} s"
        return found()

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self.sock.close()


class FakeClusterNode:
    """A node of a cluster as a client sees it: a UDP socket on loopback that answers every hello (decoded
    and checked by the server's decoder, kept in ``hellos``) with the datagram ``answer(hello values)``
    returns, sent to the hello's reply port."""

    def __init__(self, answer: Callable[[dict], bytes]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.hellos: list[dict] = []
        self.answer = answer
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from bridge.protocol import decode_osc

        while self.running:
            try:
                datagram, source = self.sock.recvfrom(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            decoded = decode_osc(datagram)
            if decoded.message.name != "hello":
                continue
            self.hellos.append(decoded.values)
            self.sock.sendto(self.answer(decoded.values), (source[0], decoded.values["reply_port"]))

    def close(self) -> None:
        self.running = False
        self.thread.join(1.0)
        self.sock.close()


def one_stem_bank(folder, stem_file: str):
    """A bank with one cue (120 bpm, a one-bar loop) of one stem layer."""
    from adaptive.cue import load_bank

    (folder / "bank.toml").write_text(f"""
[[cues]]
name = "only"
bpm = 120
loop_bars = 1
  [[cues.layers]]
  name = "stem"
  source = {{ kind = "stem", file = "{stem_file}" }}
""")
    return load_bank(folder / "bank.toml")
