"""What a scene input costs, and that the work saved changes nothing: the
mapping's cue choice is kept while the smoothed emotion, location, playing
cue and mapping stand still (a 90 Hz game repeats them far more often than
it changes them), gain curves keep their last answer, and the layers of a
player share one ramp shape per block; a changed value is still applied at
its frame, and the audio and events are those of evaluating everything
afresh, bit for bit."""

from __future__ import annotations

import math

import numpy as np

from adaptive.gain import GainCurve, GainRamp, SILENCE_DB, db_to_amplitude
from adaptive.mapping import MappingChange
from adaptive.scene import SceneUpdate
from tests.adaptive.test_mapping_session import UNSMOOTHED, session_with
from tests.helpers import SAMPLE_RATE_HZ, render_frames

STEP_FRAMES = SAMPLE_RATE_HZ // 90  # a 90 Hz game
LOW = dict(valence=0.5, arousal=-0.5)  # cue "low"'s point in the tone bank
HIGH = dict(valence=-0.5, arousal=0.5)  # cue "high"'s
CHANGE_FRAME = 45 * STEP_FRAMES


def play_repeated_then_changed(session) -> tuple[np.ndarray, list]:
    """Half a second of the same scene at 90 Hz (intensity moving), then the
    emotion of the other cue at :data:`CHANGE_FRAME`; one second rendered."""
    for i in range(45):
        session.submit(i * STEP_FRAMES, SceneUpdate(**LOW, intensity=0.3 + 0.01 * (i % 3)))
    session.submit(CHANGE_FRAME, SceneUpdate(**HIGH, intensity=0.4))
    audio = render_frames(session, SAMPLE_RATE_HZ, block_frames=1024).copy()
    return audio, session.drain_events()


def test_a_repeated_scene_reuses_the_cue_choice_and_a_changed_one_lands_on_its_frame(tone_bank, soundfont):
    bank = tone_bank(exit="immediate", fade_beats=0.0)
    session = session_with(bank, soundfont, UNSMOOTHED)
    audio, events = play_repeated_then_changed(session)
    conductor = session.conductor
    # Chosen afresh: the first input (nothing playing), the second (cue "low"
    # playing now: the choice reads the playing cue, for the hysteresis) and
    # the changed one; the other 43 repeats of LOW (only the intensity moved,
    # which the cue choice does not read) reuse the answer.
    assert conductor.cue_choices_made == 3
    assert conductor.cue_choices_reused == 43
    follows = [e for e in events if e.kind == "follow" and e.frame == CHANGE_FRAME]
    assert [(e.data["valence"], e.data["arousal"]) for e in follows] == [(-0.5, 0.5)]
    assert [(e.frame, e.data["cue"]) for e in events if e.kind == "cue_change"] == [(0, "low"), (CHANGE_FRAME, "high")]
    # Every repeated input still retargets the gains at its own frame.
    gains_frames = [e.frame for e in events if e.kind == "gains" and e.data["cue"] == "low"]
    assert [i * STEP_FRAMES for i in range(45)] == sorted(set(gains_frames) - {CHANGE_FRAME})
    session.close()


def test_keeping_the_cue_choice_changes_neither_audio_nor_events(tone_bank, soundfont):
    """The same inputs with the cue chosen afresh at every input (the kept
    answer bypassed) give the same audio, bit for bit, and the same events."""
    bank = tone_bank(exit="next_beat", fade_beats=1.0)
    kept = session_with(bank, soundfont, UNSMOOTHED)
    fresh = session_with(bank, soundfont, UNSMOOTHED)
    mapping_choice = fresh.conductor._choose_cue

    def choose_afresh(valence, arousal, location, playing):
        fresh.conductor._last_choice = None  # forget the last answer: every call evaluates the mapping
        return mapping_choice(valence, arousal, location, playing)

    fresh.conductor._choose_cue = choose_afresh
    audio_kept, events_kept = play_repeated_then_changed(kept)
    audio_fresh, events_fresh = play_repeated_then_changed(fresh)
    assert fresh.conductor.cue_choices_reused == 0 and kept.conductor.cue_choices_reused > 0
    assert np.array_equal(audio_kept, audio_fresh)
    assert [(e.frame, e.kind, e.data) for e in events_kept] == [(e.frame, e.kind, e.data) for e in events_fresh]
    kept.close()
    fresh.close()


