"""Frames, seconds, beats and bars: the conversions and quantization every
schedule relies on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adaptive.clock import (Quantize, SteppedTempoGrid, TempoGrid, beats_to_frames, frames_elapsed, frames_per_beat,
                            frames_to_seconds, ms_to_frames, seconds_to_frames)

bpms = st.floats(min_value=20.0, max_value=300.0, allow_nan=False)
rates = st.sampled_from([8_000, 22_050, 44_100, 48_000, 96_000, 192_000])
meters = st.integers(min_value=1, max_value=16)
origins = st.integers(min_value=0, max_value=10**9)


@given(bpm=bpms, rate=rates, beats_per_bar=meters, origin=origins,
       beat=st.floats(min_value=-1e4, max_value=1e5, allow_nan=False))
def test_beats_to_frames_to_beats_round_trips_within_half_a_frame(bpm, rate, beats_per_bar, origin, beat):
    grid = TempoGrid(bpm, beats_per_bar, origin, rate)
    frame = grid.beat_to_frame(beat)
    assert abs(grid.frame_to_beat(frame) - beat) * grid.frames_per_beat <= 0.5 + 1e-6


@given(seconds=st.floats(min_value=0, max_value=86_400, allow_nan=False), rate=rates)
def test_seconds_to_frames_round_trips_within_half_a_frame(seconds, rate):
    frames = seconds_to_frames(seconds, rate)
    assert abs(frames_to_seconds(frames, rate) - seconds) <= 0.5 / rate + 1e-9


@given(seconds=st.floats(min_value=0, max_value=86_400, allow_nan=False), rate=rates)
def test_frames_elapsed_counts_only_whole_frames_played(seconds, rate):
    frames = frames_elapsed(seconds, rate)
    assert frames <= seconds * rate < frames + 1


def test_milliseconds_to_frames():
    assert ms_to_frames(40.0, 48_000) == 1920
    assert ms_to_frames(0.0, 44_100) == 0
    assert ms_to_frames(10.0, 44_100) == 441


def test_known_values():
    assert beats_to_frames(1, 120, 48_000) == 24_000
    assert beats_to_frames(4, 90, 48_000) == 128_000
    grid = TempoGrid(100.0, 4, 1_000, 48_000)
    assert grid.beat_to_frame(1) == 1_000 + 28_800
    assert grid.bar_to_frame(2) == 1_000 + 8 * 28_800


@pytest.mark.parametrize(
    ("rule", "frame", "expected"),
    [
        (Quantize.IMMEDIATE, 30_001, 30_001),
        (Quantize.NEXT_BEAT, 30_001, 48_000),
        (Quantize.NEXT_BEAT, 48_000, 48_000),  # on a boundary: that boundary
        (Quantize.NEXT_BAR, 1, 96_000),
        (Quantize.NEXT_BAR, 96_000, 96_000),
        (Quantize.NEXT_PHRASE, 96_001, 384_000),  # 4-bar phrases
        (Quantize.LOOP_END, 96_001, 192_000),  # 2-bar loop
        (Quantize.NEXT_BAR, -5, 0),  # before the origin
    ],
)
def test_quantize(rule, frame, expected):
    grid = TempoGrid(120.0, 4, 0, 48_000)
    assert grid.quantize(frame, rule, phrase_bars=4, loop_bars=2) == expected


@given(bpm=bpms, rate=rates, beats_per_bar=meters, origin=st.integers(0, 10**7),
       frame=st.integers(0, 10**8), rule=st.sampled_from(list(Quantize)))
def test_quantize_gives_the_first_boundary_at_or_after_the_request(bpm, rate, beats_per_bar, origin, frame, rule):
    grid = TempoGrid(bpm, beats_per_bar, origin, rate)
    boundary = grid.quantize(frame, rule, phrase_bars=3, loop_bars=5)
    assert boundary >= frame
    if rule is Quantize.IMMEDIATE:
        assert boundary == frame
        return
    step = {Quantize.NEXT_BEAT: 1, Quantize.NEXT_BAR: beats_per_bar,
            Quantize.NEXT_PHRASE: 3 * beats_per_bar, Quantize.LOOP_END: 5 * beats_per_bar}[rule]
    beat = round(grid.frame_to_beat(boundary))
    assert grid.beat_to_frame(beat) == boundary and beat % step == 0
    assert grid.beat_to_frame(beat - step) < frame  # no earlier boundary would do


def test_loop_end_needs_the_loop_length():
    with pytest.raises(ValueError, match="loop_bars"):
        TempoGrid(120.0, 4, 0).quantize(10, Quantize.LOOP_END)


def test_beats_in_span():
    grid = TempoGrid(120.0, 4, 0, 48_000)
    assert list(grid.beats_in_span(0, 24_000)) == [0]
    assert list(grid.beats_in_span(1, 48_001)) == [1, 2]


@given(bar_bpms=st.lists(bpms, min_size=1, max_size=6), rate=rates, beats_per_bar=meters, origin=origins,
       beat=st.floats(min_value=-8, max_value=40, allow_nan=False))
def test_stepped_grid_beats_frames_round_trip(bar_bpms, rate, beats_per_bar, origin, beat):
    grid = SteppedTempoGrid(tuple(bar_bpms), beats_per_bar, origin, rate)
    frame = grid.beat_to_frame(beat)
    bar = min(max(int(beat // beats_per_bar), 0), len(bar_bpms) - 1)
    # Within half a frame of the exact beat (at the slowest-framed tempo: a
    # beat at a bar's end may round onto the next bar's line).
    assert abs(grid.frame_to_beat(frame) - beat) <= 0.5 / min(frames_per_beat(b, rate) for b in bar_bpms) + 1e-9
    assert grid.bar_to_frame(0) == origin
    assert grid.bpm_at_beat(beat) == bar_bpms[bar]


def test_stepped_grid_bars_add_up_and_quantize_on_them():
    grid = SteppedTempoGrid((100.0, 110.0, 120.0), 4, 1_000, 48_000)
    assert grid.bar_frames == (1_000, 1_000 + 115_200, 1_000 + 115_200 + 104_727, 1_000 + 115_200 + 104_727 + 96_000)
    assert grid.bar_to_frame(3) == grid.bar_frames[3]
    assert grid.beat_to_frame(5) == grid.bar_frames[1] + round(60 * 48_000 / 110)
    assert grid.quantize(grid.bar_frames[1] + 1, Quantize.NEXT_BAR) == grid.bar_frames[2]
    assert list(grid.beats_in_span(grid.bar_frames[1], grid.bar_frames[2])) == [4, 5, 6, 7]
    assert grid.beat_to_frame(13) == grid.bar_frames[3] + 24_000  # past the last bar: its tempo (120) goes on
