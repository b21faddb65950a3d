"""The protocol from a real Godot runtime: godot_example/godot3_proof/adaptive_proof.gd, run headless by
Debian's godot3-server against a real ``adaptive serve`` (OSC over PacketPeerUDP, the TCP audio stream
over StreamPeerTCP, as the Godot 4 addon does); and the addon's stream player's buffering rules (skip
back to the target latency after a hitch, reconnect backoff), ported to Godot 3 in
godot_example/godot3_proof/stream_player_proof.gd, against the same real server."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess

import pytest

from tests.clients.conftest import REPO
from tests.helpers import free_ports

GODOT = shutil.which("godot3-server")
SAMPLE_RATE_HZ = 48000

pytestmark = [pytest.mark.integration, pytest.mark.skipif(GODOT is None, reason="Debian's godot3-server is not installed; ./run test installs it")]


def test_gdscript_says_hello_changes_the_cue_and_receives_beats_and_continuous_audio(served, tmp_path):
    (reply_port,) = free_ports(1)
    env = dict(os.environ, ADAPTIVE_OSC_PORT=str(served.osc_port), ADAPTIVE_AUDIO_PORT=str(served.audio_tcp_port),
               ADAPTIVE_REPLY_PORT=str(reply_port), ADAPTIVE_RUN_SECONDS="4", HOME=str(tmp_path))
    run = subprocess.run([GODOT, "--no-window", "-s", str(REPO / "godot_example" / "godot3_proof" / "adaptive_proof.gd")],
                         capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    served.stop()
    lines = [json.loads(line.removeprefix("ADAPTIVE ")) for line in run.stdout.splitlines() if line.startswith("ADAPTIVE ")]
    assert lines and lines[-1]["kind"] == "done", run.stdout[-3000:] + run.stderr[-3000:]
    assert "SCRIPT ERROR" not in run.stderr + run.stdout, run.stderr
    by_kind: dict[str, list[dict]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)
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

    audio = by_kind["audio"]
    sequences = [a["sequence"] for a in audio]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    for a, b in zip(audio, audio[1:]):
        assert b["first_frame"] == a["first_frame"] + a["n_frames"]
    assert {(a["channels"], a["sample_format"], a["sample_rate_hz"]) for a in audio} == {(2, 1, SAMPLE_RATE_HZ)}
    frames = sum(a["n_frames"] for a in audio)
    assert frames >= 3 * SAMPLE_RATE_HZ
    assert math.sqrt(sum(a["rms"] ** 2 * a["n_frames"] for a in audio) / frames) > 0.01


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
