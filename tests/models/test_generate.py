"""Generation with the committed checkpoint: grammar, meter, key, register,
seeding, streaming, guidance, bridge seams and emotion control; and clear
errors for bad checkpoints."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from adaptive.errors import AdaptiveError, AssetError
from adaptive.generator import BarEnding, BarRequest
from adaptive.harmony import Chord, Key, Mode
from adaptive.part import Part
from models.checkpoint import DEFAULT_CHECKPOINT, FORMAT_VERSION, ModelError, load_checkpoint
from models.generate import ROLE_REGISTER_PITCH, ModelPartGenerator, generation_key, model_bars
from models.tokenizer import HEADER_LENGTH, HEADER_SLOTS, METERS, Vocabulary

PROGRESSION = [Chord.parse(s) for s in ("C", "Am", "F", "G")]


def request(bar_index=0, key="C major", beats=4, valence=0.5, arousal=0.0, role="melody", seed=1, chord=None,
            bpm=120.0, **more) -> BarRequest:
    return BarRequest(bar_index=bar_index, key=Key.parse(key),
                      chord=chord or PROGRESSION[bar_index % 4], beats_per_bar=beats, bpm=bpm,
                      valence=valence, arousal=arousal, role=role, seed=seed, **more)


@pytest.fixture(scope="module")
def generator() -> ModelPartGenerator:
    return ModelPartGenerator()


def notes_of(part):
    return list(zip(part.start_beats.tolist(), part.duration_beats.tolist(), part.pitch.tolist(),
                    part.velocity.tolist()))


def check_grammar(tokens: list[str]) -> None:
    """Bar header then (Position (Pitch Velocity Duration)+)*, positions rising inside each bar's meter."""
    i = 0
    while i < len(tokens):
        assert tokens[i] == "Bar_None", tokens[i:i + 3]
        header = [t.split("_")[0] for t in tokens[i:i + HEADER_LENGTH]]
        assert header == list(HEADER_SLOTS)
        positions = METERS[tokens[i + 1].split("_", 1)[1]]
        i += HEADER_LENGTH
        last_position = -1
        while i < len(tokens) and tokens[i] != "Bar_None":
            assert tokens[i].startswith("Position_")
            position = int(tokens[i].split("_")[1])
            assert last_position < position < positions
            last_position = position
            i += 1
            assert tokens[i].startswith("Pitch_")
            while i < len(tokens) and tokens[i].startswith("Pitch_"):
                assert tokens[i + 1].startswith("Velocity_") and tokens[i + 2].startswith("Duration_")
                i += 3


@pytest.mark.parametrize("role", ["melody", "arpeggio", "bass"])
def test_bars_obey_grammar_key_and_register(generator, role):
    """Pitches stay in the key's scale plus the bar's chord tones, inside the role's register."""
    sounding = 0
    for bar in range(6):
        part = generator.generate_bar(request(bar, key="D minor", valence=-0.6, role=role, arousal=0.3))
        check_grammar(generator.last_tokens)
        sounding += len(part) > 0
        d_minor = {2, 4, 5, 7, 9, 10, 0}
        assert set((part.pitch % 12).tolist()) <= d_minor | set(PROGRESSION[bar % 4].pitch_classes())
        low, high = ROLE_REGISTER_PITCH[role]
        assert part.pitch.min(initial=low) >= low and part.pitch.max(initial=high) <= high
        assert (part.start_beats >= 0).all() and (part.start_beats < 4).all()
        assert (part.duration_beats > 0).all()
        assert (part.velocity >= 1).all() and (part.velocity <= 127).all()
    assert sounding >= 4  # a bar may rest, a part does not


def test_a_bar_that_changes_chord_at_its_half_takes_the_second_chords_tones(generator):
    # C major, C in the first half, Bb (not in C major) from the half bar: only the second half may use Bb.
    bb = Chord.parse("Bb")
    for bar in range(4):
        part = generator.generate_bar(request(bar, role="arpeggio", arousal=0.8, chord=Chord.parse("C"),
                                              second_chord=bb, seed=4))
        first_half = part.pitch[part.start_beats < 2]
        assert not (first_half % 12 == 10).any()
        assert generator.last_tokens[9:11] == ["Chord_0_MAJOR", "Chord_10_MAJOR"]


