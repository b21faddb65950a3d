"""Training data: POP909 and VGMIDI turned into per-bar token streams with
conditioning attributes derived from the data itself.

Where each attribute comes from:

* **Streams (roles).** POP909: ``melody`` = the ``MELODY`` track, ``arpeggio`` =
  the ``PIANO`` (accompaniment) track, ``bass`` = the lowest ``PIANO`` note of
  each onset when below MIDI 60. VGMIDI (one piano track): ``arpeggio`` = all
  notes, ``melody`` = the highest note of each onset when at or above MIDI 55
  ("skyline"), ``bass`` = the lowest note of each onset when below MIDI 60.
* **Bars.** MidiTok REMI bars, 4/4 from tick 0 (both datasets are written in 4/4).
* **Key.** POP909: ``key_audio.txt``, the key segment containing the bar's
  downbeat (the nearest segment if none does). VGMIDI: one key per phrase, by
  the Krumhansl-Schmuckler algorithm — the correlation of the phrase's
  duration-weighted pitch-class histogram with the Krumhansl & Kessler (1982)
  major and minor profiles rotated to all 12 tonics.
* **Chord (one per bar).** POP909: ``chord_midi.txt``, the chord covering most
  of the bar (``N`` → ``Chord_none``; qualities reduced to
  :class:`adaptive.harmony.ChordQuality`, see :func:`pop909_chord`). VGMIDI:
  chord templates — the cosine similarity of the half bar's duration-weighted
  pitch-class histogram of its accompaniment (every note but the skyline
  melody, :func:`skyline_accompaniment`) with each of the 12 x 9 chord
  templates (binary chord-tone vectors); the best wins, a half bar with fewer
  than 2 pitch classes keeps the previous chord. The melody's own notes are
  left out so that a chord token never tells the model which notes its melody
  holds (models/MODEL_CARD.md, "Chord tokens and the melody").
* **Valence, arousal.** VGMIDI: the phrase's label in ``vgmidi_labelled.csv``
  (+1 → positive/high, -1 → negative/low). POP909 is unlabelled: ``unknown``.
* **Tempo.** POP909: the first tempo of the MIDI file. VGMIDI phrases all
  carry the default 120 bpm, which says nothing: ``Tempo_unknown``.
* **Density, mean velocity.** From the bar's own REMI tokens: notes per beat
  (binned), and the MidiTok velocity level nearest the mean velocity.

Seconds ↔ ticks use the MIDI file's tempo map (POP909 annotations are in
seconds of the MIDI file).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adaptive.harmony import Chord, ChordQuality, Key, Mode, diatonic_triad, parse_pitch_class
from models.paths import REPO_ROOT, default_cache_dir, default_data_dir  # noqa: F401 (re-exported)
from models.tokenizer import (HEADER_LENGTH, METERS, REMI_SETTINGS, Vocabulary, bar_header, density_bin, encode_bar,
                              velocity_level)

DATA_FORMAT_VERSION = 3
"""3: chords from the accompaniment only (folk tunes ``Chord_none``, chorales
from the three lower voices, VGMIDI without its skyline melody)."""
MIDI_FORMAT_VERSION = 4
"""Version of the POP909/VGMIDI streams: 3 aligns POP909 to its annotated
beats, reads VGMIDI's meter from its time signature, leaves out VGMIDI files
not written to their grid and labels pieces by their phrase; 4 estimates VGMIDI's
chords without its skyline melody."""


# Krumhansl & Kessler (1982) key profiles, tonic first (as in Krumhansl 1990, Table 2.1).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(histogram: np.ndarray) -> Key:
    """Krumhansl-Schmuckler key of a 12-bin pitch-class histogram (C = 0)."""
    best, best_r = Key(0, Mode.MAJOR), -2.0
    for mode, profile in ((Mode.MAJOR, KK_MAJOR), (Mode.MINOR, KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
            if r > best_r:
                best, best_r = Key(tonic, mode), r
    return best


_TEMPLATES = [(Chord(root, q), np.isin(np.arange(12), [(root + i) % 12 for i in q.value]).astype(float))
              for q in ChordQuality for root in range(12)]


def estimate_chord(histogram: np.ndarray) -> Chord | None:
    """Best chord template (cosine similarity) for a 12-bin pitch-class histogram."""
    norm = np.linalg.norm(histogram)
    if norm == 0:
        return None
    scores = [t @ histogram / (np.linalg.norm(t) * norm) for _, t in _TEMPLATES]
    return _TEMPLATES[int(np.argmax(scores))][0]


def pop909_chord(label: str) -> Chord | None:
    """POP909 (Harte-style) chord label → Chord: ``"A:min7/b7"`` → A MINOR7.

    Reduction: maj/maj6 → MAJOR, min/min6/minmaj7 → MINOR, dim/dim7/hdim7 →
    DIMINISHED, aug → AUGMENTED, sus4/sus4(b7) → SUS4, sus2 → SUS2, 7 (and
    9/11/13) → DOMINANT7, maj7 → MAJOR7, min7 → MINOR7; bass after ``/`` ignored;
    ``N`` → None."""
    if label.strip() in ("N", "X", ""):
        return None
    root, _, quality = label.strip().partition(":")
    quality = quality.split("/")[0]
    table = {"maj7": ChordQuality.MAJOR7, "min7": ChordQuality.MINOR7, "minmaj7": ChordQuality.MINOR,
             "7": ChordQuality.DOMINANT7, "9": ChordQuality.DOMINANT7, "11": ChordQuality.DOMINANT7,
             "13": ChordQuality.DOMINANT7, "dim": ChordQuality.DIMINISHED, "dim7": ChordQuality.DIMINISHED,
             "hdim7": ChordQuality.DIMINISHED, "aug": ChordQuality.AUGMENTED, "sus2": ChordQuality.SUS2,
             "min": ChordQuality.MINOR, "min6": ChordQuality.MINOR, "maj": ChordQuality.MAJOR,
             "maj6": ChordQuality.MAJOR}
    if quality.startswith("sus4"):
        q = ChordQuality.SUS4
    else:
        q = table.get(quality, ChordQuality.MAJOR)
    return Chord(parse_pitch_class(root), q)


def _read_segments(path: Path) -> list[tuple[float, float, str]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) >= 3:
            rows.append((float(parts[0]), float(parts[1]), parts[2].strip()))
    return rows


@dataclass
class Stream:
    """One role of one piece, tokenized bar by bar.

    Attributes:
        source: ``"pop909"``, ``"vgmidi"``, ``"vgmidi_piece"`` or a
            :data:`models.folk_corpus.SOURCES` name; file: path relative to the
            data directory (or to music21's corpus, with ``#<tune>``).
        role: ``"melody"``, ``"arpeggio"`` or ``"bass"``.
        bars: per bar, the token ids of its notes (int16 array; no ``Bar``, no header).
        headers: per bar, the header token ids (``Bar`` first), shape
            (n_bars, :data:`HEADER_LENGTH`) int16.
    """

    source: str
    file: str
    role: str
    bars: list[np.ndarray] = field(default_factory=list)
    headers: np.ndarray | None = None


def _seconds_at_ticks(score, ticks: np.ndarray) -> np.ndarray:
    """Seconds of the given ticks under ``score``'s tempo map."""
    tempos = sorted((t.time, t.qpm) for t in score.tempos) or [(0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, 120.0))
    tpq = score.ticks_per_quarter
    starts = np.array([t for t, _ in tempos], float)
    spt = np.array([60.0 / q / tpq for _, q in tempos])  # seconds per tick in each segment
    seg_seconds = np.concatenate([[0.0], np.cumsum(np.diff(starts) * spt[:-1])])
    idx = np.searchsorted(starts, ticks, side="right") - 1
    return seg_seconds[idx] + (ticks - starts[idx]) * spt[idx]


def _segment_at(segments, t: float):
    for s, e, value in segments:
        if s <= t < e:
            return value
    if not segments:
        return None
    return min(segments, key=lambda seg: min(abs(seg[0] - t), abs(seg[1] - t)))[2]


def _longest_overlap(segments, t0: float, t1: float):
    best, best_overlap = None, 0.0
    for s, e, value in segments:
        overlap = min(e, t1) - max(s, t0)
        if overlap > best_overlap:
            best, best_overlap = value, overlap
    return best


NOTE_FIELDS = 4
"""Columns of a note array: onset (quarter notes), duration (quarter notes), MIDI pitch, velocity."""


def _onset_extreme(notes: np.ndarray, highest: bool) -> np.ndarray:
    """Rows of the highest (or lowest) note at each distinct onset, as a note array."""
    if len(notes) == 0:
        return notes
    order = np.lexsort((-notes[:, 2] if highest else notes[:, 2], notes[:, 0]))
    onsets = notes[order, 0]
    first = np.ones(len(order), bool)
    first[1:] = onsets[1:] != onsets[:-1]
    return notes[np.sort(order[first])]


def skyline_accompaniment(notes: np.ndarray) -> np.ndarray:
    """The notes of a piano texture that are not its skyline melody (see
    :func:`skyline_roles`): every note but the highest of each onset when that
    one is at or above MIDI 55. Chords are estimated from these, so that a
    melody's chord token says what the accompaniment plays, not which notes the
    melody itself holds."""
    if len(notes) == 0:
        return notes
    order = np.lexsort((-notes[:, 2], notes[:, 0]))
    onsets = notes[order, 0]
    first = np.ones(len(order), bool)
    first[1:] = onsets[1:] != onsets[:-1]
    melody_rows = order[first & (notes[order, 2] >= 55)]
    keep = np.ones(len(notes), bool)
    keep[melody_rows] = False
    return notes[keep]


def skyline_roles(notes: np.ndarray) -> dict[str, np.ndarray]:
    """Roles of a piano texture: ``melody`` = the highest note of each onset
    when at or above MIDI 55 ("skyline"), ``arpeggio`` = every note, ``bass`` =
    the lowest note of each onset when below MIDI 60."""
    high = _onset_extreme(notes, highest=True)
    low = _onset_extreme(notes, highest=False)
    return {"melody": high[high[:, 2] >= 55], "arpeggio": notes, "bass": low[low[:, 2] < 60]}


def meter_of(numerator: int, denominator: int) -> tuple[str, float] | None:
    """Meter token value and bar length in quarter notes for a time signature
    (None when the model has no such meter): 2/4, 3/4, 4/4, 6/8, 3/8 as they
    are; 2/2 → 4/4; 4/2, 6/4, 12/8 → bars of half the length (4/4, 3/4, 6/8)."""
    table = {(2, 4): ("2_4", 2.0), (3, 4): ("3_4", 3.0), (4, 4): ("4_4", 4.0), (6, 8): ("6_8", 3.0),
             (3, 8): ("3_8", 1.5), (2, 2): ("4_4", 4.0), (4, 2): ("4_4", 4.0), (6, 4): ("3_4", 3.0),
             (12, 8): ("6_8", 3.0)}
    return table.get((numerator, denominator))


def _duration_histogram(notes: np.ndarray) -> np.ndarray:
    hist = np.zeros(12)
    np.add.at(hist, notes[:, 2].astype(int) % 12, notes[:, 1])
    return hist


def _diatonic_templates(key: Key) -> list[tuple[Chord, np.ndarray]]:
    """The key's diatonic triads (in minor, V is major: the harmonic minor's
    dominant), each with its binary pitch-class template."""
    chords = [diatonic_triad(key, d) for d in range(7) if diatonic_triad(key, d).quality is not ChordQuality.DIMINISHED]
    if key.mode is Mode.MINOR:
        chords = [Chord(c.root_pitch_class, ChordQuality.MAJOR) if c.root_pitch_class == (key.tonic_pitch_class + 7) % 12
                  else c for c in chords]
    return [(c, np.isin(np.arange(12), c.pitch_classes()).astype(float)) for c in chords]


def estimate_span_chords(notes: np.ndarray, spans: np.ndarray, key: Key, melody_only: bool) -> list[Chord | None]:
    """A chord for each span (rows of ``spans``: start, end in quarter notes),
    by template matching on the pitch classes of the notes starting in it
    (weighted by duration, a note on the span's first 16th counted 1.5 times).

    Melody-only sources choose among the key's diatonic triads (one voice
    cannot tell a chord's quality apart well); textures among all 12 x 9
    chords (:func:`estimate_chord`). An empty span keeps the previous chord.
    """
    templates = _diatonic_templates(key) if melody_only else _TEMPLATES
    matrix = np.stack([t for _, t in templates])
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    span_index = np.searchsorted(spans[:, 0], notes[:, 0], side="right") - 1
    hist = np.zeros((len(spans), 12))
    valid = span_index >= 0
    weight = np.minimum(notes[:, 1], 2.0) * np.where(np.abs(notes[:, 0] - spans[np.maximum(span_index, 0), 0]) < 0.125,
                                                     1.5, 1.0)
    np.add.at(hist, (span_index[valid], notes[valid, 2].astype(int) % 12), weight[valid])
    chords: list[Chord | None] = []
    previous = None
    for row in hist:
        if row.sum() == 0 or (not melody_only and (row > 0).sum() < 2):
            chords.append(previous)
            continue
        previous = templates[int(np.argmax(matrix @ row))][0]
        chords.append(previous)
    return chords


def streams_from_roles(source: str, file: str, roles: dict[str, np.ndarray], meter: str, bar_quarters: float,
                       keys: list[Key], chords: list[tuple[Chord | None, Chord | None]], bpm: float | None,
                       valence: float | None, arousal: float | None, vocab: Vocabulary,
                       has_dynamics: bool = True) -> list[Stream]:
    """Token streams of one piece's roles.

    Args:
        roles: role → note array (n, :data:`NOTE_FIELDS`), onsets from bar 0's downbeat.
        keys, chords: per bar (len = number of bars), its key and the chords of its two halves.
        has_dynamics: False for sources whose velocities are a constant (folk
            tunes, chorales): their ``MeanVelocity`` is ``unknown``.
    Phrase position: the bar's index counted from the first bar holding a note
    of any role, mod 8.
    """
    n_bars = len(keys)
    positions = METERS[meter]
    firsts = [int(n[:, 0].min() // bar_quarters) for n in roles.values() if len(n)]
    first_bar = min(firsts) if firsts else 0
    streams = []
    for role, notes in roles.items():
        if notes is None or len(notes) == 0:
            continue
        bar_of = np.floor(notes[:, 0] / bar_quarters + 1e-6).astype(int)
        order = np.argsort(bar_of, kind="stable")
        bounds = np.searchsorted(bar_of[order], np.arange(n_bars + 1))
        stream = Stream(source, file, role)
        headers = []
        for b in range(n_bars):
            rows = notes[order[bounds[b]:bounds[b + 1]]]
            ids = encode_bar(vocab, rows[:, 0] - b * bar_quarters, rows[:, 1], rows[:, 2], rows[:, 3], positions)
            n_notes = sum(1 for i in ids if vocab.kind[i] == "Pitch")
            if not has_dynamics:
                level = None
            else:
                level = velocity_level(float(rows[:, 3].mean())) if n_notes else "none"
            header = bar_header(meter, b - first_bar, keys[b], valence, arousal, bpm,
                                density_bin(n_notes / bar_quarters), level, chords[b])
            headers.append([vocab.index[t] for t in header])
            stream.bars.append(np.array(ids, np.int16))
        stream.headers = np.array(headers, np.int16).reshape(-1, HEADER_LENGTH)
        streams.append(stream)
    return streams


def _half_spans(n_bars: int, bar_quarters: float, meter: str) -> np.ndarray:
    """(n_bars * 2, 2) start/end of each bar's halves (one chord per bar in 3/4 and 3/8: both halves the whole bar)."""
    starts = np.arange(n_bars) * bar_quarters
    if meter in ("3_4", "3_8"):
        return np.repeat(np.stack([starts, starts + bar_quarters], 1), 2, axis=0)
    half = bar_quarters / 2
    return np.stack([np.repeat(starts, 2) + np.tile([0, half], n_bars), np.repeat(starts, 2) + np.tile([half, bar_quarters], n_bars)], 1)


def _pairs(chords: list) -> list[tuple]:
    return [(chords[2 * i], chords[2 * i + 1]) for i in range(len(chords) // 2)]


def _score_notes(path: Path) -> tuple[object, dict[str, np.ndarray]]:
    import symusic

    score = symusic.Score(str(path))
    tpq = float(score.ticks_per_quarter)
    tracks = {}
    for i, track in enumerate(score.tracks):
        if track.is_drum:
            continue
        arr = track.notes.numpy()
        if len(arr["time"]):
            tracks[track.name or f"track{i}"] = np.stack([arr["time"] / tpq, arr["duration"] / tpq,
                                                          arr["pitch"].astype(float), arr["velocity"].astype(float)], 1)
    return score, tracks


MAX_GRID_DEVIATION_SIXTEENTHS = 0.1
"""A VGMIDI file whose note onsets lie on average further than this from the
MIDI file's own sixteenth-note grid is not written against its bar lines (176
of the 204 labelled phrases, re-timed to a nominal 120 bpm when they were cut,
and 22 pieces): its positions would be noise, so it is left out."""
MIDI_METERS = {(4, 4): ("4_4", 4.0), (2, 2): ("4_4", 4.0), (3, 4): ("3_4", 3.0), (2, 4): ("2_4", 2.0),
               (6, 8): ("6_8", 3.0), (3, 8): ("3_8", 1.5)}
"""A MIDI time signature (numerator, denominator) → meter token value and bar length in quarter notes."""


def grid_deviation_sixteenths(onsets_quarters: np.ndarray) -> float:
    """Mean distance (in sixteenth notes, 0..0.5) of the onsets from the nearest
    sixteenth of the MIDI grid: near 0 for a file written to its bar lines,
    about 0.25 for one whose notes fall anywhere."""
    if len(onsets_quarters) == 0:
        return 0.0
    sixteenths = np.asarray(onsets_quarters, float) * 4.0
    return float(np.abs(sixteenths - np.round(sixteenths)).mean())


def midi_meter(score) -> tuple[str, float] | None:
    """The meter token value and bar length (quarter notes) of a MIDI file's
    time signature (4/4 without one), or None when it has none of
    :data:`MIDI_METERS` or changes meter."""
    signatures = {(t.numerator, t.denominator) for t in score.time_signatures}
    if not signatures:
        return MIDI_METERS[(4, 4)]
    if len(signatures) > 1:
        return None
    return MIDI_METERS.get(signatures.pop())


def beat_aligned_notes(score, beats_path: Path, tracks: dict[str, np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """POP909's notes on its annotated beats: a POP909 MIDI file keeps the
    performance's timing (its first beat is not at tick 0 and its tempo
    drifts), so bar lines counted from tick 0 cut across the music. Onsets and
    ends are mapped from seconds to beats through ``beat_midi.txt`` (linear
    between annotated beats, extrapolated at the ends), counted in quarter
    notes from the first annotated downbeat (third column), less a whole bar
    for a pickup. Returns the re-timed tracks and the beat grid (beat times
    in seconds, and their positions in the new quarter-note count) for
    mapping chord and key segments back."""
    table = np.loadtxt(beats_path, ndmin=2)
    times = table[:, 0]
    index = np.arange(len(times), dtype=float)
    downbeats = np.flatnonzero(table[:, 2] == 1) if table.shape[1] > 2 else np.array([0])
    origin = float(downbeats[0]) if len(downbeats) else 0.0
    period = float(np.median(np.diff(times))) if len(times) > 1 else 0.5

    def to_beats(seconds: np.ndarray) -> np.ndarray:
        inside = np.interp(seconds, times, index)
        before = (seconds - times[0]) / period
        after = index[-1] + (seconds - times[-1]) / period
        return np.where(seconds < times[0], before, np.where(seconds > times[-1], after, inside))

    seconds_score = score.to("second")
    aligned = {}
    first_beat = np.inf
    for i, track in enumerate(seconds_score.tracks):
        name = track.name or f"track{i}"
        if name not in tracks:
            continue
        arr = track.notes.numpy()
        start = to_beats(arr["time"].astype(float))
        end = to_beats((arr["time"] + arr["duration"]).astype(float))
        aligned[name] = np.stack([start, np.maximum(end - start, 1 / 16), arr["pitch"].astype(float),
                                  arr["velocity"].astype(float)], 1)
        if len(start):
            first_beat = min(first_beat, float(start.min()))
    if np.isfinite(first_beat) and first_beat < origin:
        origin -= 4.0 * np.ceil((origin - first_beat) / 4.0 - 1e-9)
    for name in aligned:
        aligned[name][:, 0] -= origin
    return aligned, times, index - origin


def tokenize_file(path: Path, source: str, relative: str, vocab: Vocabulary,
                  valence: float | None = None, arousal: float | None = None) -> list[Stream]:
    """Every role stream of one POP909 song or VGMIDI phrase/piece (see the
    module docstring for how each attribute is derived). POP909: bars of 4/4
    from the first annotated downbeat (:func:`beat_aligned_notes`). VGMIDI:
    bars of the file's time signature from tick 0; a file not written to its
    grid (:data:`MAX_GRID_DEVIATION_SIXTEENTHS`) or in another meter gives no
    streams. Raises whatever symusic raises on a bad file."""
    score, tracks = _score_notes(path)
    if not tracks:
        return []
    if source == "pop909":
        folder = path.parent
        if not (folder / "beat_midi.txt").exists():
            return []
        tracks, beat_seconds, beat_quarters = beat_aligned_notes(score, folder / "beat_midi.txt", tracks)
        every = np.concatenate(list(tracks.values()))
        every = every[every[:, 0] >= 0]
        meter, bar_quarters = "4_4", 4.0
        n_bars = int(every[:, 0].max() // bar_quarters) + 1
        spans = _half_spans(n_bars, bar_quarters, meter)
        bpm = float(score.tempos[0].qpm) if len(score.tempos) else None
        key_segments = [(s, e, Key.parse(k.replace(":", " "))) for s, e, k in _read_segments(folder / "key_audio.txt")]
        chord_segments = [(s, e, pop909_chord(c)) for s, e, c in _read_segments(folder / "chord_midi.txt")]
        seconds = np.interp(spans.ravel(), beat_quarters, beat_seconds).reshape(-1, 2)
        keys = [_segment_at(key_segments, seconds[2 * b, 0]) or Key(0, Mode.MAJOR) for b in range(n_bars)]
        chords = _pairs([_longest_overlap(chord_segments, t0, t1) for t0, t1 in seconds])
        piano = tracks.get("PIANO")
        if piano is None:
            return []
        piano = piano[piano[:, 0] >= 0]
        melody = tracks.get("MELODY")
        low = _onset_extreme(piano, highest=False)
        roles = {"melody": None if melody is None else melody[melody[:, 0] >= 0], "arpeggio": piano,
                 "bass": low[low[:, 2] < 60]}
    else:
        every = np.concatenate(list(tracks.values()))
        found = midi_meter(score)
        if found is None or grid_deviation_sixteenths(every[:, 0]) >= MAX_GRID_DEVIATION_SIXTEENTHS:
            return []
        meter, bar_quarters = found
        n_bars = int(every[:, 0].max() // bar_quarters) + 1
        spans = _half_spans(n_bars, bar_quarters, meter)
        bpm = None
        key = estimate_key(_duration_histogram(every))
        keys = [key] * n_bars
        chords = _pairs(estimate_span_chords(skyline_accompaniment(every), spans, key, melody_only=False))
        roles = skyline_roles(every[np.argsort(every[:, 0], kind="stable")])
    return streams_from_roles(source, relative, {r: n for r, n in roles.items() if n is not None and len(n)}, meter,
                              bar_quarters, keys, chords, bpm, valence, arousal, vocab)


def corpus_streams(piece, vocab: Vocabulary) -> list[Stream]:
    """Streams of one :class:`models.folk_corpus.RawPiece`. Folk tunes give a
    ``melody`` (the top note of each onset); chorales a ``melody`` (soprano),
    a ``bass`` (bass voice) and an ``arpeggio`` (all four voices). Key: the
    Krumhansl-Schmuckler estimate over the whole tune; chords: per half bar,
    folk tunes ``Chord_none`` (a tune alone holds no accompaniment, and chords
    guessed from its own notes taught the model to circle them), chorales
    :func:`estimate_span_chords` over the alto, tenor and bass (all 12 x 9
    chords). Tempo, valence, arousal and
    mean velocity are unknown."""
    meter = meter_of(piece.numerator, piece.denominator)
    if meter is None:
        return []
    meter_value, bar_quarters = meter
    voices = [np.concatenate([v, np.full((len(v), 1), 80.0)], 1) for v in piece.voices]
    every = np.concatenate(voices)
    if len(every) < 8:
        return []
    n_bars = int(every[:, 0].max() // bar_quarters) + 1
    key = estimate_key(_duration_histogram(every))
    spans = _half_spans(n_bars, bar_quarters, meter_value)
    if piece.source == "chorales":
        lower = np.concatenate(voices[1:]) if len(voices) > 1 else voices[0][:0]
        chords = estimate_span_chords(lower, spans, key, melody_only=False)
        roles = {"melody": voices[0], "arpeggio": every[np.argsort(every[:, 0], kind="stable")], "bass": voices[-1]}
    else:
        melody = _onset_extreme(voices[0], highest=True)
        chords = [None] * len(spans)  # no accompaniment: the chords are unknown
        roles = {"melody": melody}
    return streams_from_roles(piece.source, piece.file, roles, meter_value, bar_quarters, [key] * n_bars,
                              _pairs(chords), None, None, None, vocab, has_dynamics=False)


def _tune_held_out(file: str) -> bool:
    """A music21 corpus tune is held out when its name hashes (md5) to 0 mod 20 (about 5 %)."""
    return int(hashlib.md5(file.encode()).hexdigest(), 16) % 20 == 0


def heldout_split(data_dir: Path, corpus_files: list[str] | None = None) -> dict[str, list[str]]:
    """The held-out files (paths relative to the data directory, or to
    music21's corpus): POP909 songs whose number is a multiple of 20 (45 songs,
    5 %); VGMIDI phrases whose piece (game + piece name) hashes (md5) to 0 mod
    10 (about 10 %; the whole pieces they were cut from are held out with
    them); music21 corpus tunes whose name hashes to 0 mod 20 (``corpus_files``:
    the tunes to choose from)."""
    pop = sorted(f"pop909/{d.name}/{d.name}.mid" for d in (data_dir / "pop909").iterdir()
                 if d.is_dir() and d.name.isdigit() and int(d.name) % 20 == 0)
    vg = []
    for row in vgmidi_labels(data_dir):
        if int(hashlib.md5(f"{row['game']}|{row['piece']}".encode()).hexdigest(), 16) % 10 == 0:
            vg.append(row["file"])
    split = {"pop909": pop, "vgmidi": sorted(vg)}
    if corpus_files is not None:
        split["corpus"] = sorted(f for f in corpus_files if _tune_held_out(f))
    return split


def held_out_files(split: dict[str, list[str]]) -> set[str]:
    """Every file a split holds out, with the VGMIDI whole pieces its phrases come from."""
    held = {f for files in split.values() for f in files}
    for phrase in split.get("vgmidi", []):
        held.add(vgmidi_piece_of(phrase))
    return held


def vgmidi_piece_of(phrase: str) -> str:
    """``vgmidi/phrases/<name>_<n>.mid`` → ``vgmidi/pieces/<name>.mid``."""
    stem = Path(phrase).stem.rsplit("_", 1)[0]
    return f"vgmidi/pieces/{stem}.mid"


def vgmidi_labels(data_dir: Path) -> list[dict]:
    """Rows of ``vgmidi_labelled.csv`` with ``file`` (relative path) and integer labels."""
    rows = []
    with open(data_dir / "vgmidi" / "vgmidi_labelled.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = Path(row["midi"]).name
            rows.append({"file": f"vgmidi/phrases/{name}", "game": row["game"], "piece": row["piece"],
                         "valence": int(row["valence"]), "arousal": int(row["arousal"])})
    return rows


def all_files(data_dir: Path, limit_pop909: int | None = None,
              with_pieces: bool = True) -> list[tuple[str, str, float | None, float | None]]:
    """``(source, relative path, valence, arousal)`` for every usable file:
    POP909 songs, VGMIDI labelled phrases and (``with_pieces``) VGMIDI's
    whole pieces (source ``vgmidi_piece``), each labelled as the phrase cut
    from it."""
    files = []
    songs = sorted(d.name for d in (data_dir / "pop909").iterdir() if d.is_dir() and d.name.isdigit())
    for name in songs[:limit_pop909]:
        files.append(("pop909", f"pop909/{name}/{name}.mid", None, None))
    for row in vgmidi_labels(data_dir):
        if (data_dir / row["file"]).exists():
            files.append(("vgmidi", row["file"], float(row["valence"]), float(row["arousal"])))
    if with_pieces and (data_dir / "vgmidi" / "pieces").is_dir():
        # A whole piece takes the label of the phrase cut from it (the phrase
        # file's name is the piece's plus "_<n>"; pieces with phrases that
        # disagree, or none, stay unlabelled).
        labels: dict[str, set] = {}
        for row in vgmidi_labels(data_dir):
            piece = Path(row["file"]).stem.rsplit("_", 1)[0]
            labels.setdefault(piece, set()).add((float(row["valence"]), float(row["arousal"])))
        for path in sorted((data_dir / "vgmidi" / "pieces").glob("*.mid")):
            label = labels.get(path.stem, set())
            valence, arousal = next(iter(label)) if len(label) == 1 else (None, None)
            files.append(("vgmidi_piece", f"vgmidi/pieces/{path.name}", valence, arousal))
    return files


def build_streams(data_dir: Path, files, vocab: Vocabulary, progress: bool = True) -> list[Stream]:
    """Tokenize ``files`` (as from :func:`all_files`); files that fail to read are
    skipped with a warning line."""
    from tqdm import tqdm

    streams = []
    for source, rel, valence, arousal in tqdm(files, desc="tokenizing", disable=not progress):
        try:
            streams += tokenize_file(data_dir / rel, source, rel, vocab, valence, arousal)
        except Exception as exc:  # a bad data file must not stop the run
            print(f"warning: skipped {rel}: {exc}")
    return streams


def build_corpus_streams(pieces, vocab: Vocabulary, progress: bool = True) -> list[Stream]:
    """Streams of music21 corpus pieces (:func:`corpus_streams`); pieces that fail are skipped with a warning."""
    from tqdm import tqdm

    streams = []
    for piece in tqdm(pieces, desc="tokenizing corpus", disable=not progress):
        try:
            streams += corpus_streams(piece, vocab)
        except Exception as exc:
            print(f"warning: skipped {piece.file}: {exc}")
    return streams


def _cached(path: Path, build) -> list[Stream]:
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    streams = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump(streams, f)
    tmp.replace(path)
    return streams


def cached_streams(data_dir: Path, vocab: Vocabulary, cache_dir: Path | None = None,
                   corpus: bool | str = True) -> list[Stream]:
    """All streams (POP909, VGMIDI and, with ``corpus``, music21's corpus), from
    the token caches if they were made with this vocabulary and data format,
    else built and cached (``cache_dir``, default :func:`default_cache_dir`).
    ``corpus="parsed"``: only the corpus sources already parsed into the cache
    (:func:`models.folk_corpus.parsed_sources`), so a run can start while
    ``python -m models.folk_corpus`` still parses the rest."""
    cache_dir = cache_dir or default_cache_dir()
    # Streams hold note and header tokens only (Style tokens are added when a
    # window is drawn), so appending Style tokens to the vocabulary keeps the caches.
    stream_tokens = [t for t in vocab.tokens if not t.startswith("Style_")]
    digest = hashlib.sha256(json.dumps([DATA_FORMAT_VERSION, str(data_dir), stream_tokens,
                                        repr(REMI_SETTINGS)]).encode()).hexdigest()[:16]
    midi_digest = hashlib.sha256(json.dumps([MIDI_FORMAT_VERSION, digest]).encode()).hexdigest()[:16]
    streams = _cached(cache_dir / f"streams-midi-{midi_digest}.pkl",
                      lambda: build_streams(data_dir, all_files(data_dir), vocab))
    if corpus:
        from models.folk_corpus import SOURCES, extract, parsed_sources

        sources = SOURCES if corpus is True else tuple(parsed_sources(cache_dir))
        names = "-".join(s if isinstance(s, str) else f"{s[0]}{s[1] or ''}" for s in sources)
        streams = streams + _cached(cache_dir / f"streams-corpus-{names}-{digest}.pkl",
                                    lambda: build_corpus_streams(extract(cache_dir, sources), vocab))
    return streams
