"""MIDI parts: notes in beats, read from Standard MIDI Files with mido.

A :class:`Part` is a list of notes whose times are in beats from the part's
beat 0 (MIDI ticks divided by the file's ticks per beat). It is tempo-free: the
cue's grid turns beats into frames when the part is scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adaptive.errors import AssetError


@dataclass(frozen=True)
class Part:
    """Notes of one part, sorted by start.

    Attributes (all arrays of the same length ``n_notes``):
        start_beats: note starts, float64, beats from the part's beat 0.
        duration_beats: note lengths in beats, float64, > 0.
        pitch: MIDI note numbers 0..127, int16.
        velocity: MIDI velocities 1..127, int16.
    """

    start_beats: np.ndarray
    duration_beats: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    @classmethod
    def from_notes(cls, notes: list[tuple[float, float, int, int]]) -> "Part":
        """Build from ``(start_beats, duration_beats, pitch, velocity)`` tuples."""
        notes = sorted(notes)
        if not notes:
            return cls.empty()
        start, duration, pitch, velocity = zip(*notes)
        return cls(
            np.asarray(start, np.float64),
            np.asarray(duration, np.float64),
            np.asarray(pitch, np.int16),
            np.asarray(velocity, np.int16),
        )

    @classmethod
    def empty(cls) -> "Part":
        """A part with no notes."""
        return cls(np.zeros(0), np.zeros(0), np.zeros(0, np.int16), np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def end_beats(self) -> float:
        """Beat at which the last note ends (0 for an empty part)."""
        return float((self.start_beats + self.duration_beats).max()) if len(self) else 0.0

    def transposed(self, semitones: int) -> "Part":
        """A copy shifted by ``semitones``, notes folded by octaves into 0..127."""
        pitch = self.pitch.astype(np.int32) + semitones
        pitch = np.where(pitch > 127, pitch - 12 * ((pitch - 116) // 12), pitch)
        pitch = np.where(pitch < 0, pitch + 12 * ((11 - pitch) // 12), pitch)
        return Part(self.start_beats, self.duration_beats, pitch.astype(np.int16), self.velocity)


def read_midi_tracks(path: Path) -> dict[str, Part]:
    """Every named track of a Standard MIDI File, as parts in beats.

    Tracks are named by their first ``track_name`` meta event (unnamed tracks
    are ``"track<i>"``). Note-on with velocity 0 counts as note-off; a note
    never released ends at the track's last event.

    Raises:
        AssetError: the file is missing or is not a valid Standard MIDI File.
    """
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise AssetError(f"{path}: MIDI file not found") from None
    except EOFError:
        raise AssetError(f"{path}: not a valid Standard MIDI File (the file ends early: truncated?)") from None
    except (OSError, ValueError, KeyError, IndexError) as error:
        raise AssetError(f"{path}: not a valid Standard MIDI File ({error or type(error).__name__})") from None
    if midi.ticks_per_beat <= 0:
        raise AssetError(
            f"{path}: time division {midi.ticks_per_beat} is not supported "
            "(allowed: ticks per quarter note, 1..32767; SMPTE time code divisions are not)"
        )
    if midi.type == 2:
        raise AssetError(f"{path}: MIDI file type 2 is not supported (allowed: type 0 or 1)")
    ticks_per_beat = midi.ticks_per_beat
    parts: dict[str, Part] = {}
    for index, track in enumerate(midi.tracks):
        name = f"track{index}"
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        notes: list[tuple[float, float, int, int]] = []
        for message in track:
            tick += message.time
            if message.type == "track_name" and name == f"track{index}":
                name = message.name
            elif message.type == "note_on" and message.velocity > 0:
                open_notes.setdefault((message.channel, message.note), []).append((tick, message.velocity))
            elif message.type in ("note_off", "note_on"):
                started = open_notes.get((message.channel, message.note))
                if started:
                    start_tick, velocity = started.pop(0)
                    if tick > start_tick:
                        notes.append((start_tick / ticks_per_beat, (tick - start_tick) / ticks_per_beat, message.note, velocity))
        for (channel, pitch), starts in open_notes.items():
            for start_tick, velocity in starts:
                if tick > start_tick:
                    notes.append((start_tick / ticks_per_beat, (tick - start_tick) / ticks_per_beat, pitch, velocity))
        parts[name] = Part.from_notes(notes)
    return parts


class PartLibrary:
    """Reads each MIDI file once and hands out its tracks by name."""

    def __init__(self) -> None:
        self._files: dict[Path, dict[str, Part]] = {}

    def track(self, path: Path, track: str) -> Part:
        """Track ``track`` of the MIDI file at ``path``.

        Raises:
            AssetError: unreadable file, or no such track (naming the tracks there).
        """
        if path not in self._files:
            self._files[path] = read_midi_tracks(path)
        tracks = self._files[path]
        if track not in tracks:
            raise AssetError(f"{path}: no track named {track!r} (tracks there: {', '.join(tracks) or 'none'})")
        return tracks[track]
