"""Offline rendering of the embedded default bank, as a user runs it:
``adaptive render TIMELINE -o out.wav --midi out.mid --events out.json``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from adaptive.cue import DEFAULT_BANK
from app.cli import main
from adaptive.cue import load_bank
from adaptive.scene import SceneUpdate
from adaptive.session import Session
from tests.helpers import SAMPLE_RATE_HZ, fade_silent_frames, first_difference, render_frames

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def default_bank():
    return load_bank(DEFAULT_BANK)


def spectral_flux(audio: np.ndarray, hop: int = 256, n_fft: int = 2048) -> np.ndarray:
    """Onset strength: the summed rise of the log-magnitude spectrum per hop."""
    x = (audio[:, 0].astype(np.float64) + audio[:, 1]) / 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    magnitude = np.log1p(100 * np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(magnitude, axis=0), 0).sum(axis=1)
    return flux - flux.mean()


def estimate_beat_period(audio: np.ndarray, hop: int = 256) -> tuple[float, np.ndarray]:
    """The strongest periodicity of the onset strength between 0.3 s and 1 s
    (60..200 bpm), refined by parabolic interpolation; and the autocorrelation."""
    flux = spectral_flux(audio, hop)
    autocorrelation = np.correlate(flux, flux, "full")[len(flux) - 1 :]
    low, high = int(0.3 * SAMPLE_RATE_HZ / hop), int(1.0 * SAMPLE_RATE_HZ / hop)
    lag = low + int(np.argmax(autocorrelation[low:high]))
    a, b, c = autocorrelation[lag - 1 : lag + 2]
    refined = lag + 0.5 * (a - c) / (a - 2 * b + c)
    return refined * hop / SAMPLE_RATE_HZ, autocorrelation


def render_cli(tmp_path: Path, name: str, timeline: Path) -> dict[str, Path]:
    out = {"wav": tmp_path / f"{name}.wav", "mid": tmp_path / f"{name}.mid", "json": tmp_path / f"{name}.json"}
    status = main(["render", str(timeline), "-o", str(out["wav"]), "--midi", str(out["mid"]),
                   "--events", str(out["json"]), "--no-progress"])
    assert status == 0
    return out


def test_same_timeline_and_seed_give_a_bit_identical_wav(tmp_path):
    first = render_cli(tmp_path, "first", EXAMPLES / "walk.toml")
    second = render_cli(tmp_path, "second", EXAMPLES / "walk.toml")
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert digest(first["wav"]) == digest(second["wav"])
    assert digest(first["mid"]) == digest(second["mid"])
    assert first["json"].read_text() == second["json"].read_text()
    audio, rate = soundfile.read(str(first["wav"]))
    assert rate == SAMPLE_RATE_HZ and audio.shape == (100 * SAMPLE_RATE_HZ, 2)
    assert np.sqrt(np.mean(audio**2)) > 0.01  # music, not silence


def test_events_file_lists_every_beat_bar_cue_change_transition_and_stinger(tmp_path):
    out = render_cli(tmp_path, "walk", EXAMPLES / "walk.toml")
    document = json.loads(out["json"].read_text())
    events = document["events"]
    assert document["sample_rate_hz"] == SAMPLE_RATE_HZ
    kinds = {event["type"] for event in events}
    assert {"beat", "bar", "cue_change", "transition_start", "transition_end", "stinger", "scene"} <= kinds
    frames = [event["frame"] for event in events]
    assert frames == sorted(frames)
    for event in events:
        assert event["time_seconds"] == pytest.approx(event["frame"] / SAMPLE_RATE_HZ, abs=1e-6)
    cues = [event["cue"] for event in events if event["type"] == "cue_change"]
    assert cues[0] == "explore" and "stealth" in cues and "combat" in cues and cues[-1] == "triumph"
    # Beats inside one cue are evenly spaced at the cue's tempo.
    for cue_change, next_change in zip(
        [e for e in events if e["type"] == "cue_change"], [e for e in events if e["type"] == "cue_change"][1:] + [None]
    ):
        end = next_change["frame"] if next_change else 10**12
        beats = [e["frame"] for e in events if e["type"] == "beat" and cue_change["frame"] <= e["frame"] < end]
        if len(beats) > 2:
            spacing = np.diff(beats)
            assert spacing.max() - spacing.min() <= 1
            assert np.mean(spacing) == pytest.approx(60 * SAMPLE_RATE_HZ / cue_change["bpm"], abs=1)
    assert sum(1 for e in events if e["type"] == "stinger") == 3


@pytest.mark.parametrize(("from_emotion", "to_emotion", "exit_beats"), [
    ("calm", "angry", 1),  # explore -> combat: next beat
    ("angry", "sorrowful", 16),  # combat -> sorrow: end of phrase (4 bars of 4/4)
])
def test_default_bank_cue_change_lands_on_its_quantized_frame(default_bank, soundfont, from_emotion, to_emotion,
                                                              exit_beats):
    start = SceneUpdate(emotion=from_emotion, intensity=0.9)
    request_frame = 5 * SAMPLE_RATE_HZ + 123
    changed = Session(default_bank, soundfont=soundfont)
    changed.submit(0, start)
    changed.submit(request_frame, SceneUpdate(emotion=to_emotion))
    unchanged = Session(default_bank, soundfont=soundfont)
    unchanged.submit(0, start)
    bpm = default_bank.cue("explore" if from_emotion == "calm" else "combat").bpm
    frames_per_step = exit_beats * 60 * SAMPLE_RATE_HZ / bpm
    boundary = int(round(np.ceil(request_frame / frames_per_step) * frames_per_step))
    total = boundary + SAMPLE_RATE_HZ
    difference = first_difference(render_frames(changed, total), render_frames(unchanged, total))
    first_cue = [e.data["cue"] for e in unchanged.drain_events() if e.kind == "cue_change"]
    assert first_cue == ["explore" if from_emotion == "calm" else "combat"]
    change = [e for e in changed.drain_events() if e.kind == "transition_start"]
    assert [e.frame for e in change] == [boundary]
    fade_frames = round(change[0].data["fade_beats"] * 60 * SAMPLE_RATE_HZ / bpm)
    assert difference is not None and boundary < difference <= boundary + fade_silent_frames(fade_frames)


@pytest.mark.parametrize("cue_name", ["explore", "stealth", "combat", "triumph", "sorrow"])
def test_rendered_tempo_of_each_default_cue_equals_its_bpm(default_bank, soundfont, cue_name):
    """Measured from the audio (spectral-flux autocorrelation): the beat period
    is the cue's, or twice it (the usual octave ambiguity of tempo estimation)."""
    cue = default_bank.cue(cue_name)
    session = Session(default_bank, soundfont=soundfont)
    session.submit(0, SceneUpdate(cue=cue_name, intensity=1.0))
    audio = render_frames(session, 30 * SAMPLE_RATE_HZ)
    period_seconds, autocorrelation = estimate_beat_period(audio)
    beat_seconds = 60.0 / cue.bpm
    ratio = period_seconds / beat_seconds
    # Either octave: a generated eighth-note arpeggio can make the half beat the strongest pulse.
    assert min(abs(ratio - 1.0), abs(ratio - 2.0) / 2, abs(ratio - 0.5) * 2) < 0.01, \
        f"measured {60 / period_seconds:.2f} bpm"
    # And the beat itself pulses more than lags across it (3/4 and 3/2 of a beat): a cue at a
    # wrong tempo, or notes off the grid, would have it the other way round. (Which octave
    # pulses most is the music's: an eighth-note arpeggio can outdo the beat.)
    def lag(beats: float) -> int:
        return int(round(beats * beat_seconds * SAMPLE_RATE_HZ / 256))

    off_metre = [lag(f) for f in (0.75, 1.5) if lag(f) < len(autocorrelation)]
    assert off_metre and all(autocorrelation[lag(1.0)] > autocorrelation[off] for off in off_metre), \
        [(f, round(float(autocorrelation[lag(f)] / autocorrelation[lag(1.0)]), 2)) for f in (0.75, 1.5)]


