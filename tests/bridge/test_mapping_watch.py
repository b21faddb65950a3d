"""The live mapping of a server: hot reload of valid and invalid files during
a render, live tuning over OSC (set, get, export, errors), and
``adaptive mapping export``."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from adaptive.errors import ConfigError
from adaptive.mapping import load_mapping, parse_mapping_text, read_mapping_text
from adaptive.scene import SceneUpdate
from adaptive.session import Session
from app.cli import main
from bridge.client import AdaptiveClient
from bridge.mapping_watch import MappingControl, cut_utf8, mapping_replies
from bridge.osc_server import OscServer
from tests.adaptive.test_session import tone_amplitude
from tests.helpers import SAMPLE_RATE_HZ, FakeClock

BAR_FRAMES = 2 * SAMPLE_RATE_HZ  # cue "low" of the tone bank: 120 bpm, 4/4

QUIET = "# the designer's notes\n[smoothing]\nhysteresis = 0.15\n"
LOUD_UPPER = QUIET + "[cues.low.layers.upper]\ngain_curve = [[0.0, -6.0], [1.0, -6.0]]\nfade_beats = 1\n"
BROKEN = QUIET + "[cues.low.layers.upper]\ngain_curve = [[0.0, -6.0], [1.0, 60.0]]\n[[transitions]]\nto = 'hgih'\n"


def write(path, text: str, bump_seconds: int) -> None:
    """Write ``text`` and move its modification time on (a real editor's
    save is seconds apart; the test must not depend on timestamp granularity).
    The file is replaced at once, as an editor saves: a server watching it
    must not see it truncated half way (it would load an empty mapping)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    stamp = time.time() + bump_seconds
    os.utime(partial, (stamp, stamp))
    os.replace(partial, path)


