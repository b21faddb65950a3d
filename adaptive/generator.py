"""Generated parts: the interface a part generator fills, and the simple
rule-based generator that stands behind it (the fallback of a late bar; the
model generator of ``models/`` is registered by the composition root,
:mod:`adaptive.registry`).

A generator is asked for one bar at a time, ahead of the music, with the bar's
musical context (key, chord, meter, tempo) and the emotion to express. Its
answer is a :class:`~adaptive.part.Part` whose beats count from the bar's
downbeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

# Imported now, not on first use: numpy 2 imports numpy.random lazily, which
# put module loading (7 ms) on the render thread at a session's first fallback bar.
import numpy.random  # noqa: F401

from adaptive.harmony import Chord, Key
from adaptive.part import Part


@dataclass(frozen=True)
class PartConditioning:
    """What the sound designer's mapping asks a generated part for at the
    current emotion (``[conditioning]`` in the mapping file, docs/mapping.md).

    Attributes:
        mode: ``"major"`` or ``"minor"`` to write in that mode on the key's
            tonic; ``None``: keep the key's own mode.
        notes_per_beat: note density asked for, 0.25..16.
        velocity: MIDI velocity asked for, 1..127.
        register_semitones: shift of the part's register, -24..24.
        guidance_scale: classifier-free guidance scale of the model generator
            on the emotion (1 = plain conditioning, larger = stronger; 0..8);
            ``None``: the generator's default.
    """

    mode: str | None
    notes_per_beat: float
    velocity: int
    register_semitones: float
    guidance_scale: float | None = None


@dataclass(frozen=True)
class BarEnding:
    """How a bar must end: a bridge's last bar leads into the incoming cue.

    Attributes:
        pitch_classes: the last note's pitch class must be one of these
            (0..11, C = 0; a bridge asks for the incoming key's tonic and
            dominant).
        next_pitch: the MIDI pitch that follows the bar (the incoming cue's
            first note in this register), or None; the last note must then lie
            within an octave of it (no leap over an octave at the seam).
    """

    pitch_classes: tuple[int, ...]
    next_pitch: int | None = None


STYLES = ("game", "pop", "folk", "chorale")
"""Styles a generated layer may ask for (``source = { kind = "generated",
style = "folk" }``): the model generator writes in the manner of VGMIDI's game
music, POP909's pop songs, the folk tunes of music21's corpus or Bach's
chorales (models/MODEL_CARD.md); the rule-based generator has no styles."""


@dataclass(frozen=True)
class BarRequest:
    """What a generator is asked to write.

    Attributes:
        bar_index: the bar's index since its cue started (0-based).
        key: the cue's key.
        chord: the chord of this bar.
        beats_per_bar: meter numerator.
        bpm: tempo in beats per minute.
        valence, arousal: the emotion to express, each in [-1, 1].
        role: ``"melody"``, ``"arpeggio"`` or ``"bass"``.
        seed: the session seed; generators derive their randomness from it and
            the bar index only, so a render is repeatable.
        conditioning: the mapping's asks (mode, density, velocity, register);
            ``None``: the generator derives them from valence and arousal itself.
        beat_unit: the meter's denominator (4: beats are quarter notes; 8:
            eighth notes, as in 6/8; 2: half notes).
        second_chord: the chord from the bar's half on, when the cue's
            progression changes chord inside the bar (None: ``chord`` all bar).
        context: bars heard just before this one (oldest first; each a
            :class:`Part` in beats from its own downbeat), for a generator that
            starts afresh here: it continues from them instead of from silence
            (a bridge continues the outgoing cue's last bar), and its first
            note lies within an octave of their last one.
        ending: how the bar must end (a bridge's last bar), or None.
        style: the music to write in the manner of, one of :data:`STYLES`
            (None: the generator's own default); a generator without styles
            ignores it.
    """

    bar_index: int
    key: Key
    chord: Chord
    beats_per_bar: int
    bpm: float
    valence: float
    arousal: float
    role: str
    seed: int
    conditioning: PartConditioning | None = None
    beat_unit: int = 4
    second_chord: Chord | None = None
    context: tuple[Part, ...] = ()
    ending: BarEnding | None = None
    style: str | None = None


class PartGenerator(Protocol):
    """Makes one bar of a part at a time."""

    name: str

    def generate_bar(self, request: BarRequest) -> Part:
        """Notes of the requested bar, beats from its downbeat, all starting
        inside the bar."""
        ...


class RuleBasedGenerator:
    """A rule-based arpeggiator, not a learned model: it plays the bar's chord
    tones in a rising-and-falling pattern.

    The emotion shapes it along the directions reported by Gabrielsson &
    Lindström (2010) and Eerola, Friberg & Bresin (2013): arousal raises note
    density (1, 2, 3 or 4 notes per beat) and velocity (45..110); valence
    raises the register (about an octave across the range). Key and mode come
    from the cue's chords, which keeps every note in harmony.
    """

    name = "rule_based"

    def generate_bar(self, request: BarRequest) -> Part:
        """See :class:`PartGenerator`. Deterministic for a given request."""
        role_number = ("melody", "arpeggio", "bass").index(request.role)
        rng = np.random.default_rng([request.seed & 0xFFFFFFFF, request.bar_index, role_number])
        arousal01 = (request.arousal + 1.0) / 2.0
        valence01 = (request.valence + 1.0) / 2.0
        notes_per_beat = 1 + int(round(arousal01 * 3))
        velocity = int(45 + 65 * arousal01)
        register_shift = 0
        conditioning = request.conditioning
        if conditioning is not None:  # the mapping's asks replace the built-in directions
            notes_per_beat = min(4, max(1, int(round(conditioning.notes_per_beat))))
            velocity = min(117, max(1, conditioning.velocity))
            valence01 = 0.5
            register_shift = int(round(conditioning.register_semitones))
        chord_pcs = request.chord.pitch_classes()
        if request.role == "bass":
            base = 36 + chord_pcs[0] + 12 * int(round(register_shift / 12))
            notes = []
            for beat in range(request.beats_per_bar):
                pitch = base if beat % 2 == 0 else base + 7
                notes.append((float(beat), 0.9, int(pitch), velocity))
            return Part.from_notes(notes)
        low = (57 + int(round(valence01 * 12)) if request.role == "arpeggio" else 64 + int(round(valence01 * 10)))
        low += register_shift
        pitches = sorted(
            p for p in range(low, low + 19) if p % 12 in chord_pcs
        )
        cycle = pitches + pitches[-2:0:-1]  # up then down, no repeated turning points
        step = 1.0 / notes_per_beat
        count = request.beats_per_bar * notes_per_beat
        offset = int(rng.integers(0, len(cycle)))
        notes = []
        for i in range(count):
            if request.role == "melody" and rng.random() < 0.35:
                continue  # melodies breathe: leave some steps as rests
            pitch = cycle[(offset + i) % len(cycle)]
            accent = 10 if (i % notes_per_beat) == 0 else 0
            notes.append((i * step, step * 0.95, int(pitch), min(127, velocity + accent)))
        return Part.from_notes(notes)
