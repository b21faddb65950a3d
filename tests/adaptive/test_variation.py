"""The variation engine, one transformation at a time on literal notes, then
the chain (:func:`vary`) and the bar-by-bar theme parts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from adaptive.generator import RuleBasedGenerator
from adaptive.harmony import Chord, Key
from adaptive.part import Part
from adaptive.theme import Theme
from adaptive.variation import (
    MODE_AS_WRITTEN, MODE_MIXTURE, MODE_PARALLEL, RHYTHM_AS_WRITTEN, RHYTHM_AUGMENTED, RHYTHM_DIMINISHED,
    RHYTHM_PASSING, RHYTHM_REDUCED, ThemeAccompanimentGenerator, ThemeBarRequest, ThemeMelodyGenerator,
    add_passing_notes, articulate, diminish, dynamics, levels_for, map_chord, map_melody_mode, map_meter,
    place_register, reduce_to_structure, reharmonize, structural_notes, vary,
)

C_MAJOR, A_MINOR = Key.parse("C major"), Key.parse("A minor")


def chord(symbol: str) -> Chord:
    return Chord.parse(symbol)


def notes(*triples: tuple[float, float, int]) -> Part:
    return Part.from_notes([(s, d, p, 80) for s, d, p in triples])


def triples(part: Part) -> list[tuple[float, float, int]]:
    return [(round(s, 3), round(d, 3), int(p)) for s, d, p in zip(part.start_beats, part.duration_beats, part.pitch)]


# ------------------------------------------------------------------ mode through functions

@pytest.mark.parametrize("written, mixture, parallel", [
    ("C", "C", "Cm"),          # I: kept by mixture, i in the parallel minor
    ("Dm", "Ddim", "Ddim"),    # ii -> ii° (predominant borrowed first)
    ("Em", "Em", "Eb"),        # iii -> bIII
    ("F", "Fm", "Fm"),         # IV -> iv
    ("G7", "G7", "G7"),        # V7 stays the harmonic-minor dominant
    ("Am", "Ab", "Ab"),        # vi -> bVI
    ("Fmaj7", "Fm7", "Fm7"),   # a written seventh stays a seventh
])
def test_major_theme_darkens_by_mixture_then_parallel_minor(written: str, mixture: str, parallel: str) -> None:
    assert map_chord(chord(written), C_MAJOR, MODE_MIXTURE) == chord(mixture)
    assert map_chord(chord(written), C_MAJOR, MODE_PARALLEL) == chord(parallel)
    assert map_chord(chord(written), C_MAJOR, MODE_AS_WRITTEN) == chord(written)


@pytest.mark.parametrize("written, parallel", [("Am", "A"), ("Dm", "D"), ("F", "F#m"), ("G", "E7"), ("C", "C#m"),
                                               ("E7", "E7")])
def test_minor_theme_brightens_to_the_parallel_major_by_function(written: str, parallel: str) -> None:
    assert map_chord(chord(written), A_MINOR, MODE_PARALLEL) == chord(parallel)


def test_minor_mixture_is_a_dorian_iv_and_a_picardy_third_at_the_end() -> None:
    chords = ((chord("Am"), None), (chord("Dm"), chord("E")), (chord("Am"), None))
    assert reharmonize(chords, A_MINOR, MODE_MIXTURE) == (
        (chord("Am"), None), (chord("D"), chord("E")), (chord("A"), None))


def test_melody_moves_with_the_chords_and_keeps_the_leading_tone_over_the_dominant() -> None:
    chords = ((chord("C"), chord("F")), (chord("G"), chord("Am")))
    melody = notes((0, 1, 64), (2, 1, 69), (4, 1, 71), (6, 1, 69))  # E over C, A over F, B over G, A over Am
    minor = map_melody_mode(melody, C_MAJOR, chords, reharmonize(chords, C_MAJOR, MODE_PARALLEL), 4, MODE_PARALLEL)
    assert minor.pitch.tolist() == [63, 68, 71, 68]  # Eb, Ab, B (leading tone), Ab
    mixed = map_melody_mode(melody, C_MAJOR, chords, reharmonize(chords, C_MAJOR, MODE_MIXTURE), 4, MODE_MIXTURE)
    assert mixed.pitch.tolist() == [64, 68, 71, 68]  # the major third stays; b6 only over iv and bVI


def test_levels_follow_valence_against_the_themes_mode_and_arousal() -> None:
    assert levels_for(C_MAJOR.mode, 0.8, 0.0).mode == MODE_AS_WRITTEN
    assert levels_for(C_MAJOR.mode, -0.3, 0.0).mode == MODE_MIXTURE
    assert levels_for(C_MAJOR.mode, -0.8, 0.0).mode == MODE_PARALLEL
    assert levels_for(A_MINOR.mode, -0.8, 0.0).mode == MODE_AS_WRITTEN
    assert levels_for(A_MINOR.mode, 0.8, 0.0).mode == MODE_PARALLEL
    rhythms = [levels_for(C_MAJOR.mode, 0.0, a).rhythm for a in (-0.9, -0.4, 0.0, 0.5, 0.9)]
    assert rhythms == [RHYTHM_AUGMENTED, RHYTHM_REDUCED, RHYTHM_AS_WRITTEN, RHYTHM_PASSING, RHYTHM_DIMINISHED]
    assert levels_for(C_MAJOR.mode, 0.0, -0.9).time_scale == 2
    octaves = [levels_for(C_MAJOR.mode, v, a).octave for v, a in ((0.8, 0.8), (0.8, 0.0), (0.0, 0.8), (-0.8, 0.8),
                                                                   (-0.8, -0.8))]
    assert octaves == [1, 0, 0, 0, -1]  # up when bright and lively, down when dark and calm
    articulation = [levels_for(C_MAJOR.mode, 0.0, a).articulation for a in (-0.8, 0.0, 0.8)]
    assert articulation == [1.0, 0.9, 0.6]


# ------------------------------------------------------------------ rhythm

def test_reduction_keeps_the_strongest_chord_tone_of_each_half_bar() -> None:
    melody = notes((0, 1, 60), (1, 0.5, 62), (1.5, 0.5, 64), (2, 1, 65), (3, 1, 67))
    chords = ((chord("C"), None),)
    assert [int(melody.pitch[i]) for i in structural_notes(melody, chords, 4)] == [60, 67]
    assert triples(reduce_to_structure(melody, chords, 4)) == [(0, 2, 60), (2, 2, 67)]


def test_passing_notes_fill_leaps_leading_into_the_next_note() -> None:
    melody = notes((0, 1, 60), (1, 2, 64), (3, 1, 67))
    filled = add_passing_notes(melody, ((chord("C"), None),), C_MAJOR, 4)
    assert triples(filled) == [(0, 0.75, 60), (0.75, 0.25, 62), (1, 1.5, 64), (2.5, 0.5, 65), (3, 1, 67)]


def test_diminution_divides_long_notes_into_a_turn_and_a_run() -> None:
    melody = notes((0, 2, 60), (2, 2, 64))
    divided = diminish(melody, ((chord("C"), None),), C_MAJOR, 4, seed=1)
    assert triples(divided)[:4] == [(0, 0.5, 60), (0.5, 0.5, 59), (1, 0.5, 60), (1.5, 0.5, 62)]
    assert len(divided) == 8 and np.allclose(np.diff(divided.start_beats), 0.5)


def test_diminution_is_deterministic_for_a_seed() -> None:
    melody = notes(*[(2 * i, 2, 67) for i in range(8)])
    chords = ((chord("C"), None),) * 4
    runs = {seed: diminish(melody, chords, C_MAJOR, 4, seed).pitch.tolist() for seed in range(6)}
    assert runs[3] == diminish(melody, chords, C_MAJOR, 4, 3).pitch.tolist()
    assert len({tuple(r) for r in runs.values()}) > 1  # the seed picks upper or lower neighbours


def test_meter_mapping_waltz_into_common_time_and_back() -> None:
    waltz = notes((0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 3, 65))
    assert triples(map_meter(waltz, 3, 4)) == [(0, 2, 60), (2, 1, 62), (3, 1, 64), (4, 4, 65)]
    common = notes((0, 1, 60), (1, 1, 62), (2, 1, 64), (3, 1, 65))
    assert triples(map_meter(common, 4, 3)) == [(0, 0.5, 60), (0.5, 0.5, 62), (1, 1, 64), (2, 1, 65)]


# ------------------------------------------------------------------ register, articulation, dynamics

def test_register_shifts_by_octaves_and_stays_in_range() -> None:
    assert place_register(notes((0, 1, 60), (1, 1, 67)), 1).pitch.tolist() == [72, 79]
    assert place_register(notes((0, 1, 90), (1, 1, 95)), 1).pitch.tolist() == [90, 95]  # would leave C7


def test_articulation_legato_fills_to_the_next_onset_and_staccato_shortens() -> None:
    melody = notes((0, 0.5, 60), (1, 1, 62))
    assert articulate(melody, 1.0).duration_beats.tolist() == [1.0, 1.0]
    assert articulate(melody, 0.6).duration_beats.tolist() == pytest.approx([0.6, 0.6])


def test_dynamics_follow_arousal_and_intensity_with_accents() -> None:
    melody = notes((0, 1, 60), (1, 0.5, 62), (1.5, 0.5, 64))
    soft = dynamics(melody, 4, -1.0, 0.0).velocity.tolist()
    loud = dynamics(melody, 4, 1.0, 1.0).velocity.tolist()
    assert soft == [50, 45, 35] and loud == [115, 110, 100]


# ------------------------------------------------------------------ the chain and the parts

THEME = Theme("t", notes((0, 1, 64), (1, 1, 62), (2, 2, 60), (4, 2, 67), (6, 2, 71), (8, 4, 72)),
              ((chord("C"), None), (chord("F"), chord("G")), (chord("C"), None)), C_MAJOR, 4)


def test_vary_sad_calm_is_minor_reduced_and_in_the_cues_key() -> None:
    variation = vary(THEME, -0.8, -0.4, 0.5, tonic_pitch_class=9, beats_per_bar=4, seed=0)
    assert variation.key == A_MINOR and variation.levels.rhythm == RHYTHM_REDUCED
    assert variation.chords[1] == (chord("Dm"), chord("E"))  # iv - V in A minor
    # Structural notes E C | G B | C in C minor (Eb C G B C: B stays the leading
    # tone over G), moved to A minor: C A E G# A; the octave down would leave
    # the register (A2 < C3), so it stays.
    assert triples(variation.melody) == [(0, 2, 60), (2, 2, 57), (4, 2, 64), (6, 2, 68), (8, 4, 69)]


def test_vary_is_deterministic_and_happy_excited_is_denser_and_louder() -> None:
    calm = vary(THEME, 0.6, -0.5, 0.5, 0, 4, seed=2)
    excited = vary(THEME, 0.6, 0.9, 0.5, 0, 4, seed=2)
    again = vary(THEME, 0.6, 0.9, 0.5, 0, 4, seed=2)
    assert triples(excited.melody) == triples(again.melody)
    assert len(excited.melody) > len(THEME.melody) > len(calm.melody)
    assert excited.melody.velocity.mean() > calm.melody.velocity.mean()
    assert excited.melody.pitch.mean() > THEME.melody.pitch.mean()  # an octave up


def _request(bar: int, valence: float, arousal: float, role: str = "melody") -> ThemeBarRequest:
    return ThemeBarRequest(bar, C_MAJOR, chord("C"), 4, 100.0, valence, arousal, role, 7, intensity=0.5)


def test_melody_part_walks_through_the_theme_and_augments_when_calm() -> None:
    generator = ThemeMelodyGenerator(THEME)
    bars = [generator.generate_bar(_request(i, 0.5, 0.0)) for i in range(4)]
    assert [b.pitch.tolist() for b in bars] == [[64, 62, 60], [67, 71], [72], [64, 62, 60]]  # wraps after 3 bars
    slow = ThemeMelodyGenerator(THEME)
    augmented = [slow.generate_bar(_request(i, 0.5, -0.9)) for i in range(6)]
    assert [b.pitch.tolist() for b in augmented][:2] == [[64], [60]]  # half a theme bar per bar, stretched
    assert augmented[0].duration_beats.tolist() == [4.0]


def test_emotion_moves_at_a_bar_line_keep_the_place_in_the_theme() -> None:
    generator = ThemeMelodyGenerator(THEME)
    first = generator.generate_bar(_request(0, 0.5, 0.0))
    second = generator.generate_bar(_request(1, -0.8, 0.0))  # now dark: bar 2 of the theme, an octave down
    assert first.pitch.tolist() == [64, 62, 60] and second.pitch.tolist() == [55, 59]
    restart = generator.generate_bar(_request(0, -0.8, 0.0))
    assert restart.pitch.tolist() == [51, 50, 48]  # bar 0 again, in C minor (E -> Eb)


def test_accompaniment_is_asked_for_on_the_reharmonized_chords() -> None:
    asked = []

    class Recorder(RuleBasedGenerator):
        def generate_bar(self, request):
            asked.append(request)
            return super().generate_bar(request)

    generator = ThemeAccompanimentGenerator(THEME, Recorder())
    for i in range(2):
        generator.generate_bar(_request(i, -0.8, 0.0, role="arpeggio"))
    assert [(r.key, r.chord, r.second_chord) for r in asked] == [
        (Key.parse("C minor"), chord("Cm"), None), (Key.parse("C minor"), chord("Fm"), chord("G"))]
    assert all(type(r).__name__ == "BarRequest" for r in asked)
