"""The generator's vocabulary: MidiTok REMI note tokens plus conditioning tokens.

A training sequence (and a generated stream) reads::

    BOS Role_<role> Style_<style>
    Bar Meter_<n>_<d> Phrase_<0..7> Key_<tonic>_<mode> Valence_<v> Arousal_<a> Tempo_<t>
        Density_<d> MeanVelocity_<m> Chord_<first half> Chord_<second half>
        Position_<p> Pitch_<n> Velocity_<v> Duration_<d> [Pitch Velocity Duration ...] Position ...
    Bar Meter ... Chord Chord  <notes of the next bar>
    ...

The note tokens (``Bar``, ``Position``, ``Pitch``, ``Velocity``, ``Duration``) are
MidiTok's REMI vocabulary (Huang & Yang 2020, "Pop Music Transformer"; the
tokenizer's configuration is :data:`REMI_SETTINGS`: 16th-note positions, 8
velocity levels); :func:`encode_bar` writes a bar's notes with them, in any of
the :data:`METERS` (a bar of ``positions`` sixteenths). Each bar's header of
conditioning tokens (everything between ``Bar`` and the first ``Position``) is
ours; :func:`bar_header` builds it. How each attribute is derived from the data
is in :mod:`models.dataset` and the model card.

Pitch classes are 0..11 with C = 0; chord qualities and modes are
:class:`adaptive.harmony.ChordQuality` and :class:`adaptive.harmony.Mode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from adaptive.generator import STYLES as GENERATOR_STYLES
from adaptive.harmony import Chord, ChordQuality, Key, Mode

REMI_SETTINGS: dict = {
    "pitch_range": (21, 109),            # piano range A0..C8
    "beat_res": {(0, 4): 4, (4, 8): 2},  # 16th-note grid up to 4 beats, 8ths up to 8 beats (durations)
    "num_velocities": 8,
    "special_tokens": ["PAD", "BOS"],
    "use_velocities": True,
    "use_chords": False,
    "use_rests": False,
    "use_tempos": False,
    "use_time_signatures": False,        # meters are our Meter_ header tokens (see METERS)
    "use_programs": False,
}
"""Keyword arguments of ``miditok.TokenizerConfig`` for the note vocabulary."""

POSITIONS_PER_BEAT = 4
"""REMI positions per quarter note (16th notes), from ``REMI_SETTINGS["beat_res"]``."""
METERS: dict[str, int] = {"2_4": 8, "3_4": 12, "4_4": 16, "6_8": 12, "3_8": 6}
"""Meter token value → bar length in 16th-note positions. 2/2 is written as
4/4; 4/2, 6/4 and 12/8 bars as two bars of 4/4, 3/4 and 6/8."""
PHRASE_BARS = 8
"""``Phrase_<i>``: the bar's place ``i`` (0..7) in an 8-bar period."""

ROLES = ("melody", "arpeggio", "bass")
STYLES = GENERATOR_STYLES + ("unknown",)
"""``Style_<style>``: the music the sequence comes from, after ``Role``. A
sequence's style is its corpus's (:data:`SOURCE_STYLE`); ``unknown`` is the
style dropped in training (so the model also writes without one). Generation
asks for ``game`` unless told otherwise: the model writes in VGMIDI's manner
while learning melody, harmony and phrase from every corpus."""
SOURCE_STYLE = {"vgmidi": "game", "vgmidi_piece": "game", "pop909": "pop", "essen": "folk", "oneills": "folk",
                "ryans": "folk", "chorales": "chorale"}
