"""Music analysis for the generator's evaluation, sharing no code with the
generator: notes of a piece (generated bars or a real MIDI file), key finding
with music21, note-level features, and the histogram comparisons of Yang &
Lerch (2020).

Times are kept in beats and in seconds; pitches are MIDI note numbers (middle
C = 60); pitch classes are 0..11 with C = 0.

music21 is imported lazily (only :func:`detect_key` needs it), with its corpus
downloads denied in memory; importing it and finding keys reaches no network
and writes no file (checked by ``tests/models/test_evaluate.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from adaptive.part import Part

KEY_ALGORITHMS = ("KrumhanslSchmuckler", "AardenEssen", "TemperleyKostkaPayne", "BellmanBudge")
"""Key-finding algorithms of ``music21.analysis.discrete`` the evaluation can
use. ``KrumhanslSchmuckler`` is the headline one (Krumhansl & Kessler's 1982
probe-tone profiles correlated with the duration-weighted pitch-class
distribution: Krumhansl, C. L. (1990), *Cognitive Foundations of Musical
Pitch*, ch. 4); ``AardenEssen`` is music21's default for ``analyze('key')``."""

DURATION_BIN_EDGES_BEATS = np.array([0.0, 0.1875, 0.2917, 0.4167, 0.5833, 0.875, 1.25, 1.75, 2.5, 3.5, 6.0, np.inf])
"""Bin edges of the note-duration and inter-onset-interval histograms, in
beats: one bin around each of 1/8 (32nd), 1/4 (16th), 1/3 (8th triplet), 1/2
(8th), 3/4 (dotted 8th), 1 (quarter), 1.5 (dotted quarter), 2 (half), 3
(dotted half), 4 (whole) and one for longer values, edges halfway between
neighbours. After the note-length classes of Yang & Lerch (2020), table 1."""

_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first (Krumhansl 1990, table 2.1).


@dataclass(frozen=True)
class Notes:
    """The notes of one piece, sorted by start.

    Attributes (arrays of length ``n_notes`` unless said):
        start_beats, duration_beats: float64, beats from the piece's start.
        start_seconds, duration_seconds: float64, the same in seconds.
        pitch: int16 MIDI note numbers 0..127.
        velocity: int16 MIDI velocities 1..127.
        length_beats, length_seconds: the piece's length (floats, > 0).
    """

    start_beats: np.ndarray
    duration_beats: np.ndarray
    start_seconds: np.ndarray
    duration_seconds: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    length_beats: float
    length_seconds: float

    def __len__(self) -> int:
        return len(self.pitch)

    @classmethod
    def from_bars(cls, bars: Sequence[Part], beats_per_bar: int, bpm: float) -> "Notes":
        """Notes of consecutive bars (bar ``i`` starts at beat ``i * beats_per_bar``)
        at a constant tempo ``bpm``; the piece is ``len(bars)`` bars long."""
        parts = [(bar, i * beats_per_bar) for i, bar in enumerate(bars)]
        return cls.from_parts(parts, len(bars) * beats_per_bar, bpm)

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[Part, float]], length_beats: float, bpm: float) -> "Notes":
        """Notes of parts placed at offsets (``(part, offset_beats)`` pairs) at a
        constant tempo ``bpm``, in a piece ``length_beats`` long."""
        if not parts:
            start = duration = np.zeros(0)
            pitch = velocity = np.zeros(0, np.int16)
        else:
            start = np.concatenate([p.start_beats + offset for p, offset in parts])
            duration = np.concatenate([p.duration_beats for p, _ in parts])
            pitch = np.concatenate([p.pitch for p, _ in parts]).astype(np.int16)
            velocity = np.concatenate([p.velocity for p, _ in parts]).astype(np.int16)
        order = np.lexsort((pitch, start))
        seconds_per_beat = 60.0 / bpm
        return cls(start[order], duration[order], start[order] * seconds_per_beat,
                   duration[order] * seconds_per_beat, pitch[order], velocity[order],
                   float(length_beats), float(length_beats) * seconds_per_beat)


