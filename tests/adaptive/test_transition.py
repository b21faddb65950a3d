"""Transition rules (most specific wins, wildcards) and generated bridge plans."""

from __future__ import annotations

import pytest

from adaptive.cue import DEFAULT_BANK, WILDCARD, TransitionRule, load_bank
from adaptive.harmony import Key
from adaptive.transition import (DEFAULT_RULE, bridge_bpms, bridge_chords, find_rule_in, generated_bridge_targets,
                                 plan_bridge)


def rule(from_cue: str, to_cue: str, fade_beats: float) -> TransitionRule:
    return TransitionRule.model_validate({"from": from_cue, "to": to_cue, "fade_beats": fade_beats})


@pytest.fixture(scope="module")
def bank():
    return load_bank(DEFAULT_BANK)


def test_the_most_specific_rule_wins_and_later_rules_win_among_equals():
    rules = [rule(WILDCARD, WILDCARD, 1), rule("a", WILDCARD, 2), rule(WILDCARD, "b", 3), rule("a", "b", 4),
             rule(WILDCARD, WILDCARD, 5)]
    assert find_rule_in(rules, "a", "b").fade_beats == 4
    assert find_rule_in(rules, "a", "c").fade_beats == 2  # from beats to
    assert find_rule_in(rules, "x", "b").fade_beats == 3
    assert find_rule_in(rules, "x", "y").fade_beats == 5  # the later wildcard
    assert find_rule_in([], "x", "y") is DEFAULT_RULE


def test_a_bridge_ends_on_the_incoming_dominant_after_its_predominant(bank):
    old = bank.cue(bank.cues[0].name)
    new_key = Key.parse("A minor")
    path = bridge_chords(old, new_key, 4)
    assert len(path) == 4
    assert path[-1][1] == new_key and sorted(path[-1][0].pitch_classes()) == sorted({4, 8, 11, 2})  # E7
    assert sorted(path[-2][0].pitch_classes()) == sorted({2, 5, 9})  # iv of A minor: D minor
    assert path[0] == (old.chord_at_bar(0), old.parsed_key)


def test_bridge_tempos_step_evenly_towards_the_incoming_cue():
    assert bridge_bpms(80.0, 120.0, 3) == (90.0, 100.0, 110.0)
    assert bridge_bpms(100.0, 100.0, 2) == (100.0, 100.0)


def test_a_plan_moves_the_emotion_to_the_incoming_cue_and_depends_only_on_its_inputs(bank):
    old, new = bank.cues[0], bank.cues[1]
    plan = plan_bridge(old, new, 2, seed=7)
    assert plan.bars == 2 and plan == plan_bridge(old, new, 2, seed=7)
    last = plan.requests[-1]
    assert (last.valence, last.arousal) == pytest.approx((new.valence, new.arousal))
    assert all(request.seed == 7 and request.beats_per_bar == old.meter.beats_per_bar for request in plan.requests)
    with pytest.raises(ValueError, match="at least 1 bar"):
        plan_bridge(old, new, 0, seed=7)


def test_generated_bridge_targets_follow_the_rules_in_force(bank):
    first = bank.cues[0].name
    generated = [TransitionRule.model_validate({"from": first, "to": WILDCARD,
                                                "bridge": {"kind": "generated", "bars": 2}})]
    targets = generated_bridge_targets(bank, first, generated)
    assert targets == [(cue.name, 2) for cue in bank.cues if cue.name != first]
    assert generated_bridge_targets(bank, first, []) == []
