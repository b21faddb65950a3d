"""The Unity package's engine-independent C# (unity_example/Runtime/Core), compiled with Mono's C#
compiler into a console program (tests/clients/unity_console), run against a real
``adaptive serve``: what a Unity game would hear and see, checked."""

from __future__ import annotations

import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from adaptive.recording import load_recording
from adaptive.scene import SceneUpdate, StingerTrigger
from tests.clients.conftest import REPO, FakeClusterNode, session_elsewhere

UNITY = REPO / "unity_example"
SAMPLE_RATE_HZ = 48000
PREFILL_SECONDS = 0.1  # Program.cs PrefillSeconds

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    shutil.which("mcs") is None or shutil.which("mono") is None,
    reason="Mono's C# compiler and runtime (Debian mono-mcs, mono-runtime) are not installed; ./run test installs them")]


@pytest.fixture(scope="module")
def console_client(tmp_path_factory):
    """The console program, compiled from the package's Core sources and Program.cs."""
    exe = tmp_path_factory.mktemp("csharp") / "client.exe"
    sources = sorted(str(p) for p in (UNITY / "Runtime" / "Core").glob("*.cs"))
    sources += sorted(str(p) for p in (REPO / "tests" / "clients" / "unity_console").glob("*.cs"))
    result = subprocess.run(["mcs", "-warnaserror+", "-out:" + str(exe), *sources],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return exe


def test_unity_scripts_type_check_against_the_unity_api_they_use(tmp_path):
    """Runtime/ and Samples~/ compile, warnings as errors, against tests/clients/unity_stub (Unity's
    signatures for what they call): no typo or type error reaches a Unity user. Unity's behaviour is
    not proven here."""
    stub = tmp_path / "UnityEngine.dll"
    result = subprocess.run(["mcs", "-target:library", "-out:" + str(stub),
                             str(REPO / "tests" / "clients" / "unity_stub" / "UnityEngine.cs")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sources = [str(p) for folder in ("Runtime", "Runtime/Core", "Samples~/BasicScene")
               for p in sorted((UNITY / folder).glob("*.cs"))]
    result = subprocess.run(["mcs", "-warnaserror+", "-target:library", "-r:" + str(stub),
                             "-out:" + str(tmp_path / "package.dll"), *sources],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_layout_is_what_the_unity_package_manager_reads():
    """Unity's manual, "Package layout" and "Adding tests to a package": package.json, README.md,
    CHANGELOG.md, LICENSE.md, Runtime/ and Tests/Editor/ with their assembly definitions, Samples~/ and
    Documentation~/ (folders ending in ~ are not imported, so they need no .meta files)."""
    manifest = json.loads((UNITY / "package.json").read_text())
    assert manifest["name"] == manifest["name"].lower() and manifest["name"].count(".") >= 2
    assert manifest["version"].count(".") == 2 and manifest["unity"].count(".") == 1
    assert manifest["license"] == "See LICENSE.md file"
    for name in ("README.md", "CHANGELOG.md", "LICENSE.md", "Documentation~/adaptive-soundtrack.md"):
        assert (UNITY / name).is_file(), name
    assert f"## [{manifest['version']}]" in (UNITY / "CHANGELOG.md").read_text()
    assert not list(UNITY.glob("Tests~")), "Tests~ is invisible to Unity's Test Framework"
    for sample in manifest["samples"]:
        assert (UNITY / sample["path"]).is_dir(), sample
        shipped = {p.suffix for p in (UNITY / sample["path"]).iterdir()}
        if ".unity" not in shipped:  # described truthfully: scripts and instructions, not a scene
            assert "scene" not in sample["displayName"].lower() or "scripts" in sample["displayName"].lower()
            assert "No .unity scene is shipped" in sample["description"]
    asmdef = json.loads((UNITY / "Runtime" / "Adaptive.Soundtrack.asmdef").read_text())
    assert asmdef["name"] == "Adaptive.Soundtrack"
    tests = json.loads((UNITY / "Tests" / "Editor" / "Adaptive.Soundtrack.Tests.Editor.asmdef").read_text())
    assert {"Adaptive.Soundtrack", "UnityEngine.TestRunner", "UnityEditor.TestRunner"} <= set(tests["references"])
    assert tests["includePlatforms"] == ["Editor"] and tests["overrideReferences"] is True
    assert tests["precompiledReferences"] == ["nunit.framework.dll"] and tests["autoReferenced"] is False
    assert tests["defineConstraints"] == ["UNITY_INCLUDE_TESTS"]
    # A package installed from a git URL is immutable: Unity ignores any asset without a .meta file.
    assets = [UNITY / "package.json", UNITY / "README.md", UNITY / "CHANGELOG.md", UNITY / "LICENSE.md",
              *(UNITY / "Runtime").rglob("*"), UNITY / "Tests", *(UNITY / "Tests").rglob("*")]
    missing = [str(p.relative_to(UNITY)) for p in assets if p.suffix != ".meta" and not p.with_name(p.name + ".meta").exists()]
    assert not missing, f"no .meta file for {missing}"
    guids = [line for p in UNITY.rglob("*.meta") for line in p.read_text().splitlines() if line.startswith("guid:")]
    assert len(guids) == len(set(guids))


# One sample of every message the server sends, with values at the edges of their ranges.
SERVER_MESSAGES = {
    "welcome": dict(protocol_version=1, session_id="default", sample_rate_hz=48000, block_frames=256,
                    lookahead_ms=40.0, audio_tcp_port=9001, time_s=12, time_us=999_999,
                    client_id="0123456789abcdef0123456789abcdef", role="listener", lease_s=30),
    "retry": dict(cookie="0123456789abcdef"),
    "pong": dict(sequence=2**31 - 1, receive_time_s=3, receive_time_us=5, send_time_s=3, send_time_us=7),
    "beat": dict(frame=2**31 - 1, time_s=44739, time_us=242_666, cue="combat", bar_index=12, beat_in_bar=4, bpm=140.0),
    "bar": dict(frame=0, time_s=0, time_us=0, cue="", bar_index=0),
    "cue_change": dict(frame=96000, time_s=2, time_us=0, cue="sorrow ♪", previous="explore"),
    "transition": dict(frame=5, time_s=0, time_us=104, phase="end", from_cue="combat", to_cue="to_triumph"),
    "stinger_played": dict(frame=7, time_s=0, time_us=145, stinger="danger"),
    "midi": dict(frame=9, time_s=0, time_us=187, status=0x99, data1=36, data2=127, part="combat/drums"),
    "error": dict(code="out_of_range", message="/adaptive/intensity argument 'intensity' is 2.0 (allowed: a number from 0 to 1)"),
}


def test_csharp_codec_reads_every_server_message_and_writes_what_the_server_accepts(console_client):
    """Cross-implementation: the C# codec decodes datagrams made by the server's own encoder
    (bridge.protocol.encode_osc), rejects malformed ones, and what AdaptiveClient sends passes the
    server's validating decoder (bridge.protocol.decode_osc) with the intended values."""
    from bridge.protocol import BY_NAME, decode_osc, encode_osc

    datagrams = [encode_osc(name, **values) for name, values in SERVER_MESSAGES.items()]
    malformed = [datagrams[2][:-4], b"#bundle\x00" + bytes(8), b"/adaptive/beat\x00\x00,x\x00\x00", b"no slash\x00\x00\x00\x00"]
    stdin = "\n".join(d.hex() for d in datagrams + malformed) + "\n"
    run = subprocess.run(["mono", str(console_client), "codec"], input=stdin, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    decoded = [line for line in lines if line["kind"] == "decoded"]
    assert len(decoded) == len(SERVER_MESSAGES)
    for line, (name, values) in zip(decoded, SERVER_MESSAGES.items()):
        message = BY_NAME[name]
        assert line["address"] == message.address and line["tags"] == message.signature
        for arg, got in zip(message.args, line["args"]):
            expected = values[arg.name]
            assert got == pytest.approx(expected, rel=1e-7) if isinstance(expected, float) else got == expected, arg.name
        assert line["typed"] != "none" or name == "pong"
    assert [line["kind"] for line in lines[len(decoded):len(decoded) + len(malformed)]] == ["rejected"] * len(malformed)

    assert next(line["ok"] for line in lines if line["kind"] == "vote_refused")  # an empty name, an intensity > 1
    reply_port = next(line["port"] for line in lines if line["kind"] == "reply_port")
    sent = [decode_osc(bytes.fromhex(line["hex"])) for line in lines if line["kind"] == "sent"]
    assert [(d.message.name, d.values) for d in sent] == [
        ("hello", dict(reply_port=reply_port, sample_rate_hz=44100, channels=2, sample_format="f32", client_name="codec-test",
                       role="", cookie="", proof="", session="")),
        ("subscribe", dict(stream="midi", client_id="")),
        ("scene", dict(emotion="tense", intensity=0.25, location="cave é")),
        ("emotion_point", dict(valence=-0.5, arousal=1.0)),
        ("cue", dict(cue="")),
        ("stinger", dict(stinger="impact")),
        ("audience_vote", dict(emotion="tense", valence=0.0, arousal=0.0, intensity=0.75)),
        ("audience_vote", dict(emotion="", valence=0.5, arousal=-1.0, intensity=-1.0)),
        ("ping", dict(sequence=1)),
        ("scene", dict(emotion="x" * 64, intensity=0.5, location="")),
    ]
    from bridge.access import hello_proof

    proof = next(line["hex"] for line in lines if line["kind"] == "proof")
    assert proof == hello_proof("0123456789abcdef-secret é".encode(), "0123456789abcdef", "listener", 9001)


def test_ring_buffer_playback_and_resampler(console_client):
    """Without a server: the SPSC ring under a producer and a consumer thread (every sample and its
    session frame checked across wrap-arounds), overfull writes, the playback's prefill / underrun /
    skip / mono mapping, and the resampler against an ideal sine."""
    run = subprocess.run(["mono", str(console_client), "ring"], capture_output=True, text=True, timeout=60)
    lines = {line["kind"]: line for line in map(json.loads, run.stdout.splitlines())}
    assert run.returncode == 0 and lines["checks"]["failures"] == 0, run.stdout + run.stderr
    assert lines["ring_stress"]["samples"] == 4_000_000 and lines["ring_stress"]["dropped"] == 0
    resampler = lines["resampler"]
    assert abs(resampler["out_frames"] - resampler["in_frames"] * 44100 / 48000) <= 1
    assert resampler["max_error"] < 0.0021  # linear interpolation of a 1 kHz sine at 48 kHz: (2 pi f / fs)^2 / 8
    # EmotionZone's rule: highest priority, latest entered among equals, back to the one below on leaving.
    assert lines["zones"]["tops"] == "+cave=cave +arena=arena +river=arena -arena=river +cave=cave river2=river -all=-"


NUNIT_CONSOLE = shutil.which("nunit-console")
NUNIT_FRAMEWORK = next(iter(sorted(Path("/usr/lib/cli").glob("nunit.framework-*/nunit.framework.dll"))), None)
"""Debian's NUnit 2.6 (nunit-console, libnunit-framework2.6.3-cil; `./run test` installs them): the
real framework and console runner, where installed."""
needs_nunit = pytest.mark.skipif(NUNIT_CONSOLE is None or NUNIT_FRAMEWORK is None,
                                 reason="Debian's NUnit (nunit-console, libnunit-framework2.6.3-cil) is not "
                                        "installed; ./run test installs it (the NUnit stand-in test runs instead)")


@needs_nunit
def test_the_packages_edit_mode_tests_pass_under_nunit(tmp_path):
    """Tests/Editor/*.cs (NUnit Edit Mode tests of Core, RedirectTests.cs among them: session_elsewhere
    followed over a fake transport), compiled with Core against Debian's
    nunit.framework.dll (NUnit 2.6: the asserts they use are NUnit 2.6's and 3's alike) and run by
    nunit-console under Mono: every declared test runs and passes."""
    library = tmp_path / "Adaptive.Soundtrack.Tests.dll"
    sources = sorted(str(p) for p in (UNITY / "Runtime" / "Core").glob("*.cs"))
    sources += sorted(str(p) for p in (UNITY / "Tests" / "Editor").glob("*.cs"))
    result = subprocess.run(["mcs", "-warnaserror+", "-target:library", "-r:" + str(NUNIT_FRAMEWORK),
                             "-out:" + str(library), *sources], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    report = tmp_path / "result.xml"
    run = subprocess.run([NUNIT_CONSOLE, "-nologo", str(library), "-xml=" + str(report)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    import xml.etree.ElementTree as ElementTree

    cases = ElementTree.parse(report).getroot().iter("test-case")
    outcomes = {case.get("name").rsplit(".", 1)[-1]: (case.get("executed"), case.get("success")) for case in cases}
    declared = sum(p.read_text().count("[Test]") for p in (UNITY / "Tests" / "Editor").glob("*.cs"))
    assert len(outcomes) == declared >= 13, run.stdout + run.stderr
    assert {name: o for name, o in outcomes.items() if o != ("True", "True")} == {}, run.stdout
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(NUNIT_CONSOLE is not None and NUNIT_FRAMEWORK is not None,
                    reason="the real NUnit is installed and runs these tests (test_..._pass_under_nunit)")
def test_the_packages_edit_mode_tests_pass_under_mono(tmp_path):
    """Where NUnit is not installed: Tests/Editor/*.cs compiled with Core against the NUnit stand-in
    (tests/clients/nunit_stub: NUnit's attributes and the asserts the tests use) and run by its
    runner: every test runs and passes."""
    exe = tmp_path / "nunit.exe"
    sources = sorted(str(p) for p in (UNITY / "Runtime" / "Core").glob("*.cs"))
    sources += sorted(str(p) for p in (UNITY / "Tests" / "Editor").glob("*.cs"))
    sources += sorted(str(p) for p in (REPO / "tests" / "clients" / "nunit_stub").glob("*.cs"))
    result = subprocess.run(["mcs", "-warnaserror+", "-out:" + str(exe), *sources], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    run = subprocess.run(["mono", str(exe)], capture_output=True, text=True, timeout=120)
    results = [json.loads(line) for line in run.stdout.splitlines()]
    declared = sum(p.read_text().count("[Test]") for p in (UNITY / "Tests" / "Editor").glob("*.cs"))
    assert len(results) == declared >= 13, run.stdout + run.stderr
    assert [r for r in results if not r["passed"]] == [] and run.returncode == 0


def test_the_stinger_button_sample_names_every_stinger_of_the_default_mapping():
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping

    names = load_mapping(DEFAULT_MAPPING, load_bank(DEFAULT_BANK)).stinger_names()
    source = (UNITY / "Samples~" / "BasicScene" / "StingerButton.cs").read_text()
    tooltip = source[source.index("[Tooltip("):source.index(")]", source.index("[Tooltip("))]
    assert len(names) == 7 and all(name in tooltip for name in names), (names, tooltip)


def test_core_has_no_unity_dependency():
    """Core compiles without Unity (the fixture proves it); it must not even mention UnityEngine."""
    for source in (UNITY / "Runtime" / "Core").glob("*.cs"):
        assert "UnityEngine" not in source.read_text(), source


def test_csharp_client_hears_beats_cues_stingers_and_continuous_audio_from_the_real_server(console_client, served):
    run = subprocess.run(["mono", str(console_client), "127.0.0.1", str(served.osc_port), "5"],
                         capture_output=True, text=True, timeout=60)
    out, err = served.stop()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "Exception" not in run.stderr, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    by_kind: dict[str, list[dict]] = {}
    for line in lines:
        by_kind.setdefault(line["kind"], []).append(line)
    (welcome,) = by_kind["welcome"]
    (clock,) = by_kind["clock"]
    (summary,) = by_kind["summary"]
    assert welcome["sample_rate_hz"] == SAMPLE_RATE_HZ and welcome["audio_tcp_port"] == served.audio_tcp_port
    assert clock["synced"] and clock["samples"] == 8 and clock["round_trip_s"] < 0.05

    # Callbacks are raised on the thread that calls DispatchPending (Unity: the main thread).
    timed = [line for line in lines if "on_main_thread" in line]
    assert timed and all(line["on_main_thread"] for line in timed)

    # Beats: numbered bar by bar (4/4) within each cue, one beat apart in server time, sent ahead of time.
    beats = by_kind["beat"]
    explore = [b for b in beats if b["cue"] == "explore"]
    combat = [b for b in beats if b["cue"] == "combat"]
    assert len(explore) >= 2 and len(combat) >= 4, [(b["cue"], b["bar_index"], b["beat_in_bar"]) for b in beats]
    for cue_beats, bpm in ((explore, 84.0), (combat, 140.0)):
        numbers = [(b["bar_index"], b["beat_in_bar"]) for b in cue_beats]
        first = numbers[0][0] * 4 + numbers[0][1] - 1
        assert numbers == [((first + i) // 4, (first + i) % 4 + 1) for i in range(len(numbers))]
        assert all(b["bpm"] == bpm for b in cue_beats)
        beat_seconds = 60.0 / bpm
        for a, b in zip(cue_beats, cue_beats[1:]):
            assert abs((b["server_time_s"] - a["server_time_s"]) - beat_seconds) < 2e-5  # time_us resolution
            assert abs((b["frame"] - a["frame"]) - beat_seconds * SAMPLE_RATE_HZ) <= 1
    # Sent ahead of time: arrival (stamped on the receive thread, mapped by the ping clock sync) before
    # the beat's own time, by about the server's lookahead; the session's first beat too (its block once
    # took 7-11 ms to render and the beat led by only 9 ms or trailed: a module imported on the render
    # thread, now imported up front).
    # The music plays from the server's start, so beats also come while the client is still starting
    # (Mono's JIT, its clock sync) and its receive thread stamps them late: only the beats from the
    # client's first scene message on, when it is up and running, are timed.
    header, inputs, end_frame = load_recording(served.record)
    first_scene_frame = [frame for frame, item in inputs if isinstance(item, SceneUpdate)][1]
    leads = [b["server_time_s"] - b["arrival_server_time_s"] for b in beats if b["frame"] >= first_scene_frame]
    assert min(leads) > -0.01, leads
    assert statistics.median(leads) > welcome["lookahead_ms"] / 1000 / 2, leads

    # The scene change reached the server as sent; the cue changed on the next explore beat after it.
    scenes = [(frame, item) for frame, item in inputs if isinstance(item, SceneUpdate)]
    # The first is the mapping's starting scene, played from frame 0 before the client said anything.
    assert scenes[0][0] == 0 and scenes[0][1] == SceneUpdate(emotion="calm", intensity=0.4, location="anywhere")
    scenes = scenes[1:]
    calm = [item for _, item in scenes if item.emotion == "calm"]
    angry_frame = next(frame for frame, item in scenes if item.emotion == "angry")
    # Rate cap: 31 calm states were set, at most 3 reached the server, the newest (0.8) among them.
    (burst,) = [line for line in by_kind["sent"] if line["what"] == "scene_burst"]
    assert burst["calls"] == 30 and burst["sent_at_once"] <= 1
    assert 2 <= len(calm) <= 3 and math.isclose(calm[-1].intensity, 0.8, abs_tol=1e-6)
    (change,) = [c for c in by_kind["cue_change"] if c["cue"] == "combat"]
    assert change["previous"] == "explore"
    step = 60.0 / 84.0 * SAMPLE_RATE_HZ
    last_explore = max(b["frame"] for b in explore if b["frame"] < angry_frame)
    assert last_explore < angry_frame <= change["frame"] <= last_explore + step + 1
    assert abs(change["frame"] - (last_explore + step)) <= 1
    assert combat[0]["frame"] == change["frame"] and (combat[0]["bar_index"], combat[0]["beat_in_bar"]) == (0, 1)

    # The stinger played on a combat beat (quantize next_beat); the unknown one came back as an error.
    assert [item.name for _, item in inputs if isinstance(item, StingerTrigger)] == ["danger"]
    (stinger,) = by_kind["stinger_played"]
    assert stinger["stinger"] == "danger" and stinger["frame"] in {b["frame"] for b in combat}
    (error,) = by_kind["error"]
    assert error["code"] == "unknown_name" and "no_such_stinger" in error["message"]

    assert_the_audio_stream_played_through_the_ring(by_kind["audio"], summary, timed, welcome)
    assert "1 rejected messages" in out
    (latency,) = by_kind["latency"]  # figures for the README; the first sound waits for the prefill
    assert latency["hello_to_welcome_ms"] < latency["hello_to_first_audio_block_ms"] < latency["hello_to_first_heard_ms"]
    assert latency["hello_to_first_heard_ms"] >= PREFILL_SECONDS * 1000
    print(latency)


def assert_the_audio_stream_played_through_the_ring(audio: list[dict], summary: dict, timed: list[dict],
                                                    welcome: dict) -> None:
    """What the C# stream player reported about the audio it received and played."""
    # Audio over TCP: continuous sequence numbers and frames, the session's format, not silent.
    sequences = [a["sequence"] for a in audio]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    for a, b in zip(audio, audio[1:]):
        assert b["first_frame"] == a["first_frame"] + a["n_frames"]
    assert {(a["channels"], a["sample_format"], a["sample_rate_hz"]) for a in audio} == {(2, 1, SAMPLE_RATE_HZ)}
    frames = sum(a["n_frames"] for a in audio)
    assert frames >= 4 * SAMPLE_RATE_HZ
    rms = math.sqrt(sum(a["rms"] ** 2 * a["n_frames"] for a in audio) / frames)
    assert rms > 0.01
    assert summary["sequence_gaps"] == 0 and summary["ring_dropped_samples"] == 0 and summary["connects"] == 1

    # The ring buffer played it: prefilled, then no underrun, and every event maps to the moment it is
    # heard; the stream's mapping agrees with the ping clock sync up to a constant latency
    # (prefill minus the server's lookahead), the same for every event.
    assert summary["underruns"] == 0 and summary["played_frames"] >= 3 * SAMPLE_RATE_HZ
    assert summary["prefill_frames"] == PREFILL_SECONDS * SAMPLE_RATE_HZ
    latencies = [line["heard_local_s"] - line["due_local_s"] for line in timed if line["heard_local_s"] is not None]
    assert len(latencies) >= 5
    assert max(latencies) - min(latencies) < 0.005, latencies
    expected_latency = PREFILL_SECONDS - welcome["lookahead_ms"] / 1000
    assert abs(statistics.median(latencies) - expected_latency) < 0.03, latencies

    # The resampler (output rates other than 48 kHz): the right number of frames, the same loudness.
    assert abs(summary["resample_out_frames"] - summary["resample_in_frames"] * 44100 / 48000) <= 2
    assert math.isclose(summary["resample_rms_out"], summary["resample_rms_in"], rel_tol=0.02)


def test_csharp_client_proves_its_role_and_gets_audio_from_a_server_with_credentials(console_client,
                                                                                   served_with_credentials):
    """The same program as a control client of a server with credentials: its hello is answered with a
    retry, its second hello carries the HMAC proof, the welcome grants control, the TCP audio stream
    starts after the welcome's client_id, and its scene changes are obeyed."""
    from bridge.access import Role

    served = served_with_credentials
    secret = served.credentials.secrets[Role.CONTROL].decode()
    run = subprocess.run(["mono", str(console_client), "127.0.0.1", str(served.osc_port), "5", "control", secret],
                         capture_output=True, text=True, timeout=60)
    served.stop()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    (welcome,) = [line for line in lines if line["kind"] == "welcome"]
    assert welcome["role"] == "control" and len(welcome["client_id"]) == 32 and welcome["lease_s"] == 30
    audio = [line for line in lines if line["kind"] == "audio"]
    assert sum(a["n_frames"] for a in audio) >= 4 * SAMPLE_RATE_HZ
    assert {line["cue"] for line in lines if line["kind"] == "beat"} >= {"explore", "combat"}
    header, inputs, end_frame = load_recording(served.record)
    assert any(isinstance(item, SceneUpdate) and item.emotion == "angry" for _, item in inputs)


def test_csharp_client_follows_session_elsewhere_from_a_node_to_the_real_server(console_client, served):
    """A cluster's node, faked by a UDP socket that answers every hello with ``session_elsewhere``, sends the
    C# client to a real single ``adaptive serve`` (the "hosting node"): the client says the same hello there
    with the session id it was given, is welcomed into that session, and reads that node's TCP audio stream
    where the welcome says, as AdaptiveStreamPlayer does."""
    asked = FakeClusterNode(lambda hello: session_elsewhere("arena-7", "127.0.0.1", served.osc_port, 0,
                                                           served.audio_tcp_port))
    try:
        run = subprocess.run(["mono", str(console_client), "redirect", "127.0.0.1", str(asked.port), "new"],
                             capture_output=True, text=True, timeout=60)
    finally:
        asked.close()
    out, err = served.stop()
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    by_kind: dict[str, list[dict]] = {}
    for line in map(json.loads, run.stdout.splitlines()):
        by_kind.setdefault(line["kind"], []).append(line)
    assert "error" not in by_kind, by_kind["error"]
    (redirected,) = by_kind["redirected"]
    assert redirected == {"kind": "redirected", "session_id": "arena-7", "host": "127.0.0.1", "osc_port": served.osc_port,
                          "zmq_control_port": 0, "audio_tcp_port": served.audio_tcp_port, "from_host": "127.0.0.1",
                          "from_osc_port": asked.port}
    (client,) = by_kind["client"]
    # One hello to the node asked (for a new session, from the first link's port), then the node it named.
    assert [(h["session"], h["reply_port"], h["client_name"]) for h in asked.hellos] == [
        ("new", client["first_reply_port"], "csharp-redirect")]
    assert (client["host"], client["port"], client["session"]) == ("127.0.0.1", served.osc_port, "arena-7")
    assert client["reply_port"] != client["first_reply_port"]
    (welcome,) = by_kind["welcome"]
    assert welcome["session_id"] == "arena-7" and welcome["audio_tcp_port"] == served.audio_tcp_port
    audio = by_kind["audio"]
    assert len(audio) == 5 and [a["sequence"] for a in audio] == list(range(audio[0]["sequence"], audio[0]["sequence"] + 5))
    print({"hello_to_welcome_ms": welcome["hello_to_welcome_ms"]})
