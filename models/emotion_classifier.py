"""An emotion classifier trained on the VGMIDI phrases, to judge generated
music by a model that never saw the generator.

Each piece becomes a vector of note features (:data:`FEATURE_NAMES`: mode
strength, key clarity, note density, inter-onset intervals, durations,
velocity, register, polyphony); a scikit-learn pipeline (standardization, then
multinomial logistic regression) predicts the quadrant of the circumplex,
``(sign valence, sign arousal)``. VGMIDI labels each phrase's valence and
arousal as +1 or -1 (Ferreira & Whitehead 2019, *Learning to Generate Music
with Sentiment*, ISMIR).

The held-out split is fixed: phrases are grouped by (game, piece) so phrases of
one piece never straddle the split, stratified by quadrant, and the first fold
of scikit-learn's ``StratifiedGroupKFold(n_splits=4, shuffle=True,
random_state=SPLIT_SEED)`` is held out (about a quarter of the phrases).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.analysis import Notes, inter_onset_intervals_beats, mode_strength, read_midi_notes

SPLIT_SEED = 2019
"""Seed of the fixed VGMIDI held-out split (the dataset's year)."""

QUADRANTS = ((1, 1), (1, -1), (-1, 1), (-1, -1))
"""The four classes, ``(valence sign, arousal sign)``; class index = position here."""

QUADRANT_NAMES = ("V+A+", "V+A-", "V-A+", "V-A-")
"""Short names of :data:`QUADRANTS`, same order."""

FEATURE_NAMES = (
    "mode_strength", "key_clarity", "notes_per_second", "log_mean_ioi_seconds", "ioi_variation",
    "log_mean_duration_seconds", "mean_velocity", "velocity_std", "mean_pitch", "pitch_std",
    "pitch_range", "polyphony",
)
"""What :func:`features` returns, in order. Seconds-based features follow the
piece's own tempo: what a listener hears."""


def features(notes: Notes) -> np.ndarray:
    """Feature vector of one piece, shape ``(len(FEATURE_NAMES),)``, float64.

    * mode_strength, key_clarity: :func:`models.analysis.mode_strength`.
    * notes_per_second: every note counts.
    * log_mean_ioi_seconds, ioi_variation: log of the mean interval between
      distinct onsets in seconds, and its coefficient of variation.
    * log_mean_duration_seconds: log of the mean note length in seconds.
    * mean_velocity, velocity_std: MIDI velocity 1..127.
    * mean_pitch, pitch_std, pitch_range: MIDI note numbers (range = 95th
      minus 5th percentile).
    * polyphony: summed note lengths over the piece's length (mean notes sounding).

    Raises:
        ValueError: fewer than 2 notes.
    """
    if len(notes) < 2:
        raise ValueError(f"a piece needs at least 2 notes to be classified (got {len(notes)})")
    strength, clarity = mode_strength(notes)
    seconds_per_beat = notes.length_seconds / notes.length_beats
    ioi_seconds = inter_onset_intervals_beats(notes) * seconds_per_beat
    if len(ioi_seconds) == 0:  # one chord: a single onset
        ioi_seconds = np.array([notes.length_seconds])
    pitch = notes.pitch.astype(float)
    return np.array([
        strength,
        clarity,
        len(notes) / notes.length_seconds,
        np.log(ioi_seconds.mean()),
        ioi_seconds.std() / ioi_seconds.mean(),
        np.log(notes.duration_seconds.mean()),
        notes.velocity.mean(),
        notes.velocity.std(),
        pitch.mean(),
        pitch.std(),
        np.percentile(pitch, 95) - np.percentile(pitch, 5),
        notes.duration_seconds.sum() / notes.length_seconds,
    ])


def quadrant_index(valence: float, arousal: float) -> int:
    """Class index of a (valence, arousal) point: its quadrant by sign.

    Raises:
        ValueError: valence or arousal is 0 (on an axis: no quadrant).
    """
    if valence == 0 or arousal == 0:
        raise ValueError(f"({valence}, {arousal}) lies on an axis: no quadrant")
    return QUADRANTS.index((1 if valence > 0 else -1, 1 if arousal > 0 else -1))


@dataclass(frozen=True)
class LabelledPhrases:
    """VGMIDI phrases read into features.

    Attributes:
        paths: the MIDI files, length n.
        features: ``(n, len(FEATURE_NAMES))`` float64.
        quadrant: ``(n,)`` class indices into :data:`QUADRANTS`.
        group: ``(n,)`` piece ids ("game/piece"): phrases of one piece share one.
        notes: the phrases' notes.
    """

    paths: list[Path]
    features: np.ndarray
    quadrant: np.ndarray
    group: np.ndarray
    notes: list[Notes]


def read_vgmidi(vgmidi_dir: Path) -> LabelledPhrases:
    """Every phrase of ``vgmidi_labelled.csv`` in ``vgmidi_dir`` (its ``midi``
    column names ``labelled/phrases/<file>``; the file is ``phrases/<file>``).

    Raises:
        ValueError: the CSV or a phrase is missing or malformed (naming it).
    """
    table = vgmidi_dir / "vgmidi_labelled.csv"
    if not table.is_file():
        raise ValueError(f"{table}: VGMIDI label table not found (set --data to the folder holding vgmidi/)")
    paths, rows, quadrants, groups, pieces = [], [], [], [], []
    with table.open(newline="", encoding="utf-8") as file:
        for line, record in enumerate(csv.DictReader(file), start=2):
            try:
                valence, arousal = int(record["valence"]), int(record["arousal"])
                path = vgmidi_dir / "phrases" / Path(record["midi"]).name
                group = f"{record['game']}/{record['piece']}"
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{table}:{line}: malformed row ({error}); expected columns "
                                 "id,series,console,game,piece,midi,valence,arousal with valence, arousal = 1 or -1") from None
            if valence not in (1, -1) or arousal not in (1, -1):
                raise ValueError(f"{table}:{line}: valence and arousal must be 1 or -1 (got {valence}, {arousal})")
            notes = read_midi_notes(path)
            paths.append(path)
            pieces.append(notes)
            rows.append(features(notes))
            quadrants.append(quadrant_index(valence, arousal))
            groups.append(group)
    return LabelledPhrases(paths, np.asarray(rows), np.asarray(quadrants), np.asarray(groups), pieces)