def read_midi_notes(path: Path, skip_channel_10: bool = True) -> Notes:
    """Every note of a Standard MIDI File (all tracks), with beats from the
    file's ticks per beat and seconds from its tempo map (``set_tempo`` events
    of any track; 120 bpm until the first).

    Note-on with velocity 0 is a note-off; a note never released ends at its
    track's last event. The piece's length is the end of the last note.

    Args:
        skip_channel_10: leave out MIDI channel 10 (General MIDI percussion).

    Raises:
        ValueError: the file is missing, not a valid Standard MIDI File, uses an
            SMPTE time division, or holds no notes.
    """
    import mido

    try:
        midi = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise ValueError(f"{path}: MIDI file not found") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        raise ValueError(f"{path}: not a valid Standard MIDI File ({error or type(error).__name__})") from None
    if midi.ticks_per_beat <= 0:
        raise ValueError(f"{path}: SMPTE time division is not supported (allowed: ticks per quarter note)")
    tempo_changes: list[tuple[int, int]] = []  # (tick, microseconds per beat)
    notes: list[tuple[int, int, int, int]] = []  # (start tick, end tick, pitch, velocity)
    for track in midi.tracks:
        tick = 0
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for message in track:
            tick += message.time
            if message.type == "set_tempo":
                tempo_changes.append((tick, message.tempo))
            elif message.type in ("note_on", "note_off"):
                if skip_channel_10 and message.channel == 9:
                    continue
                if message.type == "note_on" and message.velocity > 0:
                    open_notes.setdefault((message.channel, message.note), []).append((tick, message.velocity))
                else:
                    started = open_notes.get((message.channel, message.note))
                    if started:
                        start_tick, velocity = started.pop(0)
                        if tick > start_tick:
                            notes.append((start_tick, tick, message.note, velocity))
        for (_, pitch), starts in open_notes.items():
            notes.extend((start_tick, tick, pitch, velocity) for start_tick, velocity in starts if tick > start_tick)
    if not notes:
        raise ValueError(f"{path}: the file holds no notes")
    notes.sort()
    array = np.asarray(notes, np.float64)
    ticks_per_beat = float(midi.ticks_per_beat)
    start_beats = array[:, 0] / ticks_per_beat
    end_beats = array[:, 1] / ticks_per_beat
    # Tempo map: seconds at each change, then linear between changes.
    tempo_changes.sort()
    change_beats = [0.0]
    seconds_per_beat = [0.5]
    for tick, tempo in tempo_changes:
        beat = tick / ticks_per_beat
        if beat == change_beats[-1]:
            seconds_per_beat[-1] = tempo / 1e6
        else:
            change_beats.append(beat)
            seconds_per_beat.append(tempo / 1e6)
    change_beats_array = np.asarray(change_beats)
    change_seconds = np.concatenate([[0.0], np.cumsum(np.diff(change_beats_array) * seconds_per_beat[:-1])])

    def to_seconds(beats: np.ndarray) -> np.ndarray:
        index = np.searchsorted(change_beats_array, beats, side="right") - 1
        return change_seconds[index] + (beats - change_beats_array[index]) * np.asarray(seconds_per_beat)[index]

    start_seconds = to_seconds(start_beats)
    end_seconds = to_seconds(end_beats)
    return Notes(start_beats, end_beats - start_beats, start_seconds, end_seconds - start_seconds,
                 array[:, 2].astype(np.int16), array[:, 3].astype(np.int16),
                 float(end_beats.max()), float(end_seconds.max()))


# ---------------------------------------------------------------- key finding


@dataclass(frozen=True)
class DetectedKey:
    """A key found by analysis: tonic pitch class 0..11, mode ``"major"`` or
    ``"minor"``, and the algorithm's correlation coefficient (-1..1)."""

    tonic_pitch_class: int
    mode: str
    correlation: float


def _music21():
    """Import music21 and forbid its corpus downloads for this process (an
    in-memory setting: nothing is written to ~/.music21rc). Key analysis
    reads and writes no file."""
    import music21
    from music21 import environment

    environment.Environment()["autoDownload"] = "deny"
    return music21