def test_a_melodys_downbeat_sounds_a_tone_of_the_bars_chord():
    """By default (MELODY_DOWNBEAT_CHORD_TONES) every melody note on a downbeat is a tone of the bar's
    first chord, asked with the cue's chords; the other beats keep the key rule only."""
    downbeats, off_chord_elsewhere = 0, 0
    for seed in (3, 4, 5):
        melody = ModelPartGenerator()
        for bar in range(8):
            chord = Chord.parse(("Am", "F", "C", "E")[bar % 4])
            part = melody.generate_bar(request(bar, key="A minor", valence=-0.6, role="melody", chord=chord,
                                               seed=seed))
            for start, pitch in zip(part.start_beats.tolist(), part.pitch.tolist()):
                if start == 0.0:
                    downbeats += 1
                    assert pitch % 12 in chord.pitch_classes(), (seed, bar, pitch, chord)
                elif pitch % 12 not in chord.pitch_classes():
                    off_chord_elsewhere += 1
    assert downbeats >= 12 and off_chord_elsewhere > 0


def test_a_melody_over_an_open_harmony_keeps_chord_tones_on_strong_beats_and_passes_quickly():
    """Asked over an open harmony, the melody's header reads Chord_none, every melody note on beat 1
    or 3 of 4/4 (beat 1 of 3/4) is a tone of its half bar's chord, and no tone outside the chord
    lasts a beat or more."""
    generator = ModelPartGenerator(open_melody_harmony=True)
    strong_notes = 0
    # Some periods are syncopated throughout (a seed's first bar may skip the downbeats, and a
    # period that repeats its rhythm keeps doing so): three seeds give strong beats to check.
    for seed, beats, bar in itertools.product((7, 8, 9), (4, 3), range(8)):
        chord = PROGRESSION[bar % 4]
        second = Chord.parse("Dm") if beats == 4 else None
        part = generator.generate_bar(request(bar, role="melody", beats=beats, arousal=0.5, chord=chord,
                                              second_chord=second, seed=seed))
        assert generator.last_tokens[9:11] == ["Chord_none", "Chord_none"]
        for start, length, pitch in zip(part.start_beats.tolist(), part.duration_beats.tolist(),
                                        part.pitch.tolist()):
            half_chord = second if beats == 4 and start >= 2 else chord
            if pitch % 12 not in half_chord.pitch_classes():
                assert length < 1.0, (beats, bar, start, pitch, length)
            strong = start in ((0.0, 2.0) if beats == 4 else (0.0,))
            if strong:
                strong_notes += 1
                tones = (second if beats == 4 and start >= 2 else chord).pitch_classes()
                assert pitch % 12 in tones, (beats, bar, start, pitch)
    assert strong_notes >= 8
    # Other roles keep asking the model with the cue's chords.
    generator.generate_bar(request(0, role="bass", chord=Chord.parse("Am")))
    assert generator.last_tokens[9:11] == ["Chord_9_MINOR", "Chord_9_MINOR"]
    # By default the melody is asked with the cue's chords.
    closed = ModelPartGenerator()
    closed.generate_bar(request(0, role="melody", chord=Chord.parse("F")))
    assert closed.last_tokens[9:11] == ["Chord_5_MAJOR", "Chord_5_MAJOR"]


@pytest.mark.parametrize("beats, unit, meters", [(3, 4, ["3_4"]), (2, 4, ["2_4"]), (6, 8, ["6_8"]),
                                                 (7, 4, ["4_4", "3_4"]), (5, 4, ["3_4", "2_4"]),
                                                 (12, 8, ["6_8", "6_8"])])
def test_meters_are_written_as_the_models_meters(generator, beats, unit, meters):
    assert [b.meter for b in model_bars(request(beats=beats, beat_unit=unit))] == meters
    length_beats = beats  # in the meter's own beats
    for bar in range(2):
        part = generator.generate_bar(request(bar, beats=beats, beat_unit=unit, role="arpeggio", arousal=0.8))
        assert (part.start_beats < length_beats).all()
        check_grammar(generator.last_tokens)
    assert [t for t in generator.last_tokens if t.startswith("Meter_")] == [f"Meter_{m}" for m in meters]


def test_same_seed_same_notes_and_other_seed_other_notes():
    requests = [request(b, seed=42, arousal=0.4) for b in range(4)]
    streaming = ModelPartGenerator()
    first = [notes_of(streaming.generate_bar(r)) for r in requests]
    a, b = ModelPartGenerator(), ModelPartGenerator()
    assert [notes_of(a.generate_bar(r)) for r in requests] == first
    assert [notes_of(b.generate_bar(r)) for r in requests] == first
    other = ModelPartGenerator()
    assert [notes_of(other.generate_bar(request(i, seed=43, arousal=0.4))) for i in range(4)] != first


