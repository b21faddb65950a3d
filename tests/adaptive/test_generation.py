"""The generation worker: generated layers, bridges and stingers are made in a
background thread ahead of the music; a bar not ready at its downbeat plays
the rule-based fallback (counted, recorded, replayed bit for bit); bridges
modulate, interpolate the emotion and step the tempo; generated stingers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from adaptive.clock import beats_to_frames
from adaptive.cue import load_bank
from adaptive.errors import ConfigError
from adaptive.generation import GenerationMode, GenerationWorker, Ticket
from adaptive.generator import BarRequest, RuleBasedGenerator
from adaptive.registry import GENERATORS, make_generator
from adaptive.harmony import Key
from adaptive.part import Part
from adaptive.realtime import RealtimeSession
from adaptive.recording import Recording, load_recording_with_fallbacks, replay
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session
from tests.helpers import render_frames, wait_until, write_midi

RATE = 48_000

BANK = """
name = "generated"

[[cues]]
name = "calm"
bpm = 90
key = "C major"
chords = ["C", "Am", "F", "G"]
loop_bars = 4
valence = 0.5
arousal = -0.5
  [[cues.layers]]
  name = "arp"
  program = 46
  source = { kind = "generated", role = "arpeggio" }

[[cues]]
name = "tense"
bpm = 120
key = "E major"
chords = ["E", "C#m", "A", "B"]
loop_bars = 4
valence = -0.5
arousal = 0.6
  [[cues.layers]]
  name = "arp"
  program = 46
  source = { kind = "generated", role = "arpeggio" }

[[cues]]
name = "dark"
bpm = 70
key = "A minor"
loop_bars = 4
valence = -0.8
arousal = -0.8
  [[cues.layers]]
  name = "bass"
  program = 32
  source = { kind = "generated", role = "bass" }

[[stingers]]
name = "flourish"
source = { kind = "generated", beats = 2, role = "melody" }
program = 56
quantize = "next_beat"

