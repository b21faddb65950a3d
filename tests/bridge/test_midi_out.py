"""MIDI out: the Standard MIDI File recorder and the virtual MIDI port."""

from __future__ import annotations

import sys
import types

import threading
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from adaptive.errors import AdaptiveError
from adaptive.realtime import OutputBlock, RealtimeSession
from adaptive.scene import SceneUpdate, StingerTrigger
from adaptive.events import MidiNoteEvent, PartInfo
from adaptive.session import Session
from adaptive.voice import NOTE_OFF, NOTE_ON
from bridge import midi_out
from tests.helpers import FakeClock, wait_until
from bridge.midi_out import MidiFileRecorder, VirtualMidiPort, open_virtual_output


RATE = 48_000
BLOCK = 256


class FakeSession:
    def __init__(self, parts, tempo_changes, sample_rate_hz=RATE) -> None:
        self.parts = parts
        self.tempo_changes = tempo_changes
        self.sample_rate_hz = sample_rate_hz


def blocks_of(events: list[MidiNoteEvent], total_frames: int, block_frames: int = BLOCK):
    """Fake OutputBlocks carrying ``events`` in the block of their frame."""
    audio = np.zeros((block_frames, 2), np.float32)
    for sequence, first in enumerate(range(0, total_frames, block_frames)):
        midi = [e for e in events if first <= e.frame < first + block_frames]
        yield OutputBlock(sequence, first, audio, [], midi, first / RATE)


def notes_read_back(path: Path) -> list[tuple[float, str, int, int, int]]:
    """(seconds, kind, channel, pitch, velocity) of every note message, via mido's tempo-aware playback times."""
    out = []
    now = 0.0
    for message in mido.MidiFile(str(path)):
        now += message.time
        if message.type in ("note_on", "note_off"):
            kind = "on" if message.type == "note_on" and message.velocity > 0 else "off"
            out.append((now, kind, message.channel, message.note, message.velocity))
    return out


def assert_no_hanging_notes(notes) -> None:
    held: dict[tuple[int, int], int] = {}
    for _, kind, channel, pitch, _ in notes:
        held[(channel, pitch)] = held.get((channel, pitch), 0) + (1 if kind == "on" else -1)
        assert held[(channel, pitch)] >= 0, f"note-off without note-on on {channel}/{pitch}"
    assert all(count == 0 for count in held.values()), f"hanging notes: {held}"


def test_recorder_file_matches_events_in_time(tmp_path):
    rng = np.random.default_rng(3)
    parts = {"a/piano": PartInfo(0, False), "a/drums": PartInfo(0, True), "stinger/hit": PartInfo(56, False)}
    # tempo changes at frames 0, 1.5 s, 3.7 s (bpm and meter change)
    tempo_changes = [(0, 120.0, 4), (72_000, 90.0, 3), (177_600, 173.0, 4)]
    events = []
    for part in parts:
        for start in sorted(rng.integers(0, 5 * RATE, 30)):
            pitch = int(rng.integers(36, 90))
            events.append(MidiNoteEvent(int(start), part, NOTE_ON, pitch, int(rng.integers(1, 128))))
            events.append(MidiNoteEvent(int(start + rng.integers(100, 20_000)), part, NOTE_OFF, pitch, 0))
    held = MidiNoteEvent(5 * RATE + 100, "a/piano", NOTE_ON, 60, 99)  # still held at the end
    events.append(held)
    total = 5 * RATE + 20_000
    events = [e for e in events if e.frame < total]

    recorder = MidiFileRecorder()
    for block in blocks_of(events, total):
        recorder.on_block(block)
    assert recorder.end_frame >= total
    assert sorted(recorder.events, key=id) == sorted(events, key=id)
    path = tmp_path / "session.mid"
    recorder.close(path, FakeSession(parts, tempo_changes))

    read = notes_read_back(path)
    assert_no_hanging_notes(read)
    # paired by (pitch, velocity) first, then time: notes closer than 1 ms may swap order
    ons = sorted((pitch, velocity, t) for t, kind, _, pitch, velocity in read if kind == "on")
    expected = sorted((e.pitch, e.velocity, e.frame / RATE) for e in events if e.kind == NOTE_ON)
    assert len(ons) == len(expected)
    for (pitch, velocity, t), (pitch_ref, velocity_ref, t_ref) in zip(ons, expected):
        assert (pitch, velocity) == (pitch_ref, velocity_ref)
        assert abs(t - t_ref) < 0.001
    offs = sorted((pitch, t) for t, kind, _, pitch, _ in read if kind == "off")
    expected_offs = sorted([(e.pitch, e.frame / RATE) for e in events if e.kind == NOTE_OFF]
                           + [(60, recorder.end_frame / RATE)])
    assert len(offs) == len(expected_offs)
    for (pitch, t), (pitch_ref, t_ref) in zip(offs, expected_offs):
        assert pitch == pitch_ref and abs(t - t_ref) < 0.001
    channels = {channel for _, _, channel, _, _ in read}
    assert 9 in channels  # percussion
    programs = [m.program for m in mido.MidiFile(str(path)) if m.type == "program_change"]
    assert 56 in programs


