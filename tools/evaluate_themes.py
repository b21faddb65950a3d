"""Evaluate themes and variations: recognizability against real variation
sets and unrelated tunes, and the variations' emotion figures.

Run from the repository root::

    python tools/evaluate_themes.py [--unrelated 80] [--vgmidi ../shared/data/vgmidi] [--json out.json]

Sections (docs/evaluation.md, "Themes and variations"):

1. **Real variation sets** from the music21 corpus — James Aird's *King of
   Sweden's March with Variations* (airdsAirs/book3.abc: a theme of two
   8-bar strains, then ten varied strains) and *The Savage Dance with
   Variations* (airdsAirs/book2.abc: strains of 4 and 8 bars, one variation
   each): each varied strain against its theme strain. These are variations a
   musician calls the same theme.
2. **Unrelated tunes**: the first strain of other tunes of Aird's books in
   2/2 or 4/4 (no pick-up bar), transposed to the theme's tonic (a hard
   negative: same key, same style), against each theme strain.
3. The **threshold** on :func:`adaptive.recognition.contour_similarity` (the
   measure that separates the two sets best; the skeleton share is reported
   too): the 95th percentile of the unrelated pairs, so at most 5 % of
   unrelated tunes in the same key count as the theme; the real variations
   below it are counted.
4. **Our variations** of the default bank's ``hero`` over a 5 × 5 emotion grid
   (and the four quadrants), as the engine plays them: each must lie above.
5. **Emotion figures** of the variations over the grid (melody and a
   rule-based accompaniment under the re-harmonized chords): detected mode by
   valence, notes per beat and velocity by arousal (Spearman), and the VGMIDI
   classifier's quadrant (models/emotion_classifier.py, trained on its fixed
   split) on the four-quadrant variations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adaptive.cue import DEFAULT_BANK, load_bank  # noqa: E402
from adaptive.generator import BarRequest, RuleBasedGenerator  # noqa: E402
from adaptive.part import Part  # noqa: E402
from adaptive.recognition import contour_similarity, skeleton_share  # noqa: E402
from adaptive.theme import load_theme  # noqa: E402
from adaptive.variation import ThemeAccompanimentGenerator, ThemeBarRequest, ThemeMelodyGenerator, levels_for  # noqa: E402

BEATS_PER_BAR = 4
GRID = (-0.8, -0.4, 0.0, 0.4, 0.8)
QUADRANT_POINTS = ((0.8, 0.6), (0.5, -0.6), (-0.6, 0.8), (-0.7, -0.6))
"""V+A+ (triumphant), V+A- (calm), V-A+ (angry), V-A- (sorrowful)."""


def _tune_notes(score) -> Part:
    notes = [(float(n.offset), float(n.quarterLength), int(n.pitch.midi), 80)
             for n in score.parts[0].flatten().notes if n.isNote and float(n.quarterLength) > 0]
    return Part.from_notes(notes)


def _cut(part: Part, start_beats: float, length_beats: float) -> Part:
    keep = (part.start_beats >= start_beats - 1e-9) & (part.start_beats < start_beats + length_beats - 1e-9)
    return Part(part.start_beats[keep] - start_beats,
                np.minimum(part.duration_beats[keep], start_beats + length_beats - part.start_beats[keep]),
                part.pitch[keep], part.velocity[keep])


def real_variation_pairs() -> list[dict]:
    """``{"set", "strain", "theme": Part, "variation": Part, "length_beats"}`` per varied strain."""
    from music21 import corpus

    pairs = []
    sweden = next(s for s in corpus.parse("airdsAirs/book3.abc").scores if "Sweden" in (s.metadata.title or ""))
    tune = _tune_notes(sweden)
    strain = 8 * BEATS_PER_BAR
    themes = [_cut(tune, 0.0, strain), _cut(tune, strain, strain)]
    for index in range(2, 11):
        pairs.append({"set": "King of Sweden's March", "strain": index + 1, "theme": themes[index % 2],
                      "variation": _cut(tune, index * strain, strain), "length_beats": strain})
    savage = next(s for s in corpus.parse("airdsAirs/book2.abc").scores if "Savage" in (s.metadata.title or ""))
    tune = _tune_notes(savage)
    for (theme_start, length), variation_start in (((0, 16), 48), ((16, 32), 64)):
        pairs.append({"set": "The Savage Dance", "strain": variation_start // 16,
                      "theme": _cut(tune, theme_start, length), "variation": _cut(tune, variation_start, length),
                      "length_beats": length})
    return pairs


def unrelated_strains(limit: int, exclude: tuple[str, ...] = ("Sweden", "Savage")) -> list[tuple[str, Part, int]]:
    """``(title, first 8 bars, tonic pitch class)`` of up to ``limit`` tunes
    of Aird's books in 2/2 or 4/4 with no pick-up bar."""
    from music21 import corpus

    tunes = []
    for book in ("airdsAirs/book1.abc", "airdsAirs/book2.abc", "airdsAirs/book3.abc", "airdsAirs/book4.abc"):
        for score in corpus.parse(book).scores:
            title = score.metadata.title or "?"
            if any(word in title for word in exclude):
                continue
            signatures = score.flatten().getElementsByClass("TimeSignature")
            if not signatures or signatures[0].ratioString not in ("2/2", "4/4"):
                continue
            measures = score.parts[0].getElementsByClass("Measure")
            if not measures or float(measures[0].duration.quarterLength) != 4.0:
                continue  # a pick-up bar: its downbeats are elsewhere
            part = _cut(_tune_notes(score), 0.0, 8 * BEATS_PER_BAR)
            if len(part) < 8 or part.end_beats < 6 * BEATS_PER_BAR:
                continue
            tonic = score.analyze("key").tonic.pitchClass
            tunes.append((title, part, int(tonic)))
            if len(tunes) >= limit:
                return tunes
    return tunes


