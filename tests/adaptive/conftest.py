"""Shared fixtures: small cue banks built from known signals, so tests can find
things in the rendered audio exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import mido
import numpy as np
import pytest
import soundfile

from adaptive.cue import CueBank, load_bank
from adaptive.offline import render_offline
from adaptive.synth import find_soundfont

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


@pytest.fixture(scope="session")
def soundfont() -> Path:
    """The General MIDI SoundFont the tests render with."""
    return find_soundfont()


@pytest.fixture
def tone_bank(tmp_path: Path) -> Callable[..., CueBank]:
    """Build a bank of sine stems: cue ``low`` (440 Hz + an 880 Hz layer entering
    at intensity 0.5), ``high`` (660 Hz, 3/4 at 90 bpm), ``keys`` (a piano note on
    every beat at 100 bpm), segment ``lead_in`` (550 Hz, one bar) and stinger ``hit``."""
    write_sine(tmp_path / "low.flac", 440.0, 4.0)
    write_sine(tmp_path / "upper.flac", 880.0, 4.0, amplitude=0.2)
    write_sine(tmp_path / "high.flac", 660.0, 4.0)
    write_sine(tmp_path / "segment.flac", 550.0, 3.0)  # a one-bar segment with a tail
    write_midi(tmp_path / "parts.mid", {
        "beats": [(float(beat), 0.25, 72, 110) for beat in range(4)],
        "hit": [(0.0, 0.5, 84, 120), (0.0, 0.5, 79, 120)],
    })

    def build(exit: str = "next_bar", fade_beats: float = 1.0, stinger_quantize: str = "next_beat",
              extra: str = "") -> CueBank:
        text = TONE_BANK.format(exit=exit, fade_beats=fade_beats, stinger_quantize=stinger_quantize, extra=extra)
        path = tmp_path / "bank.toml"
        path.write_text(text)
        return load_bank(path)

    return build


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