def detect_key(notes: Notes, algorithm: str = "KrumhanslSchmuckler") -> DetectedKey:
    """The key of ``notes`` found by music21's ``analysis.discrete.<algorithm>``
    on a stream of the notes (each note's pitch and its duration in quarter
    lengths = beats; the algorithms weight pitch classes by duration).

    Args:
        algorithm: one of :data:`KEY_ALGORITHMS`.

    Raises:
        ValueError: an unknown algorithm, or no notes.
    """
    if algorithm not in KEY_ALGORITHMS:
        raise ValueError(f"unknown key-finding algorithm {algorithm!r} (allowed: {', '.join(KEY_ALGORITHMS)})")
    if len(notes) == 0:
        raise ValueError("cannot find the key of a piece without notes")
    _music21()
    from music21 import analysis, note, stream

    piece = stream.Stream()
    for start, duration, pitch in zip(notes.start_beats, notes.duration_beats, notes.pitch):
        element = note.Note(int(pitch))
        element.quarterLength = max(1 / 64, round(float(duration) * 64) / 64)
        piece.coreInsert(round(float(start) * 64) / 64, element)
    piece.coreElementsChanged()
    key = getattr(analysis.discrete, algorithm)().getSolution(piece)
    return DetectedKey(key.tonic.pitchClass, key.mode, float(key.correlationCoefficient))


def mode_strength(notes: Notes) -> tuple[float, float]:
    """``(mode_strength, key_clarity)`` of the duration-weighted pitch-class
    distribution: key_clarity is the highest Pearson correlation with any of
    the 24 Krumhansl & Kessler (1982) key profiles, mode_strength the best
    major correlation minus the best minor one (> 0 leans major). A plain
    numpy feature for the emotion classifier (the headline mode measure is
    :func:`detect_key`). Both 0 for a piece without notes."""
    histogram = pitch_class_histogram(notes, weight="duration")
    if histogram.sum() == 0 or np.ptp(histogram) == 0:
        return 0.0, 0.0
    major = max(np.corrcoef(histogram, np.roll(_KK_MAJOR, tonic))[0, 1] for tonic in range(12))
    minor = max(np.corrcoef(histogram, np.roll(_KK_MINOR, tonic))[0, 1] for tonic in range(12))
    return float(major - minor), float(max(major, minor))


# ---------------------------------------------------------------- features


def pitch_class_histogram(notes: Notes, tonic_pitch_class: int = 0, weight: str = "count") -> np.ndarray:
    """Pitch-class histogram, shape ``(12,)``, index 0 = ``tonic_pitch_class``
    (so pieces in different keys compare tonic to tonic); weighted by note
    ``"count"`` or by ``"duration"`` in beats. Not normalized."""
    weights = np.ones(len(notes)) if weight == "count" else notes.duration_beats
    return np.bincount((notes.pitch.astype(np.int64) - tonic_pitch_class) % 12, weights, minlength=12).astype(float)


def inter_onset_intervals_beats(notes: Notes) -> np.ndarray:
    """Intervals between consecutive distinct onsets (notes starting within
    1/96 beat of each other are one onset), in beats."""
    onsets = np.unique(np.round(notes.start_beats * 96) / 96)
    return np.diff(onsets)


def duration_histogram(notes: Notes) -> np.ndarray:
    """Note-duration histogram over :data:`DURATION_BIN_EDGES_BEATS`, shape (11,)."""
    return np.histogram(notes.duration_beats, DURATION_BIN_EDGES_BEATS)[0].astype(float)


def ioi_histogram(notes: Notes) -> np.ndarray:
    """Inter-onset-interval histogram over :data:`DURATION_BIN_EDGES_BEATS`, shape (11,)."""
    return np.histogram(inter_onset_intervals_beats(notes), DURATION_BIN_EDGES_BEATS)[0].astype(float)


def note_density_per_beat(notes: Notes) -> float:
    """Notes per beat: every note counts (the notes of a chord count one by one)."""
    return len(notes) / notes.length_beats


