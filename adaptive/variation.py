"""The variation engine: a theme re-cast for an emotion, an intensity and a
cue (key, meter, tempo). Pure functions of their arguments and a seed.

Each transformation is a function of its own, tested on literal notes, and
:func:`vary` chains them:

1. **Mode, through the chords' functions** (:func:`reharmonize`,
   :func:`map_melody_mode`), following valence. Each chord is read as a degree
   of the theme's key; a major theme is darkened first by *modal mixture*
   (the subdominant side borrowed from the parallel minor: IV→iv, ii→ii°,
   vi→♭VI, while I and V keep their major thirds), then, lower on valence,
   by the *parallel minor* (I→i, iii→♭III, IV→iv, vi→♭VI, V kept as the
   harmonic-minor dominant, with the leading tone in the melody over it). A
   minor theme is brightened the other way: mixture (Dorian IV, a Picardy
   third on the last tonic) then the parallel major (i→I, iv→IV, ♭VI→vi,
   ♭VII→V7). The melody's scale degrees move with the chords under them.
   Music-psychology direction: valence → mode is the strongest single cue
   (Gabrielsson & Lindström 2010; Eerola, Friberg & Bresin 2013).
2. **Rhythm, following arousal** (:func:`reduce_to_structure`,
   :func:`add_passing_notes`, :func:`diminish`): calm reduces the melody to
   its structural notes (one per half bar: the strongest by metre, length
   and harmony) and, very calm, augments it (each theme bar over two of the
   cue's bars); moderately aroused fills leaps of a third with passing notes;
   very aroused divides long notes into running eighths or sixteenths
   (the *diminutions* of variation practice) with neighbour-note figures.
3. **Register, articulation, dynamics** (:func:`place_register`,
   :func:`articulate`, :func:`dynamics`): up an octave when bright and
   aroused, down one when dark; legato when calm, staccato when aroused;
   velocity from arousal and intensity with accents on strong beats.
4. **Key and meter of the cue** (:func:`transpose_to_key`, :func:`map_meter`);
   the tempo is the cue's (the part plays on its grid).

The levels are discrete (:func:`levels_for`), so a small move of the emotion
does not change the variation, and the engine re-conditions at bar lines.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from adaptive.generator import BarRequest, PartGenerator
from adaptive.harmony import Chord, ChordQuality, Key, Mode
from adaptive.part import Part
from adaptive.theme import BarChords, Theme

# ----------------------------------------------------------------- levels

MODE_AS_WRITTEN = 0
MODE_MIXTURE = 1
MODE_PARALLEL = 2

MIXTURE_FROM_VALENCE = 0.15
"""|valence| beyond which a theme against the valence's sign borrows from the parallel mode."""
PARALLEL_FROM_VALENCE = 0.45
"""|valence| beyond which it turns to the parallel mode."""

RHYTHM_AUGMENTED = -2  # structural notes, each theme bar over two bars
RHYTHM_REDUCED = -1  # structural notes
RHYTHM_AS_WRITTEN = 0
RHYTHM_PASSING = 1  # passing notes in leaps of a third
RHYTHM_DIMINISHED = 2  # long notes divided into runs and neighbour figures

RHYTHM_THRESHOLDS = ((-0.6, RHYTHM_AUGMENTED), (-0.2, RHYTHM_REDUCED), (0.3, RHYTHM_AS_WRITTEN),
                     (0.65, RHYTHM_PASSING))
"""``(arousal below which, level)``, in order; above the last: :data:`RHYTHM_DIMINISHED`."""


@dataclass(frozen=True)
class VariationLevels:
    """The discrete choices of a variation.

    Attributes:
        mode: :data:`MODE_AS_WRITTEN`, :data:`MODE_MIXTURE` or :data:`MODE_PARALLEL`.
        rhythm: :data:`RHYTHM_AUGMENTED` .. :data:`RHYTHM_DIMINISHED`.
        octave: register shift in octaves, -1..1.
        articulation: fraction of each note's written length that sounds (0.5..1).
    """

    mode: int
    rhythm: int
    octave: int
    articulation: float

    @property
    def time_scale(self) -> int:
        """Cue bars per theme bar: 2 when augmented, else 1."""
        return 2 if self.rhythm == RHYTHM_AUGMENTED else 1


