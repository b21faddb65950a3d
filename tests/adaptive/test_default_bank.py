"""The embedded default cue bank: valid, varied, layered by intensity, and
exactly what its composer script writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import mido

from adaptive.cli import DEFAULT_BANK
from adaptive.cue import MidiSource, StemSource, load_bank

ROOT = Path(__file__).resolve().parents[2]


def test_bank_validates_with_five_cues_in_different_keys_and_tempos():
    bank = load_bank(DEFAULT_BANK)
    assert len(bank.cues) >= 5
    assert len({cue.key for cue in bank.cues}) == len(bank.cues)
    assert len({cue.bpm for cue in bank.cues}) == len(bank.cues)
    points = {(cue.valence > 0, cue.arousal > 0) for cue in bank.cues}
    assert len(points) == 4  # every quadrant of the emotion plane has a cue
    assert any(isinstance(layer.source, StemSource) for cue in bank.cues for layer in cue.layers)
    assert len(bank.stingers) >= 4 and bank.segments and bank.transitions


def test_every_cue_has_layers_that_enter_with_intensity():
    for cue in load_bank(DEFAULT_BANK).cues:
        assert len(cue.layers) >= 3, cue.name
        always_on = [layer for layer in cue.layers if layer.curve.amplitude(0.0) > 0]
        entering = [layer for layer in cue.layers
                    if layer.curve.amplitude(0.0) == 0 and layer.curve.amplitude(1.0) > 0]
        assert always_on and len(entering) >= 2, cue.name


def test_every_referenced_track_exists_and_fills_its_loop():
    bank = load_bank(DEFAULT_BANK)
    for cue in bank.cues + bank.segments:
        loop_beats = cue.loop_bars * cue.meter.beats_per_bar
        for layer in cue.layers:
            source = layer.source
            if isinstance(source, MidiSource):
                file, track = source.file, source.track
            elif isinstance(source, StemSource) and source.rendered_from is not None:
                file, track = source.rendered_from.file, source.rendered_from.track
            else:
                continue
            midi = mido.MidiFile(str(bank.path(file)))
            tracks = {t.name: t for t in midi.tracks}
            assert track in tracks, f"{cue.name}/{layer.name}: {track} not in {file}"
            notes = [m for m in tracks[track] if m.type == "note_on" and m.velocity > 0]
            assert notes, f"{cue.name}/{layer.name} is empty"
            assert sum(m.time for m in tracks[track]) == loop_beats * midi.ticks_per_beat
    for stinger in bank.stingers:
        tracks = {t.name for t in mido.MidiFile(str(bank.path(stinger.source.file))).tracks}
        assert stinger.source.track in tracks


def test_composer_script_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("compose_default_bank", ROOT / "tools" / "compose_default_bank.py")
    composer = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = composer  # its dataclasses look their module up
    try:
        spec.loader.exec_module(composer)
    finally:
        del sys.modules[spec.name]
    written = composer.main(tmp_path)
    assert written
    for path in written:
        committed = DEFAULT_BANK.parent / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{path.name} differs from the composer's output"
