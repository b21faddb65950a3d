"""The embedded default cue bank (adaptive/data/default_bank/).

Checks that bank.toml validates and covers the emotion plane with layered cues,
that the committed MIDI files are exactly what tools/compose_default_bank.py
writes, and that the MIDI files agree with bank.toml (tracks, loop lengths,
chords).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import mido
import pytest

from adaptive.cue import DEFAULT_BANK, Cue, CueBank, GeneratedSource, Layer, MidiSource, StemSource, load_bank
from adaptive.harmony import Chord

ROOT = Path(__file__).resolve().parents[2]
BANK_DIR = DEFAULT_BANK.parent
COMPOSER = ROOT / "tools" / "compose_default_bank.py"


@pytest.fixture(scope="module")
def bank() -> CueBank:
    return load_bank(DEFAULT_BANK)


def _composer():
    spec = importlib.util.spec_from_file_location("compose_default_bank", COMPOSER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _midi_reference(layer: Layer) -> tuple[str, str] | None:
    """(file, track) a layer's notes come from, or None for generated layers."""
    source = layer.source
    if isinstance(source, MidiSource):
        return source.file, source.track
    if isinstance(source, StemSource) and source.rendered_from is not None:
        return source.rendered_from.file, source.rendered_from.track
    return None


def _track(bank: CueBank, file: str, name: str) -> tuple[mido.MidiFile, mido.MidiTrack]:
    midi = mido.MidiFile(bank.path(file))
    matches = [track for track in midi.tracks if track.name == name]
    assert len(matches) == 1, f"{file}: expected one track named {name!r}, found {len(matches)}"
    return midi, matches[0]


def _notes_in_beats(midi: mido.MidiFile, track: mido.MidiTrack) -> list[tuple[float, float, int]]:
    """(start_beats, end_beats, key) of every note in ``track``."""
    notes, sounding, tick = [], {}, 0
    for message in track:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            assert message.note not in sounding, f"{track.name}: overlapping note {message.note}"
            sounding[message.note] = tick
        elif message.type in ("note_on", "note_off"):
            start = sounding.pop(message.note)
            notes.append((start / midi.ticks_per_beat, tick / midi.ticks_per_beat, message.note))
    assert not sounding, f"{track.name}: notes never released: {sorted(sounding)}"
    return notes


# (1) the bank validates and is layered ---------------------------------------


def test_bank_validates_with_five_distinct_cues(bank: CueBank) -> None:
    assert bank.name == "default"
    assert len(bank.cues) >= 5
    assert len({cue.parsed_key for cue in bank.cues}) == len(bank.cues), "every cue in its own key"
    assert len({cue.bpm for cue in bank.cues}) == len(bank.cues), "every cue at its own tempo"
    quadrants = {(cue.valence > 0, cue.arousal > 0) for cue in bank.cues}
    assert len(quadrants) == 4, "the cues cover all four quadrants of the emotion plane"


@pytest.mark.parametrize("index", range(5))
def test_each_cue_is_layered_by_intensity(bank: CueBank, index: int) -> None:
    cue = bank.cues[index]
    assert len(cue.layers) >= 3
    assert any(layer.curve.amplitude(0.0) > 0 for layer in cue.layers), f"{cue.name}: no base layer"
    entering = [
        layer.name for layer in cue.layers if layer.curve.amplitude(0.0) == 0.0 and layer.curve.amplitude(1.0) > 0.0
    ]
    assert len(entering) >= 2, f"{cue.name}: fewer than two layers enter with intensity"


def test_bank_has_stingers_segment_and_transitions(bank: CueBank) -> None:
    assert len(bank.stingers) >= 4
    assert [segment.name for segment in bank.segments] == ["to_triumph"]
    rules = {(rule.from_cue, rule.to_cue): rule for rule in bank.transitions}
    assert {("*", "*"), ("*", "combat"), ("combat", "triumph"), ("*", "sorrow")} <= rules.keys()
    assert rules[("combat", "triumph")].bridge.segment == "to_triumph"
    sorrow = bank.cue("sorrow")
    assert all(isinstance(layer.source, StemSource) for layer in sorrow.layers)
    explore = bank.cue("explore")
    assert any(isinstance(layer.source, GeneratedSource) for layer in explore.layers)


