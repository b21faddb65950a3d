"""The sound designer's mapping: every validation error with its line, the
warnings, cue choice by location and region, transition rules by
specificity, stinger names, tempo ranges, and the live-tuning helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from adaptive.cue import DEFAULT_BANK
from app.cli import main
from adaptive.cue import load_bank
from adaptive.mapping import (DEFAULT_MAPPING, ResolvedMapping, check_text, get_value, key_lines, load_mapping,
                              parse_mapping_text, parse_value, set_value_text, split_path)
from adaptive.errors import ConfigError

# The tone bank (tests/adaptive/conftest.py): cues low (stems, 0.5/-0.5), high
# (stems, -0.5/0.5), keys (MIDI, 0.8/0.8); segment lead_in; stinger hit.


def errors_of(bank, text: str):
    result = check_text(text, bank, "m.toml")
    assert result.resolved is None, "expected errors"
    return result.errors


# (mapping text, line, key, fragments the message must hold: what is wrong and what is allowed)
ERROR_CASES = [
    pytest.param('x = 1\n\n[smoothing]\nhysteresis = 3\n', 4, "smoothing.hysteresis", ["less than or equal to 2", "3"],
                 id="out-of-range"),
    pytest.param('[smoothing]\nhysterisis = 0.1\n', 2, "smoothing.hysterisis",
                 ["unknown field", "allowed:", "did you mean 'hysteresis'"], id="typo-field"),
    pytest.param('[emotions]\ncalm = [0.4, -0.6]\nsmug = [1.5, 0]\n', 3, "emotions.smug",
                 ["[1.5, 0]", "each a number from -1 to 1"], id="emotion-off-plane"),
    pytest.param('[locations.cave.cues]\nlow = {}\nhgih = {}\n', 3, "locations.cave.cues.hgih",
                 ["unknown cue 'hgih'", "allowed: low, high, keys", "did you mean 'high'"], id="unknown-cue"),
    pytest.param('[locations.cave.cues]\nlow = { point = [0.2, 2.0] }\n', 2, "locations.cave.cues.low.point",
                 ["[0.2, 2.0]", "each a number from -1 to 1"], id="point-off-plane"),
    pytest.param('[locations.cave.cues.low]\nregion = { valence = [0.5, 0.1], arousal = [-1, 0] }\n', 2,
                 "locations.cave.cues.low.region.valence", ["[0.5, 0.1]", "low < high"], id="region-reversed"),
    pytest.param('[locations.cave]\ncues = {}\n', 2, "locations.cave.cues", ["at least 1"], id="location-without-cues"),
    pytest.param('default_location = "cavern"\n[locations.cave.cues]\nlow = {}\n', 1, "default_location",
                 ["unknown location 'cavern'", "allowed: cave"], id="unknown-default-location"),
    pytest.param('[cues.low.layers.uper]\nfade_beats = 2\n', 1, "cues.low.layers.uper",
                 ["unknown layer 'uper'", "allowed: tone, upper", "did you mean 'upper'"], id="unknown-layer"),
    pytest.param('[cues.lwo]\n', 1, "cues.lwo", ["unknown cue or segment 'lwo'", "did you mean 'low'"],
                 id="unknown-cue-table"),
    pytest.param('[cues.low.layers.upper]\n\ngain_curve = [[0.0, -inf], [1.0, 13.0]]\n', 3,
                 "cues.low.layers.upper.gain_curve", ["13 dB", "-inf up to +12 dB"], id="gain-too-high"),
    pytest.param('[cues.low.layers.upper]\ngain_curve = [[0.5, 0.0], [0.2, -6.0]]\n', 2,
                 "cues.low.layers.upper.gain_curve", ["strictly increasing"], id="curve-not-increasing"),
    pytest.param('[cues.low.layers.upper]\ngain_unit = "linear"\ngain_curve = [[0.0, 0.0], [1.0, 5.0]]\n', 3,
                 "cues.low.layers.upper.gain_curve", ["linear gain 5", "0 to 3.98"], id="linear-gain-too-high"),
    pytest.param('[cues.low.layers.upper]\ngain_unit = "bels"\n', 2, "cues.low.layers.upper.gain_unit",
                 ["'db' or 'linear'"], id="bad-unit"),
    pytest.param('[cues.low.layers.upper]\nfade_beats = -1\n', 2, "cues.low.layers.upper.fade_beats",
                 ["greater than or equal to 0"], id="negative-fade"),
    pytest.param('[cues.low]\nbpm_range = [100, 140]\n', 2, "cues.low.bpm_range",
                 ["audio stems (tone, upper)", "cannot change tempo"], id="tempo-range-on-stems"),
    pytest.param('[cues.keys]\nbpm_range = [100, 400]\n', 2, "cues.keys.bpm_range", ["20 <= low <= high <= 300"],
                 id="tempo-range-out-of-range"),
    pytest.param('[conditioning]\nvelocity = [[-1, 40], [1, 200]]\n', 2, "conditioning.velocity",
                 ["200 is out of range", "1..127"], id="conditioning-out-of-range"),
    pytest.param('[[transitions]]\nfrom = "*"\nto = "hi"\n', 3, "transitions[0].to",
                 ["unknown cue 'hi'", "'*' or low, high, keys"], id="transition-unknown-cue"),
    pytest.param('[[transitions]]\nfrom = "low"\nexit = "next_bars"\n', 3, "transitions[0].exit",
                 ["'next_bar'", "'loop_end'", "next_bars"], id="transition-bad-exit"),
    pytest.param('[[transitions]]\nfrom = "low"\n[[transitions]]\nto = "high"\n'
                 'bridge = { kind = "segment", segment = "leadin" }\n', 5, "transitions[1].bridge.segment",
                 ["unknown segment 'leadin'", "allowed: lead_in", "did you mean 'lead_in'"],
                 id="transition-unknown-segment"),
    pytest.param('[[transitions]]\nfade_beats = 40\n', 2, "transitions[0].fade_beats", ["less than or equal to 32"],
                 id="transition-fade-too-long"),
    pytest.param('[stingers.boom]\nsource = "hti"\n', 2, "stingers.boom.source",
                 ["unknown bank stinger 'hti'", "allowed: hit", "did you mean 'hit'"], id="stinger-unknown-source"),
    pytest.param('[stingers.hit]\nquantize = "next_measure"\n', 2, "stingers.hit.quantize", ["'next_bar'"],
                 id="stinger-bad-quantize"),
    pytest.param('[smoothing]\nvalence_per_second = 0\n', 2, "smoothing.valence_per_second", ["greater than 0"],
                 id="slew-zero"),
    pytest.param('[smoothing]\nmin_cue_bars = "two"\n', 2, "smoothing.min_cue_bars", ["must be a number"],
                 id="not-a-number"),
    pytest.param('[smoothing\nhysteresis = 0.1\n', 1, "(syntax)", ["not valid TOML", "line 1"], id="toml-syntax"),
]


@pytest.mark.parametrize(("text", "line", "key", "fragments"), ERROR_CASES)
def test_every_validation_error_names_its_line_key_and_what_is_allowed(tone_bank, text, line, key, fragments):
    errors = errors_of(tone_bank(), text)
    matching = [e for e in errors if e.key == key]
    assert matching, f"no error for {key}: {[str(e) for e in errors]}"
    assert matching[0].line == line
    for fragment in fragments:
        assert fragment in matching[0].message, (fragment, matching[0].message)


def test_every_error_is_reported_at_once_in_line_order(tone_bank):
    text = ('default_location = "nowhere"\n'
            '[smoothing]\nhysteresis = -1\n'
            '[cues.low.layers.uper]\n'
            '[[transitions]]\nto = "nope"\n'
            '[stingers.x]\nsource = "y"\n')
    errors = errors_of(tone_bank(), text)
    assert [e.line for e in errors] == [1, 3, 4, 6, 8]
    with pytest.raises(ConfigError) as raised:
        parse_mapping_text(text, tone_bank(), "m.toml")
    message = str(raised.value)
    assert message.startswith("m.toml: invalid mapping (5 problems):")
    assert "line 6: transitions[0].to: unknown cue 'nope'" in message


def test_key_lines_finds_tables_arrays_of_tables_dotted_and_multiline_values():
    text = ('# comment = 1\n'
            'a = """\nb = 2\n"""\n'
            '[t.u]\n'
            'v.w = 1\n'
            'curve = [\n  [0, 1],\n]\n'
            'after = 3\n'
            '[[list]]\nx = 1\n[[list]]\nx = "[not a table]" # ]\n'
            '[[list.inner]]\ny = 1\n')
    lines = key_lines(text)
    assert lines[("a",)] == 2 and ("b",) not in lines
    assert lines[("t", "u")] == 5 and lines[("t", "u", "v", "w")] == 6
    assert lines[("t", "u", "curve")] == 7 and lines[("t", "u", "after")] == 10
    assert lines[("list", 0, "x")] == 12 and lines[("list", 1, "x")] == 14
    assert lines[("list", 1, "inner", 0, "y")] == 16


def test_warnings_for_legal_but_probably_wrong_mappings(tone_bank):
    text = ('default_location = "cave"\n'
            '[locations.cave.cues]\n'
            'low = { region = { valence = [-1, 0.5], arousal = [-1, 0.5] } }\n'
            'high = { region = { valence = [0, 1], arousal = [0, 1] } }\n'
            '[locations.hall.cues]\n'
            'low = { point = [0.0, 0.0] }\n'
            'high = { point = [0.01, 0.0] }\n'
            '[cues.low.layers.upper]\n'
            'gain_curve = [[0.0, -inf], [1.0, -inf]]\n'
            '[[transitions]]\nfrom = "low"\nto = "low"\n')
    result = check_text(text, tone_bank(), "m.toml")
    assert not result.errors
    found = {(w.line, w.key): w.message for w in result.warnings}
    assert "overlaps the region of 'low'" in found[(4, "locations.cave.cues.high.region")]
    assert "cue 'keys' is offered at no location" in found[(0, "cues.keys")]
    assert "never sounds" in found[(9, "cues.low.layers.upper.gain_curve")]
    assert "to itself" in found[(10, "transitions[0]")]
    # "hall": high sits right of low; low wins the left half, high the right: both reachable.
    assert not any(key.startswith("locations.hall") for _, key in found)
    # Two cues on one point: the tie goes to the first name, the other is never chosen.
    unreachable = check_text('[locations.cave.cues]\nlow = { point = [0.2, 0.2] }\nhigh = { point = [0.2, 0.2] }\n',
                             tone_bank(), "m.toml")
    assert [(w.line, w.key) for w in unreachable.warnings if "never chosen" in w.message] == \
        [(2, "locations.cave.cues.low")]


def test_the_default_mapping_is_clean_and_names_its_bank():
    bank = load_bank(DEFAULT_BANK)
    result = check_text(DEFAULT_MAPPING.read_text(), bank, str(DEFAULT_MAPPING))
    assert result.errors == [] and result.warnings == []
    assert main(["check", str(DEFAULT_MAPPING)]) == 0


def test_check_command_prints_file_line_and_exits_2(tmp_path, tone_bank, capsys):
    bank = tone_bank()
    mapping = tmp_path / "m.toml"
    mapping.write_text('[smoothing]\nhysteresis = 5\n[[transitions]]\nto = "nope"\n')
    assert main(["check", str(mapping), "--bank", str(bank.folder / "bank.toml")]) == 2
    out = capsys.readouterr().out
    assert f"{mapping}:2: error: smoothing.hysteresis:" in out
    assert f"{mapping}:4: error: transitions[0].to: unknown cue 'nope'" in out
    assert "2 errors, 0 warnings" in out
    mapping.write_text('[cues.low.layers.upper]\ngain_curve = [[0, -inf]]\n')
    assert main(["check", str(mapping), "--bank", str(bank.folder / "bank.toml")]) == 0
    assert f"{mapping}:2: warning: cues.low.layers.upper.gain_curve:" in capsys.readouterr().out


def test_without_a_mapping_the_bank_decides(tone_bank):
    bank = tone_bank(extra='[[transitions]]\nfrom = "low"\nto = "high"\nexit = "immediate"')
    resolved = ResolvedMapping.from_bank(bank)
    assert resolved.choose_cue(0.5, -0.5, "", None) == "low"
    assert resolved.find_rule("low", "high").exit.value == "immediate"
    curve, fade = resolved.layer_gain("low", "upper")
    assert curve.amplitude(0.0) == 0.0 and fade == 2.0
    assert resolved.stinger("hit")[0] == "hit"
    assert resolved.mapping.smoothing.hysteresis == 0.15 and math.isinf(resolved.mapping.smoothing.valence_per_second)


def test_locations_regions_and_the_default_location(tone_bank):
    text = ('default_location = "open"\n'
            '[locations.open.cues]\nlow = {}\nhigh = {}\nkeys = {}\n'
            '[locations.cave.cues]\n'
            'high = { region = { valence = [-1.0, 0.0], arousal = [-1.0, 1.0] } }\n'
            'low = { point = [0.5, 0.0] }\n')
    resolved = parse_mapping_text(text, tone_bank())
    assert resolved.choose_cue(0.8, 0.8, "open", None) == "keys"
    assert resolved.choose_cue(0.8, 0.8, "somewhere else", None) == "keys"  # the default location
    assert resolved.choose_cue(-0.1, 0.9, "cave", None) == "high"  # inside the region
    assert resolved.choose_cue(0.8, 0.7, "cave", None) == "low"  # nearer the point than the region edge
    # 0.3 from the region, 0.2 from low's point: low is nearer by less than the hysteresis (0.15).
    assert resolved.choose_cue(0.3, 0.0, "cave", "high") == "high"
    assert resolved.choose_cue(0.3, 0.0, "cave", "high", hysteresis=0.0) == "low"
    assert resolved.choose_cue(0.3, 0.0, "cave", None) == "low"


@pytest.mark.parametrize(("from_cue", "to_cue", "expected"), [
    ("low", "high", "exact"), ("low", "keys", "from-wild"), ("keys", "high", "to-wild"),
    ("high", "keys", "later-wild"), ("keys", "low", "later-wild"),
])
def test_transition_rules_resolve_by_specificity_with_the_wildcard(tone_bank, from_cue, to_cue, expected):
    names = {"exact": 3.0, "from-wild": 2.0, "to-wild": 1.0, "wild": 0.5, "later-wild": 0.25}
    text = ('[[transitions]]\nfrom = "low"\nto = "high"\nfade_beats = 3.0\n'     # (from, to)
            '[[transitions]]\nfrom = "*"\nto = "high"\nfade_beats = 1.0\n'       # (*, to)
            '[[transitions]]\nfrom = "low"\nto = "*"\nfade_beats = 2.0\n'        # (from, *)
            '[[transitions]]\nfade_beats = 0.5\n'                                 # (*, *)
            '[[transitions]]\nfrom = "*"\nto = "*"\nfade_beats = 0.25\n')        # a later (*, *) wins
    bank = tone_bank(extra='[[transitions]]\nfrom = "low"\nto = "keys"\nfade_beats = 9.0')  # replaced by the mapping
    resolved = parse_mapping_text(text, bank)
    assert resolved.find_rule(from_cue, to_cue).fade_beats == names[expected]


def test_stinger_names_and_tempo_ranges(tone_bank):
    text = ('[stingers.boom]\nsource = "hit"\nquantize = "next_bar"\ngain_db = -6\n'
            '[cues.keys]\nbpm_range = [90, 130]\n')
    resolved = parse_mapping_text(text, tone_bank(stinger_quantize="immediate"))
    assert resolved.stinger("boom")[0] == "hit" and resolved.stinger("boom")[1].value == "next_bar"
    assert resolved.stinger("boom")[2] == -6.0
    assert resolved.stinger("hit")[1].value == "immediate"
    with pytest.raises(KeyError, match="allowed: boom, hit"):
        resolved.stinger("bam")
    assert resolved.bpm_for("keys", -1.0) == 90.0 and resolved.bpm_for("keys", 0.5) == 120.0
    assert resolved.bpm_for("low", 0.5) is None


def test_linear_gain_curves_are_amplitudes(tone_bank):
    resolved = parse_mapping_text('[cues.low.layers.upper]\ngain_unit = "linear"\n'
                                  'gain_curve = [[0.0, 0.0], [1.0, 0.5]]\nfade_beats = 3\n', tone_bank())
    curve, fade = resolved.layer_gain("low", "upper")
    assert curve.amplitude(1.0) == pytest.approx(0.5) and curve.amplitude(0.0) == 0.0 and fade == 3.0


def test_conditioning_follows_the_emotion():
    bank = load_bank(DEFAULT_BANK)
    resolved = parse_mapping_text('[conditioning]\nmode = "valence"\n', bank)
    calm, angry = resolved.conditioning(0.4, -0.6), resolved.conditioning(-0.7, 0.8)
    assert calm.mode == "major" and angry.mode == "minor"
    assert angry.notes_per_beat > calm.notes_per_beat and angry.velocity > calm.velocity
    assert calm.register_semitones > angry.register_semitones


def test_live_tuning_helpers_keep_comments_and_accept_weak_client_values(tone_bank):
    text = '# my notes\n[smoothing]\nhysteresis = 0.15 # keep it calm\n'
    changed = set_value_text(text, "smoothing.hysteresis", parse_value("0.3"))
    assert "# my notes" in changed and "hysteresis = 0.3" in changed
    added = set_value_text(changed, "locations.cave.cues.low.region", parse_value('{"valence": [0, 1], "arousal": [-1, 0]}'))
    resolved = parse_mapping_text(added, tone_bank())
    assert get_value(resolved, "locations.cave.cues.low.region") == {"valence": [0, 1], "arousal": [-1, 0]}
    assert get_value(resolved, "smoothing.min_cue_bars") == 0.0  # a default, not written
    assert parse_value("-inf") == -math.inf and parse_value("next_bar") == "next_bar"
    assert parse_value("{ valence = [0, 1], arousal = [-1, 0] }") == {"valence": [0, 1], "arousal": [-1, 0]}
    assert split_path("transitions[2].exit") == split_path("transitions.2.exit") == ["transitions", 2, "exit"]
    assert split_path('cues."a.b".layers') == ["cues", "a.b", "layers"]
    with pytest.raises(KeyError, match="keys here: hysteresis"):
        get_value(parse_mapping_text(text, tone_bank()), "smoothing.nope")


def test_load_mapping_reports_unreadable_files(tmp_path, tone_bank):
    with pytest.raises(ConfigError, match="cannot read the mapping"):
        load_mapping(tmp_path / "missing.toml", tone_bank())
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_mapping(tmp_path / "bin.toml", tone_bank())


def test_get_reads_the_banks_transition_table_when_the_mapping_has_none(tone_bank):
    bank = tone_bank(exit="next_beat", fade_beats=1.5)
    resolved = parse_mapping_text("", bank)
    assert get_value(resolved, "transitions.0") == {"from": "*", "to": "*", "exit": "next_beat", "fade_beats": 1.5,
                                                    "bridge": {"kind": "none", "bars": 2}}