def held_out_split(phrases: LabelledPhrases, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(train_indices, held_out_indices)`` of the fixed split (see the module
    docstring): grouped by piece, stratified by quadrant, ~1/4 held out."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed)
    train, held_out = next(folds.split(phrases.features, phrases.quadrant, phrases.group))
    return np.sort(train), np.sort(held_out)


def train_classifier(x: np.ndarray, quadrant: np.ndarray):
    """A fitted scikit-learn pipeline: ``StandardScaler`` then
    ``LogisticRegression(C=0.5, class_weight="balanced")`` (multinomial, L2);
    ``predict(features) -> class indices``. Deterministic (lbfgs solver)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000))
    model.fit(x, quadrant)
    return model


@dataclass(frozen=True)
class ClassifierReport:
    """How well the classifier does on held-out VGMIDI phrases.

    Attributes (shares in 0..1):
        n_train, n_held_out: phrase counts.
        quadrant_accuracy: 4-class accuracy on the held-out phrases.
        valence_accuracy, arousal_accuracy: per-axis accuracy of the
            predicted quadrant's sign.
        quadrant_chance, valence_chance, arousal_chance: chance levels
            (always answering the training set's most common class).
        cross_validated_quadrant_accuracy: mean 4-class accuracy over the 4
            grouped, stratified folds (each held out once), for the spread.
    """

    n_train: int
    n_held_out: int
    quadrant_accuracy: float
    valence_accuracy: float
    arousal_accuracy: float
    quadrant_chance: float
    valence_chance: float
    arousal_chance: float
    cross_validated_quadrant_accuracy: float


def _axis_signs(quadrant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    table = np.asarray(QUADRANTS)
    return table[quadrant, 0], table[quadrant, 1]


def _majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    values, counts = np.unique(train_labels, return_counts=True)
    return float((test_labels == values[counts.argmax()]).mean())


def evaluate_classifier(phrases: LabelledPhrases, seed: int = SPLIT_SEED):
    """Train on the fixed split's training phrases and test on its held-out
    ones. Returns ``(model, report)`` (a :class:`ClassifierReport`)."""
    from sklearn.model_selection import StratifiedGroupKFold

    train, held_out = held_out_split(phrases, seed)
    model = train_classifier(phrases.features[train], phrases.quadrant[train])
    predicted = model.predict(phrases.features[held_out])
    truth = phrases.quadrant[held_out]
    predicted_valence, predicted_arousal = _axis_signs(predicted)
    true_valence, true_arousal = _axis_signs(truth)
    train_valence, train_arousal = _axis_signs(phrases.quadrant[train])
    fold_accuracy = []
    folds = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed)
    for fold_train, fold_test in folds.split(phrases.features, phrases.quadrant, phrases.group):
        fold_model = train_classifier(phrases.features[fold_train], phrases.quadrant[fold_train])
        fold_accuracy.append((fold_model.predict(phrases.features[fold_test]) == phrases.quadrant[fold_test]).mean())
    report = ClassifierReport(
        n_train=len(train),
        n_held_out=len(held_out),
        quadrant_accuracy=float((predicted == truth).mean()),
        valence_accuracy=float((predicted_valence == true_valence).mean()),
        arousal_accuracy=float((predicted_arousal == true_arousal).mean()),
        quadrant_chance=_majority_accuracy(phrases.quadrant[train], truth),
        valence_chance=_majority_accuracy(train_valence, true_valence),
        arousal_chance=_majority_accuracy(train_arousal, true_arousal),
        cross_validated_quadrant_accuracy=float(np.mean(fold_accuracy)),
    )
    return model, report