def mean_velocity(notes: Notes) -> float:
    """Mean MIDI velocity (1..127) of the notes; NaN without notes."""
    return float(notes.velocity.mean()) if len(notes) else float("nan")


# ---------------------------------------------------------------- comparisons


def histogram_overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Overlapping area of two histograms over the same bins after each is
    normalized to sum 1: ``sum(min(p, q))``, 1 for identical shapes, 0 for
    disjoint supports.

    Raises:
        ValueError: shapes differ, a negative count, or an empty histogram.
    """
    first, second = np.asarray(first, float), np.asarray(second, float)
    if first.shape != second.shape:
        raise ValueError(f"histograms have different bins: shapes {first.shape} and {second.shape}")
    if (first < 0).any() or (second < 0).any():
        raise ValueError("histogram counts must be >= 0")
    if first.sum() <= 0 or second.sum() <= 0:
        raise ValueError("cannot compare an empty histogram (all counts 0)")
    return float(np.minimum(first / first.sum(), second / second.sum()).sum())


def _density(samples: np.ndarray, grid: np.ndarray, floor_bandwidth: float) -> np.ndarray:
    """Gaussian kernel density of 1-D ``samples`` on ``grid``, bandwidth by
    Scott's rule (as ``scipy.stats.gaussian_kde``), at least ``floor_bandwidth``
    (a set of identical distances would otherwise have bandwidth 0)."""
    bandwidth = max(float(samples.std(ddof=1)) * len(samples) ** (-1 / 5) if len(samples) > 1 else 0.0,
                    floor_bandwidth)
    z = (grid[:, None] - samples[None, :]) / bandwidth  # (n_grid, n_samples)
    return np.exp(-0.5 * z * z).sum(axis=1) / (len(samples) * bandwidth * np.sqrt(2 * np.pi))


def overlap_area_yang_lerch(generated: np.ndarray, real: np.ndarray, grid_points: int = 1000) -> float:
    """Overlapping area (OA) of Yang & Lerch (2020), *On the evaluation of
    generative models in music*, Neural Computing and Applications 32, §4.

    Each row of ``generated`` (n_g, d) and ``real`` (n_r, d) is one piece's
    feature vector (e.g. its normalized pitch-class histogram). The intra-set
    distances of the real set (Euclidean, every pair) and the inter-set
    distances (every generated piece to every real piece) each get a Gaussian
    kernel density estimate; OA is the area under the smaller of the two
    densities, in 0..1 (1: a generated piece is as far from real pieces as real
    pieces are from one another).

    Raises:
        ValueError: fewer than 2 real or 1 generated pieces, or feature sizes differ.
    """
    generated, real = np.asarray(generated, float), np.asarray(real, float)
    if len(real) < 2 or len(generated) < 1:
        raise ValueError(f"need >= 2 real and >= 1 generated pieces (got {len(real)} and {len(generated)})")
    if generated.shape[1] != real.shape[1]:
        raise ValueError(f"feature sizes differ: {generated.shape[1]} and {real.shape[1]}")
    upper = np.triu_indices(len(real), 1)
    intra = np.linalg.norm(real[:, None, :] - real[None, :, :], axis=-1)[upper]
    inter = np.linalg.norm(generated[:, None, :] - real[None, :, :], axis=-1).ravel()
    top = max(intra.max(), inter.max())
    floor = max(top, 1e-6) * 1e-3
    grid = np.linspace(0.0 - 4 * floor, top * 1.25 + 4 * floor, grid_points)
    overlap = np.minimum(_density(intra, grid, floor), _density(inter, grid, floor))
    return float(np.clip(np.trapezoid(overlap, grid), 0.0, 1.0))


def normalized(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Stack histograms into ``(n, bins)`` with each row scaled to sum 1 (an
    all-zero row stays zero)."""
    array = np.asarray(rows, float)
    sums = array.sum(axis=1, keepdims=True)
    return np.divide(array, sums, out=np.zeros_like(array), where=sums > 0)