def test_consecutive_bars_continue_the_context_and_a_jump_restarts(generator):
    generator.generate_bar(request(0, seed=5))
    cache = generator._cache
    length = cache.length
    generator.generate_bar(request(1, seed=5))
    assert generator._cache is cache and cache.length > length
    generator.generate_bar(request(7, seed=5))
    assert generator._cache is not cache
    # A restarted bar 7 equals a fresh instance's bar 7.
    assert notes_of(ModelPartGenerator().generate_bar(request(7, seed=5))) == \
        notes_of(ModelPartGenerator().generate_bar(request(7, seed=5)))


def test_long_stream_outlives_the_context_window(generator):
    for bar in range(40):
        generator.generate_bar(request(bar, seed=9, role="arpeggio", arousal=1.0))
        assert generator._cache.length <= generator.decoder.block_size


def test_guidance_runs_a_second_unconditional_row():
    guided, plain = ModelPartGenerator(guidance_scale=2.0), ModelPartGenerator(guidance_scale=1.0)
    guided.generate_bar(request(0, valence=0.8, arousal=0.8))
    plain.generate_bar(request(0, valence=0.8, arousal=0.8))
    assert guided._cache.keys.shape[1] == 2 and plain._cache.keys.shape[1] == 1
    # The mapping's scale wins over the generator's default.
    from adaptive.generator import PartConditioning

    asks = PartConditioning(mode=None, notes_per_beat=2.0, velocity=80, register_semitones=0.0, guidance_scale=1.0)
    guided.generate_bar(request(0, conditioning=asks))
    assert guided._cache.keys.shape[1] == 1


def test_a_bridge_continues_its_context_and_ends_on_the_incoming_tonic_or_dominant():
    context = (Part.from_notes([(0.0, 1.0, 76, 80), (1.0, 1.0, 74, 80), (2.0, 2.0, 72, 80)]),)
    ending = BarEnding(pitch_classes=(2, 9), next_pitch=62)  # into D major: D or A, near D4
    for seed in range(6):
        g = ModelPartGenerator()
        first = g.generate_bar(request(0, role="arpeggio", seed=seed, context=context, arousal=0.2))
        if len(first):
            opening = first.pitch[first.start_beats == first.start_beats.min()]
            assert (np.abs(opening - 72) <= 12).all()  # no leap over an octave at the seam
        last = g.generate_bar(request(1, key="D major", chord=Chord.parse("A7"), role="arpeggio", seed=seed,
                                      ending=ending, arousal=0.2))
        assert len(last) > 0
        final = last.pitch[last.start_beats == last.start_beats.max()]
        assert any(p % 12 in (2, 9) and abs(p - 62) <= 12 for p in final.tolist())


def test_valence_sets_the_mode_and_arousal_raises_density_and_velocity():
    assert generation_key(request(valence=0.7, key="A minor")) == Key(9, Mode.MAJOR)
    assert generation_key(request(valence=-0.7, key="C major")) == Key(0, Mode.MINOR)
    assert generation_key(request(valence=0.0, key="C major")) == Key(0, Mode.MAJOR)
    density, velocity = [], []
    for arousal in (-1.0, 0.0, 1.0):
        parts = []
        for seed in range(3, 9):  # 24 bars a level: a period's shape makes two seeds' bars too few to compare
            g = ModelPartGenerator()
            parts += [g.generate_bar(request(b, arousal=arousal, role="arpeggio", seed=seed)) for b in range(4)]
        density.append(np.mean([len(p) for p in parts]))
        velocity.append(np.mean([p.velocity.mean() for p in parts if len(p)]))
    assert density[0] < density[1] < density[2]
    assert velocity[0] < velocity[1] < velocity[2]


def test_bad_requests_are_refused(generator):
    with pytest.raises(ValueError, match="role"):
        generator.generate_bar(request(role="drums"))
    with pytest.raises(ValueError, match="beats_per_bar"):
        generator.generate_bar(request(beats=0))
    with pytest.raises(ValueError, match="beat_unit 3 is not one of 2, 4, 8"):
        generator.generate_bar(request(beat_unit=3))
    with pytest.raises(ValueError, match="arousal"):
        generator.generate_bar(request(arousal=float("nan")))


