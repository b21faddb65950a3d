"""The generator's evaluation (models/evaluate.py, analysis.py,
emotion_classifier.py): its measures must tell a good generator from a bad one,
and its analysis must be right on music whose answer is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mido
import numpy as np
import pytest

from adaptive.generator import BarRequest, RuleBasedGenerator
from adaptive.part import Part
from models import analysis, evaluate
from models.analysis import Notes
from models.emotion_classifier import QUADRANTS, evaluate_classifier, read_vgmidi

DATA_DIR = evaluate.DEFAULT_DATA_DIR
needs_data = pytest.mark.skipif(not (DATA_DIR / "vgmidi" / "vgmidi_labelled.csv").is_file(),
                                reason=f"VGMIDI not found under {DATA_DIR} (set ADAPTIVE_DATA)")


def melody(pitches: list[int], beats_each: float = 0.5) -> Notes:
    part = Part.from_notes([(i * beats_each, beats_each, p, 80) for i, p in enumerate(pitches)])
    return Notes.from_parts([(part, 0.0)], len(pitches) * beats_each, 120.0)


def chords(progression: list[list[int]], beats_each: float = 2.0) -> Notes:
    part = Part.from_notes([(i * beats_each, beats_each, p, 70) for i, chord in enumerate(progression) for p in chord])
    return Notes.from_parts([(part, 0.0)], len(progression) * beats_each, 120.0)


# ---------------------------------------------------------------- the analysis on known music

C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60]
A_MINOR_SCALE = [57, 59, 60, 62, 64, 65, 67, 69, 67, 65, 64, 62, 60, 59, 57]
C_MAJOR_CADENCE = [[48, 64, 67, 72], [53, 65, 69, 72], [55, 62, 67, 71], [48, 64, 67, 72]]  # I IV V I
A_MINOR_CADENCE = [[45, 60, 64, 69], [50, 62, 65, 69], [52, 59, 64, 68], [45, 60, 64, 69]]  # i iv V i


@pytest.mark.parametrize("notes, tonic, mode", [
    (melody(C_MAJOR_SCALE), 0, "major"),
    (melody(A_MINOR_SCALE), 9, "minor"),
    (chords(C_MAJOR_CADENCE), 0, "major"),
    (chords(A_MINOR_CADENCE), 9, "minor"),
], ids=["C major scale", "A minor scale", "C major I-IV-V-I", "A minor i-iv-V-i"])
def test_key_finding_names_the_key_of_known_music(notes, tonic, mode):
    found = analysis.detect_key(notes)
    assert (found.tonic_pitch_class, found.mode) == (tonic, mode)
    strength, clarity = analysis.mode_strength(notes)
    assert (strength > 0) == (mode == "major") and clarity > 0.7


def test_key_finding_rejects_unknown_algorithm_and_empty_piece():
    with pytest.raises(ValueError, match="allowed: KrumhanslSchmuckler"):
        analysis.detect_key(melody(C_MAJOR_SCALE), "Guess")
    with pytest.raises(ValueError, match="without notes"):
        analysis.detect_key(Notes.from_parts([], 4.0, 120.0))


def test_histogram_overlap_is_one_with_itself_and_zero_when_disjoint():
    histogram = np.array([3.0, 1.0, 0.0, 6.0])
    assert analysis.histogram_overlap(histogram, histogram) == pytest.approx(1.0)
    assert analysis.histogram_overlap(histogram, 10 * histogram) == pytest.approx(1.0)  # normalized first
    assert analysis.histogram_overlap([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 5.0]) == 0.0
    assert analysis.histogram_overlap([1.0, 1.0, 0.0], [0.0, 1.0, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="empty"):
        analysis.histogram_overlap([0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="different bins"):
        analysis.histogram_overlap([1.0, 0.0], [1.0, 0.0, 0.0])


def test_yang_lerch_overlap_area_is_high_for_the_same_distribution_and_low_for_a_far_one():
    rng = np.random.default_rng(0)
    real = analysis.normalized(rng.dirichlet(np.ones(12) * 5, 40))
    alike = analysis.normalized(rng.dirichlet(np.ones(12) * 5, 40))
    far = analysis.normalized(np.tile(np.eye(12)[0], (40, 1)))  # every note the tonic
    assert analysis.overlap_area_yang_lerch(alike, real) > 0.8
    assert analysis.overlap_area_yang_lerch(far, real) < 0.05
    with pytest.raises(ValueError, match=">= 2 real"):
        analysis.overlap_area_yang_lerch(alike, real[:1])


def test_read_midi_notes_follows_the_tempo_map(tmp_path):
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0),
                                mido.MetaMessage("set_tempo", tempo=1_000_000, time=960)])  # 120 bpm, then 60 at beat 2
    notes = mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=90, time=0), mido.Message("note_off", note=60, time=480),
        mido.Message("note_on", note=64, velocity=50, time=960), mido.Message("note_on", note=64, velocity=0, time=480),
        mido.Message("note_on", channel=9, note=36, velocity=100, time=0),
        mido.Message("note_off", channel=9, note=36, time=480),
    ])
    midi.tracks += [conductor, notes]
    path = tmp_path / "tempo.mid"
    midi.save(path)
    read = analysis.read_midi_notes(path)
    assert read.pitch.tolist() == [60, 64]  # the percussion note is left out
    assert read.start_beats.tolist() == [0.0, 3.0]
    assert read.start_seconds == pytest.approx([0.0, 1.0 + 1.0])  # 2 beats at 0.5 s, 1 beat at 1 s
    assert read.duration_seconds == pytest.approx([0.5, 1.0])
    assert read.velocity.tolist() == [90, 50]
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    with pytest.raises(ValueError, match="not a valid Standard MIDI File"):
        analysis.read_midi_notes(tmp_path / "bad.mid")


def test_music21_reaches_no_network_and_writes_no_file(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise SystemExit("music21 tried to reach the network")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from tests.models.test_evaluate import melody, C_MAJOR_SCALE
        from models.analysis import detect_key
        print(detect_key(melody(C_MAJOR_SCALE)).mode)
    """)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "major"
    assert list(home.rglob("*")) == []


