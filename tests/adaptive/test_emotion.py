"""Emotions on the plane, and the one rule from an emotion to what the music is asked for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive.cue import DEFAULT_BANK, load_bank
from adaptive.emotion import NAMED_EMOTIONS, curve_at, music_for_emotion, named_emotion
from adaptive.mapping import ResolvedMapping

unit = st.floats(min_value=-1.0, max_value=1.0)


def test_a_curve_is_linear_between_breakpoints_and_held_beyond_them():
    points = ((-1.0, 0.0), (0.0, 10.0), (1.0, 12.0))
    assert [curve_at(points, x) for x in (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0)] == [0, 0, 5, 10, 11, 12, 12]


def test_arousal_raises_density_and_loudness_and_valence_the_register():
    calm, excited = music_for_emotion(0.0, -1.0), music_for_emotion(0.0, 1.0)
    assert (calm.notes_per_beat, calm.velocity) == (1.0, 45) and (excited.notes_per_beat, excited.velocity) == (4.0, 110)
    assert music_for_emotion(-1.0, 0.0).register_semitones == -6.0 < music_for_emotion(1.0, 0.0).register_semitones
    assert music_for_emotion(0.3, 0.0).mode is None
    assert music_for_emotion(0.3, 0.0, major_from_valence=0.0).mode == "major"
    assert music_for_emotion(-0.3, 0.0, major_from_valence=0.0).mode == "minor"


@given(valence=unit, arousal=unit)
def test_a_mapping_without_conditioning_asks_what_the_emotion_rule_says(valence, arousal):
    assert BANK_MAPPING.conditioning(valence, arousal) == music_for_emotion(valence, arousal)


def test_named_emotions_are_on_the_plane():
    assert all(-1 <= p.valence <= 1 and -1 <= p.arousal <= 1 for p in NAMED_EMOTIONS.values())
    assert named_emotion("calm") == NAMED_EMOTIONS["calm"]
    with pytest.raises(KeyError):
        named_emotion("no such emotion")


BANK_MAPPING = ResolvedMapping.from_bank(load_bank(DEFAULT_BANK))
