"""Audience mode in the engine: votes aggregated (mean, median, majority)
over a window on the session clock, applied on the frames of the
``[audience] interval_ms`` grid before the smoothing, blended with the
control client's scene by a weight, and replayed bit for bit."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from adaptive.audience import (AudienceAggregate, AudienceVote, AudienceWeight, aggregate_votes, blend,
                               nearest_emotions)
from adaptive.emotion import NAMED_EMOTIONS, EmotionPoint
from adaptive.errors import ConfigError
from adaptive.mapping import parse_mapping_text
from adaptive.offline import render_offline
from adaptive.recording import Recording, load_recording, replay
from adaptive.scene import SceneUpdate
from adaptive.session import InputError, Session
from tests.helpers import SAMPLE_RATE_HZ

QUARTER_S = SAMPLE_RATE_HZ // 4  # the default interval_ms = 250: evaluations on frames k * 12 000


def session_with(bank, soundfont, audience: str = "", **kwargs) -> Session:
    mapping = parse_mapping_text(f"[audience]\n{audience}", bank)
    return Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, mapping=mapping, **kwargs)


def audience_events(session: Session) -> list[tuple[int, dict]]:
    return [(e.frame, e.data) for e in session.drain_events() if e.kind == "audience"]


def run(session: Session, inputs: list, seconds: float) -> list[tuple[int, dict]]:
    render_offline(session, int(seconds * SAMPLE_RATE_HZ), inputs)
    events = audience_events(session)
    session.close()
    return events


CONTROL = (0, SceneUpdate(valence=0.0, arousal=0.0, intensity=0.5))


def test_mean_aggregates_each_axis_over_the_voices_and_applies_on_the_next_grid_frame(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont, 'aggregate = "mean"\n')
    votes = [(100, AudienceVote("a", valence=0.2, arousal=0.4, intensity=0.6)),
             (200, AudienceVote("b", valence=0.6, arousal=-0.2)),  # no intensity: not in the intensity mean
             (300, AudienceVote("c", emotion="afraid", intensity=1.0))]  # afraid = (-0.6, 0.7)
    events = run(session, [CONTROL, *votes], 0.3)
    assert [frame for frame, _ in events] == [QUARTER_S]  # first grid frame after the votes
    data = events[0][1]
    assert data["voices"] == 3 and data["emotion"] is None and data["weight"] == 1.0
    assert data["valence"] == pytest.approx((0.2 + 0.6 - 0.6) / 3)
    assert data["arousal"] == pytest.approx((0.4 - 0.2 + 0.7) / 3)
    assert data["intensity"] == pytest.approx(0.8)
    assert data["target"] == pytest.approx((data["valence"], data["arousal"], 0.8))  # weight 1: the audience's


def test_the_aggregate_enters_before_the_smoothing_at_its_frame(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont)
    inputs = [CONTROL, (100, AudienceVote("a", valence=0.5, arousal=-0.5, intensity=0.9))]
    render_offline(session, SAMPLE_RATE_HZ // 2, inputs)
    follows = [(e.frame, e.data) for e in session.drain_events() if e.kind == "follow"]
    session.close()
    assert follows[0][0] == 0 and follows[0][1]["valence"] == 0.0  # the control scene until the grid frame
    assert (follows[1][0], follows[1][1]["valence"], follows[1][1]["intensity"]) == (QUARTER_S, 0.5, 0.9)


def test_median_takes_each_axis_middle_value(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont, 'aggregate = "median"\n')
    votes = [(10, AudienceVote("a", valence=-1.0, arousal=0.9, intensity=0.1)),
             (20, AudienceVote("b", valence=0.3, arousal=-1.0, intensity=0.2)),
             (30, AudienceVote("c", valence=0.4, arousal=0.1, intensity=0.9)),
             (40, AudienceVote("d", valence=1.0, arousal=0.2))]
    (frame, data), = run(session, [CONTROL, *votes], 0.3)
    assert frame == QUARTER_S
    assert (data["valence"], data["arousal"], data["intensity"]) == pytest.approx((0.35, 0.15, 0.2))


def test_majority_takes_the_most_named_emotion_and_breaks_ties_alphabetically(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont, 'aggregate = "majority"\n')
    votes = [(10, AudienceVote("a", emotion="tense", intensity=0.2)),
             (20, AudienceVote("b", emotion="tense", intensity=0.4)),
             (30, AudienceVote("c", emotion="calm")),
             (40, AudienceVote("d", valence=0.41, arousal=-0.59, intensity=0.9))]  # nearest named: calm
    events = run(session, [CONTROL, *votes], 0.3)
    data = events[0][1]
    assert data["emotion"] == "calm"  # 2 tense, 2 calm: "calm" < "tense"
    assert (data["valence"], data["arousal"]) == (NAMED_EMOTIONS["calm"].valence, NAMED_EMOTIONS["calm"].arousal)
    assert data["intensity"] == pytest.approx(0.4)  # median of 0.2, 0.4, 0.9


def test_one_client_voting_fast_counts_once(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont)
    fast = [(100 + i, AudienceVote("fast", valence=1.0, arousal=1.0)) for i in range(20)]
    events = run(session, [CONTROL, *fast, (500, AudienceVote("slow", valence=-1.0, arousal=-1.0))], 0.3)
    data = events[0][1]
    assert data["voices"] == 2 and data["valence"] == 0.0 and data["arousal"] == 0.0


def test_votes_outside_the_window_are_forgotten_and_the_control_scene_returns(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont, "window_s = 1.0\n")
    events = run(session, [CONTROL, (100, AudienceVote("a", valence=0.8, arousal=0.8))], 2.0)
    # The vote counts while frame - 48 000 < 100: at 12 000, 24 000, 36 000, 48 000; gone at 60 000.
    assert [(frame, data["voices"]) for frame, data in events] == [
        (QUARTER_S, 1), (2 * QUARTER_S, 1), (3 * QUARTER_S, 1), (4 * QUARTER_S, 1), (5 * QUARTER_S, 0)]
    assert events[-1][1]["target"] == (0.0, 0.0, 0.5)  # back to the control client's scene


def test_weight_zero_ignores_the_audience_and_a_control_weight_overrides_the_mapping(tone_bank, soundfont):
    vote = (100, AudienceVote("a", valence=0.8, arousal=-0.4, intensity=1.0))
    events = run(session_with(tone_bank(), soundfont, "weight = 0.0\n"), [CONTROL, vote], 0.3)
    assert events[0][1]["target"] == (0.0, 0.0, 0.5)
    session = session_with(tone_bank(), soundfont)
    events = run(session, [CONTROL, vote, (QUARTER_S + 5, AudienceWeight(0.5)), (2 * QUARTER_S + 5, AudienceWeight(0.0))],
                 0.8)
    assert [(frame, data["weight"], data["target"]) for frame, data in events] == [
        (QUARTER_S, 1.0, (0.8, -0.4, 1.0)), (2 * QUARTER_S, 0.5, (0.4, -0.2, 0.75)),
        (3 * QUARTER_S, 0.0, (0.0, 0.0, 0.5))]


def test_min_votes_gives_the_audience_no_say_until_enough_voices_voted(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont, "min_votes = 2\n")
    votes = [(100, AudienceVote("a", valence=0.8, arousal=0.8)), (QUARTER_S + 1, AudienceVote("b", valence=0.0, arousal=0.8))]
    events = run(session, [CONTROL, *votes], 0.6)
    assert [(frame, data["voices"], data["target"][:2]) for frame, data in events][:2] == [
        (QUARTER_S, 1, (0.0, 0.0)), (2 * QUARTER_S, 2, pytest.approx((0.4, 0.8)))]


def test_bad_votes_are_refused_naming_what_is_allowed(tone_bank, soundfont):
    session = session_with(tone_bank(), soundfont)
    with pytest.raises(InputError, match="exactly one of them"):
        session.submit(0, AudienceVote("a", emotion="calm", valence=0.1, arousal=0.1))
    with pytest.raises(InputError, match="unknown emotion 'glee'"):
        session.submit(0, AudienceVote("a", emotion="glee"))
    with pytest.raises(InputError, match=r"intensity 1\.5 is out of range \(allowed: a number from 0 to 1\)"):
        session.submit(0, AudienceVote("a", emotion="calm", intensity=1.5))
    with pytest.raises(InputError, match=r"audience weight 2 is out of range"):
        session.submit(0, AudienceWeight(2))
    session.close()


@pytest.mark.parametrize("section, problem", [
    ('aggregate = "mode"', "aggregate"), ("window_s = 0", "window_s"), ("weight = 1.5", "weight"),
    ("min_votes = 0", "min_votes"), ("interval_ms = 5", "interval_ms"), ("quorum = 3", "quorum")])
def test_a_bad_audience_section_is_a_clear_error_naming_the_field(tone_bank, section, problem):
    with pytest.raises(ConfigError) as raised:
        parse_mapping_text(f"[audience]\n{section}\n", tone_bank())
    assert f"audience.{problem}" in str(raised.value)


def test_aggregation_does_not_depend_on_vote_order():
    votes = [AudienceVote(str(i), valence=v, arousal=-v, intensity=abs(v)) for i, v in
             enumerate((0.1, 0.7, -0.3, 0.33, 0.9, -1.0, 0.25))]
    for how in AudienceAggregate:
        assert aggregate_votes(votes, how, NAMED_EMOTIONS) == aggregate_votes(votes[::-1], how, NAMED_EMOTIONS)
    assert blend((0.0, 0.0, 0.5), None, 1.0) == (0.0, 0.0, 0.5)


def test_a_point_vote_counts_for_the_nearest_name_and_an_equal_distance_for_the_first_name():
    emotions = {"up": EmotionPoint(0.0, 0.5), "down": EmotionPoint(0.0, -0.5), "left": EmotionPoint(-0.9, 0.0)}
    assert nearest_emotions([(0.0, 0.4), (0.0, 0.0), (-0.6, 0.1)], emotions) == ["up", "down", "left"]
    votes = [AudienceVote("a", valence=0.0, arousal=0.0), AudienceVote("b", emotion="up")]
    result = aggregate_votes(votes, AudienceAggregate.MAJORITY, emotions)
    assert (result.emotion, result.voices, result.intensity) == ("down", 2, None)  # 1 down, 1 up: "down" < "up"


def test_block_size_does_not_change_the_audio_of_a_voted_session(tone_bank, soundfont):
    bank = tone_bank(exit="immediate", fade_beats=0.5)
    inputs = [(0, SceneUpdate(emotion="calm", intensity=0.3)),
              *[(1000 * i, AudienceVote(str(i % 5), emotion="afraid" if i % 3 else "calm", intensity=0.9))
                for i in range(1, 60)]]
    renders = [render_offline(session_with(bank, soundfont, 'aggregate = "majority"\n', max_block_frames=block),
                              3 * SAMPLE_RATE_HZ, inputs, block_frames=block) for block in (256, 4096)]
    assert np.array_equal(renders[0], renders[1])


def test_a_recording_with_votes_replays_bit_for_bit(tone_bank, soundfont, tmp_path):
    bank = tone_bank(exit="immediate", fade_beats=0.5)
    session = session_with(bank, soundfont, 'aggregate = "median"\nwindow_s = 0.5\n')
    recording = Recording.for_session(tmp_path / "session.jsonl", session, bank.folder / "bank.toml")
    inputs = [(0, SceneUpdate(emotion="calm", intensity=0.3)),
              *[(2000 * i, AudienceVote(f"v{i % 7}", valence=-0.9 + 0.01 * i, arousal=0.8, intensity=0.9))
                for i in range(1, 40)],
              (SAMPLE_RATE_HZ, AudienceWeight(0.25)),
              (int(1.5 * SAMPLE_RATE_HZ), AudienceVote("v1", emotion="sad"))]
    inputs.sort(key=lambda stamped: stamped[0])
    total = 3 * SAMPLE_RATE_HZ
    audio = render_offline(session, total, inputs)
    for frame, item in inputs:
        recording.write_input(frame, item)
    recording.close(total)
    session.close()
    lines = [json.loads(line) for line in (tmp_path / "session.jsonl").read_text().splitlines()]
    assert {"frame": 2000, "type": "audience_vote", "voice": "v1", "emotion": None, "valence": pytest.approx(-0.89),
            "arousal": 0.8, "intensity": 0.9} in lines
    assert {"frame": SAMPLE_RATE_HZ, "type": "audience_weight", "weight": 0.25} in lines
    assert np.array_equal(replay(tmp_path / "session.jsonl"), audio)
    assert not np.array_equal(audio[SAMPLE_RATE_HZ:], render_offline(
        session_with(bank, soundfont), total, inputs[:1])[SAMPLE_RATE_HZ:])  # the votes changed the music


@pytest.mark.parametrize("line, problem", [
    ({"voice": "a"}, "exactly one of them"),
    ({"voice": "a", "emotion": "calm", "valence": 0.1, "arousal": 0.1}, "exactly one of them"),
    ({"voice": "a", "valence": 0.1}, "valence and arousal must be given together"),
    ({"voice": "a", "valence": 2, "arousal": 0}, "valence 2 is out of range (allowed: a number from -1 to 1, or null)"),
    ({"voice": "", "emotion": "calm"}, "voice '' must be a string of 1 to 64 characters"),
    ({"voice": "a", "emotion": "calm", "volume": 1}, "unknown field 'volume'"),
])
def test_the_recording_format_rejects_malformed_votes_clearly(tone_bank, tmp_path, line, problem):
    bank = tone_bank()
    path = tmp_path / "bad.jsonl"
    header = {"format": "adaptive-recording", "version": 4, "bank": str(bank.folder / "bank.toml"),
              "sample_rate_hz": SAMPLE_RATE_HZ, "seed": 0}
    path.write_text(json.dumps(header) + "\n" + json.dumps({"frame": 5, "type": "audience_vote", **line}) + "\n"
                    + json.dumps({"type": "end", "frame": 10}) + "\n")
    with pytest.raises(ConfigError) as raised:
        load_recording(path)
    assert re.search(r"line 2: [^\n]*" + re.escape(problem), str(raised.value))
