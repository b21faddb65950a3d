"""Evaluate a part generator: emotion control, an independent emotion
classifier, closeness to real music, and speed.

    python -m models.evaluate [--generator model|rule_based] [--quick]
                              [--write-card [PATH]] [--json PATH]

Works with any :class:`adaptive.generator.PartGenerator`; ``model`` is
``models.generate.ModelPartGenerator`` (the trained Transformer),
``rule_based`` the engine's rule-based stand-in. Everything measured here uses
analysis that shares no code with the generator (music21 key finding, numpy
features, a scikit-learn classifier trained on VGMIDI); see docs/evaluation.md
for what each figure means.

The request grid follows the engine: a cue's key and chords come with its
emotion, so a piece asked for positive valence is in a major key with a major
progression, negative valence a minor one; valence 0 gets both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from adaptive.generator import BarRequest, PartGenerator, RuleBasedGenerator
from adaptive.harmony import Chord, ChordQuality, Key
from models import analysis
from models.analysis import Notes

DEFAULT_DATA_DIR = Path(os.environ.get("ADAPTIVE_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data"))
"""``$ADAPTIVE_DATA`` if set (the setting models/ training uses too), else
``../shared/data`` from the project root; ``--data`` overrides both."""

DEFAULT_CARD = Path(__file__).resolve().parent / "MODEL_CARD.md"
CARD_BEGIN = "<!-- evaluation:begin -->"
CARD_END = "<!-- evaluation:end -->"
HELD_OUT_PATTERNS = ("*heldout*.json", "*held_out*.json", "*held-out*.json")
"""File names of the model's held-out list looked for next to the checkpoint and
in ``models/``: a JSON object ``{"pop909": [paths], "vgmidi": [paths]}``, paths
relative to the data folder (what ``models.dataset.heldout_split`` returns)."""

POP909_HELD_OUT_SEED = 909
POP909_HELD_OUT_SHARE = 0.1


# ---------------------------------------------------------------- the request grid


@dataclass(frozen=True)
class Progression:
    """A key and one chord per bar (repeating)."""

    name: str
    key: Key
    chords: tuple[Chord, ...]

    @classmethod
    def parse(cls, key: str, chords: str) -> "Progression":
        return cls(f"{key}: {chords}", Key.parse(key), tuple(Chord.parse(c) for c in chords.split()))


TUNING_MAJOR_PROGRESSIONS = (
    Progression.parse("C major", "C G Am F C F G C"),
    Progression.parse("D major", "D Bm7 Gmaj7 Asus4 D F#m G A"),  # the default bank's explore cue
    Progression.parse("Bb major", "Bb F Gm Eb Bb Eb F Bb"),
)
TUNING_MINOR_PROGRESSIONS = (
    Progression.parse("A minor", "Am F C G F Dm Esus4 E"),  # the default bank's sorrow cue
    Progression.parse("D minor", "Dm Bb C Dm Dm Bb Gm A"),  # the default bank's combat cue
    Progression.parse("E minor", "Em C Em C Am Em C B7"),  # the default bank's stealth cue
)
"""The progressions that decoding settings (the guidance scale, sampling) were
chosen on, and that the previous generator's bonuses were tuned on."""

HELD_OUT_MAJOR_PROGRESSIONS = (
    Progression.parse("G major", "G Em Am D G Bm C D"),
    Progression.parse("F major", "F Dm Bb C F Am Gm C"),
    Progression.parse("E major", "E C#m A B E G#m F#m B"),
)
HELD_OUT_MINOR_PROGRESSIONS = (
    Progression.parse("C minor", "Cm Ab Fm G Cm Eb Fm G"),
    Progression.parse("B minor", "Bm G D A Bm Em F# Bm"),
    Progression.parse("F# minor", "F#m D A E F#m Bm C#7 F#m"),
)
"""Progressions never used to choose anything: the evaluation's default."""

PROGRESSION_SETS = {"held_out": (HELD_OUT_MAJOR_PROGRESSIONS, HELD_OUT_MINOR_PROGRESSIONS),
                    "tuning": (TUNING_MAJOR_PROGRESSIONS, TUNING_MINOR_PROGRESSIONS)}
MAJOR_PROGRESSIONS, MINOR_PROGRESSIONS = PROGRESSION_SETS["held_out"]


@dataclass(frozen=True)
class Grid:
    """The requests of an evaluation.

    Every (valence, arousal) point with valence != 0 is asked in each of the
    first ``progressions_per_mode`` progressions of its mode (major for
    valence > 0, minor for < 0) with each seed; valence 0 is asked in the
    progressions of both modes with the first seed. A piece is ``bars`` bars
    of ``beats_per_bar``/4 at ``bpm``, one generator stream per role, the
    roles stacked.
    """

    valences: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    arousals: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    seeds: tuple[int, ...] = (1, 2)
    progressions_per_mode: int = 3
    roles: tuple[str, ...] = ("melody", "arpeggio", "bass")
    bars: int = 8
    beats_per_bar: int = 4
    bpm: float = 120.0
    bridge_trials: int = 100
    progression_set: str = "held_out"

    def pieces(self) -> list["PieceRequest"]:
        """Every piece of the grid, in a fixed order."""
        MAJOR_PROGRESSIONS, MINOR_PROGRESSIONS = PROGRESSION_SETS[self.progression_set]  # noqa: N806
        requests = []
        for valence in self.valences:
            for arousal in self.arousals:
                if valence == 0:
                    progressions = MAJOR_PROGRESSIONS[: self.progressions_per_mode] + MINOR_PROGRESSIONS[: self.progressions_per_mode]
                    seeds = self.seeds[:1]
                else:
                    progressions = (MAJOR_PROGRESSIONS if valence > 0 else MINOR_PROGRESSIONS)[: self.progressions_per_mode]
                    seeds = self.seeds
                for progression in progressions:
                    for seed in seeds:
                        requests.append(PieceRequest(valence, arousal, progression, seed))
        return requests

    def describe(self) -> str:
        """One paragraph saying exactly what is asked."""
        pieces = self.pieces()
        MAJOR_PROGRESSIONS, MINOR_PROGRESSIONS = PROGRESSION_SETS[self.progression_set]  # noqa: N806
        major = "; ".join(p.name for p in MAJOR_PROGRESSIONS[: self.progressions_per_mode])
        minor = "; ".join(p.name for p in MINOR_PROGRESSIONS[: self.progressions_per_mode])
        return (
            f"{len(pieces)} pieces of {self.bars} bars of {self.beats_per_bar}/4 at {self.bpm:g} bpm "
            f"(roles {' + '.join(self.roles)}, each its own stream of bars 0..{self.bars - 1}, stacked). "
            f"Valence in {list(self.valences)} x arousal in {list(self.arousals)}; "
            f"valence > 0 in major ({major}), valence < 0 in minor ({minor}), each with seeds {list(self.seeds)}; "
            f"valence 0 in all {2 * self.progressions_per_mode} progressions with seed {self.seeds[0]}. "
            + ("These progressions were never used to choose any setting."
               if self.progression_set == "held_out" else
               "These are the progressions decoding settings were chosen on (the 'tuning' set).")
        )


