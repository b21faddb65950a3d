"""Can generated music be told from real music? Symbolic features of a piece
of one role, real windows of the same roles from the held-out data, and a
cross-validated real-vs-generated classifier.

Features of one part (:func:`features`, :data:`FEATURE_NAMES`; 84 numbers):

* key-relative pitch-class histogram (12 bins, share of notes; the tonic is
  the requested key's for generated music, the annotated or estimated key of
  the data for real music);
* melodic interval histogram of the top line (the highest note of each
  onset), -12..+12 semitones, larger leaps in the end bins (25 bins);
* shares of those intervals that are repeats (0), steps (1-2 semitones),
  skips (3-4) and leaps (5 or more), and the tonic's share of notes;
* onset position in the bar (16 sixteenth-note bins) and note length
  (11 bins: about 1/8, 1/4, 1/3, 1/2, 3/4, 1, 1.5, 2, 3, 4 beats and longer);
* bar-rhythm repetition (share of bars whose onset pattern repeats an
  earlier bar's), bar-interval repetition (share of bars whose top-line
  interval sequence repeats an earlier bar's), exact bar repetition;
* notes per beat, onsets per beat, notes per onset, pitch range, mean and
  spread of pitch (semitones from the register's middle), mean duration,
  the share of beats with an onset, the longest silence (beats), the
  mean absolute interval, the direction changes per interval, the
  interval's standard deviation.

The classifier is a random forest (scikit-learn ``RandomForestClassifier``,
:data:`CLASSIFIER_TREES` trees) scored by balanced accuracy under stratified
5-fold cross validation, on equal numbers of real and generated pieces (the
larger set subsampled), repeated :data:`CLASSIFIER_DRAWS` times with fixed
seeds and averaged: 0.5 means the two cannot be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERVAL_EDGES = np.arange(-12, 13)
LENGTH_EDGES_BEATS = np.array([0.0, 0.1875, 0.29, 0.42, 0.625, 0.875, 1.25, 1.75, 2.5, 3.5, 4.5])


@dataclass(frozen=True)
class RolePiece:
    """Notes of one role over a few bars.

    Attributes:
        onset_beats, duration_beats: (n,) float64, from the first bar's downbeat.
        pitch: (n,) int MIDI pitches.
        beats_per_bar: bar length in beats; bars: number of bars.
        tonic_pitch_class: 0..11.
    """

    onset_beats: np.ndarray
    duration_beats: np.ndarray
    pitch: np.ndarray
    beats_per_bar: float
    bars: int
    tonic_pitch_class: int

    @classmethod
    def from_bar_parts(cls, parts, beats_per_bar: float, tonic_pitch_class: int) -> "RolePiece":
        """From one :class:`adaptive.part.Part` per bar (beats from each bar's downbeat)."""
        onset = [p.start_beats + i * beats_per_bar for i, p in enumerate(parts)]
        return cls(np.concatenate(onset) if onset else np.zeros(0), np.concatenate([p.duration_beats for p in parts]),
                   np.concatenate([p.pitch for p in parts]).astype(int), beats_per_bar, len(parts), tonic_pitch_class)


def _top_line(piece: RolePiece) -> np.ndarray:
    """Pitches of the highest note at each onset, in time order."""
    if len(piece.pitch) == 0:
        return np.zeros(0, int)
    order = np.lexsort((-piece.pitch, piece.onset_beats))
    onsets = piece.onset_beats[order]
    first = np.ones(len(order), bool)
    first[1:] = np.abs(onsets[1:] - onsets[:-1]) > 1e-6
    return piece.pitch[order][first]


def _share(hist: np.ndarray) -> np.ndarray:
    total = hist.sum()
    return hist / total if total > 0 else hist.astype(float)


def _bar_patterns(piece: RolePiece) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Per bar: its onset pattern (16ths), its top-line interval sequence, its (onset, pitch) pairs."""
    rhythms, intervals, exact = [], [], []
    bar_of = np.floor(piece.onset_beats / piece.beats_per_bar + 1e-9).astype(int)
    for b in range(piece.bars):
        here = bar_of == b
        onsets = np.round((piece.onset_beats[here] - b * piece.beats_per_bar) * 4).astype(int)
        rhythms.append(tuple(sorted(set(onsets.tolist()))))
        sub = RolePiece(piece.onset_beats[here], piece.duration_beats[here], piece.pitch[here], piece.beats_per_bar, 1,
                        piece.tonic_pitch_class)
        intervals.append(tuple(np.diff(_top_line(sub)).tolist()))
        exact.append(tuple(sorted(zip(onsets.tolist(), piece.pitch[here].tolist()))))
    return rhythms, intervals, exact


def _repeat_share(patterns: list[tuple], minimum: int = 1) -> float:
    """Share of bars (with at least ``minimum`` elements) whose pattern equals an earlier bar's."""
    seen, repeats, counted = set(), 0, 0
    for pattern in patterns:
        if len(pattern) < minimum:
            continue
        counted += 1
        repeats += pattern in seen
        seen.add(pattern)
    return repeats / counted if counted else 0.0


STATISTICS = ("tonic_share", "step_share", "repeat_share", "leap_share", "bar_rhythm_repetition",
              "notes_per_beat")
"""The statistics compared one by one with the real pieces' interquartile range."""


def statistics(piece: RolePiece) -> dict[str, float]:
    """The named statistics of :data:`STATISTICS` (and a few more) of one piece."""
    line = _top_line(piece)
    steps = np.diff(line)
    magnitude = np.abs(steps)
    n = max(1, len(steps))
    rhythms, intervals, exact = _bar_patterns(piece)
    length = piece.bars * piece.beats_per_bar
    return {
        "tonic_share": float(np.mean(piece.pitch % 12 == piece.tonic_pitch_class)) if len(piece.pitch) else 0.0,
        "step_share": float(((magnitude >= 1) & (magnitude <= 2)).sum() / n),
        "repeat_share": float((magnitude == 0).sum() / n),
        "skip_share": float(((magnitude >= 3) & (magnitude <= 4)).sum() / n),
        "leap_share": float((magnitude >= 5).sum() / n),
        "bar_rhythm_repetition": _repeat_share(rhythms),
        "bar_interval_repetition": _repeat_share(intervals, minimum=2),
        "bar_repetition": _repeat_share(exact),
        "notes_per_beat": len(piece.pitch) / length if length else 0.0,
    }


def features(piece: RolePiece) -> np.ndarray:
    """The feature vector of one piece (module docstring), float64 (84,)."""
    line = _top_line(piece)
    steps = np.diff(line)
    pc = _share(np.bincount((piece.pitch - piece.tonic_pitch_class) % 12, minlength=12)) if len(piece.pitch) else np.zeros(12)
    interval_hist = _share(np.bincount(np.clip(steps, -12, 12) + 12, minlength=25)) if len(steps) else np.zeros(25)
    positions = np.round((piece.onset_beats % piece.beats_per_bar) * 4).astype(int) % 16
    position_hist = _share(np.bincount(positions, minlength=16)) if len(positions) else np.zeros(16)
    length_hist = _share(np.histogram(np.minimum(piece.duration_beats, 8.0),
                                      np.append(LENGTH_EDGES_BEATS, 1e9))[0]) if len(piece.pitch) else np.zeros(11)
    stats = statistics(piece)
    length = max(piece.bars * piece.beats_per_bar, 1e-9)
    onsets = np.unique(np.round(piece.onset_beats * 4)) / 4 if len(piece.pitch) else np.zeros(0)
    silences = np.diff(np.concatenate([[0.0], onsets, [length]])) if len(onsets) else np.array([length])
    middle = np.median(piece.pitch) if len(piece.pitch) else 0.0
    extra = [
        stats["tonic_share"], stats["step_share"], stats["repeat_share"], stats["skip_share"], stats["leap_share"],
        stats["bar_rhythm_repetition"], stats["bar_interval_repetition"], stats["bar_repetition"],
        stats["notes_per_beat"], len(onsets) / length, len(piece.pitch) / max(1, len(onsets)),
        float(np.ptp(piece.pitch)) if len(piece.pitch) else 0.0, float(np.std(piece.pitch - middle)) if len(piece.pitch) else 0.0,
        float(np.mean(piece.duration_beats)) if len(piece.pitch) else 0.0,
        len(np.unique(np.floor(onsets))) / length, float(silences.max()),
        float(np.mean(np.abs(steps))) if len(steps) else 0.0,
        float(np.mean(np.diff(np.sign(steps[steps != 0])) != 0)) if (steps != 0).sum() > 1 else 0.0,
        float(np.std(steps)) if len(steps) else 0.0,
        float(middle % 12 == piece.tonic_pitch_class),
    ]
    return np.concatenate([pc, interval_hist, position_hist, length_hist, np.array(extra, float)])


FEATURE_NAMES = ([f"pc_{i}" for i in range(12)] + [f"interval_{i}" for i in range(-12, 13)]
                 + [f"onset_pos_{i}" for i in range(16)] + [f"length_bin_{i}" for i in range(11)]
                 + ["tonic_share", "step_share", "repeat_share", "skip_share", "leap_share", "bar_rhythm_repetition",
                    "bar_interval_repetition", "bar_repetition", "notes_per_beat", "onsets_per_beat",
                    "notes_per_onset", "pitch_range", "pitch_spread", "mean_duration", "beats_with_onset",
                    "longest_silence", "mean_abs_interval", "direction_changes", "interval_std", "median_is_tonic"])


CLASSIFIER_DRAWS = 8
"""Times the cross-validation is repeated, each with its own subsample of
the larger set and its own fold split (repeated k-fold cross-validation,
Kohavi 1995; Bouckaert & Frank 2004). One draw's balanced accuracy moved by
a standard deviation of 0.03-0.04 between draws on the same pieces (34 real
VGMIDI melodies against 150 generated ones; docs/evaluation.md, "Downbeats
from the real period"), enough to reverse the sign of a change under 0.05;
the mean of 8 draws has about a third of that spread."""
CLASSIFIER_TREES = 100
"""Trees per forest (8 draws of 100 trees cost about what 3 of 300 did)."""


def classifier_accuracy(real: list[RolePiece], generated: list[RolePiece], seed: int = 0,
                        trees: int = CLASSIFIER_TREES, draws: int = CLASSIFIER_DRAWS) -> dict:
    """Balanced accuracy of telling ``generated`` from ``real`` (module
    docstring), the mean over ``draws`` repetitions of the stratified 5-fold
    cross-validation on equal numbers of real and generated pieces, each
    repetition with its own subsample of the larger set and fold split
    (seeded by ``seed + draw``), and the most telling features.

    Returns:
        {"balanced_accuracy" (mean over draws), "draw_sd" (standard
        deviation of a draw's figure), "fold_std" (spread over the folds of
        all draws), "draws", "n_per_class", "top_features": [(name,
        importance)] (mean impurity importance of a forest fit on each draw's
        pieces)}; NaN figures and no features when either set has fewer than
        10 pieces.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    n = min(len(real), len(generated))
    if n < 10:
        return {"balanced_accuracy": float("nan"), "fold_std": float("nan"), "draw_sd": float("nan"),
                "draws": 0, "n_per_class": n, "top_features": []}
    real_x = np.stack([features(p) for p in real])
    generated_x = np.stack([features(p) for p in generated])
    y = np.array([0] * n + [1] * n)
    scores, importances = [], np.zeros(len(FEATURE_NAMES))
    for draw in range(max(1, draws)):
        rng = np.random.default_rng(seed + draw)
        x = np.concatenate([real_x[rng.choice(len(real), n, replace=False)],
                            generated_x[rng.choice(len(generated), n, replace=False)]])
        forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, random_state=seed + draw, n_jobs=1)
        folds = StratifiedKFold(5, shuffle=True, random_state=seed + draw)
        scores.append(cross_val_score(forest, x, y, cv=folds, scoring="balanced_accuracy"))
        importances += forest.fit(x, y).feature_importances_
    scores = np.array(scores)
    top = sorted(zip(FEATURE_NAMES, importances / len(scores)), key=lambda item: -item[1])[:5]
    return {"balanced_accuracy": float(scores.mean()), "fold_std": float(scores.std()),
            "draw_sd": float(scores.mean(axis=1).std()), "draws": len(scores), "n_per_class": n,
            "top_features": [(name, float(value)) for name, value in top]}


def statistic_ranges(real: list[RolePiece], generated: list[RolePiece]) -> dict[str, dict]:
    """For each of :data:`STATISTICS`: the real pieces' quartiles and the
    generated pieces' median, and whether that median lies inside the
    real interquartile range."""
    out = {}
    for name in STATISTICS:
        real_values = np.array([statistics(p)[name] for p in real])
        generated_values = np.array([statistics(p)[name] for p in generated])
        q1, median, q3 = np.percentile(real_values, [25, 50, 75]) if len(real_values) else (np.nan,) * 3
        g = float(np.median(generated_values)) if len(generated_values) else float("nan")
        out[name] = {"real_q1": float(q1), "real_median": float(median), "real_q3": float(q3), "generated_median": g,
                     "inside": bool(q1 <= g <= q3)}
    return out


def real_windows(streams, vocab, roles: tuple[str, ...], bars: int = 8, per_file: int = 3, meter: str = "4_4",
                 min_notes: int = 8) -> list[RolePiece]:
    """Windows of ``bars`` bars from token streams (:class:`models.dataset.Stream`),
    decoded back to notes, with the notes of every role in ``roles`` (one
    role: that part; several: the texture they make together). Windows start
    at bar 0 of a period (``Phrase_0``), at most ``per_file`` per file, in
    ``meter`` only, with at least ``min_notes`` notes. Tonic: the window's
    first ``Key`` token."""
    by_file: dict[str, dict[str, object]] = {}
    for stream in streams:
        by_file.setdefault(stream.file, {})[stream.role] = stream
    pieces = []
    phrase0 = vocab.id("Phrase_0")
    meter_id = vocab.id(f"Meter_{meter}")
    beats_per_bar = {"2_4": 2.0, "3_4": 3.0, "4_4": 4.0, "6_8": 3.0, "3_8": 1.5}[meter]
    for file in sorted(by_file):
        found = by_file[file]
        if not all(role in found for role in roles):
            continue
        first = found[roles[0]]
        taken = 0
        for start in range(0, len(first.bars) - bars + 1):
            if taken >= per_file:
                break
            headers = first.headers
            if headers[start, 2] != phrase0 or not (headers[start:start + bars, 1] == meter_id).all():
                continue
            onset, duration, pitch = [], [], []
            for role in roles:
                stream = found[role]
                for i, b in enumerate(range(start, min(start + bars, len(stream.bars)))):
                    o, d, p = decode_bar(vocab, stream.bars[b])
                    onset.append(o + i * beats_per_bar)
                    duration.append(d)
                    pitch.append(p)
            if sum(len(p) for p in pitch) < min_notes:
                continue
            tonic = int(vocab.tokens[int(headers[start, 3])].split("_")[1])
            pieces.append(RolePiece(np.concatenate(onset), np.concatenate(duration), np.concatenate(pitch).astype(int),
                                    beats_per_bar, bars, tonic))
            taken += 1
    return pieces


def held_out_references(data_dir, held_out: dict, vocab, cache_dir=None) -> dict[str, list]:
    """Held-out token streams by reference name: ``VGMIDI`` (the held-out
    phrases and the whole pieces they come from), ``POP909`` (the held-out
    songs) and ``folk`` (held-out Essen, O'Neill and Ryan tunes, only when
    the music21 corpus cache of ``python -m models.folk_corpus`` exists:
    parsing it takes minutes)."""
    from models.dataset import tokenize_file, vgmidi_labels, vgmidi_piece_of
    from models.paths import default_cache_dir

    labels = {row["file"]: row for row in vgmidi_labels(data_dir)}
    references: dict[str, list] = {"VGMIDI": [], "POP909": []}
    for phrase in held_out.get("vgmidi", []):
        row = labels.get(phrase)
        if row is not None and (data_dir / phrase).exists():
            references["VGMIDI"] += tokenize_file(data_dir / phrase, "vgmidi", phrase, vocab, row["valence"], row["arousal"])
    for piece in sorted({vgmidi_piece_of(p) for p in held_out.get("vgmidi", [])}):
        if (data_dir / piece).exists():
            references["VGMIDI"] += tokenize_file(data_dir / piece, "vgmidi_piece", piece, vocab)
    for song in held_out.get("pop909", []):
        if (data_dir / song).exists():
            references["POP909"] += tokenize_file(data_dir / song, "pop909", song, vocab)
    tunes = set(held_out.get("corpus", []))
    if tunes:
        from models.dataset import corpus_streams
        from models.folk_corpus import _Unpickler

        folder = cache_dir or default_cache_dir()
        pieces = []
        for path in sorted(folder.glob("corpus-*.pkl")):
            if path.name.startswith(("corpus-chorales",)):
                continue
            with open(path, "rb") as f:
                pieces += [p for p in _Unpickler(f).load() if p.file in tunes]
        if pieces:
            references["folk"] = [s for p in pieces for s in corpus_streams(p, vocab)]
    return {name: streams for name, streams in references.items() if streams}


def realness_figures(generated: dict[str, list[RolePiece]], references: dict[str, list], vocab,
                     roles: tuple[str, ...]) -> dict:
    """For each reference set and each role in ``roles`` (and ``texture``: the
    roles together): the classifier's balanced accuracy, and for melodies the
    statistic ranges. ``generated``: role (or ``"texture"``) → pieces."""
    out: dict = {}
    for name, streams in references.items():
        out[name] = {}
        for role in roles + ("texture",):
            wanted = roles if role == "texture" else (role,)
            real = real_windows(streams, vocab, wanted)
            if len(real) < 10 or not generated.get(role):
                continue
            figures = classifier_accuracy(real, generated[role])
            figures["n_real"] = len(real)
            if role == "melody":
                figures["statistics"] = statistic_ranges(real, generated[role])
            out[name][role] = figures
    return out


def decode_bar(vocab, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """REMI note tokens of one bar → (onsets in quarter notes, durations, pitches)."""
    onsets, durations, pitches = [], [], []
    position, pitch = 0, 0
    for token in ids.astype(int):
        kind = vocab.kind[token]
        if kind == "Position":
            position = int(vocab.position[token])
        elif kind == "Pitch":
            pitch = int(vocab.pitch[token])
        elif kind == "Duration":
            onsets.append(position / 4.0)
            durations.append(float(vocab.duration_beats[token]))
            pitches.append(pitch)
    return np.array(onsets, float), np.array(durations, float), np.array(pitches, int)
