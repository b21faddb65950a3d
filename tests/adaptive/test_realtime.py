"""The real-time runner and session recordings: pacing against a fake clock,
input stamping from other threads, bit-exact replay, failing sinks and bad inputs."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from adaptive.errors import ConfigError
from adaptive.offline import render_offline
from adaptive.realtime import GcPauseMonitor, OutputBlock, RealtimeSession
from adaptive.recording import Recording, load_recording, replay
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session
from tests.helpers import FakeClock, wait_until

RATE = 48_000


class Collector:
    """A sink that copies every block, as a real sink must."""

    def __init__(self) -> None:
        self.blocks: list[OutputBlock] = []
        self.audio: list[np.ndarray] = []

    def __call__(self, block: OutputBlock) -> None:
        self.blocks.append(block)
        self.audio.append(block.audio.copy())

    def joined(self) -> np.ndarray:
        return np.concatenate(self.audio) if self.audio else np.zeros((0, 2), np.float32)

    def events(self, kind: str) -> list:
        return [event for block in self.blocks for event in block.events if event.kind == kind]


def make_session(tone_bank, soundfont, **kwargs) -> Session:
    return Session(tone_bank(), soundfont=soundfont, sample_rate_hz=RATE, seed=7, **kwargs)


def test_lookahead_is_bounded_and_underruns_are_counted(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=clock, sleep=clock.sleep)
    runner.submit(SceneUpdate(emotion="calm", intensity=0.5))
    lookahead = runner.lookahead_frames
    assert lookahead == 1920
    rng = np.random.default_rng(1)
    for _ in range(400):
        clock.advance(float(rng.uniform(0.0, 0.004)))
        while (wait := runner.run_once()) == 0.0:
            pass
        assert 0.0 < wait <= 256 / RATE + 1e-9  # until the next block is due, no longer
        playback = runner.playback_frame()
        assert playback + lookahead <= runner.frames_rendered < playback + lookahead + 256
    assert runner.counters["underruns"] == 0
    assert runner.counters["late_frames"] == 0
    assert runner.counters["blocks"] == runner.frames_rendered // 256

    # The clock jumps 100 ms ahead of what was rendered: one underrun, caught up.
    behind = runner.frames_rendered
    clock.advance((lookahead + 4800) / RATE)
    late_expected = runner.playback_frame() - behind
    while runner.run_once() == 0.0:
        pass
    assert runner.counters["underruns"] == 1
    assert runner.counters["late_frames"] >= late_expected
    playback = runner.playback_frame()
    assert playback + lookahead <= runner.frames_rendered < playback + lookahead + 256
    clock.advance(1.0)
    while runner.run_once() == 0.0:
        pass
    assert runner.counters["underruns"] == 2
    session.close()


def test_slow_blocks_and_late_wake_ups_are_measured_as_stalls(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=clock, sleep=clock.sleep)
    slow = {"seconds": 0.0}
    runner.add_sink(lambda block: clock.advance(slow["seconds"]))  # a sink that takes time
    while runner.run_once() == 0.0:
        pass
    assert runner.max_block_ms < 1.0 and not runner.stalls

    slow["seconds"] = 0.030  # one block taking 30 ms
    clock.advance(0.006)
    assert runner.run_once() == 0.0
    assert runner.max_block_ms == pytest.approx(30.0)
    assert runner.stalls[-1][1] == pytest.approx(30.0)
    slow["seconds"] = 0.0
    while (wait := runner.run_once()) == 0.0:
        pass

    clock.advance(wait + 0.025)  # the thread wakes 25 ms after it asked to
    runner.run_once()
    assert runner.max_wake_delay_ms == pytest.approx(25.0)
    assert runner.stalls[-1][2] == pytest.approx(25.0)
    assert runner.stats()["max_wake_delay_ms"] == pytest.approx(25.0)
    session.close()


def test_gc_pause_monitor_measures_collections():
    monitor = GcPauseMonitor()
    monitor.install()
    monitor.install()  # idempotent
    try:
        garbage = [[index] for index in range(200_000)]
        for item in garbage:
            item.append(item)  # cycles: only the collector frees them
        del garbage
        gc.collect()
    finally:
        monitor.remove()
    assert monitor.collections[2] >= 1
    assert monitor.max_pause_ms > 0.0 and monitor.max_pause_generation in (0, 1, 2)
    count = list(monitor.collections)
    gc.collect()  # removed: no longer counted
    assert monitor.collections == count


@pytest.mark.integration
def test_render_thread_keeps_pace_with_a_fake_clock(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    violations: list[tuple[int, int]] = []

    def sleep(seconds: float) -> None:
        # Called on the render thread when it has caught up.
        rendered, playback = runner.frames_rendered, runner.playback_frame()
        if not playback + runner.lookahead_frames <= rendered < playback + runner.lookahead_frames + 256:
            violations.append((playback, rendered))
        clock.sleep(seconds)

    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=clock, sleep=sleep)
    runner.submit(SceneUpdate(emotion="calm"))
    runner.start()
    try:
        thread = next(t for t in threading.enumerate() if t.name == "adaptive-render")
        assert not thread.daemon
        assert wait_until(lambda: runner.frames_rendered >= 2 * RATE, timeout_seconds=20.0, poll_seconds=0.001)
    finally:
        runner.stop()
    assert not runner.running and runner.failure is None
    assert violations == []
    assert clock.sleeps > 0
    assert runner.counters["underruns"] == 0
    session.close()


@pytest.mark.integration
def test_inputs_from_another_thread_are_stamped_recorded_and_replay_bit_for_bit(tone_bank, soundfont, tmp_path):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    path = tmp_path / "session.jsonl"
    recording = Recording.for_session(path, session, tmp_path / "bank.toml")
    script = [
        (0, SceneUpdate(emotion="calm", intensity=0.2)),
        (20_000, SceneUpdate(intensity=0.9)),
        (50_000, StingerTrigger("hit")),
        (70_000, SceneUpdate(emotion="angry")),  # -> the "high" cue on low's next bar (96 000)
        (100_000, SceneUpdate(valence=0.8, arousal=0.8, intensity=1)),  # -> "keys" (MIDI) on high's next bar
        (130_000, StingerTrigger("hit")),
        (260_000, SceneUpdate(cue="low", location="cave")),
    ]
    submitted = [threading.Event() for _ in script]
    next_input = [0]

    def sleep(seconds: float) -> None:
        # The fake clock races ahead of real time: when the game is due to send
        # its next input, hold the (fake) time until it has, so the test is
        # deterministic. The input still crosses threads through the inbox.
        i = next_input[0]
        if i < len(script) and runner.frames_rendered >= script[i][0]:
            assert submitted[i].wait(10)
            next_input[0] += 1
        clock.sleep(seconds)

    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, clock=clock, sleep=sleep,
                             recording=recording)
    sink = Collector()
    runner.add_sink(sink)

    def game() -> None:
        for (at_frame, item), done in zip(script, submitted):
            assert wait_until(lambda: runner.frames_rendered >= at_frame, timeout_seconds=20.0, poll_seconds=0.001)
            runner.submit(item)
            done.set()

    runner.start()
    player = threading.Thread(target=game)
    player.start()
    try:
        player.join(20)
        assert wait_until(lambda: runner.counters["inputs"] == len(script), timeout_seconds=20.0, poll_seconds=0.001)
        assert wait_until(lambda: runner.frames_rendered >= 320_000, timeout_seconds=20.0, poll_seconds=0.001)
    finally:
        runner.stop()
    assert runner.failure is None
    assert runner.counters["inputs"] == len(script) and runner.counters["rejected_inputs"] == 0

    header, inputs, end_frame = load_recording(path)
    assert header.sample_rate_hz == RATE and header.seed == 7
    assert Path(header.bank) == (tmp_path / "bank.toml").resolve()
    assert [item for _, item in inputs] == [item for _, item in script]
    assert end_frame == runner.frames_rendered
    frames = [frame for frame, _ in inputs]
    assert frames == sorted(frames)
    for (frame, _), (at_frame, _) in zip(inputs, script):
        assert frame >= at_frame  # stamped when it arrived, never in the past
    # Each input took effect at the frame it was stamped with.
    scene_frames = [event.frame for event in sink.events("scene")]
    assert scene_frames == [frame for frame, item in inputs if isinstance(item, SceneUpdate)]
    stingers = sink.events("stinger")
    assert [event.data["requested_frame"] for event in stingers] == \
        [frame for frame, item in inputs if isinstance(item, StingerTrigger)]
    assert {event.data["cue"] for event in sink.events("cue_change")} >= {"low", "high", "keys"}
    assert any(block.midi for block in sink.blocks)

    served = sink.joined()
    assert served.shape == (end_frame, 2)
    assert [block.sequence for block in sink.blocks] == list(range(len(sink.blocks)))
    assert [block.first_frame for block in sink.blocks] == list(range(0, end_frame, 256))
    assert all(block.server_time_seconds == block.first_frame / RATE for block in sink.blocks)
    assert np.abs(served).max() > 0.05

    replayed = replay(path, tmp_path / "replay.wav", block_frames=1000)
    assert replayed.dtype == np.float32
    assert np.array_equal(replayed, served)
    assert (tmp_path / "replay.wav").is_file()
    session.close()


def test_failing_sink_is_removed_and_the_music_goes_on(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, clock=clock, sleep=clock.sleep)
    good = Collector()
    calls = []

    def bad(block: OutputBlock) -> None:
        calls.append(block.sequence)
        if block.sequence == 3:
            raise RuntimeError("client went away")

    runner.add_sink(bad)
    runner.add_sink(good)
    runner.submit(SceneUpdate(emotion="calm"))
    for _ in range(20):
        clock.advance(0.01)
        while runner.run_once() == 0.0:
            pass
    assert calls == [0, 1, 2, 3]
    assert runner.counters["sink_drops"] == 1
    assert [block.sequence for block in good.blocks] == list(range(runner.counters["blocks"]))
    assert runner.counters["blocks"] > 10
    assert np.abs(good.joined()[-4800:]).max() > 0.05
    session.close()


def test_bad_input_is_counted_reported_and_not_recorded(tone_bank, soundfont, tmp_path):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    path = tmp_path / "session.jsonl"
    recording = Recording.for_session(path, session, tmp_path / "bank.toml")
    runner = RealtimeSession(session, clock=clock, sleep=clock.sleep, recording=recording)
    sink = Collector()
    runner.add_sink(sink)
    runner.submit(SceneUpdate(emotion="calm"))
    runner.run_once()
    clock.advance(0.1)
    while runner.run_once() == 0.0:
        pass
    bad_frame = runner.frames_rendered
    runner.submit(SceneUpdate(emotion="nonsense"))
    runner.submit(StingerTrigger("nope"))
    runner.submit(SceneUpdate(intensity=0.9))
    for _ in range(10):
        clock.advance(0.01)
        while runner.run_once() == 0.0:
            pass
    runner.stop()
    assert runner.counters["rejected_inputs"] == 2
    assert runner.counters["inputs"] == 2
    errors = sink.events("error")
    assert [event.frame for event in errors] == [bad_frame, bad_frame]
    assert "nonsense" in errors[0].data["message"] and errors[0].data["input"] == "scene"
    assert "nope" in errors[1].data["message"] and errors[1].data["input"] == "stinger"
    assert [event.frame for event in sink.events("scene")] == [0, bad_frame]
    assert np.abs(sink.joined()[-4800:]).max() > 0.05
    _, inputs, end_frame = load_recording(path)
    assert inputs == [(0, SceneUpdate(emotion="calm")), (bad_frame, SceneUpdate(intensity=0.9))]
    assert end_frame == runner.frames_rendered
    assert np.array_equal(replay(path), sink.joined())
    session.close()


def test_midi_events_are_trimmed_without_losing_any(tone_bank, soundfont):
    clock = FakeClock(max_sleep_seconds=0.05)
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, clock=clock, sleep=clock.sleep, midi_trim_threshold=5)
    sink = Collector()
    runner.add_sink(sink)
    runner.submit(SceneUpdate(cue="keys"))
    for _ in range(1000):
        clock.advance(0.01)
        while runner.run_once() == 0.0:
            pass
    seen = [note for block in sink.blocks for note in block.midi]
    assert len(seen) > 20
    assert len(session.midi_events) <= 5 + 10  # trimmed (a block adds a few)
    reference = make_session(tone_bank, soundfont)
    render_offline(reference, session.frame, [(0, SceneUpdate(cue="keys"))])
    assert seen == reference.midi_events
    session.close()
    reference.close()


@pytest.mark.integration
def test_real_clock_blocks_keep_coming(tone_bank, soundfont):
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0)
    sink = Collector()
    runner.add_sink(sink)
    runner.submit(SceneUpdate(emotion="calm"))
    runner.start()
    time.sleep(0.5)
    runner.stop()
    assert runner.failure is None and not runner.running
    sequences = [block.sequence for block in sink.blocks]
    assert sequences == list(range(len(sequences)))
    assert len(sequences) >= 40  # ~0.54 s of audio is 100 blocks; leave room for a loaded CI machine
    assert runner.frames_rendered <= runner.playback_frame() + runner.lookahead_frames + 256
    session.close()


# ---------------------------------------------------------------- recording files
def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


HEADER = {"format": "adaptive-recording", "version": 2, "bank": "/x/bank.toml", "soundfont": None,
          "sample_rate_hz": 48000, "seed": 0, "generator": "rule_based", "bars_ahead": 1, "speculative_bridges": 2}
HEADER_V1 = {"format": "adaptive-recording", "version": 1, "bank": "/x/bank.toml", "soundfont": None,
             "sample_rate_hz": 48000, "seed": 0}


def test_recording_round_trip(tmp_path):
    path = tmp_path / "r.jsonl"
    recording = Recording(path, bank="bank.toml", soundfont=None, sample_rate_hz=44100, seed=3)
    recording.write_input(0, SceneUpdate(emotion="calm", intensity=0.25))
    recording.write_input(480, StingerTrigger("hit"))
    recording.write_input(480, SceneUpdate(valence=-0.5, arousal=1, location="cave", cue=""))
    recording.close(9600)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {**HEADER, "version": 4, "bank": str((Path.cwd() / "bank.toml").resolve()),
                        "sample_rate_hz": 44100, "seed": 3}  # HEADER (version 2) files are still read
    assert lines[2] == {"frame": 480, "type": "stinger", "name": "hit"}
    assert lines[-1] == {"type": "end", "frame": 9600}
    header, inputs, end_frame = load_recording(path)
    assert (header.sample_rate_hz, header.seed, header.soundfont) == (44100, 3, None)
    assert inputs == [(0, SceneUpdate(emotion="calm", intensity=0.25)), (480, StingerTrigger("hit")),
                      (480, SceneUpdate(valence=-0.5, arousal=1, location="cave", cue=""))]
    assert end_frame == 9600


def test_recording_keeps_generation_fallbacks_and_reads_version_1(tmp_path):
    from adaptive.generation import GenerationFallback
    from adaptive.recording import load_recording_with_fallbacks

    path = tmp_path / "r.jsonl"
    recording = Recording(path, bank="bank.toml", soundfont=None, sample_rate_hz=48000, seed=0, generator="model",
                          bars_ahead=2, speculative_bridges=0)
    recording.write_input(0, StingerTrigger("hit"))
    fallback = GenerationFallback(96000, "explore/arpeggio", 3, 2, "late")
    recording.write_fallback(fallback)
    recording.close(192000)
    header, inputs, fallbacks, end_frame = load_recording_with_fallbacks(path)
    assert (header.generator, header.bars_ahead, header.speculative_bridges) == ("model", 2, 0)
    assert inputs == [(0, StingerTrigger("hit"))] and fallbacks == [fallback] and end_frame == 192000
    assert load_recording(path)[1] == inputs  # the plain loader leaves fallbacks out
    old = write_lines(tmp_path / "v1.jsonl", [HEADER_V1, {"frame": 0, "type": "stinger", "name": "hit"},
                                             {"type": "end", "frame": 10}])
    header, inputs, fallbacks, end_frame = load_recording_with_fallbacks(old)
    assert (header.generator, header.bars_ahead, fallbacks) == ("rule_based", 1, [])


@pytest.mark.parametrize("lines, expected", [
    ([], "line 1: empty file"),
    (["{not json"], "line 1: not valid JSON"),
    ([{**HEADER, "format": "other"}, {"type": "end", "frame": 0}], "line 1: format 'other'"),
    ([{**HEADER, "version": 5}, {"type": "end", "frame": 0}], "line 1: version 5 is not supported"),
    ([{**HEADER, "generator": "oracle"}, {"type": "end", "frame": 0}], "line 1: generator 'oracle' is not known"),
    ([{**HEADER, "bars_ahead": 0}, {"type": "end", "frame": 0}], "line 1: bars_ahead 0 is out of range"),
    ([HEADER, {"frame": 0, "type": "generation_fallback", "part": "a/b", "request": -1, "bar_index": 0,
               "reason": "late"}, {"type": "end", "frame": 0}], "line 2: generation_fallback needs part"),
    ([HEADER, {"frame": 0, "type": "generation_fallback", "part": "a/b"}, {"type": "end", "frame": 0}],
     "line 2: a generation_fallback line has exactly the fields"),
    ([{**HEADER, "sample_rate_hz": 5}, {"type": "end", "frame": 0}], "line 1: sample_rate_hz 5 is out of range"),
    ([HEADER, {"frame": -1, "type": "stinger", "name": "hit"}, {"type": "end", "frame": 0}],
     "line 2: frame -1 must be an integer >= 0"),
    ([HEADER, {"frame": 10, "type": "stinger", "name": "hit"}, {"frame": 5, "type": "stinger", "name": "hit"},
      {"type": "end", "frame": 20}], "line 3: frame 5 is before the previous line's frame 10"),
    ([HEADER, {"frame": 0, "type": "jump"}, {"type": "end", "frame": 0}], "line 2: type 'jump' is not allowed"),
    ([HEADER, {"frame": 0, "type": "scene", "mood": "x"}, {"type": "end", "frame": 0}],
     "line 2: unknown field 'mood'"),
    ([HEADER, {"frame": 0, "type": "scene", "intensity": "high"}, {"type": "end", "frame": 0}],
     "line 2: intensity 'high' must be a number"),
    ([HEADER, {"type": "end", "frame": 5}, {"frame": 6, "type": "stinger", "name": "hit"}],
     "line 3: a line after the end line"),
    ([HEADER, {"frame": 0, "type": "stinger"}, "[1]", {"type": "end", "frame": 0}],
     "line 3: expected a JSON object"),
])
def test_malformed_recordings_are_named_by_line(tmp_path, lines, expected):
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError) as caught:
        load_recording(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid session recording")
    assert expected in message


def test_missing_recording_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the session recording"):
        load_recording(tmp_path / "missing.jsonl")


@pytest.mark.integration
def test_the_render_thread_asks_for_real_time_priority_and_goes_on_without_it(tone_bank, soundfont, monkeypatch):
    import os

    from adaptive import realtime

    asked = []

    def refuse(pid, policy, param):
        asked.append((pid, policy, param.sched_priority))
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    monkeypatch.setattr(os, "SCHED_FIFO", 1, raising=False)
    monkeypatch.setattr(os, "sched_param", lambda priority: type("P", (), {"sched_priority": priority})(),
                        raising=False)
    session = make_session(tone_bank, soundfont)
    runner = RealtimeSession(session, block_frames=256, lookahead_ms=40.0, thread_priority=12)
    collector = Collector()
    runner.add_sink(collector)
    runner.start()
    try:
        assert wait_until(lambda: len(collector.blocks) >= 20, timeout_seconds=20.0, poll_seconds=0.001)  # refused, yet the music plays
    finally:
        runner.stop()
        session.close()
    assert asked == [(0, 1, 12)]
    assert runner.priority_problem == "Operation not permitted"
    assert realtime.raise_thread_priority(0) == "priority 0 is out of range (allowed: 1..99)"
    with pytest.raises(ValueError, match="thread_priority 100 is out of range"):
        RealtimeSession(make_session(tone_bank, soundfont), thread_priority=100)


RENDER_PATH_IMPORTS_SCRIPT = r"""
import json, sys, threading
from app.cli import _bank_and_mapping
from adaptive.generation import GenerationMode
from adaptive.registry import GENERATORS
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session

