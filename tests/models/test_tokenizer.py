"""The vocabulary and the data preparation: attributes derived from real files."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.harmony import Chord, ChordQuality, Key, Mode
from models.dataset import default_data_dir, estimate_chord, estimate_key, pop909_chord, tokenize_file
from models.tokenizer import Vocabulary, bar_header, density_bin, make_remi, velocity_level

DATA = default_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "pop909" / "001").is_dir(), reason=f"no training data at {DATA}")


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build()


def test_vocabulary_is_remi_then_conditioning(vocab):
    remi = make_remi()
    assert vocab.tokens[: len(remi.vocab)] == tuple(sorted(remi.vocab, key=remi.vocab.get))
    for token in ("Bar_None", "Position_15", "Pitch_60", "Velocity_63", "Duration_1.0.4", "Key_9_minor",
                  "Valence_unknown", "Arousal_high", "Tempo_unknown", "Density_5", "MeanVelocity_none",
                  "Chord_7_DOMINANT7", "Chord_none", "Role_bass"):
        assert token in vocab.index
    assert len(set(vocab.tokens)) == len(vocab)


def test_transposition_moves_pitches_keys_and_chords_together(vocab):
    header = bar_header(Key(9, Mode.MINOR), -1, 1, 100, 2, 3, Chord(4, ChordQuality.DOMINANT7))
    ids = np.array([vocab.id(t) for t in header + ["Position_0", "Pitch_64", "Velocity_63", "Duration_1.0.4"]])
    up = vocab.transpose(ids, 3)
    assert [vocab.tokens[i] for i in up] == ["Bar_None", "Key_0_minor", "Valence_negative", "Arousal_high",
                                             "Tempo_2", "Density_2", "MeanVelocity_3", "Chord_7_DOMINANT7",
                                             "Position_0", "Pitch_67", "Velocity_63", "Duration_1.0.4"]
    assert vocab.transpose(np.array([vocab.id("Pitch_109")]), 1) is None  # leaves the piano range


def test_bins():
    assert density_bin(0.0) == 0 and density_bin(1.0) == 2 and density_bin(10) == 5
    assert velocity_level(63) == 3 and velocity_level(127) == 7 and velocity_level(1) == 0


def test_pop909_chord_labels():
    assert pop909_chord("A:min7/b7") == Chord(9, ChordQuality.MINOR7)
    assert pop909_chord("Gb:maj") == Chord(6, ChordQuality.MAJOR)
    assert pop909_chord("D:sus4(b7)") == Chord(2, ChordQuality.SUS4)
    assert pop909_chord("E:hdim7") == Chord(4, ChordQuality.DIMINISHED)
    assert pop909_chord("N") is None


def test_key_and_chord_estimation_on_clear_histograms():
    c_major_scale = np.zeros(12)
    c_major_scale[[0, 2, 4, 5, 7, 9, 11]] = 1
    c_major_scale[[0, 4, 7]] += 2
    assert estimate_key(c_major_scale) == Key(0, Mode.MAJOR)
    a_minor = np.zeros(12)
    a_minor[[9, 11, 0, 2, 4, 5, 7]] = 1
    a_minor[[9, 0, 4]] += 2
    assert estimate_key(a_minor) == Key(9, Mode.MINOR)
    d_minor_triad = np.zeros(12)
    d_minor_triad[[2, 5, 9]] = [3, 1, 2]
    assert estimate_chord(d_minor_triad) == Chord(2, ChordQuality.MINOR)


@needs_data
def test_pop909_song_gets_its_annotated_key_and_chords(vocab):
    streams = tokenize_file(DATA / "pop909/001/001.mid", "pop909", "pop909/001/001.mid", vocab, make_remi())
    assert sorted(s.role for s in streams) == ["arpeggio", "bass", "melody"]
    arpeggio = next(s for s in streams if s.role == "arpeggio")
    header = [vocab.tokens[i] for i in arpeggio.headers[8]]
    assert header[:4] == ["Bar_None", "Key_6_major", "Valence_unknown", "Arousal_unknown"]  # key_audio.txt: Gb:maj
    chords = {vocab.tokens[i] for i in arpeggio.headers[:, 7]}
    assert "Chord_11_MAJOR" in chords  # chord_midi.txt: B:maj in the intro
    bass = next(s for s in streams if s.role == "bass")
    pitches = np.concatenate([vocab.pitch[b.astype(int)] for b in bass.bars])
    assert pitches[pitches >= 0].max() < 60
    assert len(arpeggio.bars) == len(arpeggio.headers)


@needs_data
def test_vgmidi_phrase_gets_its_emotion_label(vocab):
    rel = "vgmidi/phrases/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad_0.mid"
    streams = tokenize_file(DATA / rel, "vgmidi", rel, vocab, make_remi(), valence=1.0, arousal=-1.0)
    header = [vocab.tokens[i] for i in streams[0].headers[0]]
    assert header[2:5] == ["Valence_positive", "Arousal_low", "Tempo_unknown"]
    melody = next(s for s in streams if s.role == "melody")
    # skyline: at most one melody note per position
    for bar in melody.bars:
        kinds = [vocab.kind[i] for i in bar]
        assert all(not (a == "Duration" and b == "Pitch") for a, b in zip(kinds, kinds[1:]))
