"""The protocol from a real Godot runtime: godot_example/godot3_proof/adaptive_proof.gd, run headless by
Debian's godot3-server against a real ``adaptive serve`` (OSC over PacketPeerUDP, the TCP audio stream
over StreamPeerTCP, as the Godot 4 addon does), also sent there by a cluster's node (``session_elsewhere``,
followed with the addon's own redirect check); and the addon's stream player's buffering rules (skip
back to the target latency after a hitch, reconnect backoff), ported to Godot 3 in
godot_example/godot3_proof/stream_player_proof.gd, against the same real server."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

import pytest

from tests.clients.conftest import REPO, FakeClusterNode, raw_osc, session_elsewhere
from tests.helpers import free_ports

GODOT = shutil.which("godot3-server")
SAMPLE_RATE_HZ = 48000

pytestmark = [pytest.mark.integration, pytest.mark.skipif(GODOT is None, reason="Debian's godot3-server is not installed; ./run test installs it")]


PROOF = REPO / "godot_example" / "godot3_proof" / "adaptive_proof.gd"


def run_proof(tmp_path, osc_port: int, reply_port: int, **env: str) -> dict[str, list[dict]]:
    """adaptive_proof.gd run headless, saying hello to ``osc_port``: its JSON lines by kind (it ended
    with ``done`` and without a script error)."""
    environment = dict(os.environ, ADAPTIVE_OSC_PORT=str(osc_port), ADAPTIVE_REPLY_PORT=str(reply_port),
                       HOME=str(tmp_path), **env)
    run = subprocess.run([GODOT, "--no-window", "-s", str(PROOF)], capture_output=True, text=True, timeout=60,
                         env=environment, cwd=tmp_path)
    lines = [json.loads(line.removeprefix("ADAPTIVE ")) for line in run.stdout.splitlines() if line.startswith("ADAPTIVE ")]
    assert lines and lines[-1]["kind"] == "done", run.stdout[-3000:] + run.stderr[-3000:]
    assert "SCRIPT ERROR" not in run.stderr + run.stdout, run.stderr
    by_kind: dict[str, list[dict]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)
    return by_kind


def test_gdscript_says_hello_changes_the_cue_and_receives_beats_and_continuous_audio(served, tmp_path):
    (reply_port,) = free_ports(1)
    by_kind = run_proof(tmp_path, served.osc_port, reply_port, ADAPTIVE_RUN_SECONDS="4")
    served.stop()
    assert "decode_error" not in by_kind and "error" not in by_kind, by_kind.get("decode_error", by_kind.get("error"))
    (welcome,) = by_kind["welcome"]
    assert welcome["sample_rate_hz"] == SAMPLE_RATE_HZ and welcome["audio_tcp_port"] == served.audio_tcp_port
    (clock,) = by_kind["clock"]
    assert 0 <= clock["round_trip_s"] < 0.05

    beats = by_kind["beat"]
    explore = [b for b in beats if b["cue"] == "explore"]
    combat = [b for b in beats if b["cue"] == "combat"]
    assert explore and len(combat) >= 3
    for cue_beats, bpm in ((explore, 84), (combat, 140)):
        numbers = [(b["bar_index"], b["beat_in_bar"]) for b in cue_beats]
        first = numbers[0][0] * 4 + numbers[0][1] - 1
        assert numbers == [((first + i) // 4, (first + i) % 4 + 1) for i in range(len(numbers))]
        for a, b in zip(cue_beats, cue_beats[1:]):
            assert abs((b["server_time_s"] - a["server_time_s"]) - 60 / bpm) < 2e-5
    # Ahead of time, by the clock the GDScript synced and read by its polling loop, by about the
    # lookahead; the session's first beat too (its block once took 7-11 ms to render, and the beat led
    # by only ~10 ms: a module imported on the render thread, now imported up front).
    # (The music plays from the server's start: beats that came during the clock sync have no arrival time.)
    leads = [b["server_time_s"] - b["arrival_server_time_s"] for b in beats if b["synced"]]
    assert min(leads) > -0.01, leads
    assert sorted(leads)[len(leads) // 2] > welcome["lookahead_ms"] / 1000 / 2, leads
    change = next(c for c in by_kind["cue_change"] if c["cue"] == "combat")
    assert change["previous"] == "explore" and change["frame"] == combat[0]["frame"]
    (stinger,) = by_kind["stinger_played"]
    assert stinger["stinger"] == "danger" and stinger["frame"] in {b["frame"] for b in combat}
    # The audience vote the addon's vote("tense", 0.9) sends reached the session as sent (it is recorded).
    from adaptive.audience import AudienceVote
    from adaptive.recording import load_recording

    _, inputs, _ = load_recording(served.record)
    votes = [item for _, item in inputs if isinstance(item, AudienceVote)]
    assert [(v.emotion, v.intensity) for v in votes] == [("tense", pytest.approx(0.9))]

    assert_continuous_audio(by_kind["audio"], 3.0)


def assert_continuous_audio(audio: list[dict], seconds: float) -> None:
    """Blocks of the TCP audio stream as the proof read them: consecutive, the session's format, at least
    ``seconds`` of them, not silent."""
    sequences = [a["sequence"] for a in audio]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    for a, b in zip(audio, audio[1:]):
        assert b["first_frame"] == a["first_frame"] + a["n_frames"]
    assert {(a["channels"], a["sample_format"], a["sample_rate_hz"]) for a in audio} == {(2, 1, SAMPLE_RATE_HZ)}
    frames = sum(a["n_frames"] for a in audio)
    assert frames >= seconds * SAMPLE_RATE_HZ
    assert math.sqrt(sum(a["rms"] ** 2 * a["n_frames"] for a in audio) / frames) > 0.01


def test_gdscript_follows_session_elsewhere_from_a_node_to_the_real_server_and_plays_there(served, tmp_path):
    """A cluster's node, faked by a UDP socket, answers the proof's hello for a new session with
    session_elsewhere naming a real ``adaptive serve``: the proof says the same hello there with the id it
    was given, is welcomed into that session, reads its audio where the welcome says, and its scene change
    and stinger are played in that session."""
    (reply_port,) = free_ports(1)
    asked = FakeClusterNode(lambda hello: session_elsewhere("arena-5", "127.0.0.1", served.osc_port, 0,
                                                           served.audio_tcp_port))
    try:
        by_kind = run_proof(tmp_path, asked.port, reply_port, ADAPTIVE_SESSION="new", ADAPTIVE_RUN_SECONDS="4")
    finally:
        asked.close()
        served.stop()
    assert "decode_error" not in by_kind and "error" not in by_kind, by_kind.get("decode_error", by_kind.get("error"))
    assert [(h["session"], h["reply_port"], h["client_name"]) for h in asked.hellos] == [("new", reply_port, "godot3-proof")]
    (redirected,) = by_kind["redirected"]
    assert redirected == {"kind": "redirected", "session_id": "arena-5", "host": "127.0.0.1", "osc_port": served.osc_port,
                          "zmq_control_port": 0, "audio_tcp_port": served.audio_tcp_port, "from_host": "127.0.0.1",
                          "from_osc_port": asked.port}
    (welcome,) = by_kind["welcome"]
    assert (welcome["session_id"], welcome["host"], welcome["osc_port"]) == ("arena-5", "127.0.0.1", served.osc_port)
    assert welcome["audio_tcp_port"] == served.audio_tcp_port
    # Its inputs went to the session it was sent to: angry changed the cue, the stinger played on a beat.
    combat = [b for b in by_kind["beat"] if b["cue"] == "combat"]
    assert any(c["cue"] == "combat" for c in by_kind["cue_change"]) and combat
    (stinger,) = by_kind["stinger_played"]
    assert stinger["stinger"] == "danger" and stinger["frame"] in {b["frame"] for b in combat}
    assert_continuous_audio(by_kind["audio"], 2.0)


def test_gdscript_stops_after_three_redirects_in_a_row_and_names_the_loop(tmp_path):
    """Two nodes that send the session to each other: the proof follows 3 redirects (4 hellos), refuses
    the 4th with an error naming every node of the loop, and says no more hellos."""
    (reply_port,) = free_ports(1)
    nodes: list[FakeClusterNode] = []
    nodes.append(FakeClusterNode(lambda hello: session_elsewhere("arena-9", "127.0.0.1", nodes[1].port)))
    nodes.append(FakeClusterNode(lambda hello: session_elsewhere("arena-9", "127.0.0.1", nodes[0].port)))
    try:
        by_kind = run_proof(tmp_path, nodes[0].port, reply_port, ADAPTIVE_SESSION="arena-9", ADAPTIVE_HELLO_TIMEOUT_S="2")
    finally:
        for node in nodes:
            node.close()
    assert len(by_kind["redirected"]) == 3 and "welcome" not in by_kind and "no_welcome" in by_kind
    assert (len(nodes[0].hellos), len(nodes[1].hellos)) == (2, 2)  # none after the loop was found (2 s, hellos each 1 s)
    (error,) = by_kind["error"]
    a, b = (f"udp://127.0.0.1:{node.port}" for node in nodes)
    assert error["code"] == "client_redirect_loop"
    assert f"more than 3 times in a row between the nodes of a cluster ({a} -> {b} -> {a} -> {b} -> {a}, session 'arena-9')" \
        in error["message"], error


@pytest.mark.parametrize(("arguments", "problem"), [
    (("arena-9", "127.0.0.1", 70000, 0, 0), "argument 'osc_port' is 70000 (allowed: an integer from 1 to 65535)"),
    (("arena-9", "127.0.0.1", "9100", 0, 0), "argument 'osc_port' is of type s (allowed: an integer, i)"),
    (("arena 9!", "127.0.0.1", 9100, 0, 0), "argument 'session_id' is 'arena 9!' (allowed: 1 to 32 letters, digits, _ and -)"),
])
def test_gdscript_refuses_a_redirect_with_a_bad_argument_and_nothing_changes(tmp_path, arguments, problem):
    """A session_elsewhere out of the protocol's ranges (sent as is, unchecked) is not followed: an error
    names the argument and what is allowed, and the proof keeps saying hello to the same node, for the same
    session, from the same port."""
    (reply_port,) = free_ports(1)
    asked = FakeClusterNode(lambda hello: raw_osc("/adaptive/session/elsewhere", *arguments))
    try:
        by_kind = run_proof(tmp_path, asked.port, reply_port, ADAPTIVE_SESSION="arena-1", ADAPTIVE_HELLO_TIMEOUT_S="1.5")
    finally:
        asked.close()
    assert "redirected" not in by_kind and "welcome" not in by_kind
    errors = by_kind["error"]
    assert errors and all(e["code"] == "client_bad_redirect" for e in errors)
    still = f"the redirect was not followed (still udp://127.0.0.1:{asked.port}, session 'arena-1')"
    assert all(problem in e["message"] and still in e["message"] for e in errors), errors
    assert len(asked.hellos) == len(errors) >= 1  # said again each second, each refused the same way
    assert {(h["session"], h["reply_port"]) for h in asked.hellos} == {("arena-1", reply_port)}
    (no_welcome,) = by_kind["no_welcome"]
    assert (no_welcome["osc_port"], no_welcome["session"]) == (asked.port, "arena-1")


def test_the_proof_checks_a_redirect_with_the_addons_own_function():
    """redirect_problem is the same text in the proof and the addon (so the runs above check the addon's
    rule), and both follow at most the Python client's MAX_REDIRECTS in a row."""
    from bridge.client import MAX_REDIRECTS

    def function(path, name):
        text = path.read_text()
        start = text.index(f"static func {name}(")
        start = text.rindex("\n", 0, text.rindex("\n## Why", 0, start) + 1)  # its doc comment too
        return text[start:text.index("\n\n\n", start)].strip()

    addon = REPO / "godot_example" / "addons" / "adaptive_soundtrack" / "adaptive_soundtrack.gd"
    assert function(addon, "redirect_problem") == function(PROOF, "redirect_problem")
    for path in (addon, PROOF):
        assert f"const MAX_REDIRECTS := {MAX_REDIRECTS}" in path.read_text(), path