def test_midi_export_holds_the_played_notes_at_their_times(tmp_path, default_bank, soundfont):
    from adaptive.midifile import write_midi

    session = Session(default_bank, soundfont=soundfont)
    session.submit(0, SceneUpdate(cue="triumph", intensity=1.0))
    session.submit(3 * SAMPLE_RATE_HZ, SceneUpdate(cue="stealth"))
    render_frames(session, 12 * SAMPLE_RATE_HZ)
    path = tmp_path / "played.mid"
    write_midi(path, session.midi_events, session.parts, session.tempo_changes, SAMPLE_RATE_HZ)

    midi = mido.MidiFile(str(path))
    names = [track.name for track in midi.tracks]
    assert names[0] == "tempo" and "triumph/drums" in names and "stealth/drone" in names
    seconds = 0.0
    note_on_seconds = []
    for message in midi:  # mido converts ticks to seconds through the tempo map
        seconds += message.time
        if message.type == "note_on" and message.velocity > 0:
            note_on_seconds.append(seconds)
    played = sorted(e.frame / SAMPLE_RATE_HZ for e in session.midi_events if e.kind == 1)
    assert len(note_on_seconds) == len(played)
    assert np.abs(np.array(sorted(note_on_seconds)) - np.array(played)).max() < 0.001
    drums = next(track for track in midi.tracks if track.name == "triumph/drums")
    assert all(m.channel == 9 for m in drums if m.type in ("note_on", "note_off"))