[[transitions]]
from = "*"
to = "*"
exit = "next_bar"
fade_beats = 1.0
bridge = { kind = "generated", bars = 3 }
"""

CALM_BAR_FRAMES = beats_to_frames(4, 90.0, RATE)


class OctaveUp:
    """A stand-in for the model: the rule-based bar an octave up (so its notes
    differ from the fallback's), recording the thread and request of each call."""

    name = "octave_up"

    def __init__(self, delay_seconds: float = 0.0, fail_on_bar: int | None = None,
                 gate: threading.Event | None = None, gated=lambda request: False) -> None:
        self.delay_seconds = delay_seconds
        self.fail_on_bar = fail_on_bar
        self.gate = gate
        self.gated = gated
        self.calls: list[tuple[str, BarRequest]] = []

    def generate_bar(self, request: BarRequest) -> Part:
        self.calls.append((threading.current_thread().name, request))
        if self.gate is not None and self.gated(request):
            self.gate.wait(10)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        if request.bar_index == self.fail_on_bar:
            raise RuntimeError("the model ran out of ideas")
        return RuleBasedGenerator().generate_bar(request).transposed(12)


@pytest.fixture
def bank(tmp_path):
    (tmp_path / "bank.toml").write_text(BANK)
    return load_bank(tmp_path / "bank.toml")


def use_generator(monkeypatch, **options) -> list[OctaveUp]:
    """Register ``octave_up`` (each instance made with ``options``); returns the instances made."""
    made: list[OctaveUp] = []

    def factory() -> OctaveUp:
        made.append(OctaveUp(**options))
        return made[-1]

    monkeypatch.setitem(GENERATORS, "octave_up", factory)
    return made


def make_session(bank, soundfont, **kwargs) -> Session:
    return Session(bank, soundfont=soundfont, sample_rate_hz=RATE, generator="octave_up", **kwargs)


def stream(session: Session, name: str):
    return next(s for s in session.generation.streams if s.name == name)


def notes(session: Session, part: str, start: int, end: int) -> list:
    return [e for e in session.midi_events if e.part == part and e.kind == 1 and start <= e.frame < end]


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


# ---------------------------------------------------------------- the worker
def test_the_render_step_never_calls_the_generator(bank, soundfont, monkeypatch):
    made = use_generator(monkeypatch)
    session = make_session(bank, soundfont)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    session.submit(CALM_BAR_FRAMES + 100, StingerTrigger("flourish"))
    session.submit(2 * CALM_BAR_FRAMES + 100, SceneUpdate(cue="tense"))
    render_frames(session, 7 * CALM_BAR_FRAMES, block_frames=1024)
    wait_idle(session)
    calls = [call for generator in made for call in generator.calls]
    roles = {request.role for _, request in calls}
    assert roles == {"arpeggio", "melody"}  # layers and bridge (arpeggio), stinger (melody)
    assert stream(session, "bridge").generator.calls and stream(session, "stinger/flourish").generator.calls
    assert {thread for thread, _ in calls} == {"adaptive-generation"}
    assert session.generation.counters["generation_misses"] == 0
    assert session.generation.counters["generated_bars"] > 8
    # What was played is the generator's (an octave above the rule-based bar).
    played = notes(session, "calm/arp", 0, CALM_BAR_FRAMES)
    fallback = RuleBasedGenerator().generate_bar(stream(session, "calm/arp").generator.calls[0][1])
    assert sorted(e.pitch for e in played) == sorted((fallback.pitch + 12).tolist())
    session.close()


def test_offline_render_waits_for_a_slow_generator_and_is_bit_identical(bank, soundfont, monkeypatch):
    use_generator(monkeypatch, delay_seconds=0.01)

    def render() -> tuple[np.ndarray, dict]:
        session = make_session(bank, soundfont)
        session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
        session.submit(CALM_BAR_FRAMES + 5000, SceneUpdate(cue="tense"))
        session.submit(CALM_BAR_FRAMES + 9000, StingerTrigger("flourish"))
        audio = render_frames(session, 6 * CALM_BAR_FRAMES, block_frames=4096)
        counters = dict(session.generation.counters)
        session.close()
        return audio, counters

    first, counters = render()
    second, _ = render()
    assert counters["generation_misses"] == 0 and counters["generated_bars"] > 0
    assert np.array_equal(first, second)


def test_a_missed_bar_plays_the_fallback_and_the_music_goes_on(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    # A deadline policy standing in for a slow model: bar 2 of the layer is late.
    worker = GenerationWorker(deadline_policy=lambda ticket: ticket.done.wait(10) and not (
        ticket.stream.name == "calm/arp" and ticket.request.bar_index == 2))
    session = make_session(bank, soundfont, generation=worker)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    audio = render_frames(session, 4 * CALM_BAR_FRAMES)
    generator_calls = {request.bar_index: request for _, request in stream(session, "calm/arp").generator.calls}
    for bar in range(4):
        played = sorted(e.pitch for e in notes(session, "calm/arp", bar * CALM_BAR_FRAMES, (bar + 1) * CALM_BAR_FRAMES))
        rule_based = RuleBasedGenerator().generate_bar(generator_calls[bar]).pitch
        expected = rule_based if bar == 2 else rule_based + 12
        assert played == sorted(expected.tolist()), f"bar {bar}"
        assert rms(audio[bar * CALM_BAR_FRAMES : (bar + 1) * CALM_BAR_FRAMES]) > 0.005, f"bar {bar} is silent"
    assert session.generation.counters["generation_misses"] == 1
    [fallback] = session.generation.drain_fallbacks()
    assert (fallback.part, fallback.bar_index, fallback.reason, fallback.frame) == \
        ("calm/arp", 2, "late", 2 * CALM_BAR_FRAMES)
    session.close()


def test_a_generator_that_raises_is_reported_and_the_fallback_plays(bank, soundfont, monkeypatch, caplog):
    use_generator(monkeypatch, fail_on_bar=1)
    session = make_session(bank, soundfont)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    with caplog.at_level(logging.ERROR, logger="adaptive.generation"):
        audio = render_frames(session, 3 * CALM_BAR_FRAMES)
    assert session.generation.counters["generation_errors"] >= 1
    assert session.generation.counters["generation_misses"] == session.generation.counters["generation_errors"]
    assert any("calm/arp" in record.getMessage() and "ran out of ideas" in record.getMessage()
               for record in caplog.records)
    assert notes(session, "calm/arp", CALM_BAR_FRAMES, 2 * CALM_BAR_FRAMES)
    assert rms(audio[CALM_BAR_FRAMES : 2 * CALM_BAR_FRAMES]) > 0.005
    session.close()


def test_realtime_misses_are_recorded_and_replay_is_bit_identical(bank, soundfont, monkeypatch, tmp_path):
    # A slow generator (60 ms a bar) against a render that runs far faster than
    # real time (a fake clock): bars miss, each miss is recorded.
    use_generator(monkeypatch, delay_seconds=0.06)
    session = make_session(bank, soundfont, seed=5)
    recording = Recording.for_session(tmp_path / "rec.jsonl", session, tmp_path / "bank.toml")
    now = [0.0]
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=lambda: now[0],
                             sleep=lambda seconds: None, recording=recording)
    assert session.generation.mode is GenerationMode.REALTIME
    audio: list[np.ndarray] = []
    runner.add_sink(lambda block: audio.append(block.audio.copy()))
    script = {0: SceneUpdate(cue="calm", intensity=1.0), 2 * CALM_BAR_FRAMES: StingerTrigger("flourish"),
              CALM_BAR_FRAMES + 3000: SceneUpdate(cue="tense")}
    total = 5 * CALM_BAR_FRAMES
    while runner.frames_rendered < total:
        for frame in [f for f in script if f <= runner.frames_rendered]:
            runner.submit(script.pop(frame))
        wait = runner.run_once()
        now[0] += wait if wait > 0 else 0.0
        if wait == 0.0:
            now[0] += 256 / RATE / 20  # the render runs 20x faster than real time
    runner.stop()
    served = np.concatenate(audio)
    misses = session.generation.counters["generation_misses"]
    assert misses >= 1 and runner.stats()["generation_misses"] == misses
    session.close()

    _, _, fallbacks, end_frame = load_recording_with_fallbacks(tmp_path / "rec.jsonl")
    assert len(fallbacks) == misses and end_frame == len(served)
    assert {f.reason for f in fallbacks} == {"late"}
    replayed = replay(tmp_path / "rec.jsonl", block_frames=1000)
    assert np.array_equal(replayed, served)
    # And the misses mattered: without them the audio differs.
    lines = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    kept = [line for line in lines if line.get("type") != "generation_fallback"]
    (tmp_path / "no_misses.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    assert not np.array_equal(replay(tmp_path / "no_misses.jsonl", block_frames=1000), served)


# ---------------------------------------------------------------- bridges
def _melodic_bank(tmp_path):
    """``BANK`` with a cue whose MIDI lead plays pitch 60 + i through bar i of its 4-bar loop."""
    write_midi(tmp_path / "sung.mid", {"lead": [(bar * 4 + beat, 1.0, 60 + bar, 80)
                                                for bar in range(4) for beat in range(4)]})
    (tmp_path / "bank.toml").write_text(BANK.replace("""[[stingers]]""", """[[cues]]
name = "sung"
bpm = 90
key = "C major"
chords = ["C", "Am", "F", "G"]
loop_bars = 4
valence = 0.4
arousal = -0.3
  [[cues.layers]]
  name = "lead"
  program = 73
  source = { kind = "midi", file = "sung.mid", track = "lead" }

[[stingers]]"""))
    return load_bank(tmp_path / "bank.toml")


@pytest.mark.parametrize("request_beats, context_pitch", [
    (1.0, 61),   # asked 3 beats (2 s) before the bar line after bar 1: planned again from bar 1
    (3.75, 63),  # asked 0.17 s before it: the bridge made ahead, from the loop's last bar
])
def test_a_bridge_continues_from_the_bar_that_actually_ends_at_its_boundary(tmp_path, soundfont, monkeypatch,
                                                                             request_beats, context_pitch):
    use_generator(monkeypatch)
    session = make_session(_melodic_bank(tmp_path), soundfont)
    session.submit(0, SceneUpdate(cue="sung", intensity=1.0))
    session.submit(round(CALM_BAR_FRAMES * (1 + request_beats / 4)), SceneUpdate(cue="tense"))
    render_frames(session, 6 * CALM_BAR_FRAMES)
    [start] = [e for e in session.drain_events() if e.kind == "transition_start"]
    assert start.frame == 2 * CALM_BAR_FRAMES
    played_first = [r for _, r in stream(session, "bridge").generator.calls if r.bar_index == 0 and r.bpm == 97.5][-1]
    [context] = played_first.context
    assert set(context.pitch.tolist()) == {context_pitch}
    assert session.transitions.bridges_ahead.replanned == (1 if context_pitch != 63 else 0)
    session.close()


def test_bridge_modulates_interpolates_emotion_steps_tempo_and_lands_on_its_frame(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    session = make_session(bank, soundfont)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    session.submit(CALM_BAR_FRAMES + 100, SceneUpdate(cue="tense"))
    render_frames(session, 7 * CALM_BAR_FRAMES)
    events = session.drain_events()
    [start] = [e for e in events if e.kind == "transition_start"]
    assert start.frame == 2 * CALM_BAR_FRAMES
    calls = [request for _, request in stream(session, "bridge").generator.calls]
    firsts = [i for i, r in enumerate(calls) if r.bar_index == 0 and r.bpm == 97.5]  # calm -> tense
    assert len(firsts) == 1  # made once (ahead, while calm played), used once
    requests = calls[firsts[0] : firsts[0] + 3]
    assert [r.bar_index for r in requests] == [0, 1, 2]
    # Modulation: the last bar is the dominant of E major, in E major; a ii-V cadence.
    e_major = Key.parse("E major")
    assert requests[-1].key == e_major and requests[-1].chord.pitch_classes() == (11, 3, 6, 9)  # B7
    assert requests[-2].chord.pitch_classes() == (6, 9, 1)  # F#m, ii of E
    # Emotion: monotone from calm's point to tense's.
    valences = [0.5] + [r.valence for r in requests]
    arousals = [-0.5] + [r.arousal for r in requests]
    assert all(a > b for a, b in zip(valences, valences[1:])) and valences[-1] == pytest.approx(-0.5)
    assert all(a < b for a, b in zip(arousals, arousals[1:])) and arousals[-1] == pytest.approx(0.6)
    # Tempo: each bar faster, from 90 towards 120 bpm; the beats follow.
    bpms = [r.bpm for r in requests]
    assert 90 < bpms[0] < bpms[1] < bpms[2] < 120
    beats = [e for e in events if e.kind == "beat" and e.data["cue"] == "bridge:calm->tense"]
    assert len(beats) == 12
    spacing = np.diff([e.frame for e in beats])
    for bar, bpm in enumerate(bpms):
        expected = 60 * RATE / bpm
        assert all(abs(gap - expected) <= 1 for gap in spacing[bar * 4 : bar * 4 + 3]), bar
        assert all(e.data["bpm"] == bpm for e in beats[bar * 4 : bar * 4 + 4])
    # The incoming cue lands exactly where the bridge's bars end.
    arrival = start.frame + sum(beats_to_frames(4, bpm, RATE) for bpm in bpms)
    [change] = [e for e in events if e.kind == "cue_change" and e.data["cue"] == "tense"]
    assert change.frame == arrival
    tense_beats = [e.frame for e in events if e.kind == "beat" and e.data["cue"] == "tense"][:3]
    assert tense_beats[0] == arrival and tense_beats[1] - tense_beats[0] == 24_000
    # The last bridge bar's notes are in E major.
    last_bar = notes(session, "bridge", arrival - beats_to_frames(4, bpms[-1], RATE), arrival)
    assert last_bar and {e.pitch % 12 for e in last_bar} <= set(e_major.scale_pitch_classes())
    assert session.generation.counters["generation_misses"] == 0
    session.close()


def wait_idle(session: Session) -> None:
    assert wait_until(session.generation.idle, timeout_seconds=10), "the generation worker never became idle"


def test_a_bridge_made_ahead_is_used_without_a_miss(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    # Layers wait (as if the model kept up); bridge bars are on time only if done when taken.
    worker = GenerationWorker(deadline_policy=lambda ticket: ticket.done.is_set()
                              if ticket.stream.name == "bridge" else ticket.done.wait(10))
    session = make_session(bank, soundfont, generation=worker)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    render_frames(session, CALM_BAR_FRAMES)
    wait_idle(session)  # the bridges to tense and dark were made while calm played
    assert [r.bpm for _, r in stream(session, "bridge").generator.calls] == \
        pytest.approx([90 + 30 * i / 4 for i in (1, 2, 3)] + [90 - 20 * i / 4 for i in (1, 2, 3)])
    session.submit(session.frame + 100, SceneUpdate(cue="tense"))
    render_frames(session, 5 * CALM_BAR_FRAMES)
    assert session.generation.counters["generation_misses"] == 0
    assert notes(session, "bridge", 0, session.frame)
    session.close()


def test_a_bridge_not_ready_falls_back_and_counts_misses(bank, soundfont, monkeypatch):
    # The bridge's generator is stuck until its last bar has been taken: all
    # three bars are late (nothing was made ahead: speculative_bridges=0).
    gate = threading.Event()
    use_generator(monkeypatch, gate=gate, gated=lambda request: request.bpm not in (90.0, 120.0, 70.0))

    def policy(ticket: Ticket) -> bool:
        if ticket.stream.name != "bridge":
            return ticket.done.wait(10)
        ready = ticket.done.is_set()
        if ticket.request.bar_index == 2:
            gate.set()
        return ready

    session = make_session(bank, soundfont, generation=GenerationWorker(deadline_policy=policy),
                           speculative_bridges=0)
    try:
        session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
        session.submit(CALM_BAR_FRAMES + 100, SceneUpdate(cue="tense"))
        audio = render_frames(session, 7 * CALM_BAR_FRAMES)
    finally:
        gate.set()
    events = session.drain_events()
    [start] = [e for e in events if e.kind == "transition_start"]
    [change] = [e for e in events if e.kind == "cue_change" and e.data["cue"] == "tense"]
    fallbacks = session.generation.drain_fallbacks()
    assert [f.bar_index for f in fallbacks if f.part == "bridge"] == [0, 1, 2]
    assert {f.reason for f in fallbacks} == {"late"} and len(fallbacks) == 3
    assert session.generation.counters["generation_misses"] == 3
    assert rms(audio[start.frame : change.frame]) > 0.005  # the rule-based bridge played
    bridge_notes = notes(session, "bridge", start.frame, change.frame)
    assert bridge_notes and max(e.pitch for e in bridge_notes) < 84
    session.close()


# ---------------------------------------------------------------- stingers
def test_generated_stinger_lands_on_its_beat_in_the_current_key(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    session = make_session(bank, soundfont)
    session.submit(0, SceneUpdate(cue="tense", intensity=1.0))
    trigger = 2 * 24_000 + 5_000  # mid beat 2 of tense (120 bpm)
    session.submit(trigger, StingerTrigger("flourish"))
    render_frames(session, 8 * 24_000)
    [event] = [e for e in session.drain_events() if e.kind == "stinger"]
    assert event.frame == 3 * 24_000 and event.data["requested_frame"] == trigger
    played = notes(session, "stinger/flourish", 0, session.frame)
    assert played and min(e.frame for e in played) >= event.frame
    assert max(e.frame for e in played) < event.frame + 2 * 24_000  # two beats long
    assert {e.pitch % 12 for e in played} <= {4, 8, 11}  # E major's tonic triad
    requests = [r for _, r in stream(session, "stinger/flourish").generator.calls]
    assert requests and all(r.key == Key.parse("E major") and r.role == "melody" for r in requests)
    assert session.generation.counters["generation_misses"] == 0
    session.close()


def test_generated_stinger_falls_back_when_not_ready(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    worker = GenerationWorker(deadline_policy=lambda ticket: ticket.done.wait(10)
                              and ticket.stream.name != "stinger/flourish")
    session = make_session(bank, soundfont, generation=worker)
    session.submit(0, SceneUpdate(cue="tense", intensity=1.0))
    session.submit(24_000, StingerTrigger("flourish"))
    render_frames(session, 4 * 24_000)
    played = notes(session, "stinger/flourish", 0, session.frame)
    assert played and max(e.pitch for e in played) < 84  # the rule-based register
    assert [f.part for f in session.generation.drain_fallbacks()] == ["stinger/flourish"]
    session.close()


# ---------------------------------------------------------------- choosing the generator
def test_model_generator_is_imported_only_when_asked_for(monkeypatch):
    monkeypatch.setitem(sys.modules, "models.generate", None)  # as if models/ or torch were missing
    with pytest.raises(ConfigError) as caught:
        make_generator("model")
    assert "models.generate" in str(caught.value) and "--generator rule_based" in str(caught.value)
    with pytest.raises(ConfigError, match="unknown generator 'oracle'"):
        make_generator("oracle")
    fake = types.ModuleType("models.generate")

    class BrokenCheckpoint:
        def __init__(self, checkpoint=None, threads=1):
            raise ValueError("models/generator.pt is truncated")

    fake.ModelPartGenerator = BrokenCheckpoint
    monkeypatch.setitem(sys.modules, "models.generate", fake)
    with pytest.raises(ConfigError, match="cannot load its checkpoint .*generator.pt is truncated"):
        make_generator("model")
    code = "import sys, adaptive.session, app.cli, adaptive.realtime; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_session_generator_option_and_bank_override(bank, soundfont, monkeypatch, tmp_path):
    use_generator(monkeypatch)
    text = BANK.replace('source = { kind = "generated", role = "bass" }',
                        'source = { kind = "generated", generator = "rule_based", role = "bass" }')
    (tmp_path / "override.toml").write_text(text)
    session = make_session(load_bank(tmp_path / "override.toml"), soundfont)
    assert isinstance(stream(session, "dark/bass").generator, RuleBasedGenerator)
    assert isinstance(stream(session, "calm/arp").generator, OctaveUp)
    assert isinstance(stream(session, "bridge").generator, OctaveUp)
    session.close()
    from app.cli import build_parser

    args = build_parser().parse_args(["render", "t.toml", "-o", "x.wav", "--generator", "model"])
    assert args.generator == "model"


def test_default_bank_flourish_and_generated_bridge(soundfont):
    from adaptive.cue import DEFAULT_BANK

    bank = load_bank(DEFAULT_BANK)
    # Pinned to the rule-based generator (chord tones only, as asserted below);
    # the bank itself names no generator, so the session's plays.
    session = Session(bank, soundfont=soundfont, sample_rate_hz=RATE, generator="rule_based")
    def beat(k: int) -> int:  # explore: D major, 84 bpm
        return beats_to_frames(k, 84.0, RATE)

    session.submit(0, SceneUpdate(cue="explore", intensity=1.0))
    session.submit(beat(1) + 10, StingerTrigger("flourish"))
    session.submit(beat(5), SceneUpdate(cue="stealth"))
    render_frames(session, beat(16))
    events = session.drain_events()
    [stinger] = [e for e in events if e.kind == "stinger"]
    assert stinger.frame == beat(2)
    played = notes(session, "stinger/flourish", 0, session.frame)
    assert played and {e.pitch % 12 for e in played} <= {2, 6, 9}  # D major's tonic triad
    [start] = [e for e in events if e.kind == "transition_start"]
    assert start.frame == beat(8) and start.data["bridge"] == "generated"
    [change] = [e for e in events if e.kind == "cue_change" and e.data["cue"] == "stealth"]
    bridge_bpm = 84 + (96 - 84) / 2  # one bar, halfway from explore's tempo to stealth's
    assert change.frame == start.frame + beats_to_frames(4, bridge_bpm, RATE)
    bridge = notes(session, "bridge", start.frame, change.frame)
    assert bridge and {e.pitch % 12 for e in bridge} <= {11, 3, 6, 9}  # B7, the dominant of E minor
    assert session.generation.counters["generation_misses"] == 0
    session.close()


def test_incoming_bars_are_asked_for_once_while_a_transition_waits(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    session = make_session(bank, soundfont, speculative_bridges=0)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    for i in range(20):  # a game sending updates at 30 Hz while the transition waits for the bar line
        session.submit(1000 + i * 1600, SceneUpdate(cue="tense", intensity=0.5 + i / 40))
    render_frames(session, CALM_BAR_FRAMES - 1)
    wait_idle(session)
    asked = [request.bar_index for _, request in stream(session, "tense/arp").generator.calls]
    assert asked == [0, 1]  # primed once, for the boundary
    render_frames(session, 5 * CALM_BAR_FRAMES)
    assert session.generation.counters["generation_misses"] == 0
    session.close()


def test_bridge_chords_pivot_between_keys(bank):
    from adaptive.harmony import Chord
    from adaptive.transition import bridge_chords

    calm = bank.cue("calm")  # C major, chords C Am F G
    path = bridge_chords(calm, Key.parse("E minor"), 4)
    assert [chord for chord, _ in path] == [Chord.parse("C"), Chord.parse("C"), Chord.parse("Am"), Chord.parse("B7")]
    # C (VI of E minor) is diatonic to C major: the pivot, heard in C; then iv-V7 in E minor.
    assert [key for _, key in path] == [Key.parse("C major"), Key.parse("C major"), Key.parse("E minor"),
                                        Key.parse("E minor")]
    # No common triad between C major and F# major: a direct move to the new IV.
    path = bridge_chords(calm, Key.parse("F# major"), 3)
    assert [chord for chord, _ in path] == [Chord.parse("B"), Chord.parse("G#m"), Chord.parse("C#7")]


def test_bridges_made_ahead_follow_the_emotion_nearest_first(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    session = make_session(bank, soundfont, speculative_bridges=1)
    bridge_firsts = lambda: [r.bpm for _, r in stream(session, "bridge").generator.calls if r.bar_index == 0]  # noqa: E731
    session.submit(0, SceneUpdate(cue="calm", valence=-0.7, arousal=-0.7, intensity=1.0))  # near dark
    render_frames(session, 4096)
    wait_idle(session)
    assert bridge_firsts() == [85.0]  # calm -> dark: 90 bpm stepping towards 70
    session.submit(session.frame, SceneUpdate(cue="calm", valence=-0.6, arousal=-0.6))  # moved < 0.25: no refresh
    render_frames(session, 4096)
    session.submit(session.frame, SceneUpdate(cue="calm", valence=-0.4, arousal=0.6))  # near tense now
    render_frames(session, 4096)
    wait_idle(session)
    assert bridge_firsts() == [85.0, 97.5]  # then calm -> tense
    session.close()


def test_generated_stinger_on_a_transition_boundary_keeps_the_key_it_was_triggered_in(bank, soundfont, monkeypatch):
    use_generator(monkeypatch)
    # Stinger bars are on time only if done when taken (real time); the rest wait.
    worker = GenerationWorker(deadline_policy=lambda ticket: ticket.done.is_set()
                              if ticket.stream.name == "stinger/flourish" else ticket.done.wait(10))
    session = make_session(bank, soundfont, generation=worker, speculative_bridges=0)
    session.submit(0, SceneUpdate(cue="calm", intensity=1.0))
    render_frames(session, CALM_BAR_FRAMES - 30_000)
    wait_idle(session)  # the flourish for calm is ready
    session.submit(session.frame, SceneUpdate(cue="tense"))  # leaves calm at the bar line
    session.submit(session.frame + 10, StingerTrigger("flourish"))  # lands on that same bar line
    render_frames(session, 2 * CALM_BAR_FRAMES)
    [stinger] = [e for e in session.drain_events() if e.kind == "stinger"]
    assert stinger.frame == CALM_BAR_FRAMES
    played = notes(session, "stinger/flourish", 0, session.frame)
    assert played and {e.pitch % 12 for e in played} <= {0, 4, 7}  # C major's tonic triad: calm's key
    assert session.generation.counters["generation_misses"] == 0
    session.close()


@pytest.mark.integration  # a render thread and a generation worker, paced by a fake clock
@pytest.mark.parametrize("prefill_wait_s", [None, 0.0], ids=["waits before playback", "no wait (as before)"])
def test_a_session_starts_on_its_generated_first_bar_not_the_fallback(bank, soundfont, monkeypatch, prefill_wait_s):
    """While the first lookahead is rendered, before playback starts, a
    generated bar's take waits for the generator (up to
    ``PREFILL_GENERATION_WAIT_S``): a cue with a generated layer no longer
    starts every session on the fallback's bar 0. Without the wait it did."""
    import adaptive.realtime as realtime
    from tests.helpers import FakeClock

    if prefill_wait_s is not None:
        monkeypatch.setattr(realtime, "PREFILL_GENERATION_WAIT_S", prefill_wait_s)
    made = use_generator(monkeypatch, delay_seconds=0.3)
    session = make_session(bank, soundfont)
    clock = FakeClock(max_sleep_seconds=0.05)
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=clock, sleep=clock.sleep)
    runner.submit(SceneUpdate(cue="calm", intensity=1.0))
    runner.start()
    try:
        assert wait_until(lambda: runner.frames_rendered >= CALM_BAR_FRAMES // 2, timeout_seconds=20.0,
                          poll_seconds=0.001)
    finally:
        runner.stop()
    assert session.generation.mode is GenerationMode.REALTIME  # once playing, takes never wait
    request = next(request for _, request in made[0].calls if request.bar_index == 0)
    generated = set(made[0].generate_bar(request).pitch.tolist())      # an octave above the fallback's
    fallback = set(RuleBasedGenerator().generate_bar(request).pitch.tolist())
    played = {e.pitch for e in notes(session, "calm/arp", 0, CALM_BAR_FRAMES // 2)}
    assert played and generated != fallback
    if prefill_wait_s is None:
        assert played <= generated and session.generation.counters["generated_bars"] >= 1
    else:
        assert played <= fallback and not played <= generated
    session.close()