# ---------------------------------------------------------------- emotion control


class EmotionBlindGenerator:
    """Ignores the emotion and the key: always C major (tonic-triad notes on
    the beats, scale notes between), with a note count and velocity that
    depend only on the seed, the bar and its chord's root."""

    name = "emotion_blind"

    def generate_bar(self, request: BarRequest) -> Part:
        rng = np.random.default_rng([request.seed, request.bar_index, len(request.role), request.chord.root_pitch_class])
        count = int(rng.integers(2, 9))
        velocity = int(rng.integers(40, 120))
        triad, scale = [60, 64, 67, 72], [62, 65, 69, 71]
        step = request.beats_per_bar / count
        notes = []
        for i in range(count):
            pool = triad if (i * step) % 1 == 0 else scale
            notes.append((i * step, step, pool[int(rng.integers(0, len(pool)))], velocity))
        return Part.from_notes(notes)


SMALL_GRID = evaluate.Grid(valences=(-1.0, -0.5, 0.5, 1.0), arousals=(-1.0, -0.5, 0.0, 0.5, 1.0), seeds=(1,),
                           progressions_per_mode=2, bars=8, progression_set="tuning")  # C major is one of four


def control_of(generator) -> dict:
    pieces = [evaluate.generate_piece(generator, piece, SMALL_GRID) for piece in SMALL_GRID.pieces()]
    return evaluate.emotion_control(pieces, ("KrumhanslSchmuckler",))


def test_an_emotion_blind_generator_scores_low():
    control = control_of(EmotionBlindGenerator())
    assert abs(control["spearman_arousal_density"]) < 0.2
    assert abs(control["spearman_arousal_velocity"]) < 0.2
    # Always C major whatever the key: right for positive valence only.
    assert control["mode_match_major"] == 1.0 and control["mode_match_minor"] == 0.0
    assert control["mode_match"] == pytest.approx(0.5)
    assert control["key_match"] == pytest.approx(0.25)  # the requested key is C major in 1 piece in 4


def test_the_rule_based_generator_scores_as_designed():
    """Its design: arousal sets 1-4 notes per beat and velocity 45..110, the
    chords set the pitches (so the mode follows the key), valence raises the register."""
    control = control_of(RuleBasedGenerator())
    assert control["spearman_arousal_density"] >= 0.8
    assert control["spearman_arousal_velocity"] >= 0.8
    assert control["mode_match"] >= 0.9
    assert control["spearman_valence_mean_pitch"] > 0.3
    densities = [row["notes_per_beat"] for row in control["by_arousal"]]
    velocities = [row["mean_velocity"] for row in control["by_arousal"]]
    assert densities == sorted(densities) and densities[-1] > 1.5 * densities[0]
    assert all(b > a for a, b in zip(velocities, velocities[1:]))


