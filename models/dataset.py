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
  chord templates — the cosine similarity of the bar's duration-weighted
  pitch-class histogram with each of the 12 x 9 chord templates (binary
  chord-tone vectors); the best wins, bars with fewer than 2 notes get
  ``Chord_none``.
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

from adaptive.harmony import Chord, ChordQuality, Key, Mode, parse_pitch_class
from models.tokenizer import (BEATS_PER_MODEL_BAR, REMI_SETTINGS, Vocabulary, bar_header, density_bin,
                              make_remi, velocity_level)

DATA_FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """``$ADAPTIVE_DATA`` if set, else ``../shared/data`` relative to the repository root."""
    return Path(os.environ.get("ADAPTIVE_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def default_cache_dir() -> Path:
    """``models/`` in the project's cache folder (``$ADAPTIVE_CACHE``, else
    ``$XDG_CACHE_HOME/adaptive``, else ``~/.cache/adaptive``), outside the repository."""
    if os.environ.get("ADAPTIVE_CACHE"):
        return Path(os.environ["ADAPTIVE_CACHE"]) / "models"
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "adaptive" / "models"


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
    """One role of one file, tokenized bar by bar.

    Attributes:
        source: ``"pop909"`` or ``"vgmidi"``; file: path relative to the data directory.
        role: ``"melody"``, ``"arpeggio"`` or ``"bass"``.
        bars: per bar, the token ids of its notes (int16 array; no ``Bar``, no header).
        headers: per bar, the header token ids (``Bar`` first), shape (n_bars, 8) int16.
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


def _onset_extreme(notes: np.ndarray, highest: bool) -> np.ndarray:
    """Indices of the highest (or lowest) note at each distinct start time."""
    order = np.lexsort((notes["pitch"] if not highest else -notes["pitch"], notes["time"]))
    times = notes["time"][order]
    first = np.ones(len(order), bool)
    first[1:] = times[1:] != times[:-1]
    return order[first]


def _single_track_score(score, notes: dict):
    import symusic

    out = symusic.Score(score.ticks_per_quarter)
    out.tempos = score.tempos
    track = symusic.Track("part", 0, False)
    track.notes = symusic.Note.from_numpy(notes["time"], notes["duration"], notes["pitch"], notes["velocity"])
    out.tracks.append(track)
    return out


def _subset(notes: dict, index: np.ndarray) -> dict:
    index = np.sort(index)
    return {k: v[index] for k, v in notes.items()}


def _role_notes(tracks: dict[str, dict]) -> dict[str, dict]:
    """Note arrays per role from the named tracks (see the module docstring)."""
    if "PIANO" in tracks:  # POP909
        piano = tracks["PIANO"]
        low = _onset_extreme(piano, highest=False)
        return {"melody": tracks.get("MELODY"), "arpeggio": piano,
                "bass": _subset(piano, low[piano["pitch"][low] < 60])}
    notes = {k: np.concatenate([t[k] for t in tracks.values()]) for k in next(iter(tracks.values()))}
    high = _onset_extreme(notes, highest=True)
    low = _onset_extreme(notes, highest=False)
    return {"melody": _subset(notes, high[notes["pitch"][high] >= 55]), "arpeggio": notes,
            "bass": _subset(notes, low[notes["pitch"][low] < 60])}


def _histogram(notes: dict, weights_from: np.ndarray | None = None) -> np.ndarray:
    hist = np.zeros(12)
    np.add.at(hist, notes["pitch"] % 12, notes["duration"].astype(float))
    return hist


def tokenize_file(path: Path, source: str, relative: str, vocab: Vocabulary, remi,
                  valence: float | None = None, arousal: float | None = None) -> list[Stream]:
    """Every role stream of one data file (see the module docstring for how
    each attribute is derived). Raises whatever symusic raises on a bad file."""
    import symusic

    score = symusic.Score(str(path))
    tpq = score.ticks_per_quarter
    ticks_per_bar = BEATS_PER_MODEL_BAR * tpq
    tracks = {}
    for i, track in enumerate(score.tracks):
        arr = track.notes.numpy()
        if len(arr["time"]):
            tracks[track.name or f"track{i}"] = {k: np.asarray(v) for k, v in arr.items()}
    if not tracks:
        return []
    folder = path.parent
    if source == "pop909":
        bpm = float(score.tempos[0].qpm) if len(score.tempos) else None
        keys = [(s, e, Key.parse(k.replace(":", " "))) for s, e, k in _read_segments(folder / "key_audio.txt")]
        chords = [(s, e, pop909_chord(c)) for s, e, c in _read_segments(folder / "chord_midi.txt")]
        phrase_key = None
    else:
        bpm = None
        all_notes = {k: np.concatenate([t[k] for t in tracks.values()]) for k in next(iter(tracks.values()))}
        phrase_key = estimate_key(_histogram(all_notes))
        keys, chords = [], []
    streams = []
    for role, notes in _role_notes(tracks).items():
        if notes is None or len(notes["time"]) == 0:
            continue
        tokens = remi.encode(_single_track_score(score, notes))
        tokens = tokens[0].tokens if isinstance(tokens, list) else tokens.tokens
        ids = np.array([vocab.index[t] for t in tokens], np.int64)
        bar_starts = np.flatnonzero(ids == vocab.id("Bar_None"))
        stream = Stream(source, relative, role)
        headers = []
        for b, start in enumerate(bar_starts):
            end = bar_starts[b + 1] if b + 1 < len(bar_starts) else len(ids)
            bar_ids = ids[start + 1:end]
            pitches = vocab.pitch[bar_ids]
            n_notes = int((pitches >= 0).sum())
            velocities = vocab.velocity[bar_ids]
            velocities = velocities[velocities >= 0]
            level = velocity_level(velocities.mean()) if n_notes else None
            t0, t1 = _seconds_at_ticks(score, np.array([b * ticks_per_bar, (b + 1) * ticks_per_bar]))
            if source == "pop909":
                key = _segment_at(keys, t0) or Key(0, Mode.MAJOR)
                chord = _longest_overlap(chords, t0, t1)
            else:
                key = phrase_key
                in_bar = (notes["time"] >= b * ticks_per_bar) & (notes["time"] < (b + 1) * ticks_per_bar)
                all_in_bar = {k: v[(all_notes["time"] >= b * ticks_per_bar)
                                   & (all_notes["time"] < (b + 1) * ticks_per_bar)] for k, v in all_notes.items()}
                chord = estimate_chord(_histogram(all_in_bar)) if len(all_in_bar["time"]) >= 2 else None
                del in_bar
            header = bar_header(key, valence, arousal, bpm, density_bin(n_notes / BEATS_PER_MODEL_BAR), level, chord)
            headers.append([vocab.index[t] for t in header])
            stream.bars.append(bar_ids.astype(np.int16))
        stream.headers = np.array(headers, np.int16).reshape(-1, 8)
        streams.append(stream)
    return streams


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


def heldout_split(data_dir: Path) -> dict[str, list[str]]:
    """The held-out files (paths relative to the data directory): POP909 songs whose
    number is a multiple of 20 (45 songs, 5 %), and VGMIDI phrases whose piece
    (game + piece name) hashes (md5) to 0 mod 10 (about 10 %)."""
    pop = sorted(f"pop909/{d.name}/{d.name}.mid" for d in (data_dir / "pop909").iterdir()
                 if d.is_dir() and d.name.isdigit() and int(d.name) % 20 == 0)
    vg = []
    for row in vgmidi_labels(data_dir):
        if int(hashlib.md5(f"{row['game']}|{row['piece']}".encode()).hexdigest(), 16) % 10 == 0:
            vg.append(row["file"])
    return {"pop909": pop, "vgmidi": sorted(vg)}


def vgmidi_labels(data_dir: Path) -> list[dict]:
    """Rows of ``vgmidi_labelled.csv`` with ``file`` (relative path) and integer labels."""
    rows = []
    with open(data_dir / "vgmidi" / "vgmidi_labelled.csv", newline="") as f:
        for row in csv.DictReader(f):
            name = Path(row["midi"]).name
            rows.append({"file": f"vgmidi/phrases/{name}", "game": row["game"], "piece": row["piece"],
                         "valence": int(row["valence"]), "arousal": int(row["arousal"])})
    return rows


def all_files(data_dir: Path, limit_pop909: int | None = None) -> list[tuple[str, str, float | None, float | None]]:
    """``(source, relative path, valence, arousal)`` for every usable file."""
    files = []
    songs = sorted(d.name for d in (data_dir / "pop909").iterdir() if d.is_dir() and d.name.isdigit())
    for name in songs[:limit_pop909]:
        files.append(("pop909", f"pop909/{name}/{name}.mid", None, None))
    for row in vgmidi_labels(data_dir):
        if (data_dir / row["file"]).exists():
            files.append(("vgmidi", row["file"], float(row["valence"]), float(row["arousal"])))
    return files


def build_streams(data_dir: Path, files, vocab: Vocabulary, progress: bool = True) -> list[Stream]:
    """Tokenize ``files`` (as from :func:`all_files`); files that fail to read are
    skipped with a warning line."""
    from tqdm import tqdm

    remi = make_remi()
    streams = []
    for source, rel, valence, arousal in tqdm(files, desc="tokenizing", disable=not progress):
        try:
            streams += tokenize_file(data_dir / rel, source, rel, vocab, remi, valence, arousal)
        except Exception as exc:  # a bad data file must not stop the run
            print(f"warning: skipped {rel}: {exc}")
    return streams


def cached_streams(data_dir: Path, vocab: Vocabulary, cache_dir: Path | None = None) -> list[Stream]:
    """All streams, from the token cache if it was made with this vocabulary and
    data format, else built and cached (``cache_dir``, default :func:`default_cache_dir`)."""
    cache_dir = cache_dir or default_cache_dir()
    digest = hashlib.sha256(json.dumps([DATA_FORMAT_VERSION, str(data_dir), list(vocab.tokens),
                                        repr(REMI_SETTINGS)]).encode()).hexdigest()[:16]
    path = cache_dir / f"streams-{digest}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    streams = build_streams(data_dir, all_files(data_dir), vocab)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(streams, f)
    tmp.replace(path)
    return streams
