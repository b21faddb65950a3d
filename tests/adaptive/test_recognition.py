"""Recognizability measures on literal melodies."""

from __future__ import annotations

from adaptive.harmony import Chord, Key
from adaptive.part import Part
from adaptive.recognition import contour_similarity, sampled_line, skeleton, skeleton_share
from adaptive.variation import diminish

THEME = Part.from_notes([(0, 1, 64, 80), (1, 1, 62, 80), (2, 2, 60, 80), (4, 2, 67, 80), (6, 2, 71, 80),
                         (8, 4, 72, 80)])
OTHER = Part.from_notes([(0, 2, 69, 80), (2, 2, 65, 80), (4, 1, 62, 80), (5, 1, 64, 80), (6, 2, 65, 80),
                         (8, 4, 62, 80)])


def test_skeleton_keeps_one_strong_note_per_half_bar() -> None:
    assert [int(THEME.pitch[i]) for i in skeleton(THEME, 4)] == [64, 60, 67, 71, 72]


def test_the_theme_itself_and_its_diminution_are_recognized_an_unrelated_tune_is_not() -> None:
    chords = ((Chord.parse("C"), None),) * 3
    divided = diminish(THEME, chords, Key.parse("C major"), 4, seed=0)
    assert skeleton_share(THEME, THEME, 4) == 1.0
    assert skeleton_share(THEME, divided, 4) == 1.0
    assert skeleton_share(THEME, OTHER, 4) <= 0.4
    assert contour_similarity(THEME, THEME, 12.0) == 1.0
    assert contour_similarity(THEME, divided, 12.0) > contour_similarity(THEME, OTHER, 12.0)


def test_transposition_and_augmentation_are_allowed_for() -> None:
    up = Part(THEME.start_beats * 2, THEME.duration_beats * 2, THEME.pitch + 5, THEME.velocity)
    assert skeleton_share(THEME, up, 4, transpose_semitones=5, time_scale=2.0) == 1.0
    assert contour_similarity(THEME, up, 12.0, transpose_semitones=5, time_scale=2.0) == 1.0
    assert skeleton_share(THEME, up, 4) < 0.5  # the wrong transposition


def test_sampled_line_holds_the_last_note() -> None:
    assert sampled_line(THEME, 3.0, step_beats=0.5).tolist() == [64, 64, 62, 62, 60, 60]