QUICK_GRID = Grid(valences=(-1.0, 0.0, 1.0), arousals=(-1.0, 0.0, 1.0), seeds=(1,), progressions_per_mode=1,
                  bridge_trials=20)


@dataclass(frozen=True)
class PieceRequest:
    """One piece of the grid."""

    valence: float
    arousal: float
    progression: Progression
    seed: int


@dataclass
class GeneratedPiece:
    """A generated piece and what it cost.

    Attributes:
        request: what was asked.
        notes: the piece's notes (all roles).
        bars: the bar parts, ``bars[role_index][bar_index]``.
        compute_seconds: wall time inside ``generate_bar`` for the whole piece.
        notes_outside_bar: notes starting before 0 or at/after the bar's length
            (the interface forbids them; kept, and counted).
    """

    request: PieceRequest
    notes: Notes
    bars: list
    compute_seconds: float
    notes_outside_bar: int


def generate_piece(generator: PartGenerator, piece: PieceRequest, grid: Grid) -> GeneratedPiece:
    """Ask ``generator`` for every bar of every role of ``piece``, role after
    role, bars in order from 0 (as the engine's generated layer does)."""
    parts = []
    all_bars = []
    compute = 0.0
    outside = 0
    chords = piece.progression.chords
    for role in grid.roles:
        role_bars = []
        for bar_index in range(grid.bars):
            request = BarRequest(bar_index, piece.progression.key, chords[bar_index % len(chords)],
                                 grid.beats_per_bar, grid.bpm, piece.valence, piece.arousal, role, piece.seed)
            started = time.perf_counter()
            try:
                part = generator.generate_bar(request)
            except Exception as error:
                raise RuntimeError(f"generator {getattr(generator, 'name', generator)!r} failed on {request}: "
                                   f"{type(error).__name__}: {error}") from error
            compute += time.perf_counter() - started
            outside += int(((part.start_beats < 0) | (part.start_beats >= grid.beats_per_bar)).sum())
            role_bars.append(part)
            parts.append((part, bar_index * grid.beats_per_bar))
        all_bars.append(role_bars)
    notes = Notes.from_parts(parts, grid.bars * grid.beats_per_bar, grid.bpm)
    return GeneratedPiece(piece, notes, all_bars, compute, outside)


# ---------------------------------------------------------------- 1. emotion control


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
        return float("nan")  # undefined: too few points or a constant
    return float(spearmanr(x[keep], y[keep]).statistic)


def emotion_control(pieces: Sequence[GeneratedPiece], algorithms: Sequence[str] = analysis.KEY_ALGORITHMS) -> dict:
    """Mode, density and velocity against the requested emotion.

    Returns a dict: ``mode_match`` (share of valence != 0 pieces whose key
    found by ``algorithms[0]`` has the mode the valence asks for),
    ``mode_match_major`` / ``mode_match_minor`` (valence > 0 / < 0 only),
    ``key_match`` (tonic and mode equal the requested key),
    ``mode_match_by_algorithm``, ``valence0_mode_agrees_with_key`` (valence 0:
    detected mode = the requested key's mode), ``spearman_arousal_density``
    (notes per beat), ``spearman_arousal_velocity`` (mean velocity),
    ``spearman_valence_mean_pitch``, ``by_arousal`` (mean density and
    velocity per requested arousal), ``silent_pieces``.
    A silent piece counts as a mode mismatch and is left out of the
    correlations.
    """
    by_algorithm: dict[str, list[bool]] = {a: [] for a in algorithms}
    key_match, major, minor, valence0 = [], [], [], []
    arousal, density, velocity, valence, pitch = [], [], [], [], []
    silent = 0
    for piece in pieces:
        request, notes = piece.request, piece.notes
        wanted_mode = request.progression.key.mode.value
        if len(notes) == 0:
            silent += 1
            detected = {a: None for a in algorithms}
        else:
            detected = {a: analysis.detect_key(notes, a) for a in algorithms}
            arousal.append(request.arousal)
            valence.append(request.valence)
            density.append(analysis.note_density_per_beat(notes))
            velocity.append(analysis.mean_velocity(notes))
            pitch.append(float(notes.pitch.mean()))
        headline = detected[algorithms[0]]
        if request.valence == 0:
            valence0.append(headline is not None and headline.mode == wanted_mode)
            continue
        for a in algorithms:
            by_algorithm[a].append(detected[a] is not None and detected[a].mode == wanted_mode)
        matched = headline is not None and headline.mode == wanted_mode
        (major if request.valence > 0 else minor).append(matched)
        key_match.append(matched and headline.tonic_pitch_class == request.progression.key.tonic_pitch_class)
    share = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
    levels = sorted(set(arousal))
    return {
        "key_algorithm": algorithms[0],
        "mode_match": share(by_algorithm[algorithms[0]]),
        "mode_match_major": share(major),
        "mode_match_minor": share(minor),
        "key_match": share(key_match),
        "mode_match_by_algorithm": {a: share(v) for a, v in by_algorithm.items()},
        "n_mode_pieces": len(by_algorithm[algorithms[0]]),
        "valence0_mode_agrees_with_key": share(valence0),
        "n_valence0_pieces": len(valence0),
        "spearman_arousal_density": _spearman(arousal, density),
        "spearman_arousal_velocity": _spearman(arousal, velocity),
        "spearman_valence_mean_pitch": _spearman(valence, pitch),
        "by_arousal": [
            {
                "arousal": level,
                "notes_per_beat": float(np.mean([d for a, d in zip(arousal, density) if a == level])),
                "mean_velocity": float(np.mean([v for a, v in zip(arousal, velocity) if a == level])),
            }
            for level in levels
        ],
        "silent_pieces": silent,
        "n_pieces": len(pieces),
    }


# ---------------------------------------------------------------- 2. the emotion classifier


def classifier_on_generated(model, pieces: Sequence[GeneratedPiece]) -> dict:
    """Accuracy of the VGMIDI classifier on generated pieces whose request lies
    in a quadrant (valence and arousal both != 0): overall, per requested
    quadrant, and per axis. Silent or single-note pieces count as wrong."""
    from models.emotion_classifier import QUADRANT_NAMES, QUADRANTS, features, quadrant_index

    rows = []
    for piece in pieces:
        request = piece.request
        if request.valence == 0 or request.arousal == 0:
            continue
        wanted = quadrant_index(request.valence, request.arousal)
        if len(piece.notes) < 2:
            rows.append((wanted, -1))
            continue
        predicted = int(model.predict(features(piece.notes)[None, :])[0])
        rows.append((wanted, predicted))
    if not rows:
        return {"n_pieces": 0}
    wanted = np.array([r[0] for r in rows])
    predicted = np.array([r[1] for r in rows])
    table = np.asarray(QUADRANTS + ((0, 0),))  # index -1 = no prediction
    result = {
        "n_pieces": len(rows),
        "quadrant_accuracy": float((wanted == predicted).mean()),
        "valence_accuracy": float((table[wanted, 0] == table[predicted, 0]).mean()),
        "arousal_accuracy": float((table[wanted, 1] == table[predicted, 1]).mean()),
        "by_quadrant": {},
    }
    for index, name in enumerate(QUADRANT_NAMES):
        mask = wanted == index
        if mask.any():
            counts = np.bincount(predicted[mask][predicted[mask] >= 0], minlength=4)
            result["by_quadrant"][name] = {
                "n": int(mask.sum()),
                "accuracy": float((predicted[mask] == index).mean()),
                "predicted": {QUADRANT_NAMES[i]: int(counts[i]) for i in range(4)},
            }
    return result


