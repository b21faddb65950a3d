"""Keys, modes and chord symbols, in the notation musicians write.

Pitch classes are integers 0..11 with C = 0. MIDI note numbers follow the
General MIDI / MIDI 1.0 convention (middle C = 60).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_NOTE_PITCH_CLASS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "b": -1}


class Mode(enum.Enum):
    """Mode of a key."""

    MAJOR = "major"
    MINOR = "minor"  # natural minor (Aeolian)

    @property
    def scale_semitones(self) -> tuple[int, ...]:
        """Scale degrees in semitones above the tonic."""
        return (0, 2, 4, 5, 7, 9, 11) if self is Mode.MAJOR else (0, 2, 3, 5, 7, 8, 10)


def parse_pitch_class(name: str) -> int:
    """``"C"``, ``"F#"``, ``"Bb"`` → 0..11.

    Raises:
        ValueError: not a note letter A-G with an optional ``#`` or ``b``.
    """
    match = re.fullmatch(r"([A-Ga-g])([#b]?)", name.strip())
    if not match:
        raise ValueError(f"{name!r} is not a note name (allowed: A-G with optional # or b, e.g. 'F#', 'Bb')")
    return (_NOTE_PITCH_CLASS[match.group(1).upper()] + _ACCIDENTAL[match.group(2)]) % 12


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0..11, C = 0) and mode."""

    tonic_pitch_class: int
    mode: Mode

    @classmethod
    def parse(cls, text: str) -> "Key":
        """``"D minor"``, ``"Bb major"``, ``"F# min"``, ``"C:maj"`` → Key.

        Raises:
            ValueError: naming what was wrong and the accepted forms.
        """
        match = re.fullmatch(r"\s*([A-Ga-g][#b]?)\s*[: ]\s*(major|minor|maj|min)\s*", text)
        if not match:
            raise ValueError(
                f"{text!r} is not a key (allowed: a tonic A-G with optional #/b and a mode, "
                "e.g. 'D minor', 'Bb major')"
            )
        mode = Mode.MAJOR if match.group(2).startswith("maj") else Mode.MINOR
        return cls(parse_pitch_class(match.group(1)), mode)

    def semitones_to(self, other: "Key") -> int:
        """Smallest transposition (-5..+6 semitones) taking this tonic to ``other``'s."""
        delta = (other.tonic_pitch_class - self.tonic_pitch_class) % 12
        return delta - 12 if delta > 6 else delta

    def scale_pitch_classes(self) -> tuple[int, ...]:
        """The seven pitch classes of the key's scale, tonic first."""
        return tuple((self.tonic_pitch_class + s) % 12 for s in self.mode.scale_semitones)


class ChordQuality(enum.Enum):
    """Triad or seventh-chord quality, with its intervals in semitones."""

    MAJOR = (0, 4, 7)
    MINOR = (0, 3, 7)
    DIMINISHED = (0, 3, 6)
    AUGMENTED = (0, 4, 8)
    SUS4 = (0, 5, 7)
    SUS2 = (0, 2, 7)
    DOMINANT7 = (0, 4, 7, 10)
    MAJOR7 = (0, 4, 7, 11)
    MINOR7 = (0, 3, 7, 10)


_CHORD_SUFFIX = {
    "": ChordQuality.MAJOR,
    "m": ChordQuality.MINOR,
    "dim": ChordQuality.DIMINISHED,
    "aug": ChordQuality.AUGMENTED,
    "sus4": ChordQuality.SUS4,
    "sus2": ChordQuality.SUS2,
    "7": ChordQuality.DOMINANT7,
    "maj7": ChordQuality.MAJOR7,
    "m7": ChordQuality.MINOR7,
}


@dataclass(frozen=True)
class Chord:
    """A chord: root pitch class (0..11) and quality."""

    root_pitch_class: int
    quality: ChordQuality

    @classmethod
    def parse(cls, symbol: str) -> "Chord":
        """Lead-sheet symbols: ``"Dm"``, ``"Bb"``, ``"F#m7"``, ``"Gsus4"``, ``"Cmaj7"``.

        Raises:
            ValueError: naming the symbol and the accepted suffixes.
        """
        match = re.fullmatch(r"\s*([A-G][#b]?)(.*?)\s*", symbol)
        if not match or match.group(2) not in _CHORD_SUFFIX:
            allowed = ", ".join(repr(s) for s in _CHORD_SUFFIX)
            raise ValueError(
                f"{symbol!r} is not a chord symbol (allowed: a root A-G with optional #/b "
                f"followed by one of {allowed})"
            )
        return cls(parse_pitch_class(match.group(1)), _CHORD_SUFFIX[match.group(2)])

    def pitch_classes(self) -> tuple[int, ...]:
        """Pitch classes of the chord tones, root first."""
        return tuple((self.root_pitch_class + i) % 12 for i in self.quality.value)


def diatonic_triad(key: Key, degree: int) -> Chord:
    """The triad built in thirds on scale degree ``degree`` (0 = tonic .. 6) of
    ``key`` (natural minor for minor keys): e.g. degree 1 of C major is Dm,
    degree 3 of A minor is Dm.

    Raises:
        ValueError: ``degree`` outside 0..6.
    """
    if not 0 <= degree <= 6:
        raise ValueError(f"scale degree {degree} is out of range (allowed: 0..6)")
    scale = key.scale_pitch_classes()
    root, third, fifth = scale[degree], scale[(degree + 2) % 7], scale[(degree + 4) % 7]
    intervals = (0, (third - root) % 12, (fifth - root) % 12)
    quality = next(q for q in (ChordQuality.MAJOR, ChordQuality.MINOR, ChordQuality.DIMINISHED,
                               ChordQuality.AUGMENTED) if q.value == intervals)
    return Chord(root, quality)


def dominant_seventh(key: Key) -> Chord:
    """V7 of ``key``: the dominant seventh chord on its fifth degree (in a minor
    key its third is the raised leading tone, as in harmonic minor)."""
    return Chord((key.tonic_pitch_class + 7) % 12, ChordQuality.DOMINANT7)
