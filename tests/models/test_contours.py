"""Density contours and repeats borrowed from real 8-bar periods
(models/contours.py), and the generator following them: a bar the period
repeats takes the earlier bar's rhythm (and, as a motif, its intervals)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from adaptive.generator import BarRequest
from adaptive.harmony import Chord, Key
from models.contours import (CONTOURS_PATH, REPEAT_EXACT, REPEAT_MOTIF, REPEAT_NONE, REPEAT_RHYTHM, ContourError,
                             PhraseContours, arousal_quantile, downbeats, load_contours, repeats)
from models.tokenizer import PHRASE_BARS, ROLES


def bar(notes):
    """(onset quarters, duration quarters, pitch) triples -> decode_bar's arrays."""
    onsets, durations, pitches = zip(*notes) if notes else ((), (), ())
    return np.array(onsets, float), np.array(durations, float), np.array(pitches, int)


def test_repeats_names_the_earliest_earlier_bar_of_the_best_kind():
    a = bar([(0, 1, 60), (1, 1, 62), (2, 2, 64)])
    a_up = bar([(0, 1, 62), (1, 1, 64), (2, 2, 66)])        # the same motif a step higher
    a_rhythm = bar([(0, 1, 67), (1, 1, 60), (2, 2, 65)])    # the same rhythm, other intervals
    other = bar([(0, 0.5, 60), (0.5, 0.5, 62), (1, 3, 64)])
    empty = bar([])
    of, kind = repeats([a, other, a_up, a, a_rhythm, empty, empty, a])
    assert of == [-1, -1, 0, 0, 0, -1, -1, 0]
    assert kind == [REPEAT_NONE, REPEAT_NONE, REPEAT_MOTIF, REPEAT_EXACT, REPEAT_RHYTHM, REPEAT_NONE, REPEAT_NONE,
                    REPEAT_EXACT]


def test_a_different_note_length_is_not_the_same_rhythm():
    of, kind = repeats([bar([(0, 1, 60), (2, 2, 62)]), bar([(0, 2, 60), (2, 2, 62)])])
    assert of == [-1, -1] and kind == [REPEAT_NONE, REPEAT_NONE]


def test_the_committed_table_loads_with_every_role():
    contours = load_contours()
    for role in ROLES:
        assert contours.periods(role) >= 100


def _table():
    return json.loads(CONTOURS_PATH.read_text())


@pytest.mark.parametrize("change, message", [
    (lambda t: t["roles"].pop("bass"), "no role 'bass'"),
    (lambda t: t["roles"]["melody"]["density_bins"][0].append(1), "rows of 8 bins"),
    (lambda t: t["roles"]["melody"]["density_bins"][0].__setitem__(0, 9), "density bins must be 0..5"),
    (lambda t: t["roles"]["melody"]["mean_notes_per_beat"].reverse(), "ascending"),
    (lambda t: t["roles"]["melody"]["repeat_of"][0].__setitem__(0, 3), "only an earlier bar"),
    (lambda t: t["roles"]["arpeggio"]["downbeat"][0].__setitem__(2, 2), "downbeat needs"),
    (lambda t: t["roles"]["arpeggio"].pop("downbeat"), "downbeat as numbers"),
    (lambda t: t.__setitem__("format", 99), "format 99"),
])
def test_a_malformed_table_is_refused_with_what_is_wrong(change, message):
    table = copy.deepcopy(_table())
    change(table)
    with pytest.raises(ContourError, match=message):
        PhraseContours(table)


def test_a_missing_or_unreadable_table_says_how_to_build_it(tmp_path):
    with pytest.raises(ContourError, match="python -m models.contours"):
        load_contours(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ContourError, match="unreadable"):
        load_contours(tmp_path / "bad.json")


def test_a_period_is_one_real_period_drawn_by_seed_and_busier_with_arousal():
    contours = load_contours()
    table = _table()["roles"]["melody"]
    rows = {tuple(r) for r in table["density_bins"]}
    for seed in range(5):
        period = tuple(contours.bar_plan("melody", 0.5, seed, b).density_bin for b in range(8, 16))
        assert period in rows  # bars 8..15 are one real period's bars 0..7
        again = tuple(contours.bar_plan("melody", 0.5, seed, b).density_bin for b in range(8, 16))
        assert again == period
    mean_bin = {a: np.mean([contours.bar_plan("melody", arousal_quantile(a), seed, b).density_bin
                            for seed in range(40) for b in range(8)]) for a in (-1.0, 0.0, 1.0)}
    assert mean_bin[-1.0] < mean_bin[0.0] < mean_bin[1.0]


def test_a_planned_repeat_names_an_earlier_bar_of_the_same_period():
    contours = load_contours()
    found = 0
    for seed in range(30):
        for b in range(16, 24):
            plan = contours.bar_plan("bass", 0.5, seed, b)
            if plan.repeats_bar is not None:
                assert 16 <= plan.repeats_bar < b and plan.repeat_kind != REPEAT_NONE
                found += 1
            else:
                assert plan.repeat_kind == REPEAT_NONE
    assert found > 30  # real basses repeat about half their bars