# ---------------------------------------------------------------- 3. closeness to real music


@dataclass
class RealSet:
    """Real pieces to compare with: notes and the tonic each is measured from."""

    name: str
    notes: list[Notes]
    tonics: list[int]
    source: str  # how the set was chosen


def _longest_key(path: Path) -> Key | None:
    """POP909 ``key_audio.txt``: the key that covers the most time."""
    if not path.is_file():
        return None
    spans: dict[str, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            spans[parts[2]] = spans.get(parts[2], 0.0) + float(parts[1]) - float(parts[0])
    for text, _ in sorted(spans.items(), key=lambda item: -item[1]):
        try:
            return Key.parse(text)
        except ValueError:
            continue
    return None


def read_held_out_list(path: Path) -> dict[str, list[str]]:
    """The model branch's held-out list: ``{"pop909": [...], "vgmidi": [...]}``,
    paths relative to the data folder.

    Raises:
        ValueError: not JSON, or not that shape.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the held-out list ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k, []), list) for k in ("pop909", "vgmidi")):
        raise ValueError(f'{path}: a held-out list must be a JSON object {{"pop909": [paths], "vgmidi": [paths]}}')
    return {k: [str(p) for p in data.get(k, [])] for k in ("pop909", "vgmidi", "corpus") if k in data or k != "corpus"}


def find_held_out_list(checkpoint: Path | None) -> Path | None:
    """The first held-out list (:data:`HELD_OUT_PATTERNS`) found next to
    ``checkpoint`` or in ``models/``, or None."""
    folders = ([checkpoint.parent] if checkpoint else []) + [Path(__file__).resolve().parent]
    for folder in folders:
        for pattern in HELD_OUT_PATTERNS:
            found = sorted(folder.glob(pattern))
            if found:
                return found[0]
    return None


def model_held_out(data_dir: Path, held_out_path: Path | None) -> tuple[dict[str, list[str]] | None, str]:
    """The model's held-out files and where they came from: the JSON list at
    ``held_out_path`` if given, else ``models.dataset.heldout_split(data_dir)``
    if the model's data module provides it, else ``(None, reason)`` (the
    evaluation then uses its own fixed split).

    Raises:
        ValueError: the JSON list is unreadable or malformed.
    """
    if held_out_path is not None:
        shown = held_out_path.resolve()
        try:  # name it relative to the repository, not this machine's folders
            shown = shown.relative_to(Path(__file__).resolve().parent.parent)
        except ValueError:
            pass
        return read_held_out_list(held_out_path), str(shown)
    try:
        from models.dataset import heldout_split
    except ImportError:
        return None, "no held-out list from the model"
    split = heldout_split(data_dir)
    return {k: [str(p) for p in split.get(k, [])] for k in ("pop909", "vgmidi")}, "models.dataset.heldout_split"


def real_sets(data_dir: Path, held_out: dict[str, list[str]] | None, held_out_source: str,
              vgmidi_held_out: Sequence[Path], vgmidi_notes: dict[Path, Notes]) -> list[RealSet]:
    """Held-out VGMIDI phrases and POP909 songs, read into notes with a tonic
    each (POP909: the annotated key covering most of the song; VGMIDI: the key
    music21's Krumhansl-Schmuckler finds, VGMIDI having no key labels)."""
    if held_out is not None:
        vg_paths = [data_dir / p for p in held_out["vgmidi"]]
        pop_paths = [data_dir / p for p in held_out["pop909"]]
        vg_source = pop_source = f"the model's held-out list ({held_out_source})"
    else:
        vg_paths = list(vgmidi_held_out)
        vg_source = "the emotion classifier's held-out phrases (fixed split, see models/emotion_classifier.py)"
        songs = sorted(d for d in (data_dir / "pop909").iterdir() if d.is_dir() and d.name.isdigit()) \
            if (data_dir / "pop909").is_dir() else []
        order = np.random.default_rng(POP909_HELD_OUT_SEED).permutation(len(songs))
        chosen = sorted(songs[i] for i in order[: max(1, round(len(songs) * POP909_HELD_OUT_SHARE))]) if songs else []
        pop_paths = [song / f"{song.name}.mid" for song in chosen]
        pop_source = (f"a fixed split: {POP909_HELD_OUT_SHARE:.0%} of the songs drawn by "
                      f"numpy.random.default_rng({POP909_HELD_OUT_SEED}).permutation")
    sets = []
    vg_notes, vg_tonics = [], []
    for path in vg_paths:
        notes = vgmidi_notes.get(path) or analysis.read_midi_notes(path)
        vg_notes.append(notes)
        vg_tonics.append(analysis.detect_key(notes).tonic_pitch_class)
    if vg_notes:
        sets.append(RealSet("VGMIDI", vg_notes, vg_tonics, vg_source))
    pop_notes, pop_tonics = [], []
    for path in pop_paths:
        key = _longest_key(path.parent / "key_audio.txt")
        notes = analysis.read_midi_notes(path)
        pop_notes.append(notes)
        pop_tonics.append(key.tonic_pitch_class if key else analysis.detect_key(notes).tonic_pitch_class)
    if pop_notes:
        sets.append(RealSet("POP909", pop_notes, pop_tonics, pop_source))
    return sets


HISTOGRAMS: dict[str, Callable[[Notes, int], np.ndarray]] = {
    "pitch_class": lambda notes, tonic: analysis.pitch_class_histogram(notes, tonic),
    "duration": lambda notes, tonic: analysis.duration_histogram(notes),
    "ioi": lambda notes, tonic: analysis.ioi_histogram(notes),
}
"""The compared histograms: tonic-relative pitch class (note counts), note
duration and inter-onset interval (beats, :data:`analysis.DURATION_BIN_EDGES_BEATS`)."""


def closeness(pieces: Sequence[GeneratedPiece], references: Sequence[RealSet]) -> dict:
    """Per reference set and histogram: ``pooled_overlap`` (overlap area of the
    two sets' pooled, normalized histograms, :func:`analysis.histogram_overlap`)
    and ``yang_lerch_oa`` (:func:`analysis.overlap_area_yang_lerch` on per-piece
    normalized histograms). Plus the generated notes' share outside the
    requested key's scale, and outside both the scale and their bar's chord."""
    sounding = [p for p in pieces if len(p.notes) >= 2]
    generated = {name: [f(p.notes, p.request.progression.key.tonic_pitch_class) for p in sounding]
                 for name, f in HISTOGRAMS.items()}
    result: dict = {"references": {}}
    for reference in references:
        figures = {"n_pieces": len(reference.notes), "source": reference.source}
        for name, f in HISTOGRAMS.items():
            real = [f(n, t) for n, t in zip(reference.notes, reference.tonics)]
            real = [h for h in real if h.sum() > 0]
            ours = [h for h in generated[name] if h.sum() > 0]
            if len(real) < 2 or not ours:
                figures[name] = {"pooled_overlap": float("nan"), "yang_lerch_oa": float("nan")}
                continue
            figures[name] = {
                "pooled_overlap": analysis.histogram_overlap(np.sum(ours, axis=0), np.sum(real, axis=0)),
                "yang_lerch_oa": analysis.overlap_area_yang_lerch(analysis.normalized(ours), analysis.normalized(real)),
            }
        result["references"][reference.name] = figures
    outside_scale = outside_both = total = 0
    for piece in pieces:
        key = piece.request.progression.key
        scale = set(key.scale_pitch_classes())
        for role_bars in piece.bars:
            for bar_index, part in enumerate(role_bars):
                chords = piece.request.progression.chords
                chord = set(chords[bar_index % len(chords)].pitch_classes())
                pcs = part.pitch.astype(int) % 12
                off_scale = np.array([pc not in scale for pc in pcs], bool)
                off_chord = np.array([pc not in chord for pc in pcs], bool)
                total += len(pcs)
                outside_scale += int(off_scale.sum())
                outside_both += int((off_scale & off_chord).sum())
    result["outside_key_share"] = outside_scale / total if total else float("nan")
    result["outside_key_and_chord_share"] = outside_both / total if total else float("nan")
    result["n_generated_notes"] = total
    return result


# ---------------------------------------------------------------- 5. realness


def role_pieces(pieces: Sequence[GeneratedPiece], grid: Grid) -> dict[str, list]:
    """Generated pieces as :class:`models.realness.RolePiece` per role, and
    ``"texture"`` (every role of a piece together)."""
    from models.realness import RolePiece

    out: dict[str, list] = {role: [] for role in grid.roles}
    out["texture"] = []
    for piece in pieces:
        tonic = piece.request.progression.key.tonic_pitch_class
        per_role = [RolePiece.from_bar_parts(bars, grid.beats_per_bar, tonic) for bars in piece.bars]
        for role, role_piece in zip(grid.roles, per_role):
            out[role].append(role_piece)
        out["texture"].append(RolePiece(np.concatenate([p.onset_beats for p in per_role]),
                                        np.concatenate([p.duration_beats for p in per_role]),
                                        np.concatenate([p.pitch for p in per_role]), grid.beats_per_bar, grid.bars,
                                        tonic))
    return out


def realness_section(pieces: Sequence[GeneratedPiece], grid: Grid, data_dir: Path,
                     held_out: dict[str, list[str]] | None) -> dict:
    """Real-vs-generated classification (:mod:`models.realness`) against the
    held-out real pieces of each reference set; empty without a held-out list."""
    from models.realness import held_out_references, realness_figures
    from models.tokenizer import Vocabulary

    if held_out is None:
        return {}
    vocab = Vocabulary.build()
    references = held_out_references(data_dir, held_out, vocab)
    return realness_figures(role_pieces(pieces, grid), references, vocab, tuple(grid.roles))


# ---------------------------------------------------------------- 4. speed


def bridge_times(generator: PartGenerator, grid: Grid) -> np.ndarray:
    """Seconds to generate a 2-bar bridge of 4/4 at 120 bpm, ``grid.bridge_trials``
    times, as the engine asks for one: role ``arpeggio``, bar 0 on the
    outgoing cue's chord in its key, bar 1 on the dominant seventh of the
    incoming key, the emotion moving from the outgoing point to the incoming
    one. Trials cycle through the grid's progressions and emotions, with a new
    seed each."""
    progressions = MAJOR_PROGRESSIONS + MINOR_PROGRESSIONS
    rng = np.random.default_rng(20)
    seconds = []
    for trial in range(grid.bridge_trials):
        old = progressions[trial % len(progressions)]
        new = progressions[(trial * 5 + 1) % len(progressions)]
        (v0, a0), (v1, a1) = rng.uniform(-1, 1, (2, 2))
        dominant = Chord((new.key.tonic_pitch_class + 7) % 12, ChordQuality.DOMINANT7)
        requests = [
            BarRequest(0, old.key, old.chords[trial % len(old.chords)], 4, 120.0,
                       (v0 + v1) / 2, (a0 + a1) / 2, "arpeggio", 10_000 + trial),
            BarRequest(1, new.key, dominant, 4, 120.0, v1, a1, "arpeggio", 10_000 + trial),
        ]
        started = time.perf_counter()
        for request in requests:
            generator.generate_bar(request)
        seconds.append(time.perf_counter() - started)
    return np.asarray(seconds)


def speed(pieces: Sequence[GeneratedPiece], grid: Grid, bridge_seconds: np.ndarray, load_seconds: float,
          first_bar_seconds: float) -> dict:
    """Real-time factor over the grid (seconds of one part's music per second
    of compute, every bar of every role counted), bridge p50/p99 in ms, load
    time, and the first bar's time (a generator that loads lazily pays there)."""
    compute = sum(p.compute_seconds for p in pieces)
    music = len(pieces) * len(grid.roles) * grid.bars * grid.beats_per_bar * 60.0 / grid.bpm
    per_bar_ms = 1000 * compute / max(1, len(pieces) * len(grid.roles) * grid.bars)
    return {
        "real_time_factor": music / compute if compute > 0 else float("inf"),
        "mean_bar_ms": per_bar_ms,
        "bridge_p50_ms": float(np.percentile(bridge_seconds, 50) * 1000) if len(bridge_seconds) else float("nan"),
        "bridge_p99_ms": float(np.percentile(bridge_seconds, 99) * 1000) if len(bridge_seconds) else float("nan"),
        "bridge_trials": int(len(bridge_seconds)),
        "load_seconds": load_seconds,
        "first_bar_ms": first_bar_seconds * 1000,
    }


# ---------------------------------------------------------------- the report


def _percent(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f} %"


def _number(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _target(value: float, target: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "met" if value >= target else "**missed**"


def render_markdown(results: dict) -> str:
    """The evaluation as Markdown tables (printed, and written into the model card)."""
    emotion, classifier, closeness_figures, speed_figures = (
        results["emotion_control"], results["classifier"], results["closeness"], results["speed"])
    lines = [
        f"Generator: `{results['generator']}`; evaluated {results['date']} by `{results['command']}` "
        f"in {results['run_seconds']:.0f} s on one thread.",
        "",
        f"**Request grid.** {results['grid']}",
        "",
        "### 1. Emotion control",
        "",
        f"Mode found by music21's `analysis.discrete.{emotion['key_algorithm']}` (Krumhansl-Kessler probe-tone "
        "profiles, duration-weighted) on a stream of the generated notes. Density = notes per beat "
        "(every note of a chord counts; the grid's tempo is fixed, so per second = per beat x bpm/60).",
        "",
        "| Measure | Value | Target |",
        "|---|---|---|",
        f"| Mode matches valence (valence != 0, {emotion['n_mode_pieces']} pieces) | {_percent(emotion['mode_match'])} "
        f"| >= 90 % ({_target(emotion['mode_match'], 0.9)}) |",
        f"| &nbsp; valence > 0 → major | {_percent(emotion['mode_match_major'])} | |",
        f"| &nbsp; valence < 0 → minor | {_percent(emotion['mode_match_minor'])} | |",
        f"| Key (tonic and mode) = requested key | {_percent(emotion['key_match'])} | |",
        f"| Valence 0: mode = the requested key's mode ({emotion['n_valence0_pieces']} pieces) "
        f"| {_percent(emotion['valence0_mode_agrees_with_key'])} | (reported only) |",
        f"| Spearman ρ(arousal, notes per beat) | {_number(emotion['spearman_arousal_density'])} "
        f"| >= 0.8 ({_target(emotion['spearman_arousal_density'], 0.8)}) |",
        f"| Spearman ρ(arousal, mean velocity) | {_number(emotion['spearman_arousal_velocity'])} "
        f"| >= 0.8 ({_target(emotion['spearman_arousal_velocity'], 0.8)}) |",
        f"| Spearman ρ(valence, mean pitch) | {_number(emotion['spearman_valence_mean_pitch'])} | (reported only) |",
        f"| Silent pieces | {emotion['silent_pieces']} of {emotion['n_pieces']} | 0 |",
        "",
        "Mode match by key-finding algorithm: " + ", ".join(
            f"{name} {_percent(value)}" for name, value in emotion["mode_match_by_algorithm"].items()) + ".",
        "",
        "| Requested arousal | " + " | ".join(_number(row["arousal"], 1) for row in emotion["by_arousal"]) + " |",
        "|---|" + "---|" * len(emotion["by_arousal"]),
        "| Notes per beat | " + " | ".join(_number(row["notes_per_beat"]) for row in emotion["by_arousal"]) + " |",
        "| Mean velocity | " + " | ".join(_number(row["mean_velocity"], 1) for row in emotion["by_arousal"]) + " |",
        "",
        "### 2. Emotion classifier (trained on VGMIDI)",
        "",
        "Multinomial logistic regression on standardized note features (mode strength, key clarity, notes "
        "per second, inter-onset intervals, durations, velocity, register, polyphony; "
        "`models/emotion_classifier.py`), trained on VGMIDI phrases. Held-out split fixed: phrases grouped by "
        "piece, stratified by quadrant (`StratifiedGroupKFold(4, shuffle, random_state=2019)`, first fold). "
        "Chance = always answering the training set's most common class.",
        "",
        "| Held-out VGMIDI phrases | Accuracy | Chance |",
        "|---|---|---|",
        f"| Quadrant (4 classes; {classifier['n_held_out']} held out, {classifier['n_train']} trained) "
        f"| {_percent(classifier['quadrant_accuracy'])} | {_percent(classifier['quadrant_chance'])} (uniform 25 %) |",
        f"| Valence sign | {_percent(classifier['valence_accuracy'])} | {_percent(classifier['valence_chance'])} |",
        f"| Arousal sign | {_percent(classifier['arousal_accuracy'])} | {_percent(classifier['arousal_chance'])} |",
        f"| Quadrant, mean over the 4 folds | {_percent(classifier['cross_validated_quadrant_accuracy'])} | |",
        "",
    ]
    generated = results["classifier_on_generated"]
    if generated.get("n_pieces"):
        lines += [
            f"On generated pieces ({generated['n_pieces']} with valence and arousal != 0): quadrant "
            f"{_percent(generated['quadrant_accuracy'])}, valence {_percent(generated['valence_accuracy'])}, "
            f"arousal {_percent(generated['arousal_accuracy'])} (chance 25 % / 50 % / 50 % for a grid balanced "
            "over quadrants).",
            "",
            "| Requested quadrant | Pieces | Classified as requested | Predicted V+A+ / V+A- / V-A+ / V-A- |",
            "|---|---|---|---|",
        ]
        for name, row in generated["by_quadrant"].items():
            counts = " / ".join(str(row["predicted"][q]) for q in ("V+A+", "V+A-", "V-A+", "V-A-"))
            lines.append(f"| {name} | {row['n']} | {_percent(row['accuracy'])} | {counts} |")
        lines.append("")
    lines += [
        "### 3. Closeness to real music",
        "",
        "Histograms: pitch class relative to the tonic (note counts; generated: the requested key's tonic; "
        "POP909: the annotated key covering most of the song; VGMIDI: the key music21's Krumhansl-Schmuckler "
        "finds), note duration and inter-onset interval (beats; bins around 1/8, 1/4, 1/3, 1/2, 3/4, 1, 1.5, 2, "
        "3, 4 beats and longer). *Pooled overlap* = overlapping area of the two sets' pooled, normalized "
        "histograms, sum(min(p, q)). *OA* = Yang & Lerch (2020) overlapping area of the Gaussian kernel "
        "densities of the real set's intra-set distances and the generated-to-real inter-set distances "
        "(Euclidean distances between per-piece normalized histograms). Both 0..1, 1 = indistinguishable.",
        "",
        "| Reference | Pieces | Pitch class: pooled / OA | Duration: pooled / OA | IOI: pooled / OA |",
        "|---|---|---|---|---|",
    ]
    for name, figures in closeness_figures["references"].items():
        cells = " | ".join(
            f"{_number(figures[h]['pooled_overlap'])} / {_number(figures[h]['yang_lerch_oa'])}" for h in HISTOGRAMS)
        lines.append(f"| {name} held out | {figures['n_pieces']} | {cells} |")
    lines += [""] + [f"{name} reference: {figures['source']}." for name, figures in closeness_figures["references"].items()]
    lines += [
        "",
        f"Generated notes outside the requested key's scale (natural minor for minor keys): "
        f"{_percent(closeness_figures['outside_key_share'])}; outside both the scale and their bar's chord: "
        f"{_percent(closeness_figures['outside_key_and_chord_share'])} "
        f"(of {closeness_figures['n_generated_notes']} notes).",
        "",
        "### 4. Realness: can a classifier tell generated from real?",
        "",
        "A random forest on 84 symbolic features of each piece (key-relative pitch classes, top-line "
        "intervals, step/leap/repeat and tonic shares, onset positions, note lengths, bar-rhythm and "
        "bar-interval repetition, density and register; `models/realness.py`), balanced accuracy in "
        "stratified 5-fold cross-validation on equal numbers of real and generated 8-bar pieces, the mean "
        "over 8 draws (each its own subsample and fold split; ± = a draw's standard deviation, the mean's "
        "is about a third of it). "
        "0.50 = cannot be told apart; target <= 0.70. Real pieces: 8-bar windows from bar 0 of a period of "
        "the model's held-out files, in 4/4, each role as the training data defines it.",
        "",
        "| Reference | Role | Pieces each | Balanced accuracy | Most telling features |",
        "|---|---|---|---|---|",
        *[f"| {ref} | {role} | {f['n_per_class']} | {_number(f['balanced_accuracy'])} ± {_number(f['draw_sd'])} "
          f"| {', '.join(name for name, _ in f['top_features'][:3])} |"
          for ref, roles in results.get("realness", {}).items() for role, f in roles.items()],
        "",
        *_statistics_lines(results.get("realness", {})),
        "### 5. Speed (one CPU thread)",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| Real-time factor (seconds of one part's music per second of compute, over the grid) "
        f"| {_number(speed_figures['real_time_factor'], 1)}x |",
        f"| Mean time per bar | {_number(speed_figures['mean_bar_ms'], 2)} ms |",
        f"| 2-bar bridge (4/4, 120 bpm = 4 s of music), p50 / p99 over {speed_figures['bridge_trials']} "
        f"| {_number(speed_figures['bridge_p50_ms'], 2)} / {_number(speed_figures['bridge_p99_ms'], 2)} ms |",
        f"| Load time (constructing the generator) | {_number(speed_figures['load_seconds'] * 1000, 1)} ms |",
        f"| First bar after loading (cold) | {_number(speed_figures['first_bar_ms'], 2)} ms |",
        "",
        f"Machine: {results['machine']}.",
    ]
    return "\n".join(lines) + "\n"


def _statistics_lines(realness: dict) -> list[str]:
    lines = []
    for ref, roles in realness.items():
        stats = roles.get("melody", {}).get("statistics")
        if not stats:
            continue
        lines += [f"Melody statistics against {ref} (real quartiles; generated median, inside the real "
                  "interquartile range?):", "",
                  "| Statistic | Real Q1 / median / Q3 | Generated median | Inside |", "|---|---|---|---|"]
        for name, row in stats.items():
            lines.append(f"| {name.replace('_', ' ')} | {_number(row['real_q1'])} / {_number(row['real_median'])} / "
                         f"{_number(row['real_q3'])} | {_number(row['generated_median'])} | "
                         f"{'yes' if row['inside'] else '**no**'} |")
        lines.append("")
    return lines


def write_card(path: Path, markdown: str) -> None:
    """Replace what lies between :data:`CARD_BEGIN` and :data:`CARD_END` in
    ``path`` with ``markdown`` (the marker lines stay).

    Raises:
        ValueError: the file is missing, or lacks either marker, or has them
            out of order or more than once; the file is then left unchanged.
    """
    lines, begin, end = _card_sections(path)
    body = markdown if markdown.endswith("\n") else markdown + "\n"
    path.write_text("".join(lines[: begin + 1]) + body + "".join(lines[end:]), encoding="utf-8")


def _card_sections(path: Path) -> tuple[list[str], int, int]:
    """The card's lines and the indices of its begin and end marker lines.

    Raises:
        ValueError: as :func:`write_card`.
    """
    if not path.is_file():
        raise ValueError(f"{path}: model card not found (it must exist and hold the lines {CARD_BEGIN} and {CARD_END})")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == CARD_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == CARD_END]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise ValueError(
            f"{path}: the evaluation section must be marked by one line {CARD_BEGIN} followed later by one line "
            f"{CARD_END} (found {len(begins)} begin and {len(ends)} end markers"
            + (", end before begin" if begins and ends and begins[0] > ends[0] else "") + "); file left unchanged"
        )
    return lines, begins[0], ends[0]


def _machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    family = model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            name = name.strip()
            if name == "model name" and cpu == (platform.processor() or platform.machine()):
                cpu = value.strip()
            elif name == "cpu family" and family is None:
                family = value.strip()
            elif name == "model" and model is None:
                model = value.strip()
    except OSError:
        pass
    if family is not None:
        cpu += f" (family {family}, model {model})"
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def load_generator(name: str, checkpoint: Path | None, **options) -> tuple[PartGenerator, float]:
    """``(generator, seconds to construct it)``; the model runs on one thread.
    ``options`` go to :class:`models.generate.ModelPartGenerator` (guidance_scale,
    texture_from_arousal, constrained).

    Raises:
        ValueError: an unknown name, or the model cannot be imported.
    """
    if name == "rule_based":
        started = time.perf_counter()
        generator = RuleBasedGenerator()
        return generator, time.perf_counter() - started
    if name != "model":
        raise ValueError(f"unknown generator {name!r} (allowed: model, rule_based)")
    try:
        from models.generate import ModelPartGenerator
    except ImportError as error:
        raise ValueError(
            f"--generator model needs models.generate.ModelPartGenerator, which cannot be imported ({error}). "
            "It comes with the trained model (models/generate.py); use --generator rule_based to evaluate "
            "the rule-based stand-in."
        ) from None
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    generator = ModelPartGenerator(checkpoint=checkpoint, threads=1, **options)
    return generator, time.perf_counter() - started


def evaluate(generator: PartGenerator, load_seconds: float, grid: Grid, data_dir: Path,
             held_out_path: Path | None, command: str, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Run the whole evaluation; returns the figures (see :func:`render_markdown`)."""
    from models.emotion_classifier import evaluate_classifier, held_out_split, read_vgmidi

    started = time.perf_counter()
    pieces_asked = grid.pieces()
    first = pieces_asked[0]
    first_started = time.perf_counter()
    generator.generate_bar(BarRequest(0, first.progression.key, first.progression.chords[0], grid.beats_per_bar,
                                      grid.bpm, first.valence, first.arousal, grid.roles[0], 0))
    first_bar_seconds = time.perf_counter() - first_started
    progress(f"generating {len(pieces_asked)} pieces")
    pieces = [generate_piece(generator, piece, grid) for piece in pieces_asked]
    progress(f"timing {grid.bridge_trials} 2-bar bridges")
    bridges = bridge_times(generator, grid)
    progress("finding keys")
    emotion = emotion_control(pieces)
    progress("training the emotion classifier on VGMIDI")
    phrases = read_vgmidi(data_dir / "vgmidi")
    model, report = evaluate_classifier(phrases)
    generated = classifier_on_generated(model, pieces)
    progress("comparing with held-out real music")
    held_out, held_out_source = model_held_out(data_dir, held_out_path)
    _, vgmidi_held_out = held_out_split(phrases)
    references = real_sets(data_dir, held_out, held_out_source, [phrases.paths[i] for i in vgmidi_held_out],
                           dict(zip(phrases.paths, phrases.notes)))
    close = closeness(pieces, references)
    progress("telling generated from real music")
    realness = realness_section(pieces, grid, data_dir, held_out)
    return {
        "generator": getattr(generator, "name", type(generator).__name__),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": command,
        "grid": grid.describe(),
        "grid_config": asdict(grid),
        "emotion_control": emotion,
        "classifier": asdict(report),
        "classifier_on_generated": generated,
        "closeness": close,
        "realness": realness,
        "speed": speed(pieces, grid, bridges, load_seconds, first_bar_seconds),
        "notes_outside_bar": sum(p.notes_outside_bar for p in pieces),
        "machine": _machine(),
        "run_seconds": time.perf_counter() - started + load_seconds,
    }


ABLATION_ROWS: tuple[tuple[str, str, dict], ...] = (
    ("rule-based generator", "rule_based", {}),
    ("model, no constraints, no guidance", "model", {"constrained": False, "guidance_scale": 1.0}),
    ("model, musical constraints only (no guidance)", "model", {"guidance_scale": 1.0}),
    ("model, constraints + guidance 1.5", "model", {"guidance_scale": 1.5}),
    ("model, constraints + guidance 2", "model", {"guidance_scale": 2.0}),
    ("model, constraints + guidance 3 (default)", "model", {"guidance_scale": 3.0}),
    ("model, guidance 2, no density/loudness tokens from arousal", "model",
     {"guidance_scale": 2.0, "texture_from_arousal": False}),
    ("model, guidance 2, melody over an open harmony (Chord_none, strong-beat and passing-tone rules)", "model",
     {"guidance_scale": 2.0, "open_melody_harmony": True}),
    ("model, guidance 2, one Density for every bar and no repeats (version 4's decoding)", "model",
     {"guidance_scale": 2.0, "density_contours": False, "melody_downbeat_chord_tones": False}),
    ("model, guidance 2, phrase form, downbeat free (no chord-tone rule)", "model",
     {"guidance_scale": 2.0, "melody_downbeat_chord_tones": False}),
    ("model, guidance 2, phrase form, no fresh-rhythm rule (bars alike by chance)", "model",
     {"guidance_scale": 2.0, "fresh_rhythms": False}),
    ("model, guidance 3, no repeat weight (the melody's last note as likely as the model says)", "model",
     {"guidance_scale": 3.0, "repeat_weight": 1.0}),
    ("model, guidance 3, downbeats left to the model (no downbeat plan)", "model",
     {"guidance_scale": 3.0, "downbeat_onsets": False}),
)
"""Rows of ``--ablation``: label, generator, options."""


def ablation(grid: Grid, data_dir: Path, held_out_path: Path | None, checkpoint: Path | None,
             progress: Callable[[str], None] = lambda s: None) -> list[dict]:
    """Every figure of the evaluation for each of :data:`ABLATION_ROWS` on ``grid``."""
    from models.emotion_classifier import evaluate_classifier, read_vgmidi
    from models.realness import held_out_references, realness_figures
    from models.tokenizer import Vocabulary

    phrases = read_vgmidi(data_dir / "vgmidi")
    classifier, report = evaluate_classifier(phrases)
    held_out, _ = model_held_out(data_dir, held_out_path)
    vocab = Vocabulary.build()
    references = held_out_references(data_dir, held_out, vocab) if held_out else {}
    rows = []
    for label, name, options in ABLATION_ROWS:
        progress(f"ablation: {label}")
        generator, _ = load_generator(name, checkpoint, **options)
        pieces = [generate_piece(generator, piece, grid) for piece in grid.pieces()]
        emotion = emotion_control(pieces, analysis.KEY_ALGORITHMS[:1])
        quadrant = classifier_on_generated(classifier, pieces)
        realness = realness_figures(role_pieces(pieces, grid), references, vocab, tuple(grid.roles))
        rows.append({"label": label, "emotion": emotion, "quadrant": quadrant, "realness": realness,
                     "real_quadrant_accuracy": report.quadrant_accuracy,
                     "speed": speed(pieces, grid, np.zeros(0), 0.0, 0.0)})
    return rows


def render_ablation(rows: list[dict], grid: Grid) -> str:
    """The ablation as one Markdown table (and a statistics table)."""
    refs = sorted({ref for row in rows for ref in row["realness"]})
    columns = [(ref, role) for ref in refs for role in ("melody", "texture")]
    lines = [f"Grid: {grid.describe()}", "",
             "| Row | Mode match | ρ(arousal, density) | ρ(arousal, velocity) | Quadrant (VGMIDI classifier) | "
             + " | ".join(f"Realness {ref} {role}" for ref, role in columns) + " | RTF |",
             "|---|---|---|---|---|" + "---|" * len(columns) + "---|"]
    for row in rows:
        e, q = row["emotion"], row["quadrant"]
        cells = [_number(row["realness"].get(ref, {}).get(role, {}).get("balanced_accuracy", float("nan")))
                 for ref, role in columns]
        lines.append(f"| {row['label']} | {_percent(e['mode_match'])} | {_number(e['spearman_arousal_density'])} | "
                     f"{_number(e['spearman_arousal_velocity'])} | {_percent(q.get('quadrant_accuracy', float('nan')))} | "
                     + " | ".join(cells) + f" | {_number(row['speed']['real_time_factor'], 0)}x |")
    lines += ["", f"Held-out real VGMIDI phrases: the classifier finds their quadrant "
                  f"{_percent(rows[0]['real_quadrant_accuracy'])} of the time.", ""]
    ref = "VGMIDI" if "VGMIDI" in refs else (refs[0] if refs else None)
    if ref:
        names = list(next((r["realness"][ref]["melody"]["statistics"] for r in rows
                           if r["realness"].get(ref, {}).get("melody", {}).get("statistics")), {}))
        if names:
            first = next(r for r in rows if r["realness"].get(ref, {}).get("melody", {}).get("statistics"))
            stats = first["realness"][ref]["melody"]["statistics"]
            lines += [f"Melody statistics, generated median (real {ref} interquartile range in the header):", "",
                      "| Row | " + " | ".join(f"{n.replace('_', ' ')} ({_number(stats[n]['real_q1'])}-"
                                               f"{_number(stats[n]['real_q3'])})" for n in names) + " |",
                      "|---|" + "---|" * len(names)]
            for row in rows:
                st = row["realness"].get(ref, {}).get("melody", {}).get("statistics", {})
                lines.append(f"| {row['label']} | " + " | ".join(
                    (_number(st[n]["generated_median"]) + ("" if st[n]["inside"] else " (out)")) if n in st else "n/a"
                    for n in names) + " |")
    return "\n".join(lines) + "\n"


def grid_requests(grid: Grid) -> dict:
    """The grid's pieces as plain JSON data (see tools/dump_generated_pieces.py)."""
    return {"roles": list(grid.roles), "bars": grid.bars, "beats_per_bar": grid.beats_per_bar, "bpm": grid.bpm,
            "pieces": [{"valence": p.valence, "arousal": p.arousal, "key": p.progression.name.split(":")[0],
                        "chords": [c for c in p.progression.name.split(": ", 1)[1].split()], "seed": p.seed}
                       for p in grid.pieces()]}


class DumpedPieces:
    """A stand-in generator that replays pieces written by
    tools/dump_generated_pieces.py for the same grid, in grid order (so an
    older checkout's generator can be judged by this evaluation)."""

    name = "dumped"

    def __init__(self, path: Path, grid: Grid) -> None:
        from adaptive.part import Part

        data = json.loads(Path(path).read_text())
        requests = grid.pieces()
        if len(data) != len(requests):
            raise ValueError(f"{path}: {len(data)} pieces, the grid has {len(requests)}")
        self._bars = {}
        for piece, request in zip(data, requests):
            for role, bars in zip(grid.roles, piece["bars"]):
                for index, notes in enumerate(bars):
                    key = (request.valence, request.arousal, request.progression.key, request.seed, role, index)
                    self._bars[key] = Part.from_notes([tuple(n) for n in notes]) if notes else Part.empty()

    def generate_bar(self, request: BarRequest):
        from adaptive.part import Part

        return self._bars.get((request.valence, request.arousal, request.key, request.seed, request.role,
                               request.bar_index), Part.empty())


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="model", choices=("model", "rule_based"),
                        help="which generator to evaluate (default: model)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the model's checkpoint (default: its own)")
    parser.add_argument("--quick", action="store_true", help="a small grid (3x3 emotions, 2 keys, 1 seed)")
    parser.add_argument("--roles", default=None,
                        help="comma-separated roles stacked into each piece (default: melody,arpeggio,bass)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="folder holding vgmidi/ and pop909/")
    parser.add_argument("--held-out", type=Path, default=None,
                        help="the model's held-out list, JSON {\"pop909\": [...], \"vgmidi\": [...]} (default: "
                             "*heldout*.json next to the checkpoint or in models/, else models.dataset.heldout_split)")
    parser.add_argument("--write-card", nargs="?", const=DEFAULT_CARD, type=Path, default=None, metavar="PATH",
                        help=f"write the tables into the card between {CARD_BEGIN} and {CARD_END} "
                             "(default: models/MODEL_CARD.md)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write the raw figures as JSON")
    parser.add_argument("--guidance", type=float, default=None, help="the model's guidance scale (default: its own)")
    parser.add_argument("--temperature", type=float, default=None, help="the model's sampling temperature")
    parser.add_argument("--top-p", type=float, default=None, help="the model's nucleus mass")
    parser.add_argument("--style", default=None, help="the model's Style token: game (its default), pop, folk, "
                        "chorale or unknown")
    parser.add_argument("--open-melody-harmony", choices=("yes", "no"), default=None,
                        help="yes: the melody asked with Chord_none and the chord kept by the strong-beat and "
                             "passing-tone rules; no (the model's default): asked with the cue's chord tokens")
    parser.add_argument("--density-contours", choices=("yes", "no"), default=None,
                        help="yes (the model's default): each bar's Density token and repeats from a real 8-bar "
                             "period (models/contours.py); no: the same Density for every bar (version 4's decoding)")
    parser.add_argument("--melody-downbeat-chord-tones", choices=("yes", "no"), default=None,
                        help="yes (the model's default): every melody note on a bar's downbeat is a tone of the "
                             "bar's first chord; no: the downbeat is free")
    parser.add_argument("--fresh-rhythms", choices=("yes", "no"), default=None,
                        help="yes (the model's default): with the phrase form, a melody bar its real period does not "
                             "repeat does not end on an earlier bar's onset rhythm; no: it may")
    parser.add_argument("--downbeat-onsets", choices=("yes", "no"), default=None,
                        help="yes (the model's default): with the phrase form, a bar its real period does not repeat "
                             "has a note on its downbeat exactly when the real bar has one; no: the model decides")
    parser.add_argument("--repeat-weight", default=None, metavar="W|ROLE=W,...",
                        help="the factor (0, 1] on the probability of the top line repeating its last pitch: one "
                             "number for the melody, or role=factor pairs (default: the model's ROLE_REPEAT_WEIGHT; "
                             "1 = none)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: 1,2; 1 with --quick)")
    parser.add_argument("--progressions", choices=tuple(PROGRESSION_SETS), default="held_out",
                        help="held_out (default): progressions never used to choose a setting; tuning: those that were")
    parser.add_argument("--write-requests", type=Path, default=None, metavar="PATH",
                        help="write the grid's requests as JSON (for tools/dump_generated_pieces.py) and exit")
    parser.add_argument("--pieces", type=Path, default=None, metavar="PATH",
                        help="judge these generated pieces (tools/dump_generated_pieces.py) instead of generating")
    parser.add_argument("--ablation", action="store_true",
                        help="evaluate every row of the ablation (rule-based, constraints, guidance scales) instead")
    return parser


def _grid(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Grid:
    """The grid the options ask for (exits with a usage error on a bad --seeds or --roles)."""
    grid = QUICK_GRID if args.quick else Grid()
    grid = Grid(**{**asdict(grid), "progression_set": args.progressions})
    if args.seeds:
        try:
            grid = Grid(**{**asdict(grid), "seeds": tuple(int(x) for x in args.seeds.split(","))})
        except ValueError:
            parser.error(f"--seeds {args.seeds!r}: comma-separated whole numbers, e.g. 1,2")
    if args.ablation and not args.seeds:
        grid = Grid(**{**asdict(grid), "seeds": grid.seeds[:1]})  # one seed: 7 rows in about 10 minutes
    if args.roles:
        roles = tuple(r.strip() for r in args.roles.split(",") if r.strip())
        bad = [r for r in roles if r not in ("melody", "arpeggio", "bass")]
        if bad or not roles:
            parser.error(f"--roles {args.roles!r}: allowed roles are melody, arpeggio, bass")
        grid = Grid(**{**asdict(grid), "roles": roles})
    return grid


def _repeat_weight(text: str) -> dict[str, float]:
    """``--repeat-weight``: ``"0.5"`` (the melody) or ``"melody=0.5,arpeggio=0.8"``.

    Raises:
        ValueError: not a number, or not role=number pairs.
    """
    try:
        if "=" not in text:
            return {"melody": float(text)}
        pairs = (item.split("=") for item in text.split(",") if item.strip())
        return {role.strip(): float(value) for role, value in pairs}
    except ValueError:
        raise ValueError(f"--repeat-weight {text!r}: a number (the melody's) or role=number pairs, "
                         "e.g. melody=0.5,arpeggio=0.8") from None


def _progress(message: str) -> None:
    print(f"evaluate: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    grid = _grid(args, parser)
    held_out_path = args.held_out or find_held_out_list(args.checkpoint)
    if args.write_requests is not None:
        args.write_requests.write_text(json.dumps(grid_requests(grid), indent=1) + "\n")
        return 0
    if args.ablation:
        print(render_ablation(ablation(grid, args.data, held_out_path, args.checkpoint, _progress), grid))
        return 0
    if args.write_card is not None:
        try:  # before the long run: a card without markers fails now
            _card_sections(args.write_card)
        except ValueError as error:
            print(f"error: --write-card: {error}", file=sys.stderr)
            return 2
    command = "python -m models.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        options = {name: value for name, value in (("guidance_scale", args.guidance), ("temperature", args.temperature),
                                                   ("top_p", args.top_p), ("style", args.style),
                                                   ("open_melody_harmony", args.open_melody_harmony),
                                                   ("density_contours", args.density_contours),
                                                   ("melody_downbeat_chord_tones", args.melody_downbeat_chord_tones),
                                                   ("fresh_rhythms", args.fresh_rhythms),
                                                   ("downbeat_onsets", args.downbeat_onsets))
                   if value is not None and args.generator == "model"}
        for flag in ("open_melody_harmony", "density_contours", "melody_downbeat_chord_tones", "fresh_rhythms",
                     "downbeat_onsets"):
            if flag in options:
                options[flag] = options[flag] == "yes"
        if args.repeat_weight is not None and args.generator == "model":
            options["repeat_weight"] = _repeat_weight(args.repeat_weight)
        if args.pieces is not None:
            generator, load_seconds = DumpedPieces(args.pieces, grid), 0.0
        else:
            generator, load_seconds = load_generator(args.generator, args.checkpoint, **options)
        results = evaluate(generator, load_seconds, grid, args.data, held_out_path, command.strip(), _progress)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    markdown = render_markdown(results)
    print(markdown)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_json_safe(results), indent=2) + "\n")
    if args.write_card is not None:
        try:
            write_card(args.write_card, markdown)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        _progress(f"wrote the evaluation into {args.write_card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