def test_midi_export_leaves_no_note_hanging(tmp_path, default_bank, soundfont):
    """Cues cut off by transitions and notes held at the end of the render all
    get their note-off in the file (a hanging note makes other players render
    for ever)."""
    from adaptive.midifile import write_midi

    session = Session(default_bank, soundfont=soundfont)
    session.submit(0, SceneUpdate(cue="explore", intensity=1.0))
    session.submit(2 * SAMPLE_RATE_HZ, SceneUpdate(cue="combat"))
    session.submit(5 * SAMPLE_RATE_HZ, SceneUpdate(cue="triumph"))
    total = 9 * SAMPLE_RATE_HZ + 1234
    render_frames(session, total)
    path = tmp_path / "played.mid"
    write_midi(path, session.midi_events, session.parts, session.tempo_changes, SAMPLE_RATE_HZ, end_frame=total)
    midi = mido.MidiFile(str(path))
    for track in midi.tracks:
        sounding: dict[tuple[int, int], int] = {}
        for message in track:
            if message.type in ("note_on", "note_off"):
                key = (message.channel, message.note)
                change = 1 if message.type == "note_on" and message.velocity > 0 else -1
                sounding[key] = sounding.get(key, 0) + change
        assert all(count == 0 for count in sounding.values()), track.name
    assert midi.length == pytest.approx(total / SAMPLE_RATE_HZ, abs=0.01)


def test_a_cue_asked_for_during_a_bridge_waits_for_the_arrival(default_bank, soundfont):
    """explore -> stealth has a generated bridge; asking for combat while it
    plays lands on stealth's arrival at the earliest, and nothing crashes."""
    session = Session(default_bank, soundfont=soundfont)
    session.submit(0, SceneUpdate(cue="explore", intensity=1.0))
    session.submit(4 * SAMPLE_RATE_HZ, SceneUpdate(cue="stealth"))
    session.submit(round(6.5 * SAMPLE_RATE_HZ), SceneUpdate(cue="combat"))
    audio = render_frames(session, 14 * SAMPLE_RATE_HZ)
    changes = [(e.frame, e.data["cue"]) for e in session.drain_events() if e.kind == "cue_change"]
    names = [name for _, name in changes]
    assert names == ["explore", "bridge:explore->stealth", "stealth", "combat"]
    arrival = changes[2][0]
    assert changes[3][0] >= arrival
    assert np.sqrt(np.mean(audio[-SAMPLE_RATE_HZ:] ** 2)) > 0.01  # combat is playing at the end
