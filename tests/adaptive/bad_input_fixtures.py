"""Tiny cue banks, stems, MIDI files and timelines written into a temporary
folder, for the bad-input tests (``test_bad_input.py``).

Everything is small so that a test builds its bank and a session in a few
milliseconds: 1-bar cues, 0.5 s stems, a handful of MIDI notes.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
"""The General MIDI SoundFont the tests render with."""

SAMPLE_RATE_HZ = 48_000

STEM_SECONDS = 0.5
"""Length of the stems written by :func:`write_stem`."""

MIDI_FILE = "parts.mid"
STEM_FILE = "pad.wav"

# (start_beat, duration_beats, pitch, velocity)
MIDI_TRACKS: dict[str, list[tuple[float, float, int, int]]] = {
    "lead": [(0.0, 1.0, 60, 100), (1.0, 1.0, 64, 100), (2.0, 1.0, 67, 100), (3.0, 1.0, 72, 100)],
    "drums": [(0.0, 0.5, 36, 110), (1.0, 0.5, 38, 110), (2.0, 0.5, 36, 110), (3.0, 0.5, 38, 110)],
    "hit": [(0.0, 2.0, 84, 120), (0.0, 2.0, 79, 120)],
}


def write_midi(path: Path, tracks: dict[str, list[tuple[float, float, int, int]]] | None = None,
               ticks_per_beat: int = 480) -> Path:
    """A type-1 Standard MIDI File with one named track per entry of ``tracks``."""
    import mido

    tracks = MIDI_TRACKS if tracks is None else tracks
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for name, notes in tracks.items():
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name))
        timed: list[tuple[int, int, mido.Message]] = []
        for start, duration, pitch, velocity in notes:
            on = int(round(start * ticks_per_beat))
            off = int(round((start + duration) * ticks_per_beat))
            timed.append((on, 1, mido.Message("note_on", note=pitch, velocity=velocity)))
            timed.append((off, 0, mido.Message("note_off", note=pitch, velocity=0)))
        timed.sort(key=lambda item: (item[0], item[1]))
        previous = 0
        for tick, _, message in timed:
            track.append(message.copy(time=tick - previous))
            previous = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi.tracks.append(track)
    midi.save(str(path))
    return path


def write_stem(path: Path, *, seconds: float = STEM_SECONDS, rate: int = SAMPLE_RATE_HZ, channels: int = 2,
               frequency_hz: float = 220.0) -> Path:
    """A quiet sine stem (16-bit WAV unless the suffix says otherwise)."""
    import soundfile

    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    tone = (0.2 * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)
    data = np.repeat(tone[:, None], channels, axis=1)
    soundfile.write(str(path), data, rate)
    return path


def write_random_bytes(path: Path, size: int = 4096, seed: int = 1) -> Path:
    """A file of random bytes (a 'corrupt' asset)."""
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def base_bank() -> dict[str, Any]:
    """A valid bank as a dict (deep-copied each call, so a test may mutate it).

    * ``calm``: a stem layer (``pad.wav``) and a MIDI layer (``lead``),
    * ``battle``: a percussion MIDI layer and a generated arpeggio,
    * segment ``bridge`` (a stem), stinger ``hit``,
    * transitions: calm -> battle through the segment; * -> * next bar.
    """
    return copy.deepcopy({
        "name": "tiny",
        "cues": [
            {
                "name": "calm", "bpm": 120, "key": "C major", "chords": ["C", "F", "G", "C"], "loop_bars": 1,
                "valence": 0.4, "arousal": -0.6,
                "layers": [
                    {"name": "pad", "source": {"kind": "stem", "file": STEM_FILE}},
                    {"name": "lead", "program": 0, "source": {"kind": "midi", "file": MIDI_FILE, "track": "lead"},
                     "gain_curve": [[0.0, -math.inf], [0.3, -6.0], [1.0, 0.0]]},
                ],
            },
            {
                "name": "battle", "bpm": 140, "key": "D minor", "chords": ["Dm", "Bb"], "loop_bars": 2,
                "valence": -0.7, "arousal": 0.8,
                "layers": [
                    {"name": "drums", "percussion": True,
                     "source": {"kind": "midi", "file": MIDI_FILE, "track": "drums"}},
                    {"name": "arp", "program": 46, "source": {"kind": "generated", "generator": "rule_based",
                                                              "role": "arpeggio"}},
                ],
            },
        ],
        "segments": [
            {"name": "bridge", "bpm": 120, "loop_bars": 1,
             "layers": [{"name": "swell", "source": {"kind": "stem", "file": STEM_FILE}}]},
        ],
        "stingers": [
            {"name": "hit", "program": 61, "quantize": "next_beat",
             "source": {"kind": "midi", "file": MIDI_FILE, "track": "hit"}},
        ],
        "transitions": [
            {"from": "*", "to": "*", "exit": "next_bar", "fade_beats": 1},
            {"from": "calm", "to": "battle", "exit": "next_bar", "fade_beats": 0,
             "bridge": {"kind": "segment", "segment": "bridge"}},
        ],
    })


# --------------------------------------------------------------------- TOML
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _write_table(lines: list[str], header: str | None, table: dict[str, Any]) -> None:
    if header is not None:
        lines.append(f"[[{header}]]")
    nested = []
    for key, value in table.items():
        if header is not None and _is_table_array(value) and key in ("layers",):
            nested.append((key, value))
        elif header is None and _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, items in nested:
        for item in items:
            lines.append("")
            _write_table(lines, f"{header}.{key}" if header else key, item)


def dump_toml(data: dict[str, Any]) -> str:
    """``data`` as TOML: arrays of tables as ``[[cues]]`` / ``[[cues.layers]]``,
    everything below that as inline values."""
    lines: list[str] = []
    _write_table(lines, None, data)
    return "\n".join(lines) + "\n"


def make_bank(folder: Path, data: dict[str, Any] | None = None, *, name: str = "bank.toml",
              stem: bool = True, midi: bool = True) -> Path:
    """Write ``data`` (default :func:`base_bank`) as ``folder/name`` with the
    stem and MIDI file it uses; returns the bank file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    if stem:
        write_stem(folder / STEM_FILE)
    if midi:
        write_midi(folder / MIDI_FILE)
    path = folder / name
    path.write_text(dump_toml(base_bank() if data is None else data), encoding="utf-8")
    return path


def write_timeline(folder: Path, text: str, name: str = "timeline.toml") -> Path:
    """Write a timeline file (TOML or JSON, by ``name``'s suffix)."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


VALID_TIMELINE = """\
duration_seconds = 2.0
seed = 3

[[events]]
time_seconds = 0
emotion = "calm"
intensity = 0.5

[[events]]
time_seconds = 0.5
stinger = "hit"

[[events]]
time_seconds = 1.0
emotion = "angry"
"""