def test_hot_reload_of_valid_and_invalid_files_during_a_render(tone_bank, soundfont, tmp_path):
    bank = tone_bank()
    path = tmp_path / "mapping.toml"
    write(path, QUIET, 0)
    session = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, mapping=load_mapping(path, bank))
    reported: list[tuple[str, str]] = []
    # The render loop stamps what the control submits at the first frame not yet rendered, as RealtimeSession does.
    control = MappingControl(bank, session.mapping, lambda change: session.submit(session.frame, change), path=path,
                             report_error=lambda where, message: reported.append((where, message)),
                             clock=lambda: session.frame / SAMPLE_RATE_HZ)  # a fake clock: the session's
    session.submit(0, SceneUpdate(emotion="calm", intensity=0.3))
    audio = np.empty((8 * SAMPLE_RATE_HZ, 2), np.float32)
    edits = {SAMPLE_RATE_HZ // 2: (LOUD_UPPER, 1), int(4.5 * SAMPLE_RATE_HZ): (BROKEN, 2)}
    polled = []
    for start in range(0, len(audio), 1000):
        if start in edits or any(start <= frame < start + 1000 for frame in edits):
            text, bump = next(v for f, v in edits.items() if start <= f < start + 1000)
            write(path, text, bump)
        polled.append(control.poll())
        n = min(1000, len(audio) - start)
        audio[start : start + n] = session.render(n)
    events = session.drain_events()
    session.close()
    assert sum(polled) == 1 and control.counters["reloads"] == 1 and control.counters["rejected_reloads"] == 1
    # The valid edit plays from the bar line after it was seen; the broken one changes nothing.
    assert [e.frame for e in events if e.kind == "mapping"] == [BAR_FRAMES]
    assert tone_amplitude(audio[SAMPLE_RATE_HZ : BAR_FRAMES], 880.0) < 1e-3
    loud = 0.2 * 10 ** (-6 / 20)
    assert tone_amplitude(audio[3 * SAMPLE_RATE_HZ : 4 * SAMPLE_RATE_HZ], 880.0) == pytest.approx(loud, rel=0.02)
    assert tone_amplitude(audio[6 * SAMPLE_RATE_HZ : 8 * SAMPLE_RATE_HZ], 880.0) == pytest.approx(loud, rel=0.02)
    assert session.mapping.text == LOUD_UPPER and control.current.text == LOUD_UPPER
    (where, message), = reported
    assert where == str(path)
    assert f"{path}:5: error: cues.low.layers.upper.gain_curve: 60 dB is not allowed" in message
    assert f"{path}:7: error: transitions[0].to: unknown cue 'hgih'" in message and "did you mean 'high'" in message


def test_touching_the_file_without_changing_it_reloads_nothing(tone_bank, tmp_path):
    bank = tone_bank()
    path = tmp_path / "mapping.toml"
    write(path, QUIET, 0)
    submitted = []
    clock = FakeClock()
    control = MappingControl(bank, load_mapping(path, bank), submitted.append, path=path, clock=clock)
    write(path, QUIET, 5)
    for _ in range(5):
        clock.advance(0.25)
        assert control.poll() is False
    assert submitted == []


HALF = QUIET + "[cues.low.layers.upper]\n"  # LOUD_UPPER cut after its table header: valid TOML, a valid mapping


def test_a_half_written_mapping_is_never_loaded(tone_bank, tmp_path):
    """A file written in place in two goes (as a slow copy or a script does)
    is valid TOML half-way; only the file that has stopped changing is loaded."""
    bank = tone_bank()
    path = tmp_path / "mapping.toml"
    write(path, QUIET, 0)
    submitted = []
    clock = FakeClock()
    control = MappingControl(bank, load_mapping(path, bank), submitted.append, path=path, clock=clock,
                             settle_seconds=0.5)
    parse_mapping_text(HALF, bank)  # the half is a valid mapping: loading it would be a silent mistake
    path.write_text(HALF, encoding="utf-8")  # in place, no rename: the watcher can see the half
    polls, start = [], clock()
    for step in range(8):  # the writer goes on after 0.3 s, within the settle time
        if step == 2:
            with path.open("a", encoding="utf-8") as file:
                file.write(LOUD_UPPER[len(HALF):])
        polls.append((clock() - start, control.poll()))
        clock.advance(0.15)
    # Seen at 0 s (the half), changed again at 0.3 s, unchanged from then on: loaded 0.5 s after 0.3 s (next poll).
    assert [at for at, loaded in polls if loaded] == [pytest.approx(0.9)]
    assert [change.text for change in submitted] == [LOUD_UPPER]
    assert control.current.text == LOUD_UPPER


def test_a_mapping_file_over_the_size_limit_is_refused_without_reading_it(tone_bank, tmp_path):
    bank = tone_bank()
    path = tmp_path / "mapping.toml"
    write(path, QUIET, 0)
    submitted, reported = [], []
    clock = FakeClock()
    control = MappingControl(bank, load_mapping(path, bank), submitted.append, path=path, clock=clock,
                             max_bytes=2000, report_error=lambda where, message: reported.append(message))
    write(path, QUIET + "# padding\n" * 300, 1)  # valid, 3 KB
    for _ in range(6):
        control.poll()
        clock.advance(0.25)
    assert submitted == [] and control.current.text == QUIET and control.counters["rejected_reloads"] == 1
    (message,) = reported  # said once, not at every poll
    assert f"is {len(QUIET) + 3000} bytes (allowed: at most 2000 bytes, MAX_MAPPING_BYTES)" in message
    with pytest.raises(ConfigError, match="larger than 2000 bytes"):
        read_mapping_text(path, max_bytes=2000)


def test_live_tuning_sets_reads_and_exports_the_mapping(tone_bank):
    bank = tone_bank()
    submitted = []
    control = MappingControl(bank, parse_mapping_text(QUIET, bank), submitted.append)
    assert control.set("smoothing.hysteresis", "0.4") == "0.4"
    assert control.set("cues.low.layers.upper.gain_curve", "[[0, -inf], [1, -3]]") == '[[0, "-inf"], [1, -3]]'
    assert control.set("transitions", '[{"from": "*", "to": "high", "exit": "next_beat"}]')
    assert control.set("transitions.0.exit", "immediate") == '"immediate"'
    assert len(submitted) == 4 and submitted[-1].resolved.find_rule("low", "high").exit.value == "immediate"
    assert control.get("smoothing.min_cue_bars") == "0.0"
    exported = control.export_text()
    assert exported.startswith("# the designer's notes") and "hysteresis = 0.4" in exported
    assert parse_mapping_text(exported, bank).mapping == control.current.mapping
    # Refused sets change nothing and say why.
    for path, value, fragment in (("smoothing.hysteresis", "9", "less than or equal to 2"),
                                  ("smoothing.hysterisis", "0.1", "did you mean 'hysteresis'"),
                                  ("locations.cave.cues.lwo", "{}", "unknown cue 'lwo'"),
                                  ("transitions.5.exit", "next_bar", "no such entry"),
                                  ("smoothing.hysteresis.x", "1", "is not a table")):
        (name, values), = mapping_replies("mapping_set", {"path": path, "value": value}, control)
        assert name == "mapping_error" and fragment in values["message"], (path, values)
    assert len(submitted) == 4 and control.get("smoothing.hysteresis") == "0.4"
    assert control.counters["rejected_sets"] == 5
    (name, values), = mapping_replies("mapping_get", {"path": "cues.nope"}, control)
    assert name == "mapping_error" and "keys here: low" in values["message"]


def test_mapping_text_parts_are_cut_between_utf8_characters():
    text = "é" * 700 + "x" * 10
    parts = cut_utf8(text, 1000)
    assert "".join(parts) == text and all(len(p.encode()) <= 1000 for p in parts) and len(parts) == 2


@pytest.fixture
def osc_with_mapping(tone_bank):
    bank = tone_bank()
    long_notes = "".join(f"# note {i}: {'•' * 40}\n" for i in range(60))  # > 3 KB: several parts
    control = MappingControl(bank, parse_mapping_text(long_notes + QUIET, bank), lambda change: None)
    server = OscServer(bank, lambda item: None, lambda: 0.0, SAMPLE_RATE_HZ,
                       {"session_id": "t", "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                       port=0, mapping=control)
    server.start()
    yield server, control
    server.close()


@pytest.mark.integration
def test_live_tuning_over_osc_with_string_arguments(osc_with_mapping):
    server, control = osc_with_mapping
    client = AdaptiveClient(port=server.port, client_name="t")
    client.hello()
    client.send("mapping_set", path="smoothing.min_cue_bars", value="2")
    assert client.wait_for("mapping_value", timeout=3.0) == {"path": "smoothing.min_cue_bars", "value": "2"}
    client.send("mapping_get", path="smoothing.hysteresis")
    assert client.wait_for("mapping_value", timeout=3.0)["value"] == "0.15"
    client.send("mapping_set", path="smoothing.hysteresis", value="-1")
    error = client.wait_for("mapping_error", timeout=3.0)
    assert error["path"] == "smoothing.hysteresis" and "greater than or equal to 0" in error["message"]
    assert control.get("smoothing.hysteresis") == "0.15"
    client.close()


def test_adaptive_mapping_export_writes_the_live_mapping(osc_with_mapping, tmp_path, capsys):
    server, control = osc_with_mapping
    control.set("smoothing.hysteresis", "0.3")
    output = tmp_path / "kept.toml"
    assert main(["mapping", "export", "--port", str(server.port), "-o", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == control.export_text()
    assert "hysteresis = 0.3" in output.read_text(encoding="utf-8")
    assert len(control.export_parts()) > 3
    assert "wrote" in capsys.readouterr().out


@pytest.mark.integration
def test_an_invalid_reload_reaches_every_client_as_mapping_error(osc_with_mapping):
    server, _ = osc_with_mapping
    client = AdaptiveClient(port=server.port, client_name="t")
    client.hello()
    client.send("unsubscribe", stream="events")
    time.sleep(0.1)  # the unsubscribe is handled: errors reach a client whatever it subscribed to
    server.broadcast("mapping_error", {"path": "/x/mapping.toml", "message": "line 3: smoothing.hysteresis: ..."})
    assert client.wait_for("mapping_error", timeout=3.0) == {"path": "/x/mapping.toml", "message": "line 3: smoothing.hysteresis: ..."}
    client.close()


@pytest.mark.integration
def test_the_server_reloads_its_mapping_file_and_replays_it(tone_bank, tmp_path):
    """adaptive serve end to end: an edited mapping file is announced to
    events subscribers when it takes effect, a broken one is reported to
    every client, and the recording replays both as served."""
    from adaptive.recording import replay
    from app.server import Server, ServerSettings
    from app.settings import StartMode

    bank = tone_bank()
    path = tmp_path / "mapping.toml"
    write(path, QUIET, 0)
    settings = ServerSettings(bank=bank.folder / "bank.toml", mapping=path, osc_port=0, audio_tcp_port=0,
                              zmq_audio_port=0, zmq_control_port=0, zmq_events_port=0, lookahead_ms=60.0,
                              record=tmp_path / "session.jsonl",
                              start=StartMode.WAIT)  # the client's first scene starts the cue: its downbeat is known
    server = Server(settings)
    server.mapping.poll_seconds = 0.05
    server.mapping.settle_seconds = 0.1
    server.start()
    client = AdaptiveClient(port=server.osc.port, client_name="t")
    try:
        client.hello()
        client.send("scene", emotion="calm", intensity=0.3, location="")
        downbeat = client.wait_for("cue_change", timeout=3.0)["frame"]
        write(path, LOUD_UPPER, 1)
        changed = client.wait_for("mapping_changed", timeout=3.0)
        assert changed["source"] == str(path.resolve())[-200:] and (changed["frame"] - downbeat) % BAR_FRAMES == 0
        write(path, BROKEN, 2)
        error = client.wait_for("mapping_error", timeout=3.0)
        assert error["path"] == str(path.resolve()) and "60 dB is not allowed" in error["message"]
        assert server.session.mapping.text == LOUD_UPPER
    finally:
        client.close()
        server.close()
    text = settings.record.read_text()
    assert '"type": "mapping"' in text and text.count('"type": "mapping"') == 1
    assert len(replay(settings.record)) == server.session.frame
    from app.plot import load_events, plot_session

    events, rate = load_events(settings.record)  # a recording is replayed for its events
    assert [e["type"] for e in events].count("mapping") == 1
    plot_session(events, rate, tmp_path / "session.png")
    assert (tmp_path / "session.png").stat().st_size > 10_000


def test_adaptive_send_sets_and_reads_mapping_values(osc_with_mapping, capsys):
    server, control = osc_with_mapping
    port = str(server.port)
    assert main(["send", "--port", port, "mapping_set", "smoothing.min_cue_bars", "4"]) == 0
    assert "smoothing.min_cue_bars = 4" in capsys.readouterr().out
    assert main(["send", "--port", port, "mapping_get", "smoothing.min_cue_bars"]) == 0
    assert "smoothing.min_cue_bars = 4" in capsys.readouterr().out
    assert main(["send", "--port", port, "mapping_set", "smoothing.min_cue_bars", "100"]) == 2
    assert "less than or equal to 64" in capsys.readouterr().err
    assert control.get("smoothing.min_cue_bars") == "4"


@pytest.mark.integration
def test_live_tuning_over_zeromq_json(tone_bank):
    zmq = pytest.importorskip("zmq")
    import json as json_module

    from bridge.zmq_server import ZmqServer

    bank = tone_bank()
    submitted: list = []
    control = MappingControl(bank, parse_mapping_text(QUIET, bank), submitted.append)
    server = ZmqServer(bank, lambda item: None, lambda: 0.0, SAMPLE_RATE_HZ,
                       {"session_id": "t", "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                       control_port=0, events_port=0, mapping=control)
    server.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.control_endpoint)

    def ask(message: dict) -> list[dict]:
        sock.send(json_module.dumps(message).encode())
        replies = []
        while sock.poll(300 if replies else 2000):
            replies.append(json_module.loads(sock.recv_multipart()[-1]))
        return replies

    try:
        assert ask({"type": "mapping_set", "path": "smoothing.hysteresis", "value": "0.2"}) == [
            {"type": "mapping_value", "path": "smoothing.hysteresis", "value": "0.2"}]
        (error,) = ask({"type": "mapping_get", "path": "smoothing.nope"})
        assert error["type"] == "mapping_error" and "keys here: hysteresis" in error["message"]
        parts = ask({"type": "mapping_export"})
        assert [p["type"] for p in parts] == ["mapping_text"] * len(parts)
        assert "".join(p["text"] for p in parts) == control.export_text()
        assert len(submitted) == 1
    finally:
        sock.close(linger=0)
        server.close()


def test_a_live_change_is_recorded_as_the_change_and_replays_bit_for_bit(tone_bank, soundfont, tmp_path):
    from adaptive.realtime import RealtimeSession
    from adaptive.recording import Recording, load_recording, replay
    from tests.adaptive.test_realtime import Collector

    bank = tone_bank()
    long_notes = "".join(f"# note {i}: the designer's reasoning about this mapping\n" for i in range(100))
    initial = parse_mapping_text(long_notes + QUIET, bank)  # a mapping of 5.6 KB
    session = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=3, mapping=initial)
    clock = FakeClock(max_sleep_seconds=0.05)
    path = tmp_path / "session.jsonl"
    runner = RealtimeSession(session, block_frames=512, clock=clock, sleep=clock.sleep,
                             recording=Recording.for_session(path, session, bank.folder / "bank.toml"))
    sink = Collector()
    runner.add_sink(sink)
    control = MappingControl(bank, initial, runner.submit)

    def play(seconds: float) -> None:
        for _ in range(int(seconds / 0.01)):
            clock.advance(0.01)
            while runner.run_once() == 0.0:
                pass

    runner.submit(SceneUpdate(emotion="calm", intensity=0.3))
    play(1.0)
    sets = [("cues.low.layers.upper.gain_curve", "[[0, -6], [1, -6]]"), ("smoothing.hysteresis", "0.3"),
            ("cues.low.layers.upper.gain_curve", "[[0, -20], [1, -3]]"), ("locations.cave.cues.low", "{}")]
    for key, value in sets:
        control.set(key, value)
        play(1.5)
    runner.stop()
    session.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    changes = [line for line in lines if line.get("type", "").startswith("mapping")]
    assert [(c["type"], c["path"], c["value"]) for c in changes] == [("mapping_set", k, v) for k, v in sets]
    assert all("toml" not in c and len(json.dumps(c)) < 200 for c in changes)  # the change, not the 5.6 KB mapping
    _, inputs, _ = load_recording(path)
    rebuilt = [item for _, item in inputs if hasattr(item, "path")]
    assert rebuilt[-1].text == control.current.text  # the reader rebuilt every mapping the server made
    served = sink.joined()
    assert tone_amplitude(served[-SAMPLE_RATE_HZ:], 880.0) > 1e-3  # the changes were heard
    assert np.array_equal(replay(path), served)


def test_a_recording_with_a_change_missing_says_it_cannot_be_replayed(tmp_path):
    from adaptive.errors import ConfigError as RecordingError
    from adaptive.recording import load_recording
    from adaptive.recording_format import mapping_digest
    from tests.adaptive.test_realtime import HEADER, write_lines

    first = "[smoothing]\nhysteresis = 0.3\n"
    path = write_lines(tmp_path / "r.jsonl", [
        HEADER, {"frame": 10, "type": "mapping_set", "source": "live", "path": "smoothing.hysteresis",
                 "value": "0.4", "sha256": mapping_digest(first)}, {"type": "end", "frame": 20}])
    with pytest.raises(RecordingError, match="rebuilds a mapping whose sha256 .* is not the recorded"):
        load_recording(path)


def test_mapping_sets_wait_in_a_bounded_queue_behind_a_rate_limit(tone_bank):
    import threading

    from tests.helpers import wait_until

    bank = tone_bank()
    release = threading.Event()
    submitted = []

    def slow_submit(change):  # the mapping thread is busy with the first change until released
        release.wait(10.0)
        submitted.append(change)

    clock = FakeClock()
    control = MappingControl(bank, parse_mapping_text(QUIET, bank), slow_submit, queue_length=3,
                             sets_per_second=2.0, set_burst=5, clock=clock)
    control.start()
    answers: list = []
    try:
        assert control.request_set("smoothing.hysteresis", "0.1", answers.extend) == []
        assert wait_until(lambda: control._jobs.empty(), timeout_seconds=5.0)  # taken: the thread is busy
        for value in ("0.2", "0.3", "0.4"):
            assert control.request_set("smoothing.hysteresis", value, answers.extend) == []  # queued, answered later
        (name, values), = control.request_set("smoothing.hysteresis", "0.5", answers.extend)
        assert name == "mapping_error" and "still applying 3 mapping changes" in values["message"]
        (name, values), = control.request_set("smoothing.hysteresis", "0.6", answers.extend)
        assert "too many mapping changes (allowed: 2 a second, bursts of 5)" in values["message"]
        clock.advance(0.5)  # one more token
        release.set()
        assert wait_until(lambda: len(answers) == 4, timeout_seconds=10.0)
        assert control.request_set("smoothing.hysteresis", "0.7", answers.extend) == []
        assert wait_until(lambda: len(answers) == 5, timeout_seconds=10.0)
    finally:
        release.set()
        control.close()
    assert [values["value"] for name, values in answers] == ["0.1", "0.2", "0.3", "0.4", "0.7"]
    assert control.current.text.endswith("hysteresis = 0.7\n")
    assert control.counters["refused_sets_queue"] == 1 and control.counters["refused_sets_rate"] == 1


@pytest.mark.integration
def test_an_exported_default_mapping_checks_renders_and_plots_from_another_folder(tmp_path, capsys):
    """`adaptive mapping export -o kept.toml` from a server on the embedded
    bank: the file names the bank by an absolute path, so check, render and
    plot of it work from a folder that is not the bank's."""
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING

    bank = load_bank(DEFAULT_BANK)
    control = MappingControl(bank, load_mapping(DEFAULT_MAPPING, bank), lambda change: None, bank_path=DEFAULT_BANK)
    server = OscServer(bank, lambda item: None, lambda: 0.0, SAMPLE_RATE_HZ,
                       {"session_id": "t", "block_frames": 256, "lookahead_ms": 40.0, "audio_tcp_port": 0},
                       port=0, mapping=control)
    server.start()
    try:
        control.set("smoothing.hysteresis", "0.25")
        kept = tmp_path / "elsewhere" / "kept.toml"
        assert main(["mapping", "export", "--port", str(server.port), "-o", str(kept)]) == 0
    finally:
        server.close()
    text = kept.read_text(encoding="utf-8")
    assert f'bank = "{DEFAULT_BANK.resolve()}"' in text and "hysteresis = 0.25" in text
    assert text.startswith("# The default mapping")  # the designer's comments are kept
    capsys.readouterr()
    assert main(["check", str(kept)]) == 0
    assert "0 errors" in capsys.readouterr().out
    assert main(["plot", "mapping", str(kept), "-o", str(tmp_path / "map.png")]) == 0
    timeline = tmp_path / "short.toml"
    timeline.write_text('duration_seconds = 2\n[[events]]\ntime_seconds = 0\nemotion = "calm"\n', encoding="utf-8")
    assert main(["render", str(timeline), "--mapping", str(kept), "-o", str(tmp_path / "kept.wav"),
                 "--generator", "rule_based", "--no-progress"]) == 0
    assert (tmp_path / "map.png").stat().st_size > 1000 and (tmp_path / "kept.wav").stat().st_size > 2 * 48000


def test_mapping_values_are_strict_json_and_read_back(tone_bank):
    """Issue 16: Node's JSON.parse rejects Python's -Infinity; infinities travel as "inf"/"-inf"."""
    control = MappingControl(tone_bank(), parse_mapping_text(QUIET, tone_bank()), lambda change: None)

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    written = control.set("cues.low.layers.upper.gain_curve", "[[0, -inf], [1, -3]]")
    assert json.loads(written, parse_constant=refuse) == [[0, "-inf"], [1, -3]]
    assert control.set("cues.low.layers.upper.gain_curve", written) == written  # what it wrote reads back
    rate = control.get("smoothing.valence_per_second")  # the default: inf (follow at once)
    assert json.loads(rate, parse_constant=refuse) == "inf"
