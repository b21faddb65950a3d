"""The stinger player: quantized to the lead's grid, played on top, reported."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.builder import PlayerBuilder
from adaptive.clock import TempoGrid
from adaptive.events import EventKind
from adaptive.generation import GenerationWorker
from adaptive.mapping import ResolvedMapping
from adaptive.schedule import Schedule
from adaptive.speculation import StingersAhead
from adaptive.stage import Stage
from adaptive.stinger import StingerPlayer
from tests.helpers import SAMPLE_RATE_HZ


@pytest.fixture
def parts(tone_bank, soundfont):
    bank = tone_bank(stinger_quantize="next_beat")
    stage = Stage(bank, SAMPLE_RATE_HZ, 0, ResolvedMapping.from_bank(bank))
    schedule = Schedule()
    worker = GenerationWorker()
    builder = PlayerBuilder(stage, soundfont, worker, "rule_based", 1, True, lambda message: None)
    stage.players = builder.players()
    voices, generated = builder.stinger_voices()
    player = StingerPlayer(stage, schedule, voices, StingersAhead(worker, generated, 0))
    yield stage, schedule, player, builder
    player.close()
    for cue in stage.players.values():
        cue.close()
    worker.close()


def test_with_nothing_playing_a_stinger_plays_at_once(parts):
    stage, schedule, player, builder = parts
    player.trigger("hit", 1000)
    assert player.sounding == []  # scheduled, not yet played
    schedule.run_due(1000)
    assert player.sounding == ["hit"]
    assert [(e.frame, e.kind, e.data) for e in schedule.events] == [
        (1000, EventKind.STINGER, {"name": "hit", "requested_frame": 1000})]
    out = np.zeros((4096, 2), np.float32)
    player.render(1000, out, np.zeros_like(out))
    assert np.abs(out).max() > 0.0
    assert [event.part for event in builder.midi_events] and builder.parts["stinger/hit"].program == 0


def test_a_stinger_waits_for_the_next_beat_of_the_lead(parts):
    stage, schedule, player, _ = parts
    lead = stage.players["low"]
    lead.grid = TempoGrid(120.0, 4, 0, SAMPLE_RATE_HZ)  # a beat every 24 000 frames
    stage.lead = stage.current = lead
    player.trigger("hit", 1000)
    schedule.run_due(23_999)
    assert player.sounding == []
    schedule.run_due(24_000)
    assert player.sounding == ["hit"] and schedule.events[-1].frame == 24_000


def test_a_stinger_the_mapping_no_longer_has_is_reported_not_played(parts):
    _, schedule, player, _ = parts
    player.trigger("no_such_stinger", 500)
    assert player.sounding == []
    assert [(e.kind, e.data["input"]) for e in schedule.events] == [(EventKind.ERROR, "stinger")]
