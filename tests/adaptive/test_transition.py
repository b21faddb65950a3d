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


def test_a_bridge_joins_the_outgoing_cues_last_bar_to_the_incoming_cues_first_note(bank):
    from adaptive.part import PartLibrary
    from adaptive.transition import bridge_seams, lead_part

    library = PartLibrary()
    explore, stealth = bank.cue("explore"), bank.cue("stealth")
    lead = lead_part(explore, bank, library)  # the melody track: the highest of explore's MIDI layers
    assert lead is library.track(bank.path("explore.mid"), "melody")
    context, next_pitch = bridge_seams(bank, library, "explore", "stealth")
    last_bar_beats = (explore.loop_bars - 1) * explore.meter.beats_per_bar
    in_last_bar = lead.start_beats >= last_bar_beats
    assert len(context) == 1 and context[0].pitch.tolist() == lead.pitch[in_last_bar].tolist()
    assert (context[0].start_beats >= 0).all() and (context[0].start_beats < explore.meter.beats_per_bar).all()
    stealth_lead = lead_part(stealth, bank, library)
    first = stealth_lead.start_beats == stealth_lead.start_beats.min()
    assert next_pitch == int(stealth_lead.pitch[first].max())

    plan = plan_bridge(explore, stealth, 3, seed=1, context=context, next_pitch=next_pitch)
    assert plan.requests[0].context == context and all(not r.context for r in plan.requests[1:])
    assert all(r.ending is None for r in plan.requests[:-1])
    ending = plan.requests[-1].ending
    stealth_key = stealth.parsed_key  # E minor: end on E or B, within an octave of the first stealth note
    assert set(ending.pitch_classes) == {stealth_key.tonic_pitch_class, (stealth_key.tonic_pitch_class + 7) % 12}
    assert ending.next_pitch == next_pitch


def test_a_cue_of_generated_layers_only_has_no_lead_line(bank):
    from adaptive.cue import Cue
    from adaptive.part import PartLibrary
    from adaptive.transition import lead_part

    cue = Cue.model_validate({"name": "gen", "bpm": 100, "key": "C major", "loop_bars": 4,
                              "layers": [{"name": "arp", "source": {"kind": "generated", "role": "arpeggio"}}]})
    assert lead_part(cue, bank, PartLibrary()) is None


def test_a_cue_bar_may_change_chord_at_its_half():
    from adaptive.cue import Cue
    from adaptive.harmony import Chord

    cue = Cue.model_validate({"name": "c", "bpm": 100, "key": "C major", "loop_bars": 2, "chords": ["C", "F G"],
                              "layers": [{"name": "arp", "source": {"kind": "generated"}}]})
    assert cue.chords_at_bar(0) == (Chord.parse("C"), None)
    assert cue.chords_at_bar(1) == (Chord.parse("F"), Chord.parse("G"))
    assert cue.chord_at_bar(1) == Chord.parse("F")
    with pytest.raises(ValueError, match="one chord per bar, or two separated by a space"):
        Cue.model_validate({"name": "c", "bpm": 100, "key": "C major", "loop_bars": 2, "chords": ["C F G"],
                            "layers": [{"name": "arp", "source": {"kind": "generated"}}]})
