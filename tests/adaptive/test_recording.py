"""Session recordings cut by a crash: no end line, perhaps a torn last line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from adaptive.errors import ConfigError
from adaptive.realtime import RealtimeSession
from adaptive.recording import Recording, load_recording, replay
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.session import Session
from tests.adaptive.test_realtime import HEADER, Collector, write_lines
from tests.helpers import FakeClock, wait_until

RATE = 48_000


def _serve_then_crash(tone_bank, soundfont, tmp_path):
    """Serve with a fake clock and a recording, then copy the recording as a
    SIGKILL would leave it (every flushed line, no end line). Returns the
    copy's path, the served audio and the inputs' frames."""
    clock = FakeClock(max_sleep_seconds=0.05)
    session = Session(tone_bank(), soundfont=soundfont, sample_rate_hz=RATE, seed=7)
    path = tmp_path / "live.jsonl"
    recording = Recording.for_session(path, session, tmp_path / "bank.toml")
    runner = RealtimeSession(session, block_frames=256, clock=clock, sleep=clock.sleep, recording=recording)
    sink = Collector()
    runner.add_sink(sink)
    script = [SceneUpdate(emotion="calm", intensity=0.4), SceneUpdate(intensity=0.9), StingerTrigger("hit"),
              SceneUpdate(emotion="tense")]
    for item in script:
        runner.submit(item)
        for _ in range(30):
            clock.advance(0.01)
            while runner.run_once() == 0.0:
                pass
    assert wait_until(lambda: recording.inputs_written == len(script) and
                      len(path.read_text().splitlines()) == 1 + len(script), timeout_seconds=10.0)
    crashed = tmp_path / "crashed.jsonl"
    shutil.copyfile(path, crashed)  # what is on disk while the server still runs: flushed, no end line
    runner.stop()
    session.close()
    frames = [json.loads(line)["frame"] for line in crashed.read_text().splitlines()[1:]]
    return crashed, sink.joined(), frames


def test_a_recording_cut_by_a_crash_replays_to_its_last_input_and_says_so(tone_bank, soundfont, tmp_path):
    crashed, served, frames = _serve_then_crash(tone_bank, soundfont, tmp_path)
    assert "end" not in crashed.read_text()
    notes: list[str] = []
    replayed = replay(crashed, notes=notes)
    assert len(replayed) == frames[-1] > 0
    assert np.array_equal(replayed, served[: frames[-1]])  # bit for bit up to the last input
    assert len(notes) == 1 and "no end line" in notes[0] and f"frame {frames[-1]}" in notes[0]

    torn = tmp_path / "torn.jsonl"
    text = crashed.read_text()
    torn.write_text(text + '{"frame": 999999999, "type": "scene", "emo')  # the crash cut this write
    notes = []
    assert np.array_equal(replay(torn, notes=notes), replayed)
    assert "cut by the crash" in notes[0] and "left out" in notes[0]

    # A multi-byte character cut in half is a torn line too.
    torn_bytes = tmp_path / "torn_bytes.jsonl"
    torn_bytes.write_bytes(text.encode() + '{"frame": 1, "type": "stinger", "name": "h\u00e9'.encode()[:-1])
    notes = []
    assert load_recording(torn_bytes, notes)[2] == frames[-1]
    assert "not valid UTF-8" in notes[0]


def test_only_the_last_line_may_be_torn(tmp_path):
    stinger = {"frame": 10, "type": "stinger", "name": "hit"}
    middle = write_lines(tmp_path / "middle.jsonl", [HEADER, '{"frame": 5, "ty', stinger])
    with pytest.raises(ConfigError, match="line 2: not valid JSON"):
        load_recording(middle)
    after_end = write_lines(tmp_path / "after_end.jsonl", [HEADER, stinger, {"type": "end", "frame": 20}, "{oops"])
    with pytest.raises(ConfigError, match="line 4: not valid JSON"):
        load_recording(after_end)
    header_only = write_lines(tmp_path / "header.jsonl", [HEADER])
    notes: list[str] = []
    assert load_recording(header_only, notes)[1:] == ([], 0)
    assert "replaying to frame 0" in notes[0]
    torn_header = tmp_path / "torn_header.jsonl"
    torn_header.write_text('{"format": "adaptive-rec')
    with pytest.raises(ConfigError, match="line 1: not valid JSON"):
        load_recording(torn_header)