# ---------------------------------------------------------------- the generator follows the plan

PROGRESSION = [Chord.parse(s) for s in ("C", "Am", "F", "G")]


def _period(generator, role, seed, arousal=0.0):
    return [generator.generate_bar(BarRequest(bar_index=b, key=Key.parse("C major"), chord=PROGRESSION[b % 4],
                                              beats_per_bar=4, bpm=120.0, valence=0.5, arousal=arousal, role=role,
                                              seed=seed))
            for b in range(PHRASE_BARS)]


def _top_line(part):
    onsets = np.round(part.start_beats * 4).astype(int)
    return np.array([part.pitch[onsets == o].max() for o in np.unique(onsets)], int)


def _rhythm(part):
    return sorted(set(zip(np.round(part.start_beats * 4).astype(int).tolist(),
                          np.round(part.duration_beats * 12).astype(int).tolist())))


@pytest.mark.parametrize("role", ["melody", "bass"])
def test_bars_the_period_repeats_take_the_earlier_bars_rhythm_and_motif(role):
    from models.generate import ModelPartGenerator

    contours = load_contours()
    checked = {REPEAT_RHYTHM: 0, REPEAT_MOTIF: 0, REPEAT_EXACT: 0}
    for seed in range(1, 9):
        generator = ModelPartGenerator()
        bars = _period(generator, role, seed)
        for b, part in enumerate(bars):
            plan = contours.bar_plan(role, arousal_quantile(0.0), seed, b)
            if plan.repeats_bar is None or not len(bars[plan.repeats_bar]):
                continue
            earlier = bars[plan.repeats_bar]
            assert _rhythm(part) == _rhythm(earlier), (seed, b, plan)
            if plan.repeat_kind >= REPEAT_MOTIF:
                # the intervals are kept where the key allows: most of them
                line, earlier_line = _top_line(part), _top_line(earlier)
                same = np.mean(np.diff(line) == np.diff(earlier_line)) if len(line) > 1 else 1.0
                assert same >= 0.5, (seed, b, line, earlier_line)
            checked[plan.repeat_kind] += 1
    assert checked[REPEAT_RHYTHM] + checked[REPEAT_MOTIF] + checked[REPEAT_EXACT] >= 4, checked


def test_without_contours_every_bar_asks_the_same_density():
    from models.generate import ModelPartGenerator

    asked = []
    for contours in (True, False):
        generator = ModelPartGenerator(density_contours=contours)
        bins = set()
        for b in range(PHRASE_BARS):
            generator.generate_bar(BarRequest(bar_index=b, key=Key.parse("C major"), chord=PROGRESSION[b % 4],
                                              beats_per_bar=4, bpm=120.0, valence=0.5, arousal=0.3, role="melody",
                                              seed=3))
            bins |= {t for t in generator.last_tokens if t.startswith("Density_")}
        asked.append(bins)
    assert len(asked[1]) == 1
    expected = {f"Density_{load_contours().bar_plan('melody', arousal_quantile(0.3), 3, b).density_bin}"
                for b in range(PHRASE_BARS)}
    assert asked[0] == expected


def test_a_melody_sounds_one_pitch_at_most_three_times_in_a_row_across_bar_lines():
    from models.generate import ROLE_MAX_REPEATED_NOTES, ModelPartGenerator

    assert ROLE_MAX_REPEATED_NOTES["melody"] == 3
    longest = 0
    for seed in range(1, 7):
        bars = _period(ModelPartGenerator(), "melody", seed, arousal=0.8)
        onsets = np.concatenate([np.round((p.start_beats + 4 * i) * 4) for i, p in enumerate(bars)])
        pitches = np.concatenate([p.pitch for p in bars])
        line = [pitches[onsets == o].max() for o in np.unique(onsets)]
        run = 1
        for a, b in zip(line[:-1], line[1:]):
            run = run + 1 if a == b else 1
            longest = max(longest, run)
    assert 2 <= longest <= 3  # repeated notes still happen, never four in a row


def _onsets(part):
    return tuple(sorted(set(np.round(part.start_beats * 4).astype(int).tolist())))