def test_the_trained_model_goes_through_the_evaluation():
    """Runs once the model lands (models.generate importable): a tiny grid
    through the real ModelPartGenerator on one thread."""
    pytest.importorskip("models.generate")
    generator, load_seconds = evaluate.load_generator("model", None)
    assert generator.name == "model" and load_seconds >= 0
    grid = evaluate.Grid(valences=(-1.0, 1.0), arousals=(-1.0, 1.0), seeds=(1,), progressions_per_mode=1,
                         roles=("melody",), bars=2, bridge_trials=2)
    pieces = [evaluate.generate_piece(generator, piece, grid) for piece in grid.pieces()]
    assert all(p.notes_outside_bar == 0 for p in pieces)
    control = evaluate.emotion_control(pieces, ("KrumhanslSchmuckler",))
    assert control["n_pieces"] == 4 and 0.0 <= control["mode_match"] <= 1.0
    speed = evaluate.speed(pieces, grid, evaluate.bridge_times(generator, grid), load_seconds, 0.0)
    assert speed["bridge_trials"] == 2 and speed["real_time_factor"] > 0


def test_the_grid_follows_the_engine_major_for_positive_valence_minor_for_negative():
    pieces = evaluate.Grid().pieces()
    assert {p.progression.key.mode.value for p in pieces if p.valence > 0} == {"major"}
    assert {p.progression.key.mode.value for p in pieces if p.valence < 0} == {"minor"}
    assert {p.progression.key.mode.value for p in pieces if p.valence == 0} == {"major", "minor"}
    assert len({(p.valence, p.arousal) for p in pieces}) == 25


# ---------------------------------------------------------------- the classifier


@pytest.fixture(scope="module")
def vgmidi():
    return read_vgmidi(DATA_DIR / "vgmidi")


@needs_data
def test_the_classifier_beats_chance_on_held_out_phrases(vgmidi):
    model, report = evaluate_classifier(vgmidi)
    assert report.n_held_out >= 40 and report.n_train + report.n_held_out == len(vgmidi.paths)
    assert report.quadrant_accuracy >= report.quadrant_chance + 0.1
    assert report.arousal_accuracy >= report.arousal_chance + 0.1
    assert report.cross_validated_quadrant_accuracy > 0.25 + 0.1


@needs_data
def test_held_out_phrases_share_no_piece_with_training(vgmidi):
    from models.emotion_classifier import held_out_split

    train, held_out = held_out_split(vgmidi)
    assert not set(vgmidi.group[train]) & set(vgmidi.group[held_out])
    assert set(vgmidi.quadrant[held_out]) == set(range(len(QUADRANTS)))


@needs_data
def test_the_models_held_out_list_is_the_real_reference(tmp_path):
    listing = tmp_path / "heldout.json"
    phrases = sorted((DATA_DIR / "vgmidi" / "phrases").iterdir())[:2]
    listing.write_text(json.dumps({
        "pop909": ["pop909/020/020.mid", "pop909/040/040.mid"],
        "vgmidi": [f"vgmidi/phrases/{p.name}" for p in phrases],
    }))
    held_out, source = evaluate.model_held_out(DATA_DIR, listing)
    sets = evaluate.real_sets(DATA_DIR, held_out, source, [], {})
    assert [(s.name, len(s.notes)) for s in sets] == [("VGMIDI", 2), ("POP909", 2)]
    assert str(listing) in sets[0].source
    assert sets[1].tonics == [evaluate._longest_key(DATA_DIR / "pop909" / n / "key_audio.txt").tonic_pitch_class
                              for n in ("020", "040")]
    listing.write_text('["not", "an", "object"]')
    with pytest.raises(ValueError, match='"pop909": \\[paths\\]'):
        evaluate.model_held_out(DATA_DIR, listing)


# ---------------------------------------------------------------- the card and the command line

CARD = "# Model card\n\nIntro.\n\n<!-- evaluation:begin -->\nold figures\nmore old\n<!-- evaluation:end -->\n\nAfter.\n"


def test_write_card_replaces_exactly_the_marked_section(tmp_path):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(CARD)
    evaluate.write_card(card, "| new | table |\n")
    assert card.read_text() == CARD.replace("old figures\nmore old\n", "| new | table |\n")