# (2) the committed MIDI files are what the composer writes -------------------


def test_composer_reproduces_committed_files(tmp_path: Path) -> None:
    written = _composer().main(tmp_path)
    names = sorted(path.name for path in written)
    themes = {"hero.mid"}  # written by tools/theme_from_corpus.py (tests/adaptive/test_theme.py)
    assert names == sorted(path.name for path in BANK_DIR.glob("*.mid") if path.name not in themes)
    for name in names:
        assert (tmp_path / name).read_bytes() == (BANK_DIR / name).read_bytes(), (
            f"{name} differs from tools/compose_default_bank.py's output: rerun the script"
        )


# (3) the MIDI files agree with bank.toml --------------------------------------


def _all_references(bank: CueBank) -> list[tuple[str, str, str, bool]]:
    """(owner, file, track, percussion) for every MIDI track the bank uses."""
    references = []
    for cue in bank.cues + bank.segments:
        for layer in cue.layers:
            reference = _midi_reference(layer)
            if reference is not None:
                references.append((f"{cue.name}.{layer.name}", *reference, layer.percussion))
    for stinger in bank.stingers:
        if stinger.source.kind == "generated":
            continue
        references.append((f"stinger {stinger.name}", stinger.source.file, stinger.source.track, stinger.percussion))
    return references


def test_every_referenced_track_exists_and_has_notes(bank: CueBank) -> None:
    for owner, file, name, percussion in _all_references(bank):
        midi, track = _track(bank, file, name)
        assert midi.type == 1 and midi.ticks_per_beat == 480, file
        notes = _notes_in_beats(midi, track)
        assert notes, f"{owner}: track {name!r} in {file} has no notes"
        if percussion:
            assert all(35 <= key <= 81 for _, _, key in notes), f"{owner}: not GM percussion keys"
        assert all(
            message.channel == 0 for message in track if message.type in ("note_on", "note_off")
        ), f"{owner}: notes off channel 0"


def _cues_and_segments(bank: CueBank) -> list[Cue]:
    return bank.cues + bank.segments


def test_each_file_is_exactly_one_loop_long(bank: CueBank) -> None:
    for cue in _cues_and_segments(bank):
        loop_beats = cue.loop_bars * cue.meter.beats_per_bar
        files = {ref[0] for ref in map(_midi_reference, cue.layers) if ref is not None}
        for file in files:
            midi = mido.MidiFile(bank.path(file))
            for track in midi.tracks:
                length_beats = sum(message.time for message in track) / midi.ticks_per_beat
                assert length_beats == loop_beats, f"{file} track {track.name!r}: {length_beats} beats"
                for start, end, _ in _notes_in_beats(midi, track):
                    assert 0 <= start < end <= loop_beats


def test_strong_beats_sound_the_listed_chords(bank: CueBank) -> None:
    """Every pitched note attacked on beat 1 (and beat 3 in 4/4) is a chord tone."""
    for cue in _cues_and_segments(bank):
        beats_per_bar = cue.meter.beats_per_bar
        strong_beats = (0, 2) if beats_per_bar == 4 else (0,)
        assert len(cue.chords) == cue.loop_bars, f"{cue.name}: one chord per bar"
        for layer in cue.layers:
            reference = _midi_reference(layer)
            if reference is None or layer.percussion:
                continue
            midi, track = _track(bank, *reference)
            for start, _, key in _notes_in_beats(midi, track):
                bar, beat = divmod(start, beats_per_bar)
                if any(math.isclose(beat, strong) for strong in strong_beats):
                    chord = Chord.parse(cue.chords[int(bar)])
                    assert key % 12 in chord.pitch_classes(), (
                        f"{cue.name}.{layer.name}: note {key} at beat {start} is not in {cue.chords[int(bar)]}"
                    )