def levels_for(theme_mode: Mode, valence: float, arousal: float) -> VariationLevels:
    """The variation's levels at an emotion (valence, arousal each in [-1, 1]).

    Mode: a theme whose mode agrees with the sign of valence stays as written;
    against it, beyond :data:`MIXTURE_FROM_VALENCE` it borrows, beyond
    :data:`PARALLEL_FROM_VALENCE` it turns to the parallel mode. Rhythm by
    :data:`RHYTHM_THRESHOLDS`. Register: an octave up at valence > 0.5 with
    arousal > 0.3 (bright and lively), down at valence < -0.5 with arousal
    < 0.3 (dark and low-spirited; a dark, aroused variation keeps the theme's
    register so it stays above its accompaniment). Articulation:
    1.0 (legato) at arousal ≤ -0.3, 0.9 up to 0.4, then 0.6 (staccato).
    """
    against = -valence if theme_mode is Mode.MAJOR else valence
    mode = MODE_PARALLEL if against > PARALLEL_FROM_VALENCE else (
        MODE_MIXTURE if against > MIXTURE_FROM_VALENCE else MODE_AS_WRITTEN)
    rhythm = RHYTHM_DIMINISHED
    for below, level in RHYTHM_THRESHOLDS:
        if arousal < below:
            rhythm = level
            break
    octave = 1 if valence > 0.5 and arousal > 0.3 else (-1 if valence < -0.5 and arousal < 0.3 else 0)
    articulation = 1.0 if arousal <= -0.3 else (0.9 if arousal <= 0.4 else 0.6)
    return VariationLevels(mode, rhythm, octave, articulation)


# ----------------------------------------------------------------- harmony

def _degree(chord: Chord, key: Key) -> int:
    """The chord root's distance above the key's tonic in semitones (0..11)."""
    return (chord.root_pitch_class - key.tonic_pitch_class) % 12


def _is_dominant(chord: Chord, key: Key) -> bool:
    """Whether the chord has dominant function in ``key`` (V, V7, vii°)."""
    degree = _degree(chord, key)
    return (degree == 7 and chord.quality in (ChordQuality.MAJOR, ChordQuality.DOMINANT7, ChordQuality.SUS4)) or \
        (degree == 11 and chord.quality is ChordQuality.DIMINISHED)


_MAJOR_TO_MINOR = {  # (degree, is-minor-ish) -> (new degree, quality): parallel minor by function
    0: (0, ChordQuality.MINOR),  # I -> i (tonic)
    2: (2, ChordQuality.DIMINISHED),  # ii -> ii° (predominant)
    4: (3, ChordQuality.MAJOR),  # iii -> bIII (tonic substitute)
    5: (5, ChordQuality.MINOR),  # IV -> iv (predominant)
    9: (8, ChordQuality.MAJOR),  # vi -> bVI (tonic substitute / predominant)
}
_MIXTURE_OF_MAJOR = {2, 5, 9}  # the subdominant side borrowed first
_MINOR_TO_MAJOR = {
    0: (0, ChordQuality.MAJOR),  # i -> I
    2: (2, ChordQuality.MINOR),  # ii° -> ii
    3: (4, ChordQuality.MINOR),  # III -> iii
    5: (5, ChordQuality.MAJOR),  # iv -> IV
    7: (7, ChordQuality.MAJOR),  # v -> V
    8: (9, ChordQuality.MINOR),  # VI -> vi
    10: (7, ChordQuality.DOMINANT7),  # VII (subtonic) -> V7: its tones b7-2-4 become 7-2-4
}


def _seventh(quality: ChordQuality, base: ChordQuality) -> ChordQuality:
    """Keep a written seventh on the new triad where one exists."""
    if quality in (ChordQuality.DOMINANT7, ChordQuality.MAJOR7, ChordQuality.MINOR7):
        if base is ChordQuality.MAJOR:
            return ChordQuality.DOMINANT7 if quality is ChordQuality.DOMINANT7 else ChordQuality.MAJOR7
        if base is ChordQuality.MINOR:
            return ChordQuality.MINOR7
    return base


def map_chord(chord: Chord, key: Key, mode_level: int, last_bar: bool = False) -> Chord:
    """One chord re-harmonized by function (see the module docstring).

    Args:
        chord: a chord of the theme.
        key: the theme's key.
        mode_level: :data:`MODE_AS_WRITTEN`, :data:`MODE_MIXTURE` or :data:`MODE_PARALLEL`.
        last_bar: the chord ends the theme (a minor theme's mixture gives its
            tonic a Picardy third there).

    Chords outside the table (secondary dominants, sus chords, V) keep their root
    and quality: the dominant stays major in minor (harmonic minor).
    """
    if mode_level == MODE_AS_WRITTEN:
        return chord
    degree = _degree(chord, key)
    if key.mode is Mode.MAJOR:
        if degree not in _MAJOR_TO_MINOR or (mode_level == MODE_MIXTURE and degree not in _MIXTURE_OF_MAJOR):
            return chord
        if chord.quality not in (ChordQuality.MAJOR, ChordQuality.MINOR, ChordQuality.DOMINANT7,
                                 ChordQuality.MAJOR7, ChordQuality.MINOR7):
            return chord
        new_degree, base = _MAJOR_TO_MINOR[degree]
    else:
        if mode_level == MODE_MIXTURE:
            if degree == 5 and chord.quality in (ChordQuality.MINOR, ChordQuality.MINOR7):
                new_degree, base = 5, ChordQuality.MAJOR  # Dorian IV
            elif degree == 0 and last_bar and chord.quality in (ChordQuality.MINOR, ChordQuality.MINOR7):
                new_degree, base = 0, ChordQuality.MAJOR  # Picardy third
            else:
                return chord
        elif degree in _MINOR_TO_MAJOR and chord.quality is not ChordQuality.SUS4:
            new_degree, base = _MINOR_TO_MAJOR[degree]
            if degree == 10:
                return Chord((key.tonic_pitch_class + new_degree) % 12, base)
        else:
            return chord
    return Chord((key.tonic_pitch_class + new_degree) % 12, _seventh(chord.quality, base))