def _smallest(semitones: int) -> int:
    semitones %= 12
    return semitones - 12 if semitones > 6 else semitones


def recognizability(limit: int) -> dict:
    """Sections 1-4 of the module docstring."""
    from music21 import converter  # noqa: F401  (music21 present)

    pairs = real_variation_pairs()
    real = [{"set": p["set"], "strain": p["strain"],
             "skeleton_share": skeleton_share(p["theme"], p["variation"], BEATS_PER_BAR),
             "contour": contour_similarity(p["theme"], p["variation"], p["length_beats"])} for p in pairs]
    theme_strains = {(p["set"], id(p["theme"])): p for p in pairs}
    unrelated = []
    tunes = unrelated_strains(limit)
    for p in theme_strains.values():
        theme_tonic = 2 if p["set"].startswith("King") else 7  # D major, G major
        for title, tune, tonic in tunes:
            shift = _smallest(theme_tonic - tonic)
            other = _cut(Part(tune.start_beats, tune.duration_beats, tune.pitch + shift, tune.velocity), 0.0,
                         p["length_beats"])
            unrelated.append({"set": p["set"], "tune": title,
                              "skeleton_share": skeleton_share(p["theme"], other, BEATS_PER_BAR),
                              "contour": contour_similarity(p["theme"], other, p["length_beats"])})
    real_share = np.array([r["skeleton_share"] for r in real])
    other_share = np.array([u["skeleton_share"] for u in unrelated])
    real_contour = np.array([r["contour"] for r in real])
    other_contour = np.array([u["contour"] for u in unrelated])
    # The threshold on the contour similarity: at most 5 % of unrelated tunes
    # in the same key pass it (their 95th percentile).
    threshold = float(np.percentile(other_contour, 95))
    ours = our_variations(threshold)
    return {"real": real, "unrelated_count": len(unrelated), "unrelated_tunes": len(tunes),
            "real_share": _summary(real_share), "unrelated_share": _summary(other_share),
            "share_auc": _auc(real_share, other_share),
            "real_contour": _summary(real_contour), "unrelated_contour": _summary(other_contour),
            "contour_auc": _auc(real_contour, other_contour),
            "unrelated_above_threshold": int((other_contour >= threshold).sum()),
            "real_below_threshold": int((real_contour < threshold).sum()),
            "threshold": threshold, "ours": ours}


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a real variation scores above an unrelated tune (ties count half)."""
    return float(np.mean((positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])))


def _summary(values: np.ndarray) -> dict:
    return {"n": int(len(values)), "min": float(values.min()), "p5": float(np.percentile(values, 5)),
            "median": float(np.median(values)), "p95": float(np.percentile(values, 95)), "max": float(values.max())}


def played_variation(theme, valence: float, arousal: float, tonic: int = 2, seed: int = 0,
                     accompaniment: bool = False) -> tuple[Part, float, list[Part]]:
    """The melody the engine plays over one pass of the theme at an emotion
    (bar by bar, as a theme layer does), its time scale, and (optionally) a
    rule-based accompaniment's bars under the re-harmonized chords."""
    from adaptive.harmony import Chord, Key, Mode

    levels = levels_for(theme.key.mode, valence, arousal)
    bars = theme.bars * levels.time_scale
    melody, backing = ThemeMelodyGenerator(theme), ThemeAccompanimentGenerator(theme, RuleBasedGenerator())
    key = Key(tonic, Mode.MAJOR)
    parts, accompaniment_bars = [], []
    for bar in range(bars):
        request = ThemeBarRequest(bar, key, Chord(tonic, theme.chords[0][0].quality), BEATS_PER_BAR, 108.0,
                                  valence, arousal, "melody", seed, intensity=0.5)
        part = melody.generate_bar(request)
        parts.append((part, bar * BEATS_PER_BAR))
        if accompaniment:
            accompaniment_bars.append(backing.generate_bar(BarRequest(**{
                **{f: getattr(request, f) for f in request.__dataclass_fields__ if f != "intensity"},
                "role": "arpeggio"})))
    start = np.concatenate([p.start_beats + o for p, o in parts])
    line = Part(start, np.concatenate([p.duration_beats for p, _ in parts]),
                np.concatenate([p.pitch for p, _ in parts]).astype(np.int16),
                np.concatenate([p.velocity for p, _ in parts]).astype(np.int16))
    return line, float(levels.time_scale), accompaniment_bars


