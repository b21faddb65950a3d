"""Themes in the bank: ``[themes.NAME]`` validated with the rest of the bank,
read from a Standard MIDI File (melody track, chords as a track or symbols),
and the default bank's public-domain theme."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from adaptive.cue import DEFAULT_BANK, ThemeSource, ThemeStingerSource, load_bank
from adaptive.errors import AssetError, ConfigError
from adaptive.harmony import Chord, Key
from adaptive.theme import chords_from_part, load_theme, monophonic
from adaptive.part import Part
from tests.helpers import write_midi

ROOT = Path(__file__).resolve().parents[2]

BANK = """
name = "t"
[[cues]]
name = "a"
bpm = 100
key = "G major"
  [[cues.layers]]
  name = "tune"
  source = {{ theme = "{layer_theme}" }}
[[stingers]]
name = "motto"
source = {{ theme = "tune" }}
[themes.tune]
file = "tune.mid"
key = "C major"
meter = "{meter}"
chords = {chords}
"""


def _bank(tmp_path: Path, layer_theme: str = "tune", meter: str = "4/4", chords: str = '"chords"'):
    write_midi(tmp_path / "tune.mid", {
        "melody": [(0.0, 1.0, 72, 90), (1.0, 1.0, 76, 90), (2.0, 2.0, 79, 90), (4.0, 4.0, 77, 90)],
        "chords": [(0.0, 4.0, 48, 70), (0.0, 4.0, 52, 70), (0.0, 4.0, 55, 70),
                   (4.0, 2.0, 43, 70), (4.0, 2.0, 47, 70), (4.0, 2.0, 50, 70), (4.0, 2.0, 53, 70),
                   (6.0, 2.0, 48, 70), (6.0, 2.0, 52, 70), (6.0, 2.0, 55, 70)],
    })
    path = tmp_path / "bank.toml"
    path.write_text(BANK.format(layer_theme=layer_theme, meter=meter, chords=chords))
    return load_bank(path)


def test_theme_layer_and_stinger_shorthand_and_chord_track(tmp_path: Path) -> None:
    bank = _bank(tmp_path)
    assert isinstance(bank.cues[0].layers[0].source, ThemeSource)
    assert isinstance(bank.stingers[0].source, ThemeStingerSource)
    theme = load_theme(bank, "tune")
    assert theme.bars == 2 and theme.key == Key.parse("C major")
    assert theme.chords == ((Chord.parse("C"), None), (Chord.parse("G7"), Chord.parse("C")))
    assert theme.melody.pitch.tolist() == [72, 76, 79, 77]


def test_chords_as_symbols(tmp_path: Path) -> None:
    theme = load_theme(_bank(tmp_path, chords='["Am", "F G"]'), "tune")
    assert theme.chords == ((Chord.parse("Am"), None), (Chord.parse("F"), Chord.parse("G")))


def test_unknown_theme_and_bad_fields_are_named_with_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        _bank(tmp_path, layer_theme="villain", meter="4/5", chords='["C", "Hm"]')
    message = str(error.value)
    assert "bank.toml" in message
    assert "cues[0].layers[0].source.theme: unknown theme 'villain' (allowed: tune)" in message
    assert "themes.tune.meter.beat_unit" in message and "2, 4 or 8" in message
    assert "themes.tune.chords" in message and "'Hm' is not a chord symbol" in message


def test_missing_track_names_theme_file_and_tracks_there(tmp_path: Path) -> None:
    bank = _bank(tmp_path)
    (tmp_path / "bank.toml").write_text(BANK.format(layer_theme="tune", meter="4/4", chords='"harmony"'))
    bank = load_bank(tmp_path / "bank.toml")
    with pytest.raises(AssetError) as error:
        load_theme(bank, "tune")
    assert "themes.tune.chords" in str(error.value) and "tune.mid" in str(error.value)
    assert "tracks there: melody, chords" in str(error.value)


def test_monophonic_keeps_the_top_note_and_cuts_overlaps() -> None:
    part = Part.from_notes([(0.0, 2.0, 60, 80), (0.0, 2.0, 64, 80), (1.0, 1.0, 67, 80)])
    line = monophonic(part)
    assert line.pitch.tolist() == [64, 67] and line.duration_beats.tolist() == [1.0, 1.0]


def test_chord_track_reading_holds_a_chord_through_silence() -> None:
    part = Part.from_notes([(0.0, 2.0, 57, 70), (0.0, 2.0, 60, 70), (0.0, 2.0, 64, 70)])
    assert chords_from_part(part, 2, 4) == ((Chord.parse("Am"), None), (Chord.parse("Am"), None))


def test_default_bank_theme_is_the_kings_march_and_the_tool_reproduces_it() -> None:
    bank = load_bank(DEFAULT_BANK)
    theme = load_theme(bank, "hero")
    assert theme.bars == 8 and theme.key == Key.parse("D major")
    assert theme.melody.pitch[:6].tolist() == [78, 76, 74, 76, 78, 74]  # F#5 E D E F# D
    spec = importlib.util.spec_from_file_location("theme_from_corpus", ROOT / "tools" / "theme_from_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    written = Path(bank.folder) / "hero.mid"
    import io
    buffer = io.BytesIO()
    module.build().save(file=buffer)
    assert buffer.getvalue() == written.read_bytes(), "hero.mid differs: rerun tools/theme_from_corpus.py"


def test_a_timeline_may_ask_for_a_theme_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    from adaptive.scene import ThemeTrigger
    from adaptive.timeline import load_timeline

    bank = _bank(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text("duration_seconds = 4\n[[events]]\ntime_seconds = 1\ntheme = \"tune\"\n")
    assert load_timeline(good, bank).inputs() == [(1, ThemeTrigger("tune"))]
    bad = tmp_path / "bad.toml"
    bad.write_text("duration_seconds = 4\n[[events]]\ntime_seconds = 1\ntheme = \"villain\"\n")
    with pytest.raises(ConfigError, match="unknown theme 'villain' \\(allowed: tune\\)"):
        load_timeline(bad, bank)


def test_the_bank_command_lists_themes(capsys) -> None:
    from app import cli

    assert cli.main(["bank"]) == 0
    assert "theme hero: D major, 4/4, hero.mid (melody 'melody', chords 'chords'), next_bar" in capsys.readouterr().out