@pytest.mark.parametrize("text", [
    "# Model card\nno markers\n",
    "<!-- evaluation:begin -->\nonly the beginning\n",
    "<!-- evaluation:end -->\nx\n<!-- evaluation:begin -->\n",
    CARD + CARD,
], ids=["none", "no end", "reversed", "twice"])
def test_write_card_without_proper_markers_errors_and_leaves_the_file(tmp_path, text):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(text)
    with pytest.raises(ValueError, match="<!-- evaluation:begin -->"):
        evaluate.write_card(card, "new\n")
    assert card.read_text() == text


def test_command_refuses_a_card_without_markers_before_running(tmp_path, capsys):
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# no markers\n")
    assert evaluate.main(["--generator", "rule_based", "--write-card", str(card)]) == 2
    assert "evaluation:begin" in capsys.readouterr().err


def test_model_generator_that_cannot_be_imported_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "models.generate", None)  # import raises ImportError
    with pytest.raises(ValueError, match="--generator rule_based"):
        evaluate.load_generator("model", None)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """A data folder of 40 VGMIDI phrases (10 per quadrant) and 20 POP909 songs (symbolic links)."""
    data = tmp_path_factory.mktemp("data")
    (data / "vgmidi" / "phrases").mkdir(parents=True)
    (data / "pop909").mkdir()
    rows = (DATA_DIR / "vgmidi" / "vgmidi_labelled.csv").read_text().splitlines()
    kept, per_quadrant = [rows[0]], {}
    for row in rows[1:]:
        quadrant = tuple(row.split(",")[-2:])
        if per_quadrant.get(quadrant, 0) < 10:
            per_quadrant[quadrant] = per_quadrant.get(quadrant, 0) + 1
            kept.append(row)
            name = Path(row.split(",")[5]).name
            (data / "vgmidi" / "phrases" / name).symlink_to(DATA_DIR / "vgmidi" / "phrases" / name)
    (data / "vgmidi" / "vgmidi_labelled.csv").write_text("\n".join(kept) + "\n")
    for song in sorted(d for d in (DATA_DIR / "pop909").iterdir() if d.is_dir())[:20]:
        (data / "pop909" / song.name).symlink_to(song)
    return data


@needs_data
def test_without_the_models_list_the_reference_is_a_fixed_split(small_data):
    phrases = sorted((small_data / "vgmidi" / "phrases").iterdir())[:3]
    sets = evaluate.real_sets(small_data, None, "", phrases, {})
    assert [(s.name, len(s.notes)) for s in sets] == [("VGMIDI", 3), ("POP909", 2)]  # 10 % of 20 songs
    assert "fixed split" in sets[1].source
    again = evaluate.real_sets(small_data, None, "", phrases, {})
    assert [n.length_beats for n in again[1].notes] == [n.length_beats for n in sets[1].notes]


@needs_data
def test_quick_run_end_to_end_on_a_small_data_folder(small_data, tmp_path, capsys):
    """The whole command: the printed tables, the JSON and the card agree."""
    held_out = tmp_path / "heldout.json"
    phrases = sorted((small_data / "vgmidi" / "phrases").iterdir())
    held_out.write_text(json.dumps({"vgmidi": [f"vgmidi/phrases/{p.name}" for p in phrases[:4]],
                                    "pop909": ["pop909/001/001.mid", "pop909/002/002.mid", "pop909/003/003.mid"]}))
    card = tmp_path / "MODEL_CARD.md"
    card.write_text(CARD)
    figures = tmp_path / "figures.json"
    status = evaluate.main(["--generator", "rule_based", "--quick", "--data", str(small_data), "--json", str(figures),
                            "--write-card", str(card), "--held-out", str(held_out)])
    printed = capsys.readouterr().out
    assert status == 0
    raw = json.loads(figures.read_text())
    assert raw["generator"] == "rule_based"
    assert raw["emotion_control"]["mode_match"] >= 0.9
    assert raw["speed"]["bridge_trials"] == 20 and raw["speed"]["real_time_factor"] > 1
    references = raw["closeness"]["references"]
    assert {name: figures["n_pieces"] for name, figures in references.items()} == {"VGMIDI": 4, "POP909": 3}
    assert all(0 <= references["POP909"][h]["pooled_overlap"] <= 1 for h in ("pitch_class", "duration", "ioi"))
    text = card.read_text()
    assert text.startswith("# Model card\n\nIntro.\n\n<!-- evaluation:begin -->\n")
    assert text.endswith("<!-- evaluation:end -->\n\nAfter.\n") and "old figures" not in text
    assert "Spearman ρ(arousal, notes per beat)" in text and "Spearman ρ(arousal, notes per beat)" in printed