"""Corpus (``Stream.source``) → style token value."""
VALENCES = ("positive", "negative", "unknown")
AROUSALS = ("high", "low", "unknown")
TEMPO_EDGES_BPM = (75.0, 95.0, 115.0, 135.0)
"""Tempo bins: <75, 75-95, 95-115, 115-135, >=135 bpm (bins 0..4), plus ``unknown``."""
DENSITY_EDGES_NOTES_PER_BEAT = (0.5, 1.0, 2.0, 3.0, 4.5)
"""Note-density bins by notes (chord notes counted) per beat of the bar:
<0.5, 0.5-1, 1-2, 2-3, 3-4.5, >=4.5 (bins 0..5)."""
N_DENSITY_BINS = len(DENSITY_EDGES_NOTES_PER_BEAT) + 1
N_VELOCITY_LEVELS = REMI_SETTINGS["num_velocities"]
"""Mean-velocity bins are the MidiTok velocity levels (0..7): the level nearest the bar's mean velocity."""


def tempo_bin(bpm: float | None) -> str:
    """Tempo token value for ``bpm`` (``"unknown"`` for None)."""
    if bpm is None:
        return "unknown"
    return str(int(np.searchsorted(TEMPO_EDGES_BPM, bpm, side="right")))


def density_bin(notes_per_beat: float) -> int:
    """Density bin 0..5 of a bar with ``notes_per_beat`` notes per beat."""
    return int(np.searchsorted(DENSITY_EDGES_NOTES_PER_BEAT, notes_per_beat, side="right"))


def key_token(key: Key) -> str:
    return f"Key_{key.tonic_pitch_class}_{key.mode.value}"


def chord_token(chord: Chord | None) -> str:
    return "Chord_none" if chord is None else f"Chord_{chord.root_pitch_class}_{chord.quality.name}"


def valence_value(valence: float | None) -> str:
    """``"positive"`` for valence >= 0, ``"negative"`` below, ``"unknown"`` for None."""
    if valence is None:
        return "unknown"
    return "positive" if valence >= 0 else "negative"


def arousal_value(arousal: float | None) -> str:
    """``"high"`` for arousal >= 0, ``"low"`` below, ``"unknown"`` for None."""
    if arousal is None:
        return "unknown"
    return "high" if arousal >= 0 else "low"


def conditioning_tokens() -> list[str]:
    """Every conditioning token, in vocabulary order."""
    tokens = [f"Role_{r}" for r in ROLES]
    tokens += [f"Meter_{m}" for m in METERS] + [f"Phrase_{i}" for i in range(PHRASE_BARS)]
    tokens += [f"Key_{pc}_{mode.value}" for mode in Mode for pc in range(12)]
    tokens += [f"Valence_{v}" for v in VALENCES] + [f"Arousal_{a}" for a in AROUSALS]
    tokens += [f"Tempo_{i}" for i in range(len(TEMPO_EDGES_BPM) + 1)] + ["Tempo_unknown"]
    tokens += [f"Density_{i}" for i in range(N_DENSITY_BINS)] + ["Density_unknown"]
    tokens += [f"MeanVelocity_{i}" for i in range(N_VELOCITY_LEVELS)] + ["MeanVelocity_none", "MeanVelocity_unknown"]
    tokens += [f"Chord_{pc}_{q.name}" for q in ChordQuality for pc in range(12)] + ["Chord_none"]
    tokens += [f"Style_{s}" for s in STYLES]  # last, so every earlier id is as in format version 2
    return tokens


def style_token(style: str) -> str:
    """``Style_<style>`` for a value of :data:`STYLES`.

    Raises:
        ValueError: ``style`` is not one of :data:`STYLES`.
    """
    if style not in STYLES:
        raise ValueError(f"unknown generator style {style!r}: allowed are {', '.join(STYLES)}")
    return f"Style_{style}"


def make_remi():
    """The MidiTok REMI tokenizer of the note vocabulary (imports miditok lazily:
    generation needs only the vocabulary stored in the checkpoint)."""
    from miditok import REMI, TokenizerConfig

    return REMI(TokenizerConfig(**REMI_SETTINGS))