def our_variations(threshold: float) -> dict:
    """Section 4: the ``hero`` theme's variations over the grid."""
    theme = load_theme(load_bank(DEFAULT_BANK), "hero")
    rows = []
    for valence in GRID:
        for arousal in GRID:
            line, scale, _ = played_variation(theme, valence, arousal)
            rows.append({"valence": valence, "arousal": arousal,
                         "skeleton_share": skeleton_share(theme.melody, line, BEATS_PER_BAR, time_scale=scale),
                         "contour": contour_similarity(theme.melody, line, theme.length_beats, time_scale=scale)})
    contours = np.array([r["contour"] for r in rows])
    return {"grid": rows, "share": _summary(np.array([r["skeleton_share"] for r in rows])),
            "contour": _summary(contours), "below_threshold": int((contours < threshold).sum())}


def emotion_figures(vgmidi_dir: Path | None) -> dict:
    """Section 5 of the module docstring."""
    from models.analysis import Notes, detect_key, mean_velocity, note_density_per_beat

    theme = load_theme(load_bank(DEFAULT_BANK), "hero")
    rows = []
    pieces = {}
    for valence in GRID:
        for arousal in GRID:
            line, scale, backing = played_variation(theme, valence, arousal, accompaniment=True)
            bars = theme.bars * int(scale)
            melody_notes = Notes.from_parts([(line, 0.0)], bars * BEATS_PER_BAR, 108.0)
            both = Notes.from_parts([(line, 0.0)] + [(b, i * BEATS_PER_BAR) for i, b in enumerate(backing)],
                                    bars * BEATS_PER_BAR, 108.0)
            key = detect_key(both)
            rows.append({"valence": valence, "arousal": arousal, "mode": key.mode.value if hasattr(key.mode, "value")
                         else str(key.mode), "notes_per_beat": note_density_per_beat(melody_notes),
                         "velocity": mean_velocity(melody_notes)})
            pieces[(valence, arousal)] = both
    from scipy.stats import spearmanr

    arousal = [r["arousal"] for r in rows]
    result = {
        "grid": rows,
        "major_share_by_valence": {str(v): float(np.mean([r["mode"] == "major" for r in rows if r["valence"] == v]))
                                   for v in GRID},
        "density_spearman_arousal": float(spearmanr(arousal, [r["notes_per_beat"] for r in rows])[0]),
        "velocity_spearman_arousal": float(spearmanr(arousal, [r["velocity"] for r in rows])[0]),
    }
    if vgmidi_dir is not None and (vgmidi_dir / "vgmidi_labelled.csv").is_file():
        from models.emotion_classifier import QUADRANT_NAMES, evaluate_classifier, features, quadrant_index, read_vgmidi

        model, report = evaluate_classifier(read_vgmidi(vgmidi_dir))
        predictions = []
        for valence, arousal in QUADRANT_POINTS:
            line, scale, backing = played_variation(theme, valence, arousal, accompaniment=True)
            bars = theme.bars * int(scale)
            from models.analysis import Notes as _Notes
            notes = _Notes.from_parts([(line, 0.0)] + [(b, i * BEATS_PER_BAR) for i, b in enumerate(backing)],
                                      bars * BEATS_PER_BAR, 108.0)
            predicted = int(model.predict(features(notes)[None, :])[0])
            predictions.append({"valence": valence, "arousal": arousal,
                                "wanted": QUADRANT_NAMES[quadrant_index(valence, arousal)],
                                "predicted": QUADRANT_NAMES[predicted]})
        result["classifier"] = {"held_out_quadrant_accuracy": report.quadrant_accuracy,
                                "quadrant_chance": report.quadrant_chance, "predictions": predictions}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unrelated", type=int, default=80, help="unrelated tunes to compare with (default 80)")
    parser.add_argument("--vgmidi", type=Path, default=ROOT.parent / "shared" / "data" / "vgmidi",
                        help="the VGMIDI folder for the quadrant classifier (default ../shared/data/vgmidi)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = {"recognizability": recognizability(args.unrelated), "emotion": emotion_figures(args.vgmidi)}
    results["seconds"] = time.perf_counter() - started
    text = json.dumps(results, indent=1, default=float)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