def test_recorder_close_without_path_writes_nothing(tmp_path):
    recorder = MidiFileRecorder()
    recorder.close(None, FakeSession({}, []))
    assert list(tmp_path.iterdir()) == []


def test_recorder_unwritable_path_is_a_clear_error(tmp_path):
    recorder = MidiFileRecorder()
    with pytest.raises(AdaptiveError, match="cannot write the MIDI file"):
        recorder.close(tmp_path / "missing-dir" / "x.mid", FakeSession({}, [(0, 120.0, 4)]))


def test_recorder_with_a_real_session_keeps_every_note_despite_trimming(tmp_path, tone_bank, soundfont):  # noqa: F811
    clock = FakeClock()
    session = Session(tone_bank(), soundfont=soundfont, sample_rate_hz=RATE, seed=7)
    runner = RealtimeSession(session, block_frames=BLOCK, clock=clock, sleep=clock.sleep, midi_trim_threshold=5)
    recorder = MidiFileRecorder()
    runner.add_sink(recorder.on_block)
    runner.submit(SceneUpdate(cue="keys"))
    for step in range(600):
        if step == 300:
            runner.submit(StingerTrigger("hit"))
        clock.advance(0.01)
        while runner.run_once() == 0.0:
            pass
    runner.stop()
    assert len(session.midi_events) < 20  # the runner trimmed its log...
    events = recorder.events
    assert len(events) > 20  # ...the recorder did not
    assert runner.counters["sink_drops"] == 0
    path = tmp_path / "real.mid"
    recorder.close(path, session, end_frame=session.frame)
    session.close()

    read = notes_read_back(path)
    assert_no_hanging_notes(read)
    ons = sorted((t, pitch) for t, kind, _, pitch, _ in read if kind == "on")
    expected = sorted((e.frame / RATE, e.pitch) for e in events if e.kind == NOTE_ON)
    assert [p for _, p in ons] == [p for _, p in expected]
    assert max(abs(a[0] - b[0]) for a, b in zip(ons, expected)) < 0.001
    assert {"keys/piano", "stinger/hit"} <= {t.name for t in mido.MidiFile(str(path)).tracks}


# ---------------------------------------------------------------------------- virtual port


class FakePort:
    def __init__(self, clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, mido.Message]] = []
        self.closed = False
        self.lock = threading.Lock()

    def send(self, message) -> None:
        with self.lock:
            self.sent.append((self.clock(), message))

    def close(self) -> None:
        self.closed = True


@pytest.mark.integration
def test_virtual_port_sends_in_time_with_channels_and_programs():
    t0 = time.monotonic()

    def server_time() -> float:
        return time.monotonic() - t0

    port = FakePort(server_time)
    parts = {"c/bass": PartInfo(33, False), "c/drums": PartInfo(0, True), "c/keys": PartInfo(4, False)}
    out = VirtualMidiPort(parts, RATE, server_time, open_port=lambda name: port)
    try:
        events = []
        for i in range(8):
            frame = int((0.05 + 0.03 * i) * RATE)
            part = list(parts)[i % 3]
            events.append(MidiNoteEvent(frame, part, NOTE_ON, 40 + i, 100))
            events.append(MidiNoteEvent(frame + 2400, part, NOTE_OFF, 40 + i, 0))
        events.append(MidiNoteEvent(int(0.4 * RATE), "c/bass", NOTE_ON, 30, 90))  # held at close
        # blocks arrive ~40 ms ahead of their time, as the runner's lookahead does
        for block in blocks_of(events, int(0.45 * RATE)):
            while server_time() < block.server_time_seconds - 0.04:
                time.sleep(0.001)
            out.on_block(block)
        wait_until(lambda: out.counters["sent"] >= 2 * 8 + 2 + 1, timeout_seconds=5)
    finally:
        out.close()
    assert port.closed
    assert out.counters["dropped"] == 0 and out.counters["send_errors"] == 0
    notes = [(t, m) for t, m in port.sent if m.type in ("note_on", "note_off")]
    by_key = {}
    for e in events:
        by_key.setdefault((e.pitch, "note_on" if e.kind == NOTE_ON else "note_off"), e)
    lateness = []
    for t, m in notes[:-1]:  # the last one is the note-off sent at close
        e = by_key[(m.note, m.type)]
        lateness.append(t - e.frame / RATE)
        assert m.channel == out._channels.channel(e.part)
    assert min(lateness) >= -0.0005, "a note went out early"
    assert sorted(lateness)[len(lateness) // 2] < 0.005  # median well within a few ms
    assert max(lateness) < 0.05  # even on a loaded CI machine
    assert notes[-1][1].type == "note_off" and notes[-1][1].note == 30  # no hanging note after close
    channel_of = {p: out._channels.channel(p) for p in parts}
    assert channel_of["c/drums"] == 9
    programs = {m.channel: m.program for _, m in port.sent if m.type == "program_change"}
    assert programs == {channel_of["c/bass"]: 33, channel_of["c/keys"]: 4}  # none on the drum channel
    # a program change precedes the first note of its channel
    first_note = {}
    for index, (_, m) in enumerate(port.sent):
        if m.type == "note_on":
            first_note.setdefault(m.channel, index)
    for index, (_, m) in enumerate(port.sent):
        if m.type == "program_change":
            assert index < first_note[m.channel]


@pytest.mark.integration
def test_virtual_port_on_block_drops_when_full_and_never_blocks():
    port = FakePort(lambda: 0.0)
    out = VirtualMidiPort({}, RATE, lambda: 0.0, max_pending_blocks=3, open_port=lambda name: port)
    try:
        far = [MidiNoteEvent(RATE * 1000, "x", NOTE_ON, 60, 100)]  # due in 1000 s: nothing gets sent
        audio = np.zeros((BLOCK, 2), np.float32)
        start = time.perf_counter()
        for sequence in range(10):
            out.on_block(OutputBlock(sequence, 0, audio, [], list(far), 0.0))
        assert time.perf_counter() - start < 0.05
        time.sleep(0.01)
        # the sender holds one block (waiting for its time), the queue holds up to 3
        assert out.counters["dropped"] in (6, 7)
    finally:
        start = time.perf_counter()
        out.close()
        assert time.perf_counter() - start < 0.5  # close does not wait for far notes
    assert [m for _, m in port.sent] == []


def test_missing_rtmidi_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "rtmidi", None)  # import rtmidi -> ImportError
    with pytest.raises(AdaptiveError, match="install python-rtmidi"):
        open_virtual_output()
    with pytest.raises(AdaptiveError, match="install python-rtmidi"):
        VirtualMidiPort({}, RATE, lambda: 0.0)


