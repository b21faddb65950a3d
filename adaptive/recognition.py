"""Recognizability: is a melody still the theme? Two measures of a variation
against its theme, both invariant to transposition and tolerant of a mode
change (a semitone), used by ``tools/evaluate_themes.py`` and the tests:

* :func:`skeleton_share` — the share of the theme's *skeleton* notes (one per
  half bar, the strongest by metre and length) found in the variation at the
  same place in the phrase (time-aligned, so in order) within a semitone,
  pitch classes compared after the known transposition. Ornaments, passing
  notes, diminutions and reductions keep it high; a different tune does not.
  (Structural-tone matching in the sense of Schenkerian and GTTM reductions:
  Lerdahl & Jackendoff 1983; variation sets keep the theme's structural
  tones and harmony while they elaborate the surface.)
* :func:`contour_similarity` — 1 minus the mean cost of a dynamic-time-warping
  alignment (Sakoe & Chiba 1978, band of one beat) of the two pitch lines
  sampled every quarter beat, costs being pitch-class distances in semitones
  (0..6) after the transposition, divided by 6.

Times are in beats; a variation that is augmented (or diminished in time) is
compared with ``time_scale`` (its beats per theme beat).
"""

from __future__ import annotations

import numpy as np

from adaptive.part import Part
from adaptive.variation import metric_weight


def skeleton(melody: Part, beats_per_bar: int, length_beats: float | None = None) -> list[int]:
    """Indices of the skeleton notes: in each half bar (each bar in odd
    meters) the note sounding there with the highest metric weight of its
    onset (:func:`adaptive.variation.metric_weight`) + length in beats,
    earlier notes winning ties; each note at most once, in order."""
    if not len(melody):
        return []
    window = beats_per_bar / 2 if beats_per_bar % 2 == 0 else float(beats_per_bar)
    length = length_beats if length_beats is not None else melody.end_beats
    ends = melody.start_beats + melody.duration_beats
    chosen: list[int] = []
    for index in range(int(np.ceil(length / window - 1e-9))):
        lo, hi = index * window, (index + 1) * window
        candidates = np.nonzero((melody.start_beats < hi - 1e-9) & (ends > lo + 1e-9))[0]
        if not len(candidates):
            continue
        scores = [metric_weight(float(melody.start_beats[c]) % beats_per_bar, beats_per_bar)
                  + float(melody.duration_beats[c]) - 0.01 * float(melody.start_beats[c] - lo) for c in candidates]
        best = int(candidates[int(np.argmax(scores))])
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return chosen


def _pitch_class_distance(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    d = np.abs(np.asarray(a) - np.asarray(b)) % 12
    return np.minimum(d, 12 - d)


def skeleton_share(theme: Part, variation: Part, beats_per_bar: int, transpose_semitones: int = 0,
                   time_scale: float = 1.0, window_beats: float = 0.5, tolerance_semitones: int = 1) -> float:
    """The share (0..1) of the theme's skeleton notes found in the variation.

    A skeleton note at beat ``s`` with pitch ``p`` is found when a note of the
    variation sounds at beat ``s · time_scale`` or starts within
    ``± window_beats · time_scale`` of it, with a pitch class within
    ``tolerance_semitones`` of ``p + transpose_semitones``'s.

    Args:
        theme, variation: the two melodies, beats from their first downbeat.
        beats_per_bar: the theme's meter numerator.
        transpose_semitones: the variation's transposition from the theme.
        time_scale: variation beats per theme beat (2: augmented).

    Returns:
        The share; 0 for an empty theme.
    """
    notes = skeleton(theme, beats_per_bar)
    if not notes:
        return 0.0
    v_start, v_end = variation.start_beats, variation.start_beats + variation.duration_beats
    found = 0
    for index in notes:
        t = float(theme.start_beats[index]) * time_scale
        window = window_beats * time_scale
        near = ((v_start <= t + 1e-9) & (v_end > t + 1e-9)) | (np.abs(v_start - t) <= window + 1e-9)
        target = int(theme.pitch[index]) + transpose_semitones
        if near.any() and (_pitch_class_distance(variation.pitch[near], target) <= tolerance_semitones).any():
            found += 1
    return found / len(notes)


def sampled_line(melody: Part, length_beats: float, step_beats: float = 0.25, time_scale: float = 1.0) -> np.ndarray:
    """The melody's pitch every ``step_beats`` of the theme's time (its beat
    ``k · step · time_scale``): the note sounding there (the last started),
    else the last one before; ``(ceil(length / step),)`` int array."""
    times = np.arange(0.0, length_beats, step_beats) * time_scale
    if not len(melody):
        return np.zeros(len(times), np.int64)
    index = np.searchsorted(melody.start_beats, times + 1e-9, side="right") - 1
    index = np.clip(index, 0, len(melody) - 1)
    return melody.pitch[index].astype(np.int64)


def contour_similarity(theme: Part, variation: Part, length_beats: float, transpose_semitones: int = 0,
                       time_scale: float = 1.0, band_beats: float = 1.0, step_beats: float = 0.25) -> float:
    """DTW similarity (0..1) of the two pitch lines (see the module docstring)."""
    a = sampled_line(theme, length_beats, step_beats) + transpose_semitones
    b = sampled_line(variation, length_beats, step_beats, time_scale)
    n = len(a)
    band = max(1, int(round(band_beats / step_beats)))
    cost = _pitch_class_distance(a[:, None], b[None, :]).astype(np.float64)
    total = np.full((n + 1, n + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        lo, hi = max(1, i - band), min(n, i + band)
        for j in range(lo, hi + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j], total[i, j - 1], total[i - 1, j - 1])
    # mean cost along the path, normalized by the longest possible path's length bound (2n)
    return float(1.0 - total[n, n] / (n * 6.0))
