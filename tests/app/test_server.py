"""The real-time server over real loopback sockets, as a game engine uses it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from adaptive.cue import DEFAULT_BANK
from adaptive.recording import replay
from app.server import Server, ServerSettings
from app.settings import StartMode
from bridge.audio import SampleFormat, decode_block, decode_header, encode_block, read_tcp_blocks
from tests.helpers import OscListener, free_ports

pytestmark = pytest.mark.integration  # real sockets, real threads, wall-clock waits


@pytest.fixture
def server(tmp_path):
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0,
                              lookahead_ms=60.0, block_frames=256, record=tmp_path / "session.jsonl",
                              # The game's first scene starts the music, so the replay without the "angry"
                              # input differs from the served audio only from the cue change on (with music at
                              # once, the first scene would retarget layer fades that the angry input restarts).
                              start=StartMode.WAIT)
    server = Server(settings)
    server.start()
    yield server
    server.close()


def test_a_client_hears_the_cue_change_on_its_beat_and_gets_beats_ahead_of_time(server, tmp_path):
    client = OscListener(server.osc.port, clock=server.realtime.server_time_seconds)
    audio_socket = socket.create_connection(("127.0.0.1", server.audio_tcp.port), timeout=5)
    blocks: list = []

    def read_audio() -> None:
        try:
            for header, pcm in read_tcp_blocks(audio_socket):
                blocks.append((header, pcm))
        except OSError:
            pass

    reader = threading.Thread(target=read_audio, daemon=True)
    reader.start()
    try:
        client.hello()
        welcome = client.wait_for(lambda: client.of("welcome"))[-1]
        assert welcome["sample_rate_hz"] == 48000 and welcome["audio_tcp_port"] == server.audio_tcp.port
        client.send("scene", emotion="calm", intensity=0.8, location="forest")
        time.sleep(1.0)
        client.send("emotion", emotion="angry")  # explore -> combat: next beat
        time.sleep(1.5)
        client.send_raw(b"\x00garbage")
        error = client.wait_for(lambda: client.of("error"))[-1]
        assert error["code"] == "malformed"
        from pythonosc.osc_message_builder import OscMessageBuilder

        too_loud = OscMessageBuilder("/adaptive/intensity")
        too_loud.add_arg(2.0, "f")
        client.send_raw(too_loud.build().dgram)
        time.sleep(0.5)
    finally:
        server.close()
        audio_socket.close()
        reader.join(2)
        client.close()

    errors = client.of("error")
    assert [e["code"] for e in errors] == ["malformed", "out_of_range"]
    assert "from 0 to 1" in errors[1]["message"]

    # Beats: sent ahead of their time, numbered bar by bar within each cue.
    beats = client.timed("beat")
    assert len(beats) >= 5  # ~1 s of explore at 84 bpm, ~2.5 s of combat at 140 bpm
    for arrival, beat in beats:
        beat_time = beat["time_s"] + beat["time_us"] / 1e6
        assert beat_time > arrival - 0.005, f"beat at {beat_time:.3f} s arrived at {arrival:.3f} s"
    explore = [b for _, b in beats if b["cue"] == "explore"]
    combat = [b for _, b in beats if b["cue"] == "combat"]
    assert explore and combat
    for cue_beats in (explore, combat):
        numbers = [(b["bar_index"], b["beat_in_bar"]) for b in cue_beats]
        expected = [divmod(i + numbers[0][0] * 4 + numbers[0][1] - 1, 4) for i in range(len(numbers))]
        assert numbers == [(bar, beat + 1) for bar, beat in expected]

    # The cue change lands on the first explore beat at or after the frame the input took effect.
    from adaptive.recording import load_recording

    header, inputs, end_frame = load_recording(tmp_path / "session.jsonl")
    angry_frame = next(frame for frame, item in inputs if getattr(item, "emotion", None) == "angry")
    change = next(values for values in client.of("cue_change") if values["cue"] == "combat")
    explore_beat_frames = [b["frame"] for b in explore]
    assert change["frame"] == min(f for f in explore_beat_frames + [change["frame"]] if f >= angry_frame)

    assert_the_audio_is_the_replay_and_changes_on_the_cue_change(blocks, tmp_path, change["frame"])


def assert_the_audio_is_the_replay_and_changes_on_the_cue_change(blocks: list, tmp_path, change_frame: int) -> None:
    """The audio received over TCP is continuous and is, sample for sample, the
    recording replayed offline (as int16); without the "angry" input it would be
    the same up to the cue change's frame and differ right after it."""
    # The audio received over TCP is continuous and is, sample for sample, the
    # recording replayed offline (as int16).
    sequences = [h.sequence for h, _ in blocks]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    received = np.concatenate([pcm for _, pcm in blocks])
    first = blocks[0][0].first_frame
    offline = replay(tmp_path / "session.jsonl")
    # Encoded by the server's own int16 conversion, the offline replay gives the same blocks.
    slice_ = np.ascontiguousarray(offline[first : first + len(received)])
    header, pcm = encode_block(0, first, slice_, 48000, SampleFormat.INT16)
    expected = decode_block(decode_header(header), pcm)
    assert len(received) > 48000 * 2
    assert np.array_equal(received, expected)

    # Heard in the received audio: without the "angry" input the audio is the
    # same up to the cue change's frame and differs right after it.
    lines = (tmp_path / "session.jsonl").read_text().splitlines()
    without = [line for line in lines if '"angry"' not in line]
    assert len(without) == len(lines) - 1
    (tmp_path / "without.jsonl").write_text("\n".join(without) + "\n")
    calm_only = replay(tmp_path / "without.jsonl")[first : first + len(received)]
    header_, pcm_ = encode_block(0, first, np.ascontiguousarray(calm_only), 48000, SampleFormat.INT16)
    calm_received = decode_block(decode_header(header_), pcm_)
    differing = np.flatnonzero(np.any(calm_received != received, axis=1))
    fade_frames = round(0.5 * 60 * 48000 / 84)  # explore -> combat: half a beat at 84 bpm
    # int16 hides the fade's first gain steps (below half an LSB): allow 2 % of the fade (7 ms).
    assert differing.size and change_frame < first + differing[0] <= change_frame + fade_frames // 50
    assert np.sqrt(np.mean(received**2)) > 0.01


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools (oscsend) not installed; ./run test installs it")
def test_serve_driven_by_oscsend_stops_cleanly_on_sigterm(tmp_path):
    """`adaptive serve` as a user runs it, driven by liblo's oscsend (not
    python-osc); SIGTERM closes it with exit status 0, a complete recording
    and a MIDI file with no hanging notes."""
    import mido

    from adaptive.recording import load_recording

    osc, audio, zmq_audio, control, events = free_ports(5)
    command = [sys.executable, "-m", "app.cli", "serve", "--osc-port", str(osc), "--audio-tcp-port", str(audio),
               "--zmq-audio-port", str(zmq_audio), "--zmq-control-port", str(control),
               "--zmq-events-port", str(events), "--record", str(tmp_path / "rec.jsonl"),
               "--midi-file", str(tmp_path / "played.mid")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline()]
        while not lines[-1].startswith("events") and lines[-1]:
            lines.append(process.stdout.readline())
        assert lines[0].startswith("adaptive: serving session default"), lines
        # It says what it plays: mapping, bank, SoundFont, generator, and that the music starts at once.
        assert any(line.startswith("mapping") and "mapping.toml (the embedded default" in line for line in lines)
        assert any(line.startswith("bank") and "bank.toml" in line for line in lines)
        assert any(line.startswith("soundfont") and ".sf" in line for line in lines)
        assert any(line.startswith("generator") and "model" in line for line in lines)
        assert any(line.startswith("start") and "at once: calm" in line for line in lines), lines
        assert any(f"udp://127.0.0.1:{osc}" in line for line in lines)
        for args in (["/adaptive/scene", "sfs", "calm", "0.9", "forest"], ["/adaptive/stinger", "s", "discovery"],
                     ["/adaptive/intensity", "f", "7.5"]):
            subprocess.run(["oscsend", "127.0.0.1", str(osc), *args], check=True, timeout=10)
            time.sleep(0.3)
        time.sleep(1.0)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in out and "1 rejected messages" in out  # the out-of-range intensity
    header, inputs, end_frame = load_recording(tmp_path / "rec.jsonl")
    # The starting scene at frame 0 (music at once), then what oscsend sent.
    assert [type(item).__name__ for _, item in inputs] == ["SceneUpdate", "SceneUpdate", "StingerTrigger"]
    assert inputs[0][0] == 0 and inputs[0][1].emotion == "calm"
    assert end_frame > 48000
    midi = mido.MidiFile(str(tmp_path / "played.mid"))
    held: dict = {}
    for message in midi:
        if message.type in ("note_on", "note_off"):
            key = (message.channel, message.note)
            held[key] = held.get(key, 0) + (1 if message.type == "note_on" and message.velocity else -1)
    assert held and all(count == 0 for count in held.values())