def test_a_melody_bar_its_period_does_not_repeat_takes_no_earlier_bars_rhythm():
    """Fresh rhythms (models.generate.PHRASE_FORM_FRESH_RHYTHMS): the bars a
    real period repeats come back, the others do not come out alike by
    chance; without the rule they do (eighth notes again and again)."""
    from models.generate import PHRASE_FORM_FRESH_RHYTHMS, ModelPartGenerator

    assert PHRASE_FORM_FRESH_RHYTHMS
    contours = load_contours()
    repeated = {True: 0, False: 0}
    fresh_bars = 0
    for fresh in (True, False):
        for seed in range(1, 7):
            bars = _period(ModelPartGenerator(fresh_rhythms=fresh), "melody", seed, arousal=0.5)
            for b, part in enumerate(bars):
                plan = contours.bar_plan("melody", arousal_quantile(0.5), seed, b)
                if plan.repeats_bar is not None or not len(part):
                    continue
                fresh_bars += fresh
                repeated[fresh] += _onsets(part) in {_onsets(p) for p in bars[:b] if len(p)}
    assert fresh_bars >= 15
    assert repeated[True] == 0, repeated
    assert repeated[False] >= 2, repeated  # the rule is what keeps them apart


def _repeat_share(bars):
    onsets = np.concatenate([np.round((p.start_beats + 4 * i) * 4) for i, p in enumerate(bars)])
    pitches = np.concatenate([p.pitch for p in bars])
    line = np.array([pitches[onsets == o].max() for o in np.unique(onsets)])
    return np.mean(line[1:] == line[:-1]), len(line) - 1


def test_a_melody_repeats_its_last_note_less_often_with_the_repeat_weight():
    """ROLE_REPEAT_WEIGHT: the model's own melodies repeat notes more often
    than real ones (its context breeds repeats); the factor brings the share
    down, and repeats a composer would write still happen."""
    from models.generate import ROLE_REPEAT_WEIGHT, ModelPartGenerator

    assert 0.0 < ROLE_REPEAT_WEIGHT["melody"] < 1.0
    shares = {}
    for weight in (None, 1.0):
        counts = [_repeat_share(_period(ModelPartGenerator(repeat_weight=weight), "melody", seed, arousal=0.5))
                  for seed in range(1, 7)]
        intervals = sum(n for _, n in counts)
        shares[weight] = sum(share * n for share, n in counts) / intervals
        assert intervals >= 150
    assert shares[None] <= 0.75 * shares[1.0], shares
    assert shares[None] > 0.02, shares  # not banned: a repeated note is still a melody's


@pytest.mark.parametrize("weight", [0.0, 1.5, {"lead": 0.5}, {"melody": -1.0}])
def test_a_repeat_weight_out_of_range_or_for_an_unknown_role_is_refused(weight):
    from models.generate import ModelPartGenerator

    with pytest.raises(ValueError, match="repeat_weight"):
        ModelPartGenerator(repeat_weight=weight)


def test_a_bar_starting_with_a_rest_or_a_held_note_has_no_downbeat():
    bars = [(np.array([0.0, 1.0]), np.array([1.0, 1.0]), np.array([60, 62])),
            (np.array([0.5, 2.0]), np.array([1.0, 2.0]), np.array([64, 65])),
            (np.zeros(0), np.zeros(0), np.zeros(0, int))]
    assert downbeats(bars) == [1, 0, 0]


def test_the_real_periods_mostly_start_their_bars_on_the_downbeat():
    """The committed table's share of bars with a downbeat onset: VGMIDI's
    melodies start about three bars in four there, its full textures more."""
    table = _table()["roles"]
    share = {role: float(np.mean(table[role]["downbeat"])) for role in ROLES}
    assert 0.6 < share["melody"] < 0.9 and share["arpeggio"] > share["melody"], share


@pytest.mark.parametrize("role", ["melody", "arpeggio"])
def test_a_bar_starts_on_its_downbeat_exactly_when_its_real_bar_does(role):
    """Bars that repeat no earlier bar follow their real period's bar: a note
    on the downbeat where it has one, none where it starts with a rest or a
    held note (without the rule, the model leaves a third of its melody
    bars' downbeats empty, VGMIDI a fifth)."""
    from models.generate import ModelPartGenerator

    contours = load_contours()
    checked = {True: 0, False: 0}
    for seed in range(1, 7):
        bars = _period(ModelPartGenerator(), role, seed)
        for b, part in enumerate(bars):
            plan = contours.bar_plan(role, arousal_quantile(0.0), seed, b)
            if plan.repeats_bar is not None or not len(part):
                continue
            assert bool(np.any(np.abs(part.start_beats) < 1e-9)) == plan.downbeat, (seed, b, plan)
            checked[plan.downbeat] += 1
    assert checked[True] >= 4 and (role != "melody" or checked[False] >= 1), checked  # arpeggios: 93 % downbeats


def test_without_the_downbeat_rule_the_model_leaves_downbeats_empty_where_the_plan_has_notes():
    from models.generate import ModelPartGenerator

    contours = load_contours()
    empty = 0
    for seed in range(1, 7):
        bars = _period(ModelPartGenerator(downbeat_onsets=False), "melody", seed)
        for b, part in enumerate(bars):
            plan = contours.bar_plan("melody", arousal_quantile(0.0), seed, b)
            if plan.repeats_bar is None and plan.downbeat and not np.any(np.abs(part.start_beats) < 1e-9):
                empty += 1
    assert empty >= 1