def test_a_new_mapping_chooses_the_cue_afresh_for_the_same_scene(tone_bank, soundfont):
    """The kept choice belongs to the mapping that made it: after a mapping
    change the same scene is evaluated again, and the new mapping's cue plays."""
    bank = tone_bank(exit="immediate", fade_beats=0.0)
    session = session_with(bank, soundfont, UNSMOOTHED)
    session.submit(0, SceneUpdate(**LOW, intensity=0.5))
    session.submit(STEP_FRAMES, SceneUpdate(**LOW, intensity=0.5))  # chosen with "low" playing: the swap's key
    render_frames(session, SAMPLE_RATE_HZ // 4)
    # The new mapping puts cue "high" on LOW's point and "low" far away.
    swapped = ('default_location = "any"\n' + UNSMOOTHED
               + "[locations.any.cues]\nhigh = { point = [0.5, -0.5] }\nlow = { point = [-1.0, 1.0] }\n")
    session.submit(SAMPLE_RATE_HZ // 4, MappingChange(swapped, None, "test"))
    made_before = session.conductor.cue_choices_made
    render_frames(session, 3 * SAMPLE_RATE_HZ)  # the swap lands on the next bar line
    assert session.conductor.cue_choices_made == made_before + 1
    assert [e.data["cue"] for e in session.drain_events() if e.kind == "cue_change"] == ["low", "high"]
    session.close()


def direct_amplitude(points: tuple[tuple[float, float], ...], intensity: float) -> float:
    """The curve interpolated from its breakpoints on every call (the docstring's definition)."""
    x = min(max(intensity, 0.0), 1.0)
    if x <= points[0][0]:
        return db_to_amplitude(points[0][1])
    for (x0, db0), (x1, db1) in zip(points, points[1:]):
        if x <= x1:
            t = (x - x0) / (x1 - x0)
            if db0 > SILENCE_DB and db1 > SILENCE_DB:
                return db_to_amplitude(db0 + (db1 - db0) * t)
            a0, a1 = db_to_amplitude(db0), db_to_amplitude(db1)
            return a0 + (a1 - a0) * t
    return db_to_amplitude(points[-1][1])


def test_gain_curves_answer_exactly_as_interpolating_afresh_repeated_or_not():
    rng = np.random.default_rng(3)
    curves = [((0.0, -math.inf), (0.4, -math.inf), (0.6, -12.0), (1.0, 0.0)), ((0.5, -6.0),),
              ((0.2, -30.0), (0.9, 3.0)), ((0.0, -1.0), (0.3, -math.inf), (1.0, -5.0))]
    for points in curves:
        curve = GainCurve(points)
        intensities = [*rng.uniform(-0.2, 1.2, 200).tolist(), *(x for x, _ in points)]
        for intensity in intensities + intensities[::-1]:  # each asked twice in a row at the turn
            assert curve.amplitude(intensity) == direct_amplitude(points, intensity)
            assert curve.amplitude(intensity) == direct_amplitude(points, intensity)  # the kept answer
        # The kept answer is no part of the curve's value: equal to, and hashed as, a curve never asked.
        assert curve == GainCurve(points) and hash(curve) == hash(GainCurve(points))


def test_layers_sharing_a_ramp_shape_get_the_envelopes_they_would_alone():
    """Layers retargeted on one frame with one fade share the shape; a ramp
    started elsewhere gets its own; every envelope is bit-identical to one
    computed without sharing."""
    ramps = []
    for start, target in ((0.2, 0.8), (1.0, 0.0), (0.0, 0.5)):
        ramp = GainRamp(start)
        ramp.ramp_to(target, 1_000, 24_000)
        ramps.append(ramp)
    for start_frame, length_frames in ((5_000, 24_000), (1_000, 30_000)):  # started elsewhere; longer
        other = GainRamp(0.3)
        other.ramp_to(0.9, start_frame, length_frames)
        ramps.append(other)
    shapes: dict = {}
    shared = [ramp.envelope(6_000, 1024, shapes) for ramp in ramps]
    alone = [ramp.envelope(6_000, 1024) for ramp in ramps]
    assert len(shapes) == 3
    for a, b in zip(shared, alone):
        assert a.dtype == np.float32 and a.tobytes() == b.tobytes()