def reharmonize(chords: tuple[BarChords, ...], key: Key, mode_level: int) -> tuple[BarChords, ...]:
    """Every bar's chords through :func:`map_chord`."""
    last = len(chords) - 1
    out = []
    for bar, (first, second) in enumerate(chords):
        out.append((map_chord(first, key, mode_level, bar == last and second is None),
                    None if second is None else map_chord(second, key, mode_level, bar == last)))
    return tuple(out)


def target_key(key: Key, mode_level: int) -> Key:
    """The key the variation is in, before transposition: the parallel key
    at :data:`MODE_PARALLEL`, else the theme's own."""
    if mode_level != MODE_PARALLEL:
        return key
    return Key(key.tonic_pitch_class, Mode.MINOR if key.mode is Mode.MAJOR else Mode.MAJOR)


def map_melody_mode(melody: Part, key: Key, chords_before: tuple[BarChords, ...], chords_after: tuple[BarChords, ...],
                    beats_per_bar: int, mode_level: int) -> Part:
    """The melody's scale degrees moved with the chords under them.

    Major theme: at :data:`MODE_PARALLEL` degrees 3 and 6 are lowered, and 7
    too except over a dominant chord (the leading tone stays); at
    :data:`MODE_MIXTURE` degree 6 is lowered (and 3 of the borrowed ii°/iv
    stays) only where a chord was borrowed. Minor theme: at parallel, ♭3, ♭6
    and ♭7 are raised; at mixture, ♭6 over a Dorian IV and ♭3 over a Picardy
    tonic. A note is changed only if its new pitch is a tone of the new chord
    or of the target scale, so chromatic notes of the theme stay.
    """
    if mode_level == MODE_AS_WRITTEN or not len(melody):
        return melody
    tonic = key.tonic_pitch_class
    pitches = melody.pitch.astype(np.int32).copy()
    bars = len(chords_before)
    for index, start in enumerate(melody.start_beats.tolist()):
        bar = min(int(start // beats_per_bar), bars - 1)
        half = 1 if start - bar * beats_per_bar >= beats_per_bar / 2 else 0
        before = chords_before[bar][half] if half and chords_before[bar][1] is not None else chords_before[bar][0]
        after = chords_after[bar][half] if half and chords_after[bar][1] is not None else chords_after[bar][0]
        degree = (int(pitches[index]) - tonic) % 12
        shift = 0
        if key.mode is Mode.MAJOR:
            if mode_level == MODE_PARALLEL:
                if degree in (4, 9) or (degree == 11 and not _is_dominant(after, key)):
                    shift = -1
            elif before != after and degree == 9:
                shift = -1
        else:
            if mode_level == MODE_PARALLEL:
                if degree in (3, 8) or degree == 10:
                    shift = 1
            elif before != after and degree in (8, 3):
                shift = 1
        allowed = after.pitch_classes()
        if mode_level == MODE_PARALLEL:
            allowed += target_key(key, MODE_PARALLEL).scale_pitch_classes()
        if shift and (int(pitches[index]) + shift) % 12 in allowed:
            pitches[index] += shift
    return replace(melody, pitch=pitches.astype(np.int16))


def transpose_to_key(melody: Part, chords: tuple[BarChords, ...], key: Key, tonic_pitch_class: int
                     ) -> tuple[Part, tuple[BarChords, ...], Key]:
    """Melody, chords and key moved to ``tonic_pitch_class`` by the smallest
    transposition (-5..+6 semitones), the mode kept."""
    new_key = Key(tonic_pitch_class % 12, key.mode)
    semitones = key.semitones_to(new_key)

    def move(chord: Chord) -> Chord:
        return Chord((chord.root_pitch_class + semitones) % 12, chord.quality)

    moved = tuple((move(a), None if b is None else move(b)) for a, b in chords)
    return melody.transposed(semitones), moved, new_key


# ----------------------------------------------------------------- rhythm

def metric_weight(beat_in_bar: float, beats_per_bar: int) -> float:
    """Metric strength of a position: 3 on the downbeat, 2 on the half bar
    (even meters), 1 on other beats, 0.5 on half beats, 0 elsewhere
    (after Lerdahl & Jackendoff's metrical grid)."""
    if abs(beat_in_bar) < 1e-9:
        return 3.0
    if beats_per_bar % 2 == 0 and abs(beat_in_bar - beats_per_bar / 2) < 1e-9:
        return 2.0
    if abs(beat_in_bar - round(beat_in_bar)) < 1e-9:
        return 1.0
    if abs(beat_in_bar * 2 - round(beat_in_bar * 2)) < 1e-9:
        return 0.5
    return 0.0


def structural_notes(melody: Part, chords: tuple[BarChords, ...], beats_per_bar: int) -> list[int]:
    """Indices of the melody's structural notes: in each half bar (each bar
    in odd meters), the note sounding there with the highest score = metric
    weight of its onset + its length in beats + 1.5 if it is a tone of the
    chord (+0.01 × earlier, for ties). A note held over from before counts
    for the window it sounds in. Returned in order, each note at most once.
    """
    if not len(melody):
        return []
    window = beats_per_bar / 2 if beats_per_bar % 2 == 0 else float(beats_per_bar)
    ends = melody.start_beats + melody.duration_beats
    total = len(chords) * beats_per_bar
    chosen: list[int] = []
    for index in range(int(round(total / window))):
        lo, hi = index * window, (index + 1) * window
        candidates = np.nonzero((melody.start_beats < hi - 1e-9) & (ends > lo + 1e-9))[0]
        if not len(candidates):
            continue
        best, best_score = -1, -np.inf
        for candidate in candidates.tolist():
            start = float(melody.start_beats[candidate])
            bar = min(int(start // beats_per_bar), len(chords) - 1)
            first, second = chords[bar]
            chord = second if second is not None and start - bar * beats_per_bar >= beats_per_bar / 2 else first
            score = (metric_weight(start - bar * beats_per_bar, beats_per_bar)
                     + float(melody.duration_beats[candidate])
                     + (1.5 if int(melody.pitch[candidate]) % 12 in chord.pitch_classes() else 0.0)
                     - 0.01 * (start - lo))
            if score > best_score:
                best, best_score = candidate, score
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


def reduce_to_structure(melody: Part, chords: tuple[BarChords, ...], beats_per_bar: int) -> Part:
    """The structural notes only (:func:`structural_notes`), each placed at
    the start of its window (or at its own onset, if later) and held until
    the next one: the calm variation's simplified line."""
    chosen = structural_notes(melody, chords, beats_per_bar)
    if not chosen:
        return melody
    window = beats_per_bar / 2 if beats_per_bar % 2 == 0 else float(beats_per_bar)
    starts = []
    for index in chosen:
        start = float(melody.start_beats[index])
        starts.append(max(np.floor(start / window + 1e-9) * window, 0.0))
    # A note chosen for two windows (held over) starts at the first.
    length = len(chords) * beats_per_bar
    notes = []
    for position, index in enumerate(chosen):
        end = starts[position + 1] if position + 1 < len(chosen) else length
        if end > starts[position]:
            notes.append((starts[position], end - starts[position], int(melody.pitch[index]),
                          int(melody.velocity[index])))
    return Part.from_notes(notes)


def _scale_for(key: Key, chord: Chord) -> list[int]:
    """Pitch classes of ``key``'s scale, with the leading tone raised over a
    dominant chord of a minor key (harmonic minor)."""
    scale = list(key.scale_pitch_classes())
    if key.mode is Mode.MINOR and _is_dominant(chord, key):
        scale = [(pc + 1) % 12 if (pc - key.tonic_pitch_class) % 12 == 10 else pc for pc in scale]
    return scale


def _steps_between(low: int, high: int, scale: list[int]) -> list[int]:
    """Scale pitches strictly between ``low`` and ``high`` (ascending)."""
    return [p for p in range(low + 1, high) if p % 12 in scale]


def add_passing_notes(melody: Part, chords: tuple[BarChords, ...], key: Key, beats_per_bar: int) -> Part:
    """Fill each leap of 3 to 9 semitones between consecutive notes with
    scale steps leading into the next note: a note of at least half a beat
    gives up to the second half of its length to at most three passing notes
    of a quarter beat (a half beat when it lasts two beats or more), those
    nearest the next note. Other notes are unchanged."""
    if len(melody) < 2:
        return melody
    theme = Theme("", melody, chords, key, beats_per_bar)
    notes = []
    for index in range(len(melody)):
        start, duration = float(melody.start_beats[index]), float(melody.duration_beats[index])
        pitch, velocity = int(melody.pitch[index]), int(melody.velocity[index])
        following = int(melody.pitch[index + 1]) if index + 1 < len(melody) else pitch
        if duration >= 0.5 - 1e-9 and 3 <= abs(following - pitch) <= 9:
            step = 0.5 if duration >= 2.0 - 1e-9 else 0.25
            scale = _scale_for(key, theme.chords_at_beat(start + duration - step))
            middle = _steps_between(min(pitch, following), max(pitch, following), scale)
            if following < pitch:
                middle = middle[::-1]
            count = min(len(middle), 3, int(round(duration / 2 / step)))
            if count:
                held = duration - count * step
                notes.append((start, held, pitch, velocity))
                for k, passing in enumerate(middle[-count:]):
                    notes.append((start + held + k * step, step, passing, max(1, velocity - 12)))
                continue
        notes.append((start, duration, pitch, velocity))
    return Part.from_notes(notes)


def diminish(melody: Part, chords: tuple[BarChords, ...], key: Key, beats_per_bar: int, seed: int,
             step_beats: float = 0.5) -> Part:
    """Divide every note of at least two steps into running notes of
    ``step_beats`` (the *diminutions* of variation practice): the note itself
    first, then a scale run towards the next note when it is a step away or
    more, or a neighbour-note figure (upper or lower, chosen by the seed)
    around it when the next note repeats it. Notes shorter than two steps
    are unchanged.

    Deterministic: the figure of note ``i`` depends on ``(seed, i)`` only.
    """
    if not len(melody):
        return melody
    theme = Theme("", melody, chords, key, beats_per_bar)
    notes = []
    for index in range(len(melody)):
        start, duration = float(melody.start_beats[index]), float(melody.duration_beats[index])
        pitch, velocity = int(melody.pitch[index]), int(melody.velocity[index])
        count = int(round(duration / step_beats + 1e-9))
        if count < 2 or abs(count * step_beats - duration) > 1e-6:
            notes.append((start, duration, pitch, velocity))
            continue
        following = int(melody.pitch[index + 1]) if index + 1 < len(melody) else pitch
        scale = _scale_for(key, theme.chords_at_beat(start))
        run = _steps_between(min(pitch, following), max(pitch, following), scale)
        if following < pitch:
            run = run[::-1]
        run = run[-(count - 1):] if count > 1 and run else []
        upper = [p for p in range(pitch + 1, pitch + 3) if p % 12 in scale]
        lower = [p for p in range(pitch - 2, pitch) if p % 12 in scale]
        if following > pitch:
            neighbour = lower[-1] if lower else pitch  # turn below, then rise
        elif following < pitch:
            neighbour = upper[0] if upper else pitch  # turn above, then fall
        else:
            rng = np.random.default_rng([seed & 0xFFFFFFFF, index, 7])
            neighbour = upper[0] if upper and (rng.random() < 0.5 or not lower) else (lower[-1] if lower else pitch)
        head = count - len(run)  # the note and its neighbour figure, then the run into the next note
        figure = [pitch if k % 2 == 0 else neighbour for k in range(head)] + run
        for k, figure_pitch in enumerate(figure[:count]):
            notes.append((start + k * step_beats, step_beats, int(figure_pitch),
                          velocity if k == 0 else max(1, velocity - 15)))
    return Part.from_notes(notes)


def map_meter(melody: Part, theme_beats_per_bar: int, cue_beats_per_bar: int, grid_beats: float = 0.25) -> Part:
    """The melody's bars laid into the cue's meter, bar for bar.

    Inside a bar, positions are mapped piecewise linearly so that beats keep
    their order and the downbeat stays: into a longer bar the first beat is
    stretched (3/4 → 4/4: beat 0 lasts two beats, beats 1, 2 land on 2, 3);
    into a shorter bar the first beats are pressed into one (4/4 → 3/4:
    beats 0-1 share beat 0, beats 2, 3 land on 1, 2). Onsets and ends are
    rounded to ``grid_beats``; a note keeps at least one grid step.
    """
    if theme_beats_per_bar == cue_beats_per_bar or not len(melody):
        return melody
    t, c = float(theme_beats_per_bar), float(cue_beats_per_bar)
    knee_theme, knee_cue = (1.0, c - t + 1.0) if c > t else (t - c + 1.0, 1.0)

    def position(beat: float) -> float:
        bar = np.floor(beat / t + 1e-9)
        inside = beat - bar * t
        if inside <= knee_theme:
            mapped = inside * knee_cue / knee_theme
        else:
            mapped = knee_cue + (inside - knee_theme) * (c - knee_cue) / (t - knee_theme)
        return float(np.round((bar * c + mapped) / grid_beats) * grid_beats)

    notes = []
    for start, duration, pitch, velocity in zip(melody.start_beats.tolist(), melody.duration_beats.tolist(),
                                                melody.pitch.tolist(), melody.velocity.tolist()):
        new_start, new_end = position(start), position(start + duration)
        notes.append((new_start, max(grid_beats, new_end - new_start), int(pitch), int(velocity)))
    return Part.from_notes(notes)


# ----------------------------------------------------------------- register, articulation, dynamics

REGISTER_LOW = 48
"""Lowest MIDI pitch a varied melody's notes may have (C3)."""
REGISTER_HIGH = 96
"""Highest (C7)."""


def place_register(melody: Part, octave: int) -> Part:
    """Shift by ``octave`` octaves, then by whole octaves back inside
    :data:`REGISTER_LOW` .. :data:`REGISTER_HIGH` where the line leaves it."""
    if not len(melody):
        return melody
    pitch = melody.pitch.astype(np.int32) + 12 * octave
    while pitch.max() > REGISTER_HIGH and pitch.min() - 12 >= REGISTER_LOW:
        pitch -= 12
    while pitch.min() < REGISTER_LOW and pitch.max() + 12 <= REGISTER_HIGH:
        pitch += 12
    return replace(melody, pitch=pitch.astype(np.int16))


def articulate(melody: Part, fraction: float) -> Part:
    """Each note sounds ``fraction`` (0.1..1) of the time to the next onset
    (of its own length for the last), at least 0.1 beat: 1 is legato, 0.6
    staccato-like (Eerola et al. 2013: articulation follows arousal)."""
    if not len(melody):
        return melody
    fraction = min(1.0, max(0.1, fraction))
    span = melody.duration_beats.copy()
    span[:-1] = np.maximum(np.diff(melody.start_beats), 1e-3)
    return replace(melody, duration_beats=np.maximum(span * fraction, np.minimum(0.1, span)))


def dynamics(melody: Part, beats_per_bar: int, arousal: float, intensity: float) -> Part:
    """Velocities: 40 + 30·(arousal+1)/2 + 35·intensity (Gabrielsson &
    Lindström 2010: loudness follows arousal), +10 on downbeats, +5 on other
    beats, -5 off the beat; clipped to 1..127. ``intensity`` is 0..1."""
    if not len(melody):
        return melody
    base = 40.0 + 30.0 * (min(1.0, max(-1.0, arousal)) + 1.0) / 2.0 + 35.0 * min(1.0, max(0.0, intensity))
    inside = melody.start_beats % beats_per_bar
    accent = np.where(np.abs(inside) < 1e-9, 10.0,
                      np.where(np.abs(inside - np.round(inside)) < 1e-9, 5.0, -5.0))
    velocity = np.clip(np.round(base + accent), 1, 127).astype(np.int16)
    return replace(melody, velocity=velocity)


# ----------------------------------------------------------------- the chain

@dataclass(frozen=True)
class Variation:
    """A theme varied for one emotion and cue.

    Attributes:
        melody: the varied melody in the cue's meter, beats from the theme's
            start, one theme bar per cue bar (augmentation is applied when
            it is played: :meth:`bar`).
        chords: the re-harmonized chords, one :data:`BarChords` per bar, in the cue's key.
        key: the key it is in (the cue's tonic, the variation's mode).
        beats_per_bar: the cue's meter numerator.
        levels: the choices made.
    """

    melody: Part
    chords: tuple[BarChords, ...]
    key: Key
    beats_per_bar: int
    levels: VariationLevels

    @property
    def bars(self) -> int:
        """Length in theme bars."""
        return len(self.chords)

    def span(self, start_beats: float, length_beats: float, stretch: float = 1.0) -> Part:
        """Notes starting in ``[start_beats, start_beats + length_beats)`` of
        the variation (wrapping at its end), re-timed from 0 and stretched by
        ``stretch`` (2: augmentation), notes cut at the span's end."""
        total = float(self.bars * self.beats_per_bar)
        pieces = []
        offset = 0.0
        position = start_beats % total
        remaining = length_beats
        while remaining > 1e-9:
            take = min(remaining, total - position)
            keep = (self.melody.start_beats >= position - 1e-9) & (self.melody.start_beats < position + take - 1e-9)
            start = (self.melody.start_beats[keep] - position + offset) * stretch
            duration = np.minimum(self.melody.duration_beats[keep] * stretch, length_beats * stretch - start)
            pieces.append((start, duration, self.melody.pitch[keep], self.melody.velocity[keep]))
            offset += take
            remaining -= take
            position = 0.0
        start = np.concatenate([p[0] for p in pieces])
        return Part(start, np.concatenate([p[1] for p in pieces]),
                    np.concatenate([p[2] for p in pieces]).astype(np.int16),
                    np.concatenate([p[3] for p in pieces]).astype(np.int16))

    def chords_at(self, beat: float) -> Chord:
        """The chord at ``beat`` of the variation (wrapping)."""
        return Theme("", self.melody, self.chords, self.key, self.beats_per_bar).chords_at_beat(beat)


def vary(theme: Theme, valence: float, arousal: float, intensity: float, tonic_pitch_class: int,
         beats_per_bar: int, seed: int) -> Variation:
    """The theme re-cast for an emotion and a cue (see the module docstring).

    Args:
        theme: the theme.
        valence, arousal: the emotion, each in [-1, 1].
        intensity: the scene's intensity, 0..1 (dynamics).
        tonic_pitch_class: the cue key's tonic (0..11); the mode follows valence.
        beats_per_bar: the cue's meter numerator.
        seed: the session seed (ornament choices).

    Returns:
        The :class:`Variation`; the same arguments give the same notes.
    """
    levels = levels_for(theme.key.mode, valence, arousal)
    chords = reharmonize(theme.chords, theme.key, levels.mode)
    melody = map_melody_mode(theme.melody, theme.key, theme.chords, chords, theme.beats_per_bar, levels.mode)
    key = target_key(theme.key, levels.mode)
    if levels.rhythm <= RHYTHM_REDUCED:
        melody = reduce_to_structure(melody, chords, theme.beats_per_bar)
    elif levels.rhythm == RHYTHM_PASSING:
        melody = add_passing_notes(melody, chords, key, theme.beats_per_bar)
    elif levels.rhythm == RHYTHM_DIMINISHED:
        melody = diminish(add_passing_notes(melody, chords, key, theme.beats_per_bar), chords, key,
                          theme.beats_per_bar, seed, step_beats=0.5 if arousal < 0.85 else 0.25)
    melody = map_meter(melody, theme.beats_per_bar, beats_per_bar)
    melody, chords, key = transpose_to_key(melody, chords, key, tonic_pitch_class)
    melody = place_register(melody, levels.octave)
    melody = articulate(melody, levels.articulation)
    melody = dynamics(melody, beats_per_bar, arousal, intensity)
    return Variation(melody, chords, key, beats_per_bar, levels)


# ----------------------------------------------------------------- theme parts, bar by bar

@dataclass(frozen=True)
class ThemeBarRequest(BarRequest):
    """A :class:`~adaptive.generator.BarRequest` for a theme part, with the
    scene's intensity (0..1), which shapes the theme's dynamics."""

    intensity: float = 0.5


def variation_key(theme: Theme, valence: float, arousal: float, tonic_pitch_class: int, beats_per_bar: int,
                  seed: int) -> tuple:
    """What :func:`vary`'s notes depend on apart from the dynamics: equal keys,
    equal notes (so a cache of variations by this key is exact)."""
    return (levels_for(theme.key.mode, valence, arousal), arousal >= 0.85, tonic_pitch_class % 12,
            beats_per_bar, seed)


class _ThemePosition:
    """Where a theme part is in its theme, bar after bar: a part's requests
    come in bar order from bar 0 (a restart asks for bar 0 again), so the
    position is a function of the requests made so far (the generation
    contract: an instance's output depends only on its sequence of requests).
    Each cue bar plays one theme bar, or half of one when augmented."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.position_beats = 0.0
        self._cache: dict[tuple, Variation] = {}

    def next_bar(self, request: BarRequest) -> tuple[Variation, float, float, float]:
        """The variation for this request's emotion and cue, the span of it
        this bar plays (start and length in the variation's beats) and the
        stretch (1, or 2 when augmented)."""
        if request.bar_index == 0:
            self.position_beats = 0.0
        key = variation_key(self.theme, request.valence, request.arousal, request.key.tonic_pitch_class,
                            request.beats_per_bar, request.seed)
        variation = self._cache.get(key)
        if variation is None:
            variation = self._cache[key] = vary(self.theme, request.valence, request.arousal, 0.5,
                                                request.key.tonic_pitch_class, request.beats_per_bar, request.seed)
        stretch = float(variation.levels.time_scale)
        length = request.beats_per_bar / stretch
        total = float(variation.bars * variation.beats_per_bar)
        start = self.position_beats % total
        self.position_beats = (start + length) % total
        return variation, start, length, stretch


class ThemeMelodyGenerator:
    """A :class:`~adaptive.generator.PartGenerator` that plays a theme's
    varied melody, bar by bar: each bar is the next span of :func:`vary`'s
    variation for the request's emotion and cue key and meter, with the
    dynamics of the request's intensity (a :class:`ThemeBarRequest`).

    Args:
        theme: the theme.
    """

    name = "theme"

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self._position = _ThemePosition(theme)

    def generate_bar(self, request: BarRequest) -> Part:
        """See :class:`~adaptive.generator.PartGenerator`."""
        variation, start, length, stretch = self._position.next_bar(request)
        bar = variation.span(start, length, stretch)
        return dynamics(bar, request.beats_per_bar, request.arousal, getattr(request, "intensity", 0.5))


class ThemeAccompanimentGenerator:
    """A :class:`~adaptive.generator.PartGenerator` that writes an
    accompaniment under a theme's re-harmonized chords: each bar asks
    ``inner`` (the session's part generator, e.g. the model) for the request's
    role in the variation's key, on the chords the theme's melody has at the
    same place (it follows the same position as :class:`ThemeMelodyGenerator`
    given the same requests).

    Args:
        theme: the theme.
        inner: the part generator that writes the notes.
    """

    def __init__(self, theme: Theme, inner: PartGenerator) -> None:
        self.theme = theme
        self.inner = inner
        self.name = f"theme+{getattr(inner, 'name', 'generator')}"
        self._position = _ThemePosition(theme)

    def generate_bar(self, request: BarRequest) -> Part:
        """See :class:`~adaptive.generator.PartGenerator`."""
        variation, start, length, _ = self._position.next_bar(request)
        chord = variation.chords_at(start)
        second = variation.chords_at(start + length / 2)
        plain = BarRequest(**{field.name: getattr(request, field.name) for field in fields(BarRequest)})
        return self.inner.generate_bar(replace(plain, key=variation.key, chord=chord,
                                               second_chord=None if second == chord else second))


# ----------------------------------------------------------------- a bridge's quote

def fit_to_chords(melody: Part, bar_harmony: list[tuple[Chord, Key]], beats_per_bar: int) -> Part:
    """A line fitted to other chords, its rhythm and contour kept: a note on
    a beat that is not a tone of its bar's chord moves to the nearest chord
    tone, a note off the beat that is not in its bar's key (harmonic minor
    over a dominant) moves to the nearest scale tone (ties: downwards).

    Args:
        melody: beats from the first bar's downbeat.
        bar_harmony: ``(chord, key)`` of each bar; notes past the last bar keep the last.
        beats_per_bar: the meter's numerator.
    """
    pitches = melody.pitch.astype(np.int32).copy()
    for index, start in enumerate(melody.start_beats.tolist()):
        bar = min(int(start // beats_per_bar), len(bar_harmony) - 1)
        chord, key = bar_harmony[bar]
        on_beat = abs(start - round(start)) < 1e-9
        allowed = set(chord.pitch_classes()) if on_beat else set(_scale_for(key, chord)) | set(chord.pitch_classes())
        pitch = int(pitches[index])
        if pitch % 12 in allowed:
            continue
        for distance in (1, 2, 3, 4, 5, 6):
            if (pitch - distance) % 12 in allowed:
                pitches[index] = pitch - distance
                break
            if (pitch + distance) % 12 in allowed:
                pitches[index] = pitch + distance
                break
    return replace(melody, pitch=pitches.astype(np.int16))


def bridge_quote(theme: Theme, valence: float, arousal: float, tonic_pitch_class: int, beats_per_bar: int,
                 seed: int, bar_harmony: list[tuple[Chord, Key]]) -> Part:
    """What a generated bridge quotes of the incoming cue's theme: its head
    (the first ``theme.head_bars`` bars of :func:`vary` at the incoming cue's
    emotion and key, in the bridge's meter), placed to end with the bridge
    and fitted to the bridge's chords (:func:`fit_to_chords`), so the theme is
    announced before its cue arrives.

    Args:
        theme: the incoming cue's theme.
        valence, arousal: the incoming cue's point.
        tonic_pitch_class: the incoming key's tonic.
        beats_per_bar: the bridge's meter numerator.
        seed: the session seed.
        bar_harmony: the bridge's ``(chord, key)`` per bar.

    Returns:
        Notes in beats from the bridge's first downbeat, inside its bars.
    """
    variation = vary(theme, valence, arousal, 0.5, tonic_pitch_class, beats_per_bar, seed)
    bars = len(bar_harmony)
    quoted_bars = min(bars, theme.head_bars)
    stretch = float(variation.levels.time_scale)
    head = variation.span(0.0, quoted_bars * beats_per_bar / stretch, stretch)
    offset = (bars - quoted_bars) * beats_per_bar
    placed = Part(head.start_beats + offset, head.duration_beats, head.pitch, head.velocity)
    return fit_to_chords(placed, bar_harmony, beats_per_bar)
