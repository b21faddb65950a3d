"""The vocabulary and the data preparation: attributes derived from real files
and from music21 corpus tunes, bars encoded and decoded in every meter."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive.harmony import Chord, ChordQuality, Key, Mode
from models.dataset import (corpus_streams, default_data_dir, estimate_chord, estimate_key, estimate_span_chords,
                            heldout_split, skyline_accompaniment, meter_of, pop909_chord, tokenize_file, vgmidi_piece_of)
from models.folk_corpus import RawPiece
from models.realness import decode_bar
from models.tokenizer import HEADER_LENGTH, HEADER_SLOTS, Vocabulary, bar_header, density_bin, encode_bar, make_remi, velocity_level

DATA = default_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "pop909" / "001").is_dir(), reason=f"no training data at {DATA}")


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build()


def test_vocabulary_is_remi_then_conditioning(vocab):
    remi = make_remi()
    assert vocab.tokens[: len(remi.vocab)] == tuple(sorted(remi.vocab, key=remi.vocab.get))
    for token in ("Bar_None", "Position_15", "Pitch_60", "Velocity_63", "Duration_1.0.4", "Key_9_minor",
                  "Valence_unknown", "Arousal_high", "Tempo_unknown", "Density_5", "Density_unknown",
                  "MeanVelocity_none", "MeanVelocity_unknown", "Chord_7_DOMINANT7", "Chord_none", "Role_bass",
                  "Meter_6_8", "Meter_3_4", "Phrase_0", "Phrase_7"):
        assert token in vocab.index
    assert len(set(vocab.tokens)) == len(vocab)


def test_header_slots_and_transposition_move_pitches_keys_and_chords_together(vocab):
    header = bar_header("3_4", 9, Key(9, Mode.MINOR), -1, 1, 100, 2, 3,
                        (Chord(4, ChordQuality.DOMINANT7), Chord(9, ChordQuality.MINOR)))
    assert len(header) == HEADER_LENGTH and [t.split("_")[0] for t in header] == list(HEADER_SLOTS)
    ids = np.array([vocab.id(t) for t in header + ["Position_0", "Pitch_64", "Velocity_63", "Duration_1.0.4"]])
    up = vocab.transpose(ids, 3)
    assert [vocab.tokens[i] for i in up] == ["Bar_None", "Meter_3_4", "Phrase_1", "Key_0_minor", "Valence_negative",
                                             "Arousal_high", "Tempo_2", "Density_2", "MeanVelocity_3",
                                             "Chord_7_DOMINANT7", "Chord_0_MINOR", "Position_0", "Pitch_67",
                                             "Velocity_63", "Duration_1.0.4"]
    assert vocab.transpose(np.array([vocab.id("Pitch_109")]), 1) is None  # leaves the piano range
    assert bar_header("4_4", 0, Key(0, Mode.MAJOR), None, None, None, None, None, (None, None))[4:9] == [
        "Valence_unknown", "Arousal_unknown", "Tempo_unknown", "Density_unknown", "MeanVelocity_unknown"]


def test_bins():
    assert density_bin(0.0) == 0 and density_bin(1.0) == 2 and density_bin(10) == 5
    assert velocity_level(63) == 3 and velocity_level(127) == 7 and velocity_level(1) == 0


@pytest.mark.parametrize("positions", [16, 12, 8, 6])
def test_a_bar_encodes_and_decodes_to_the_same_grid_notes(vocab, positions):
    onsets = np.array([0.0, 0.5, 0.5, 1.25, positions / 4 - 0.25, positions / 4 + 0.5])  # the last is past the bar
    durations = np.array([0.5, 1.0, 1.0, 0.25, 2.0, 1.0])
    pitches = np.array([60, 64, 67, 62, 72, 70])
    ids = encode_bar(vocab, onsets, durations, pitches, np.full(6, 90), positions)
    got_onsets, got_durations, got_pitches = decode_bar(vocab, np.array(ids))
    assert got_onsets.tolist() == [0.0, 0.5, 0.5, 1.25, positions / 4 - 0.25]
    assert got_pitches.tolist() == [60, 64, 67, 62, 72]  # pitches rising within a position
    assert got_durations.tolist() == [0.5, 1.0, 1.0, 0.25, 2.0]
    assert [vocab.kind[i] for i in ids[:4]] == ["Position", "Pitch", "Velocity", "Duration"]


def test_meters():
    assert meter_of(6, 8) == ("6_8", 3.0) and meter_of(2, 2) == ("4_4", 4.0) and meter_of(12, 8) == ("6_8", 3.0)
    assert meter_of(4, 2) == ("4_4", 4.0) and meter_of(5, 4) is None


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


def test_melody_chords_are_the_keys_diatonic_triads_per_half_bar():
    # C major: bar 0 outlines C (C E G), then G (G B D); bar 1 outlines F (F A C), then an empty half.
    notes = np.array([[0, 1, 60, 80], [1, 1, 64, 80], [2, 1, 67, 80], [3, 0.5, 71, 80], [3.5, 0.5, 62, 80],
                      [4, 1, 65, 80], [5, 1, 69, 80], [5.5, 0.5, 72, 80]], float)
    spans = np.array([[0, 2], [2, 4], [4, 6], [6, 8]], float)
    chords = estimate_span_chords(notes, spans, Key(0, Mode.MAJOR), melody_only=True)
    assert chords == [Chord(0, ChordQuality.MAJOR), Chord(7, ChordQuality.MAJOR), Chord(5, ChordQuality.MAJOR),
                      Chord(5, ChordQuality.MAJOR)]  # an empty half keeps the chord


def test_a_folk_tune_in_six_eight_with_a_pickup(vocab):
    # A pickup eighth (E) before bar 1, then D major in 6/8: bar lines every 3 quarter notes.
    rows = [(2.5, 0.5, 64)] + [(3 + i * 0.5, 0.5, p) for i, p in enumerate([62, 66, 69, 74, 69, 66,
                                                                         67, 71, 74, 73, 69, 64])]
    piece = RawPiece("essen", "essenFolksong/test.abc#0", 6, 8, [np.array(rows, float)])
    streams = corpus_streams(piece, vocab)
    assert [s.role for s in streams] == ["melody"]
    headers = [[vocab.tokens[i] for i in row] for row in streams[0].headers]
    assert [h[1] for h in headers] == ["Meter_6_8"] * 3
    assert [h[2] for h in headers] == ["Phrase_0", "Phrase_1", "Phrase_2"]  # counted from the first bar with a note
    # A tune alone holds no accompaniment: its chords are unknown, not guessed from its own notes.
    assert headers[1][3] == "Key_2_major" and headers[1][9:] == ["Chord_none", "Chord_none"]
    assert headers[1][4:9] == ["Valence_unknown", "Arousal_unknown", "Tempo_unknown", "Density_3",
                               "MeanVelocity_unknown"]
    onsets, _, pitches = decode_bar(vocab, streams[0].bars[0])
    assert onsets.tolist() == [2.5] and pitches.tolist() == [64]


def test_a_piano_texture_s_chords_come_from_its_accompaniment_not_its_melody():
    # Melody E F G A (skyline, >= MIDI 55) over a left hand holding C E G then F A C.
    melody = [(0, 1, 76), (1, 1, 77), (2, 1, 79), (3, 1, 81)]
    left = [(0, 2, 48), (0, 2, 52), (0, 2, 55), (2, 2, 53), (2, 2, 57), (2, 2, 60)]
    notes = np.array([(o, d, p, 80) for o, d, p in melody + left], float)
    accompaniment = skyline_accompaniment(notes)
    assert sorted(accompaniment[:, 2].tolist()) == [48, 52, 53, 55, 57, 60]
    spans = np.array([[0, 2], [2, 4]], float)
    chords = estimate_span_chords(accompaniment, spans, Key(0, Mode.MAJOR), melody_only=False)
    assert chords == [Chord(0, ChordQuality.MAJOR), Chord(5, ChordQuality.MAJOR)]


def test_a_chorale_s_chords_come_from_its_three_lower_voices(vocab):
    # Soprano sings A over C major held by alto, tenor and bass: the chord is C, not A minor.
    voices = [np.array([(0, 4, 69)], float), np.array([(0, 4, 64)], float), np.array([(0, 4, 55)], float),
              np.array([(0, 4, 48)], float)]
    piece = RawPiece("chorales", "bach/test.mxl", 4, 4, [np.concatenate([v, v + [4, 0, 0]]) for v in voices])
    streams = corpus_streams(piece, vocab)
    melody = next(s for s in streams if s.role == "melody")
    assert {vocab.tokens[i] for i in melody.headers[:, 9:].ravel()} == {"Chord_0_MAJOR"}


@needs_data
def test_pop909_song_gets_its_annotated_key_and_chords(vocab):
    streams = tokenize_file(DATA / "pop909/001/001.mid", "pop909", "pop909/001/001.mid", vocab)
    assert sorted(s.role for s in streams) == ["arpeggio", "bass", "melody"]
    arpeggio = next(s for s in streams if s.role == "arpeggio")
    header = [vocab.tokens[i] for i in arpeggio.headers[8]]
    assert header[:6] == ["Bar_None", "Meter_4_4", "Phrase_7", "Key_6_major", "Valence_unknown", "Arousal_unknown"]
    chords = {vocab.tokens[i] for i in arpeggio.headers[:, 9]} | {vocab.tokens[i] for i in arpeggio.headers[:, 10]}
    assert "Chord_11_MAJOR" in chords  # chord_midi.txt: B:maj in the intro
    bass = next(s for s in streams if s.role == "bass")
    pitches = np.concatenate([vocab.pitch[b.astype(int)] for b in bass.bars])
    assert pitches[pitches >= 0].max() < 60
    assert len(arpeggio.bars) == len(arpeggio.headers)


@needs_data
def test_pop909_bars_follow_its_annotated_beats_not_tick_zero(vocab):
    """Song 100's MIDI starts 0.45 s before its first beat and its first
    downbeat is the fifth beat: counted from tick 0, its eighth notes fell on
    odd sixteenths. On its annotated beats, the melody sits on the eighth-note
    grid and bar 0 starts on a downbeat."""
    streams = tokenize_file(DATA / "pop909/100/100.mid", "pop909", "pop909/100/100.mid", vocab)
    melody = next(s for s in streams if s.role == "melody")
    positions = np.array([vocab.position[t] for bar in melody.bars for t in bar if vocab.kind[t] == "Position"])
    assert (positions % 2 == 0).mean() > 0.9
    assert np.isin(positions, (0, 4, 8, 12)).mean() > 0.4  # beats carry more onsets than the 12 other sixteenths


@needs_data
def test_vgmidi_files_off_their_grid_are_left_out_and_meters_come_from_time_signatures(vocab):
    off_grid = "vgmidi/phrases/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad_0.mid"  # re-timed to 120 bpm
    assert tokenize_file(DATA / off_grid, "vgmidi", off_grid, vocab, valence=1.0, arousal=-1.0) == []
    waltz = "vgmidi/pieces/Super Mario_SNES_Super Mario World_Map.mid"  # 6/8
    streams = tokenize_file(DATA / waltz, "vgmidi_piece", waltz, vocab)
    assert streams and {vocab.tokens[i] for s in streams for i in s.headers[:, 1]} == {"Meter_6_8"}


@needs_data
def test_a_whole_vgmidi_piece_takes_its_phrases_label():
    from models.dataset import all_files

    files = {rel: (valence, arousal) for source, rel, valence, arousal in all_files(DATA, limit_pop909=0)}
    assert files["vgmidi/phrases/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad_0.mid"] == \
        files["vgmidi/pieces/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad.mid"]


@needs_data
def test_vgmidi_phrase_gets_its_emotion_label(vocab):
    rel = "vgmidi/phrases/Banjo-Kazooie_N64_Banjo-Kazooie_Gobis Valley_0.mid"
    streams = tokenize_file(DATA / rel, "vgmidi", rel, vocab, valence=1.0, arousal=-1.0)
    header = [vocab.tokens[i] for i in streams[0].headers[0]]
    assert header[4:7] == ["Valence_positive", "Arousal_low", "Tempo_unknown"]
    melody = next(s for s in streams if s.role == "melody")
    # skyline: at most one melody note per position
    for bar in melody.bars:
        kinds = [vocab.kind[i] for i in bar]
        assert all(not (a == "Duration" and b == "Pitch") for a, b in zip(kinds, kinds[1:]))


@needs_data
def test_held_out_vgmidi_phrases_hold_out_their_whole_pieces():
    split = heldout_split(DATA, ["essenFolksong/a.abc#1", "oneills1850/b.abc#2"])
    assert split["vgmidi"] and all(p.startswith("vgmidi/phrases/") for p in split["vgmidi"])
    assert vgmidi_piece_of("vgmidi/phrases/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad_0.mid") == \
        "vgmidi/pieces/Banjo-Kazooie_N64_Banjo-Kazooie_Boggys Igloo Sad.mid"
    assert set(split["corpus"]) <= {"essenFolksong/a.abc#1", "oneills1850/b.abc#2"}