class Stuck:
    # A generator that never finishes: every generated bar, bridge and stinger
    # misses, and the rule-based fallback is made on the render thread. (It never
    # runs the fallback's code itself, so it cannot import anything for it.)
    name = "stuck"
    def generate_bar(self, request):
        threading.Event().wait()

GENERATORS["stuck"] = Stuck
render_thread = threading.current_thread()
imported = []

class Watch:
    # Sees every import the import system resolves (a first import of a module).
    def find_spec(self, name, path=None, target=None):
        if threading.current_thread() is render_thread and watching:
            imported.append(name)
        return None

watching = False
sys.meta_path.insert(0, Watch())
bank, mapping = _bank_and_mapping(None, None)  # the default bank and mapping, as `adaptive serve` loads them
session = Session(bank, generator="stuck", mapping=mapping, seed=3)
session.generation.mode = GenerationMode.REALTIME  # as the real-time runner sets it
script = {0: SceneUpdate(emotion="calm", intensity=0.4, location="forest"),
          48_000 * 4: SceneUpdate(emotion="tense", intensity=0.9),
          48_000 * 6: StingerTrigger("flourish"),
          48_000 * 9: SceneUpdate(emotion="triumphant", intensity=1.0),
          48_000 * 14: SceneUpdate(emotion="sorrowful", intensity=0.2)}
cues = []
watching = True
while session.frame < 48_000 * 20:
    for frame in [f for f in script if f <= session.frame]:
        session.submit(session.frame, script.pop(frame))
    session.render(1024)
    cues += [e.data["cue"] for e in session.drain_events() if e.kind == "cue_change"]
watching = False
print(json.dumps({"imported": imported, "misses": session.generation.counters["generation_misses"], "cues": cues}))
"""


def test_the_render_path_imports_nothing():
    # A module imported on the render thread reads files while it renders: numpy 2
    # imports numpy.random on first use, and the first fallback bar of a session
    # took 7 ms doing so. In a fresh interpreter, a session on the default bank
    # plays cue changes, transitions, a stinger and fallback bars (its generator
    # never finishes), and no module is imported while it renders.
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", RENDER_PATH_IMPORTS_SCRIPT], cwd=repo, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["misses"] >= 5  # the fallbacks were made on the render thread
    assert len(report["cues"]) >= 3, report["cues"]  # the first cue and changes to others
    assert report["imported"] == [], report["imported"]