def _rtmidi_present(monkeypatch) -> None:
    """These paths start after the check that python-rtmidi is installed: a
    stand-in module gets them there where it is not (CI)."""
    try:
        import rtmidi  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "rtmidi", types.ModuleType("rtmidi"))


def test_missing_alsa_sequencer_is_a_clear_error(monkeypatch):
    _rtmidi_present(monkeypatch)
    monkeypatch.setattr(midi_out.sys, "platform", "linux")
    monkeypatch.setattr(midi_out, "ALSA_SEQUENCER", "/nonexistent/snd/seq")
    with pytest.raises(AdaptiveError, match="no ALSA sequencer: virtual MIDI ports need /nonexistent/snd/seq"):
        open_virtual_output()


def test_windows_is_a_clear_error(monkeypatch):
    _rtmidi_present(monkeypatch)
    monkeypatch.setattr(midi_out.sys, "platform", "win32")
    with pytest.raises(AdaptiveError, match="Windows has no virtual MIDI ports"):
        open_virtual_output()


def test_backend_failure_is_a_clear_error(monkeypatch):
    _rtmidi_present(monkeypatch)
    monkeypatch.setattr(midi_out.sys, "platform", "darwin")

    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def open_output(self, name, virtual):
            raise OSError("no MIDI service")

    monkeypatch.setattr(mido, "Backend", Broken)
    with pytest.raises(AdaptiveError, match="cannot open a virtual MIDI port named 'adaptive': no MIDI service"):
        open_virtual_output()


def _can_open_virtual_port() -> bool:
    try:
        open_virtual_output("adaptive-probe").close()
    except AdaptiveError:
        return False
    return True


@pytest.mark.integration
@pytest.mark.skipif(not _can_open_virtual_port(), reason="no virtual MIDI ports here (python-rtmidi or ALSA seq)")
def test_real_virtual_port_is_heard_by_a_mido_input():
    backend = mido.Backend("mido.backends.rtmidi", load=True, use_environ=False)
    t0 = time.monotonic()
    out = VirtualMidiPort({"p/x": PartInfo(19, False)}, RATE, lambda: time.monotonic() - t0, name="adaptive-test")
    try:
        names = [n for n in backend.get_input_names() if "adaptive-test" in n]
        assert names, backend.get_input_names()
        with backend.open_input(names[0]) as listener:
            events = [MidiNoteEvent(int(0.05 * RATE), "p/x", NOTE_ON, 64, 100),
                      MidiNoteEvent(int(0.10 * RATE), "p/x", NOTE_OFF, 64, 0)]
            for block in blocks_of(events, int(0.15 * RATE)):
                out.on_block(block)
            received = []
            deadline = time.monotonic() + 3
            while len(received) < 3 and time.monotonic() < deadline:
                message = listener.poll()
                if message is None:
                    time.sleep(0.001)
                else:
                    received.append(message)
    finally:
        out.close()
    assert [m.type for m in received] == ["program_change", "note_on", "note_off"]
    assert received[0].program == 19 and received[1].note == 64