ADDON_PLAYER = REPO / "godot_example" / "addons" / "adaptive_soundtrack" / "adaptive_stream_player.gd"
PLAYER_PROOF = REPO / "godot_example" / "godot3_proof" / "stream_player_proof.gd"


def test_the_proof_runs_the_addons_player_rules():
    """stream_player_proof.gd is a port: its constants and its skip-back rule are the addon's."""
    addon, proof = ADDON_PLAYER.read_text(), PLAYER_PROOF.read_text()
    for constant in ("RECONNECT_FIRST_SECONDS := 0.25", "RECONNECT_MAX_SECONDS := 8.0"):
        assert constant in addon and constant in proof, constant
    assert "- 2 * target_frames" in addon and "- 2 * target_frames" in proof
    assert "_pending.size() + queued - target_frames" in addon and "pending + in_generator - target_frames" in proof
    assert "_reconnect_delay * 2.0" in addon and "reconnect_delay * 2.0" in proof


def test_the_stream_player_skips_back_after_a_hitch_and_backs_off_while_the_server_is_gone(served, tmp_path):
    """In a real Godot runtime against a real server: a 0.8 s stall of the game's main loop piles 0.8 s of
    audio up in the socket; the first frame after it skips back to the target latency, so the delay does
    not grow. With the server stopped, the player retries after 0.25, 0.5, 1, 2 s: not every frame."""
    env = dict(os.environ, ADAPTIVE_AUDIO_PORT=str(served.audio_tcp_port), ADAPTIVE_HITCH_SECONDS="0.8",
               HOME=str(tmp_path))
    process = subprocess.Popen([GODOT, "--no-window", "-s", str(PLAYER_PROOF)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines, out = [], []
    try:
        for raw in process.stdout:
            out.append(raw)
            if raw.startswith("ADAPTIVE "):
                lines.append(json.loads(raw.removeprefix("ADAPTIVE ")))
                if lines[-1]["kind"] == "stop_server":
                    served.stop()
        process.wait(timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
    err = process.stderr.read()
    by_kind = {line["kind"]: line for line in lines}
    assert "done" in by_kind, "".join(out)[-3000:] + err[-3000:]
    assert "SCRIPT ERROR" not in err + "".join(out), err

    hitch = by_kind["hitch"]
    target = hitch["target_s"]
    assert hitch["played"] and hitch["reconnects"] == 0
    assert hitch["steady_max_latency_s"] < 2 * target + 0.05, hitch  # a block (21 ms) beyond twice the target at most
    assert hitch["skipped_s"] > hitch["hitch_s"] - 3 * target, hitch  # most of the stall's audio skipped...
    assert hitch["latency_after_first_frame_s"] <= target + 0.03, hitch  # ...at once, back to the target
    assert hitch["max_latency_after_s"] < 2 * target + 0.05, hitch

    attempts = by_kind["backoff"]["attempts_s"]
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert 3 <= len(attempts) <= 6, attempts  # every frame for 4 s would be ~250
    # Each wait doubles (0.25, 0.5, 1, 2 s), give or take the frame (16 ms) the retry waits for.
    assert attempts[0] < 0.1 and 0.25 <= gaps[0] < 0.4, attempts
    for shorter, longer in zip(gaps, gaps[1:]):
        assert 1.6 * shorter <= longer <= 2 * shorter + 0.15, attempts