def test_a_style_opens_the_context_and_changes_the_music():
    requests = [request(b, seed=11, arousal=0.3) for b in range(4)]
    game = [notes_of(ModelPartGenerator().generate_bar(r)) for r in requests]
    g = ModelPartGenerator()
    folk = [notes_of(g.generate_bar(replace(r, style="folk"))) for r in requests]
    assert folk != game
    # A request's style and an instance's default style are the same thing.
    by_default = ModelPartGenerator(style="folk")
    assert [notes_of(by_default.generate_bar(r)) for r in requests] == folk
    with pytest.raises(ValueError, match="unknown generator style 'jazz': allowed are game, pop, folk"):
        ModelPartGenerator(style="jazz")
    with pytest.raises(ValueError, match="unknown generator style 'jazz'"):
        g.generate_bar(replace(requests[0], style="jazz"))


def test_committed_checkpoint_is_small_and_loads_weights_only():
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["heldout"]["pop909"] and payload["heldout"]["vgmidi"]
    assert {"model_config", "train_config", "vocabulary", "tokenizer", "history"} <= set(payload)


# ---------------------------------------------------------------- bad checkpoints


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nothing.pt"
    with pytest.raises(ModelError, match="nothing.pt.*not found"):
        ModelPartGenerator(path)


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(AssetError, match="corrupt.pt.*not a readable generator checkpoint"):
        ModelPartGenerator(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "truncated.pt"
    data = DEFAULT_CHECKPOINT.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AdaptiveError, match="truncated.pt.*not a readable generator checkpoint"):
        ModelPartGenerator(path)


def _altered(tmp_path, name, change):
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    change(payload)
    path = tmp_path / name
    torch.save(payload, path)
    return path


def test_checkpoint_with_another_vocabulary(tmp_path):
    def change(p):
        p["vocabulary"] = p["vocabulary"][:-1] + ["Chord_unheard_of"]
    with pytest.raises(ModelError, match="vocab.pt: vocabulary mismatch.*Chord_unheard_of"):
        load_checkpoint(_altered(tmp_path, "vocab.pt", change))


def test_checkpoint_with_mismatched_shapes(tmp_path):
    def change(p):
        p["model_config"]["n_embd"] = p["model_config"]["n_embd"] * 2
    with pytest.raises(ModelError, match="shapes.pt: weight .* has shape .* the model config needs"):
        load_checkpoint(_altered(tmp_path, "shapes.pt", change))


def test_checkpoint_of_another_format_version(tmp_path):
    def change(p):
        p["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ModelError, match=f"version.pt: checkpoint format version {FORMAT_VERSION + 1}"):
        load_checkpoint(_altered(tmp_path, "version.pt", change))


def test_vocabulary_of_the_code_matches_the_committed_checkpoint():
    payload = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=True)
    assert payload["vocabulary"] == list(Vocabulary.build().tokens)


def test_the_mappings_conditioning_replaces_the_built_in_asks():
    from adaptive.generator import PartConditioning

    keep_key = PartConditioning(mode=None, notes_per_beat=1.0, velocity=40, register_semitones=0.0)
    # Negative valence, but the mapping keeps the cue's key: C major stays C major.
    assert generation_key(replace(request(valence=-0.8), conditioning=keep_key)) == Key(0, Mode.MAJOR)
    assert generation_key(replace(request(valence=0.8), conditioning=replace(keep_key, mode="minor"))) \
        == Key(0, Mode.MINOR)
    sparse_soft, dense_loud, high = [], [], []
    for asks, out in ((keep_key, sparse_soft),
                      (replace(keep_key, notes_per_beat=3.0, velocity=110), dense_loud),
                      (replace(keep_key, register_semitones=12.0), high)):
        for seed in range(5, 11):  # a piece's register varies by seed by up to two octaves: average six
            g = ModelPartGenerator()
            out.extend(g.generate_bar(replace(request(b, role="arpeggio", seed=seed, arousal=0.0), conditioning=asks))
                       for b in range(4))
    # The asked density is conditioning, not a limit: the model follows it loosely (about 7.5 against
    # 10 notes a bar for 1 and 3 notes per beat asked on the arpeggio, models/MODEL_CARD.md).
    assert np.mean([len(p) for p in dense_loud]) > 1.25 * np.mean([len(p) for p in sparse_soft])
    assert np.mean([p.velocity.mean() for p in dense_loud if len(p)]) > \
        np.mean([p.velocity.mean() for p in sparse_soft if len(p)]) + 20
    low, top = ROLE_REGISTER_PITCH["arpeggio"]
    assert all(low + 12 <= pitch <= top + 12 for p in high for pitch in p.pitch.tolist())
    assert np.mean([p.pitch.mean() for p in high]) > np.mean([p.pitch.mean() for p in sparse_soft]) + 2