@pytest.mark.parametrize("start", [StartMode.AT_ONCE, StartMode.WAIT])
def test_music_and_beats_start_at_once_unless_told_to_wait(start):
    """`adaptive monitor` right after `adaptive serve`: beats and bars of the
    mapping's starting scene (calm, explore) before any scene message, and
    non-silent audio; with --start wait, nothing until the game speaks."""
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0, block_frames=1024, start=start,
                              generator="rule_based")
    server = Server(settings)
    blocks: list = []
    server.realtime.add_sink(lambda block: blocks.append(np.abs(block.audio).max()))
    server.start()
    client = OscListener(server.osc.port, clock=server.realtime.server_time_seconds)
    try:
        client.hello()
        client.wait_for(lambda: client.of("welcome"))
        time.sleep(3.3)  # 84 bpm: 4 beats and the downbeat of bar 1 at 2.86 s
    finally:
        server.close()
        client.close()
    beats, bars = client.of("beat"), client.of("bar")
    if start is StartMode.AT_ONCE:
        assert len(beats) >= 2 and bars and {b["cue"] for b in beats} == {"explore"}, beats
        assert max(blocks) > 0.01
    else:
        assert beats == [] and bars == [] and max(blocks) == 0.0


def test_serve_names_what_it_plays_and_prints_the_mappings_warnings(tmp_path):
    """`serve --mapping FILE` says at start which mapping, bank, SoundFont and
    generator it plays, and the mapping's warnings as `adaptive check` does."""
    mapping = tmp_path / "mine.toml"
    mapping.write_text('[start]\nemotion = "angry"\nintensity = 0.9\n'
                       '[cues.explore.layers.melody]\ngain_curve = [[0.0, -inf], [1.0, -inf]]\n', encoding="utf-8")
    settings = ServerSettings(bank=DEFAULT_BANK, osc_port=0, audio_tcp_port=0, zmq_audio_port=0,
                              zmq_control_port=0, zmq_events_port=0, generator="rule_based", mapping=mapping)
    server = Server(settings)
    try:
        lines = server.describe()
        warnings = server.mapping_warnings()
    finally:
        server.close()
    assert lines[0].startswith("mapping") and str(mapping) in lines[0] and "watched" in lines[0]
    assert str(DEFAULT_BANK.resolve()) in lines[1] and "5 cues" in lines[1]
    # The SoundFont and how it was chosen (the suite names TimGM6mb by $ADAPTIVE_SOUNDFONT, tests/conftest.py).
    assert lines[2].startswith("soundfont") and lines[2].endswith(")") and lines[3] == "generator rule_based"
    assert "at once: angry, intensity 0.9" in lines[4]
    assert f"{mapping}:5: warning: cues.explore.layers.melody.gain_curve: layer 'melody' of 'explore' never sounds" \
        in warnings
