"""What is generated ahead: bridges to the likely next cues, and generated
stingers' phrases, made before they are needed."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.cue import DEFAULT_BANK, WILDCARD, TransitionRule, load_bank
from adaptive.generation import GenerationMode, GenerationWorker
from adaptive.generator import RuleBasedGenerator
from adaptive.part import Part
from adaptive.speculation import BridgesAhead, phrase_from_bars, tonic_chord_request
from adaptive.transition import plan_bridge


@pytest.fixture(scope="module")
def bank():
    return load_bank(DEFAULT_BANK)


@pytest.fixture
def worker():
    worker = GenerationWorker(GenerationMode.WAIT)
    yield worker
    worker.close()


def bridges_everywhere(bars: int = 2) -> tuple:
    return (TransitionRule.model_validate({"from": WILDCARD, "to": WILDCARD,
                                           "bridge": {"kind": "generated", "bars": bars}}),)


def test_a_phrase_lays_bars_end_to_end_and_is_cut_to_its_length():
    bar = Part.from_notes([(0.0, 1.0, 60, 100), (3.5, 1.0, 62, 90)])
    phrase = phrase_from_bars([bar, bar], beats_per_bar=4, length_beats=6.0)
    assert phrase.start_beats.tolist() == [0.0, 3.5, 4.0]
    assert phrase.duration_beats.tolist() == [1.0, 1.0, 1.0]
    assert phrase.pitch.tolist() == [60, 62, 60]
    cut = phrase_from_bars([bar], beats_per_bar=4, length_beats=4.0)
    assert cut.duration_beats.tolist() == [1.0, 0.5]  # the note ringing past the end is shortened
    assert len(phrase_from_bars([], 4, 4.0)) == 0


def test_a_stinger_bar_is_asked_for_on_the_tonic(bank):
    cue = bank.cues[0]
    request = tonic_chord_request(cue, 1, 4, 0.2, -0.3, "melody", 9)
    assert request.key == cue.parsed_key and request.chord.pitch_classes()[0] == cue.parsed_key.tonic_pitch_class
    assert (request.bar_index, request.valence, request.arousal, request.seed) == (1, 0.2, -0.3, 9)


def test_bridges_to_the_nearest_cues_are_made_ahead_and_taken_when_the_transition_fires(bank, worker):
    stream = worker.stream("bridge", RuleBasedGenerator())
    ahead = BridgesAhead(bank, worker, stream, seed=5, max_bridges=2)
    ahead.rules = bridges_everywhere()
    playing = bank.cues[0].name
    ahead.refresh(playing, 0.0, 0.0)
    assert ahead.made_ahead == 2
    ahead.refresh(playing, 0.01, 0.0)  # moved less than the refresh distance: nothing new
    assert ahead.made_ahead == 2
    nearest = min((cue for cue in bank.cues if cue.name != playing),
                  key=lambda cue: np.hypot(cue.valence, cue.arousal))
    plan, tickets = ahead.take(playing, nearest.name, 2, frame=0)
    assert plan == plan_bridge(bank.cue(playing), nearest, 2, 5)
    assert sorted(tickets) == [0, 1]
    assert all(isinstance(worker.take(ticket, 0), Part) for ticket in tickets.values())
    assert worker.counters["generation_misses"] == 0


def test_no_bridges_are_made_ahead_when_told_not_to(bank, worker):
    ahead = BridgesAhead(bank, worker, worker.stream("bridge", RuleBasedGenerator()), seed=5, max_bridges=0)
    ahead.rules = bridges_everywhere()
    ahead.refresh(bank.cues[0].name, 0.0, 0.0)
    assert ahead.made_ahead == 0
    with pytest.raises(ValueError, match="max_bridges 17 is out of range"):
        BridgesAhead(bank, worker, None, seed=5, max_bridges=17)  # type: ignore[arg-type]
