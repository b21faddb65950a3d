"""The one offline driver: inputs submitted when the render reaches their frame."""

from __future__ import annotations

import numpy as np

from adaptive.offline import render_offline
from adaptive.scene import SceneUpdate
from adaptive.session import Session
from tests.helpers import SAMPLE_RATE_HZ


def make(tone_bank, soundfont, block_frames: int = 4096) -> Session:
    return Session(tone_bank(), soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=1,
                   max_block_frames=block_frames, generator="rule_based")


def test_inputs_take_effect_at_their_frames_whatever_the_block_size(tone_bank, soundfont):
    inputs = [(0, SceneUpdate(cue="low", intensity=0.2)), (30_001, SceneUpdate(cue="high")),
              (30_001, SceneUpdate(intensity=0.9))]
    renders = []
    for block_frames in (4096, 1000):
        session = make(tone_bank, soundfont, block_frames)
        audio = render_offline(session, 96_000, inputs)
        scenes = [event.frame for event in session.drain_events() if event.kind == "scene"]
        session.close()
        assert audio.shape == (96_000, 2) and scenes == [0, 30_001, 30_001]
        renders.append(audio)
    assert np.array_equal(renders[0], renders[1])


def test_rendering_goes_on_from_where_the_session_is(tone_bank, soundfont):
    session = make(tone_bank, soundfont)
    first = render_offline(session, 10_000, [(0, SceneUpdate(cue="low"))])
    blocks = []
    rest = render_offline(session, 25_000, block_frames=3000, on_block=blocks.append)
    session.close()
    assert first.shape == (10_000, 2) and rest.shape == (15_000, 2) and session.frame == 25_000
    assert blocks == [3000] * 5