@dataclass(frozen=True)
class Vocabulary:
    """Token strings by id: MidiTok's REMI vocabulary (its own id order) then the
    conditioning tokens. Stored in every checkpoint; a checkpoint whose list
    differs from :meth:`build`'s is refused."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls) -> "Vocabulary":
        remi = make_remi()
        remi_tokens = sorted(remi.vocab, key=remi.vocab.get)
        return cls(tuple(remi_tokens) + tuple(conditioning_tokens()))

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    def id(self, token: str) -> int:
        return self.index[token]

    def ids_with_prefix(self, prefix: str) -> np.ndarray:
        """Ids (int64, sorted) of every token starting with ``prefix`` (e.g. ``"Pitch_"``)."""
        return np.array([i for i, t in enumerate(self.tokens) if t.startswith(prefix)], np.int64)

    @cached_property
    def kind(self) -> np.ndarray:
        """Token family of each id: the text before the first ``_`` (``"Pitch"``, ``"Chord"``...)."""
        return np.array([t.split("_", 1)[0] for t in self.tokens])

    @cached_property
    def pitch(self) -> np.ndarray:
        """MIDI pitch of each ``Pitch_`` id, -1 elsewhere (int64, shape (V,))."""
        return self._values("Pitch_", int)

    @cached_property
    def position(self) -> np.ndarray:
        """Position (16ths from the downbeat) of each ``Position_`` id, -1 elsewhere."""
        return self._values("Position_", int)

    @cached_property
    def velocity(self) -> np.ndarray:
        """MIDI velocity of each ``Velocity_`` id, -1 elsewhere."""
        return self._values("Velocity_", int)

    @cached_property
    def duration_beats(self) -> np.ndarray:
        """Length in beats of each ``Duration_<beats>.<ticks>.<res>`` id, -1 elsewhere (float64)."""
        def beats(text: str) -> float:
            whole, ticks, res = (int(x) for x in text.split("."))
            return whole + ticks / res
        return self._values("Duration_", beats, np.float64)

    @cached_property
    def header_kinds(self) -> frozenset[str]:
        return frozenset({"Meter", "Phrase", "Key", "Valence", "Arousal", "Tempo", "Density", "MeanVelocity",
                          "Chord"})

    def _values(self, prefix: str, parse, dtype=np.int64) -> np.ndarray:
        out = np.full(len(self.tokens), -1, dtype)
        for i, t in enumerate(self.tokens):
            if t.startswith(prefix):
                out[i] = parse(t[len(prefix):])
        return out

    @cached_property
    def transposition_tables(self) -> np.ndarray:
        """``tables[k + 6][id]``: the id of token ``id`` transposed by ``k`` semitones
        (k in -6..+6), shape (13, V) int64. Pitches shift (-1 when they leave the
        pitch range), keys and chords rotate their tonic/root, others stay."""
        tables = np.tile(np.arange(len(self.tokens)), (13, 1))
        for row, k in enumerate(range(-6, 7)):
            for i, t in enumerate(self.tokens):
                if t.startswith("Pitch_"):
                    tables[row, i] = self.index.get(f"Pitch_{int(t[6:]) + k}", -1)
                elif t.startswith(("Key_", "Chord_")) and t != "Chord_none":
                    family, pc, rest = t.split("_", 2)
                    tables[row, i] = self.index[f"{family}_{(int(pc) + k) % 12}_{rest}"]
        return tables

    @cached_property
    def encode_tables(self) -> dict:
        """Lookups :func:`encode_bar` uses: ``position`` (16th → id),
        ``velocity`` (MidiTok level 0..7 → id), ``duration`` (ids) and
        ``duration_values`` (their lengths in quarter notes)."""
        durations = self.ids_with_prefix("Duration_")
        velocities = self.ids_with_prefix("Velocity_")
        return {"position": {p: self.index[f"Position_{p}"] for p in range(16)},
                "velocity": list(velocities[np.argsort(self.velocity[velocities])]),
                "duration": list(durations), "duration_values": self.duration_beats[durations]}

    def transpose(self, ids: np.ndarray, semitones: int) -> np.ndarray | None:
        """``ids`` transposed by ``semitones`` (-6..6), or None if a pitch leaves the range."""
        out = self.transposition_tables[semitones + 6][ids]
        return None if (out < 0).any() else out


def velocity_level(velocity: float) -> int:
    """Index 0..7 of the MidiTok velocity level nearest ``velocity``."""
    levels = np.linspace(0, 127, N_VELOCITY_LEVELS + 1)[1:]  # MidiTok's velocity values, rounded below
    return int(np.argmin(np.abs(levels - velocity)))


def bar_header(meter: str, phrase_bar: int, key: Key, valence: float | None, arousal: float | None,
               bpm: float | None, density: int | None, mean_velocity_level: int | str | None,
               chords: tuple[Chord | None, Chord | None]) -> list[str]:
    """The tokens opening a bar: ``Bar`` then its conditioning, in sequence order.

    Args:
        meter: a key of :data:`METERS`; phrase_bar: the bar's place in its
            period (taken mod :data:`PHRASE_BARS`).
        density: bin 0..5 (:func:`density_bin`), None = unknown.
        mean_velocity_level: 0..7 (:func:`velocity_level`), ``"none"`` for an
            empty bar, None = unknown.
        chords: the chord of the bar's first and second half (None = no chord).
    """
    velocity = "unknown" if mean_velocity_level is None else str(mean_velocity_level)
    return ["Bar_None", f"Meter_{meter}", f"Phrase_{phrase_bar % PHRASE_BARS}", key_token(key),
            f"Valence_{valence_value(valence)}", f"Arousal_{arousal_value(arousal)}", f"Tempo_{tempo_bin(bpm)}",
            f"Density_{'unknown' if density is None else density}", f"MeanVelocity_{velocity}",
            chord_token(chords[0]), chord_token(chords[1])]


HEADER_LENGTH = 11
"""Tokens in a bar header, ``Bar`` included."""
HEADER_SLOTS = ("Bar", "Meter", "Phrase", "Key", "Valence", "Arousal", "Tempo", "Density", "MeanVelocity",
                "Chord", "Chord")
"""Token family of each header slot, in order."""


def encode_bar(vocab: Vocabulary, onsets_quarters: np.ndarray, durations_quarters: np.ndarray,
               pitches: np.ndarray, velocities: np.ndarray, positions: int) -> list[int]:
    """REMI note tokens of one bar (no ``Bar`` or header).

    Args:
        onsets_quarters: (n,) onsets in quarter notes from the bar's downbeat;
            notes outside ``[0, positions / 4)`` after rounding to the 16th grid
            are dropped.
        durations_quarters, pitches, velocities: (n,) each; durations are
            rounded to the nearest ``Duration_`` token (at least a 16th),
            velocities to the nearest MidiTok level, pitches outside the
            vocabulary's 21..109 dropped.
        positions: the bar's length in 16th notes (:data:`METERS`).
    Returns:
        token ids: ``Position`` then ``Pitch Velocity Duration`` per note at it,
        positions rising, pitches rising within a position, no repeated
        (position, pitch).
    """
    grid = np.rint(np.asarray(onsets_quarters, float) * POSITIONS_PER_BEAT).astype(np.int64)
    keep = (grid >= 0) & (grid < positions) & (pitches >= 21) & (pitches <= 109)
    order = np.lexsort((np.asarray(pitches)[keep], grid[keep]))
    grid, durations = grid[keep][order], np.asarray(durations_quarters, float)[keep][order]
    pitches, velocities = np.asarray(pitches)[keep][order].astype(int), np.asarray(velocities)[keep][order]
    tables = vocab.encode_tables
    ids: list[int] = []
    last_position, last_pitch = -1, -1
    for position, duration, pitch, velocity in zip(grid, durations, pitches, velocities):
        if position == last_position and pitch == last_pitch:
            continue
        if position != last_position:
            ids.append(tables["position"][position])
            last_position = int(position)
        last_pitch = int(pitch)
        ids.append(vocab.index[f"Pitch_{pitch}"])
        ids.append(tables["velocity"][velocity_level(velocity)])
        ids.append(tables["duration"][int(np.argmin(np.abs(tables["duration_values"] - max(duration, 0.25))))])
    return ids
