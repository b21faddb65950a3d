"""Themes: a melody with its chords, key and meter, read from a bank's
``[themes.NAME]`` (docs/cue-bank.md, "Themes"), which the variation engine
(:mod:`adaptive.variation`) re-casts for every emotion and cue.

A theme's times are in beats of its MIDI file (ticks / ticks per quarter
note) from its first downbeat; a bar is ``beats_per_bar`` beats. Its chords
are one or two per bar (the second from the half bar), written as symbols in
the bank or read from a chord track of the file (:func:`chords_from_part`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptive.cue import CueBank, ThemeSpec
from adaptive.errors import AssetError
from adaptive.harmony import Chord, ChordQuality, Key
from adaptive.part import Part, PartLibrary

BarChords = tuple[Chord, Chord | None]
"""The chord of a bar and the chord from its half on (None: one chord all bar)."""


@dataclass(frozen=True)
class Theme:
    """A theme ready to vary.

    Attributes:
        name: its name in the bank.
        melody: one note at a time, beats from the theme's first downbeat.
        chords: one :data:`BarChords` per bar (``len(chords)`` = bars).
        key: the key it is written in.
        beats_per_bar: its meter's numerator (beats of the file).
        head_bars: bars of its head motif (stingers, bridges).
        program: General MIDI program when it plays as a stinger or in a bridge.
    """

    name: str
    melody: Part
    chords: tuple[BarChords, ...]
    key: Key
    beats_per_bar: int
    head_bars: int = 2
    program: int = 0

    @property
    def bars(self) -> int:
        """Length in bars."""
        return len(self.chords)

    @property
    def length_beats(self) -> float:
        """Length in beats."""
        return float(self.bars * self.beats_per_bar)

    def chords_at_beat(self, beat: float) -> Chord:
        """The chord sounding at ``beat`` (wrapping around the theme)."""
        beat = beat % self.length_beats
        bar = int(beat // self.beats_per_bar)
        first, second = self.chords[bar]
        if second is not None and beat - bar * self.beats_per_bar >= self.beats_per_bar / 2:
            return second
        return first


_TEMPLATES = tuple(
    (root, quality)
    for quality in (ChordQuality.MAJOR, ChordQuality.MINOR, ChordQuality.DOMINANT7, ChordQuality.MINOR7,
                    ChordQuality.MAJOR7, ChordQuality.DIMINISHED, ChordQuality.SUS4, ChordQuality.AUGMENTED)
    for root in range(12)
)


def recognize_chord(weights: np.ndarray) -> Chord | None:
    """The chord whose tones best cover a pitch-class profile.

    Args:
        weights: ``(12,)`` sounding time in beats of each pitch class (C = 0),
            the bass weighted double by the caller if it likes.

    Returns:
        The template (12 roots × major, minor, 7, m7, maj7, dim, sus4, aug)
        maximizing the weight of its tones minus the weight outside it, ties
        to triads and lower roots (template matching as in Fujishima 1999);
        None when nothing sounds.
    """
    total = float(weights.sum())
    if total <= 0.0:
        return None
    best, best_score = None, -np.inf
    for root, quality in _TEMPLATES:
        tones = [(root + i) % 12 for i in quality.value]
        inside = float(weights[tones].sum())
        missing = sum(1 for tone in tones if weights[tone] <= 0.0)
        score = inside - (total - inside) - 0.25 * total * missing / len(tones)
        if score > best_score + 1e-9:
            best, best_score = Chord(root, quality), score
    return best


def chords_from_part(part: Part, bars: int, beats_per_bar: int) -> tuple[BarChords, ...]:
    """One or two chords per bar read from a chord track's notes: each half
    bar's pitch classes (weighted by sounding beats, the lowest note double)
    are matched by :func:`recognize_chord`; a half bar where nothing sounds
    keeps the chord before it; a bar whose halves agree holds one chord.

    Raises:
        ValueError: no chord can be read from the first bar.
    """
    halves: list[Chord | None] = []
    half = beats_per_bar / 2
    ends = part.start_beats + part.duration_beats
    for index in range(bars * 2):
        lo, hi = index * half, (index + 1) * half
        overlap = np.minimum(ends, hi) - np.maximum(part.start_beats, lo)
        weights = np.zeros(12)
        sounding = overlap > 1e-9
        for pitch, beats in zip(part.pitch[sounding].tolist(), overlap[sounding].tolist()):
            weights[pitch % 12] += beats
        if sounding.any():
            weights[int(part.pitch[sounding].min()) % 12] += float(overlap[sounding].max())
        halves.append(recognize_chord(weights))
    chords: list[BarChords] = []
    previous = halves[0]
    if previous is None:
        raise ValueError("no notes sound in the first bar of the chord track")
    for bar in range(bars):
        first = halves[2 * bar] or previous
        second = halves[2 * bar + 1] or first
        chords.append((first, None if second == first else second))
        previous = second
    return tuple(chords)


def monophonic(part: Part) -> Part:
    """The part with at most one note sounding: of notes starting together
    the highest is kept, and a note is cut where the next one starts."""
    if not len(part):
        return part
    keep: dict[float, int] = {}
    for index, (start, pitch) in enumerate(zip(part.start_beats.tolist(), part.pitch.tolist())):
        if start not in keep or pitch > part.pitch[keep[start]]:
            keep[start] = index
    order = np.array(sorted(keep.values(), key=lambda i: part.start_beats[i]), dtype=np.int64)
    start = part.start_beats[order]
    duration = part.duration_beats[order].copy()
    duration[:-1] = np.minimum(duration[:-1], np.diff(start))
    return Part(start, duration, part.pitch[order], part.velocity[order])


def load_theme(bank: CueBank, name: str, library: PartLibrary | None = None) -> Theme:
    """Read theme ``name`` of ``bank`` from its MIDI file.

    Raises:
        KeyError: no such theme (naming the allowed ones).
        AssetError: the file is unreadable, a track is missing, the melody is
            empty, or no chord can be read; the message names the theme, the
            file and what is allowed.
    """
    spec: ThemeSpec = bank.theme(name)
    library = library or PartLibrary()
    path = bank.path(spec.file)
    where = f"themes.{name}"
    try:
        melody = monophonic(library.track(path, spec.melody))
    except AssetError as error:
        raise AssetError(f"{where}.melody: {error}") from None
    if not len(melody):
        raise AssetError(f"{where}.melody: {path}: track {spec.melody!r} has no notes (a theme needs a melody)")
    beats_per_bar = spec.meter.beats_per_bar
    bars = max(1, int(np.ceil(melody.end_beats / beats_per_bar - 1e-6)))
    if isinstance(spec.chords, list):
        symbols = [spec.chords[bar % len(spec.chords)].split() for bar in range(bars)]
        chords = tuple((Chord.parse(s[0]), Chord.parse(s[1]) if len(s) == 2 else None) for s in symbols)
    else:
        try:
            chord_part = library.track(path, spec.chords)
            chords = chords_from_part(chord_part, bars, beats_per_bar)
        except (AssetError, ValueError) as error:
            raise AssetError(f"{where}.chords: {path}: track {spec.chords!r}: {error} (allowed: a track of "
                             "block chords, or chord symbols one per bar, e.g. chords = [\"D\", \"G\", \"A\"])") \
                from None
    return Theme(name, melody, chords, spec.parsed_key, beats_per_bar, spec.head_bars, spec.program)
