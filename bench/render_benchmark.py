#!/usr/bin/env python3
"""Offline rendering benchmark: the engine against the FluidSynth command line.

Run by hand (not in CI), from a source checkout::

    python bench/render_benchmark.py                 # print the tables
    python bench/render_benchmark.py --write-docs    # also rewrite "## Offline rendering" in docs/benchmarks.md
    python bench/render_benchmark.py --profile triumph   # cProfile of the engine rendering one cue

What it measures (see ``bench/README.md``):

* For every cue of the default bank, a timeline that forces the cue at
  intensity 1.0 (every layer playing) for ``--seconds`` (60 s), and one
  timeline that walks through every cue in bank order (transitions, the
  authored and generated bridges, one stinger per cue), ``--walk-seconds``.
* **Engine**: each case runs in a fresh Python process pinned to one core
  (``os.sched_setaffinity``), with ``OMP_NUM_THREADS=1`` and friends. The
  :class:`~adaptive.session.Session` construction (SoundFont loading, stem
  rendering or cache loading) is timed as *start-up*; ``session.render(4096)``
  in a loop into a preallocated buffer -- exactly what
  :func:`adaptive.render.render_timeline` does -- is timed as *render*, in CPU
  time (``time.process_time``) and wall clock. Best of ``--repeats`` (3). Peak
  memory is the worker's ``ru_maxrss`` after one full offline render (start-up
  + render of the whole timeline into memory). A
  :func:`~adaptive.render.render_timeline` call on the same timeline must give
  bit-identical audio (checked). A last, instrumented run measures the share
  of the render spent inside FluidSynth and the mean number of voices.
* **Command line**: the notes the engine played, exported with
  :func:`adaptive.midifile.write_midi`, rendered by ``fluidsynth -F`` with the
  same SoundFont, sample rate, gain (``adaptive.synth.SYNTH_GAIN``), reverb and
  chorus off and one CPU core, under ``taskset``. CPU time (user + system, from
  ``os.wait4``, that child only), wall clock and peak RSS of the process, best
  of ``--repeats``. Its own start-up (process start, SoundFont loading) is
  measured by rendering a one-note MIDI file and subtracted.

Both targets are judged on CPU time with start-up excluded on both sides: the
engine's render loop against the command line's CPU time minus that of the
one-note file. (The command line's wall clock is not used for the verdict: it
holds up to 0.1 s of waiting at exit for a FluidSynth helper thread that
sleeps in 100 ms steps. Both are reported.)

Fix-ups of the exported MIDI, so that the command line plays what the engine
played (each is counted and reported):

* notes still sounding when the render ends, and notes the engine cut when it
  stopped or restarted a voice (``MidiVoice.stop``/``release_all`` do not log a
  note-off), get a note-off there -- without them FluidSynth >= 2.3.1 renders
  for ever, waiting for held notes to die;
* an "all sound off" (CC 120) on every channel at the end of the timeline, so
  the command line stops where the engine stops instead of rendering release
  tails;
* audio stems rendered from MIDI (``rendered_from``) are mixed from memory by
  the engine and are not in its MIDI log; their source notes are added, looped
  as the engine loops the stem, so the command line synthesizes the same music.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

SAMPLE_RATE_HZ = 48_000
BLOCK_FRAMES = 4096  # adaptive.render.RENDER_BLOCK_FRAMES
TARGET_RTF = 50.0  # seconds of audio per second of compute, one thread
TARGET_RATIO = 1.25  # engine rendering time / command line rendering time
SECTION_TITLE = "## Offline rendering"
DOCS_PATH = REPO / "docs" / "benchmarks.md"
THREAD_ENV = {
    name: "1"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
}
WALK = "walk"  # name of the case that walks through every cue


# =============================================================================
# Timelines
# =============================================================================
def cue_timeline(cue: str, seconds: float):
    """Force ``cue`` at intensity 1.0 (every layer audible) for ``seconds``."""
    from adaptive.timeline import Timeline, TimelineEvent

    return Timeline(duration_seconds=seconds, seed=0,
                    events=[TimelineEvent(time_seconds=0.0, cue=cue, intensity=1.0)])


def walk_timeline(bank, seconds: float):
    """Every cue in bank order, an equal share of ``seconds`` each, at intensity
    1.0, with one stinger (cycling through the bank's) halfway through each."""
    from adaptive.timeline import Timeline, TimelineEvent

    dwell = seconds / len(bank.cues)
    events = []
    for index, cue in enumerate(bank.cues):
        events.append(TimelineEvent(time_seconds=index * dwell, cue=cue.name, intensity=1.0))
        if bank.stingers:
            events.append(TimelineEvent(time_seconds=(index + 0.5) * dwell,
                                        stinger=bank.stingers[index % len(bank.stingers)].name))
    return Timeline(duration_seconds=seconds, seed=0, events=events)


def make_timeline(bank, case: str, seconds: float):
    return walk_timeline(bank, seconds) if case == WALK else cue_timeline(case, seconds)


# =============================================================================
# Worker: one case in a fresh, pinned process
# =============================================================================
class _StemSpans:
    """Bench-only hooks, installed for the export run only (not the timed runs):
    record when stem voices play, so that the notes the stems were rendered
    from can be added to the exported MIDI for the command-line comparison.
    They change no audio."""

    def __init__(self) -> None:
        from adaptive import voice

        self.voice = voice
        self.session = None
        self.stem_spans: dict[int, list[list]] = {}  # id(StemVoice) -> [[grid, start, stop], ...]
        self._saved = (voice.StemVoice.start, voice.StemVoice.stop)

    def install(self, session) -> None:
        voice = self.voice
        stem_start, stem_stop = self._saved
        hooks = self

        def patched_stem_start(stem_voice, grid) -> None:
            spans = hooks.stem_spans.setdefault(id(stem_voice), [])
            if spans and spans[-1][2] is None:
                spans[-1][2] = grid.origin_frame
            spans.append([grid, grid.origin_frame, None])
            stem_start(stem_voice, grid)

        def patched_stem_stop(stem_voice, frame) -> None:
            spans = hooks.stem_spans.get(id(stem_voice))
            if spans and spans[-1][2] is None:
                spans[-1][2] = frame
            stem_stop(stem_voice, frame)

        self.session = session
        voice.StemVoice.start = patched_stem_start
        voice.StemVoice.stop = patched_stem_stop

    def uninstall(self) -> None:
        self.voice.StemVoice.start, self.voice.StemVoice.stop = self._saved


def _stem_note_events(session, hooks: _StemSpans, end_frame: int) -> list:
    """Note events of the MIDI that stems were rendered from, where and as
    long as the engine played those stems (looped like the stem)."""
    from adaptive.cue import StemSource
    from adaptive.part import read_midi_tracks
    from adaptive.events import MidiNoteEvent, PartInfo
    from adaptive.voice import NOTE_OFF, NOTE_ON

    events: list = []
    bank = session.bank
    for cue in bank.cues + bank.segments:
        player = session.stage.players[cue.name]  # bench-only peek at the session's players
        loop_beats = float(cue.loop_bars * cue.meter.beats_per_bar)
        for layer, layer_player in zip(cue.layers, player.layers):
            source = layer.source
            if not isinstance(source, StemSource) or source.rendered_from is None:
                continue
            spans = hooks.stem_spans.get(id(layer_player.voice), [])
            if not spans:
                continue
            spec = source.rendered_from
            part = read_midi_tracks(bank.path(spec.file))[spec.track]
            name = f"{cue.name}/{layer.name} (stem notes)"
            session.parts[name] = PartInfo(spec.program, spec.percussion)
            for grid, start, stop in spans:
                stop = end_frame if stop is None else min(stop, end_frame)
                iteration = 0
                while grid.beat_to_frame(iteration * loop_beats) < stop:
                    first = iteration * loop_beats
                    for s, d, p, v in zip(part.start_beats.tolist(), part.duration_beats.tolist(),
                                          part.pitch.tolist(), part.velocity.tolist()):
                        on = grid.beat_to_frame(first + s)
                        if on >= stop:
                            continue
                        off = min(max(grid.beat_to_frame(first + s + d), on + 1), stop)
                        events.append(MidiNoteEvent(on, name, NOTE_ON, int(p), int(v)))
                        events.append(MidiNoteEvent(off, name, NOTE_OFF, int(p), 0))
                    iteration += 1
    return events


def _frame_to_tick(tempo_changes: list, frame: int, sample_rate_hz: int) -> int:
    """The tick of ``frame`` in the tempo map write_midi writes (960 ticks per beat)."""
    from adaptive.midifile import TICKS_PER_BEAT

    changes = sorted(tempo_changes or [(0, 120.0, 4)], key=lambda c: c[0])
    segments = [] if changes[0][0] == 0 else [(0, 0.0, 120.0)]
    tick = changes[0][0] * 120.0 / 60.0 * TICKS_PER_BEAT / sample_rate_hz
    previous = None
    for change_frame, bpm, _ in changes:
        if previous is not None:
            tick += (change_frame - previous[0]) * previous[1] / 60.0 * TICKS_PER_BEAT / sample_rate_hz
        segments.append((change_frame, tick, bpm))
        previous = (change_frame, bpm)
    seg_frame, seg_tick, bpm = [s for s in segments if s[0] <= frame][-1]
    return int(round(seg_tick + (frame - seg_frame) * bpm / 60.0 * TICKS_PER_BEAT / sample_rate_hz))


def _append_all_sound_off(path: Path, tick: int) -> None:
    """Add a track with CC 120 (all sound off) on every channel at ``tick``."""
    import mido

    midi = mido.MidiFile(str(path))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="bench: end of render", time=0))
    for channel in range(16):
        track.append(mido.Message("control_change", channel=channel, control=120, value=0,
                                  time=tick if channel == 0 else 0))
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(track)
    midi.save(str(path))


def _threads() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _export_run(spec: dict, start_up, render, hooks: _StemSpans, total_frames: int) -> dict:
    """One full offline render in the fresh process: peak memory, the exported MIDI and the audio."""
    import numpy as np

    from adaptive.midifile import write_midi
    from adaptive.render import write_wav
    from adaptive.voice import NOTE_ON

    sample_rate = spec["sample_rate"]
    t0 = time.perf_counter()
    session = start_up()
    t1 = time.perf_counter()
    hooks.install(session)
    audio = np.empty((total_frames, 2), np.float32)
    render(session, audio)
    t2 = time.perf_counter()
    hooks.uninstall()
    peak_rss = _maxrss_mb()
    threads = _threads()
    synths = sum(1 for p in session.stage.players.values() for layer in p.layers if hasattr(layer.voice, "synth"))
    synths += len(session.stingers.voices) + len(session._bridge_synths)
    engine_note_ons = sum(1 for e in session.midi_events if e.kind == NOTE_ON)
    stem_events = _stem_note_events(session, hooks, total_frames)
    events = list(session.midi_events) + stem_events
    midi_path = Path(spec["workdir"]) / f"{spec['case']}.mid"
    write_midi(midi_path, events, session.parts, session.tempo_changes, sample_rate, end_frame=total_frames)
    _append_all_sound_off(midi_path, _frame_to_tick(session.tempo_changes, total_frames, sample_rate))
    parts_played = sorted({e.part for e in events})
    if spec.get("keep"):
        write_wav(Path(spec["workdir"]) / f"{spec['case']}.engine.wav", audio, sample_rate, "FLOAT")
    session.close()
    del session
    return {"audio": audio, "startup_first_seconds": t1 - t0, "render_first_seconds": t2 - t1,
            "peak_rss_mb": peak_rss, "threads": threads, "synths": synths, "parts_played": parts_played,
            "engine_note_ons": engine_note_ons, "stem_note_ons": sum(1 for e in stem_events if e.kind == NOTE_ON),
            "midi": str(midi_path)}


def _check_render_timeline(spec: dict, bank, timeline, audio) -> tuple[float, bool]:
    """Time the product path (render_timeline) and check it gives the same audio."""
    import numpy as np

    from adaptive.render import render_timeline

    t3 = time.perf_counter()
    result = render_timeline(bank, timeline, soundfont=spec["soundfont"], sample_rate_hz=spec["sample_rate"],
                             block_frames=BLOCK_FRAMES)
    render_timeline_seconds = time.perf_counter() - t3
    identical = bool(np.array_equal(result.audio, audio))
    del result
    return render_timeline_seconds, identical


def _timed_runs(repeats: int, start_up, render, audio) -> tuple[list, list, list]:
    """Start-up and render timed separately, ``repeats`` times: wall-clock start-ups, renders and render CPU."""
    startups, renders, render_cpu = [], [], []
    for _ in range(repeats):
        a = time.perf_counter()
        session = start_up()
        b = time.perf_counter()
        c_cpu = time.process_time()
        render(session, audio)
        c = time.perf_counter()
        render_cpu.append(time.process_time() - c_cpu)
        startups.append(b - a)
        renders.append(c - b)
        session.close()
        del session
    return startups, renders, render_cpu


def _instrumented_run(start_up, render, audio, total_frames: int) -> tuple[float, float]:
    """The share of the render spent inside FluidSynth (Synth.render_into) and the mean number of voices."""
    from adaptive import synth as synth_module

    original_render_into = synth_module.Synth.render_into
    inside = {"synth": 0.0, "counting": 0.0, "voice_frames": 0.0}

    def measured_render_into(synth, out) -> None:
        a = time.perf_counter()
        original_render_into(synth, out)
        b = time.perf_counter()
        inside["voice_frames"] += synth.active_voice_count() * out.shape[0]
        inside["synth"] += b - a
        inside["counting"] += time.perf_counter() - b

    session = start_up()
    synth_module.Synth.render_into = measured_render_into
    try:
        a = time.perf_counter()
        render(session, audio)
        instrumented = time.perf_counter() - a - inside["counting"]
    finally:
        synth_module.Synth.render_into = original_render_into
        session.close()
        del session
    return inside["synth"] / instrumented, inside["voice_frames"] / total_frames


def run_worker(spec: dict) -> dict:
    """Measure one case; returns the figures as a dict (printed as JSON)."""
    os.sched_setaffinity(0, {spec["core"]})
    t_import = time.perf_counter()
    import numpy as np  # noqa: F401 (timed with the engine's imports)

    from adaptive.clock import seconds_to_frames
    from adaptive.cue import load_bank
    from adaptive.midifile import write_midi  # noqa: F401 (timed with the engine's imports)
    from adaptive.offline import render_offline
    from adaptive.render import render_timeline, write_wav  # noqa: F401 (timed with the engine's imports)
    from adaptive.session import Session
    from adaptive.voice import NOTE_ON  # noqa: F401 (timed with the engine's imports)

    import_seconds = time.perf_counter() - t_import
    rss_after_imports = _maxrss_mb()
    bank = load_bank(spec["bank"])
    timeline = make_timeline(bank, spec["case"], spec["seconds"])
    sample_rate = spec["sample_rate"]
    total_frames = seconds_to_frames(timeline.duration_seconds, sample_rate)
    inputs = [(seconds_to_frames(t, sample_rate), item) for t, item in timeline.inputs()]

    def start_up():
        return Session(bank, soundfont=spec["soundfont"], sample_rate_hz=sample_rate, seed=timeline.seed,
                       max_block_frames=BLOCK_FRAMES)

    def render(session, audio) -> None:
        audio[:] = render_offline(session, total_frames, inputs, block_frames=BLOCK_FRAMES)

    # 1. Export run: one full offline render in a fresh process -> peak memory, MIDI.
    hooks = _StemSpans()
    export = _export_run(spec, start_up, render, hooks, total_frames)
    audio = export["audio"]
    # 2. The product path gives the same audio (and its end-to-end time).
    render_timeline_seconds, identical = _check_render_timeline(spec, bank, timeline, audio)
    # 3. Timed runs: start-up and render separately, best of N.
    startups, renders, render_cpu = _timed_runs(spec["repeats"], start_up, render, audio)
    # 4. Instrumented run: the share of the render spent inside FluidSynth
    #    (Synth.render_into) and the mean number of voices sounding.
    share_in_fluidsynth, mean_voices = _instrumented_run(start_up, render, audio, total_frames)

    return {
        "case": spec["case"],
        "audio_seconds": total_frames / sample_rate,
        "share_in_fluidsynth": share_in_fluidsynth,
        "mean_voices": mean_voices,
        "import_seconds": import_seconds,
        "startup_first_seconds": export["startup_first_seconds"],
        "render_first_seconds": export["render_first_seconds"],
        "startup_seconds": min(startups),
        "startup_all": startups,
        "render_seconds": min(renders),
        "render_all": renders,
        "render_cpu_seconds": min(render_cpu),
        "render_cpu_all": render_cpu,
        "render_timeline_seconds": render_timeline_seconds,
        "render_timeline_identical": identical,
        "peak_rss_mb": export["peak_rss_mb"],
        "rss_after_imports_mb": rss_after_imports,
        "threads": export["threads"],
        "synths": export["synths"],
        "torch_imported": "torch" in sys.modules,
        "parts_played": export["parts_played"],
        "engine_note_ons": export["engine_note_ons"],
        "stem_note_ons": export["stem_note_ons"],
        "midi": export["midi"],
    }


def spawn_worker(spec: dict) -> dict:
    env = dict(os.environ, **THREAD_ENV)
    env.setdefault("PYTHONHASHSEED", "0")
    completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr)
        raise SystemExit(f"render_benchmark: the worker for {spec['case']!r} failed (status {completed.returncode})")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# =============================================================================
# The FluidSynth command line
# =============================================================================
def cli_command(midi: Path, wav: Path, soundfont: Path, core: int) -> list[str]:
    """The command line with the engine's synth settings (adaptive.synth.Synth):
    its gain, reverb and chorus off, one core."""
    from adaptive.synth import SYNTH_GAIN

    return [
        "taskset", "-c", str(core),
        "fluidsynth", "-ni", "-q",
        "-F", str(wav), "-T", "wav", "-O", "float",
        "-r", str(SAMPLE_RATE_HZ), "-g", f"{SYNTH_GAIN:g}",
        "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0", "-o", "synth.cpu-cores=1",
        str(soundfont), str(midi),
    ]


def run_cli(midi: Path, wav: Path, soundfont: Path, core: int, repeats: int, timeout: float) -> dict:
    """Best-of-``repeats`` wall clock and CPU time (user + system, from
    ``os.wait4``: that child only) of the CLI rendering ``midi``, and its peak RSS."""
    import soundfile

    walls, cpus, rss = [], [], []
    for _ in range(repeats):
        if wav.exists():
            wav.unlink()
        start = time.perf_counter()
        process = subprocess.Popen(cli_command(midi, wav, soundfont, core), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise SystemExit(f"render_benchmark: fluidsynth did not finish {midi.name} in {timeout:.0f} s")
            time.sleep(0.001)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.returncode != 0:
            raise SystemExit(f"render_benchmark: fluidsynth failed on {midi.name}: {stderr.strip()}")
        walls.append(wall)
        cpus.append(usage.ru_utime + usage.ru_stime)
        rss.append(usage.ru_maxrss / 1024.0)
    info = soundfile.info(str(wav))
    return {"wall_seconds": min(walls), "wall_all": walls, "cpu_seconds": min(cpus), "cpu_all": cpus,
            "peak_rss_mb": max(rss), "audio_seconds": info.frames / info.samplerate}


def one_note_midi(path: Path) -> None:
    """A MIDI file with one short note and an all-sound-off: the CLI's start-up."""
    import mido

    midi = mido.MidiFile(type=1, ticks_per_beat=960)
    track = mido.MidiTrack()
    track.append(mido.Message("note_on", channel=0, note=60, velocity=64, time=0))
    track.append(mido.Message("note_off", channel=0, note=60, velocity=0, time=1))
    track.append(mido.Message("control_change", channel=0, control=120, value=0, time=0))
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.append(track)
    midi.save(str(path))


# =============================================================================
# Machine description
# =============================================================================
def machine() -> dict:
    from docs_section import machine_facts

    cli_version = "?"
    try:
        out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
        cli_version = re.search(r"runtime version ([\d.]+)", out).group(1)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    try:
        import ctypes

        import fluidsynth

        version_str = fluidsynth._fl.fluid_version_str
        version_str.restype = ctypes.c_char_p
        library_version = version_str().decode()
    except Exception:  # noqa: BLE001 -- informative only
        library_version = "?"
    try:
        from importlib.metadata import version

        pyfluidsynth = version("pyfluidsynth")
    except Exception:  # noqa: BLE001
        pyfluidsynth = "?"
    return {
        **machine_facts(),
        "fluidsynth_cli": cli_version,
        "fluidsynth_library": library_version,
        "pyfluidsynth": pyfluidsynth,
    }


# =============================================================================
# Report
# =============================================================================
def _rows(results: list[dict], cli_startup: dict) -> list[dict]:
    """Per case figures. The judged ones are CPU times with start-up excluded:
    the engine's render loop, and the command line's CPU time minus that of the
    one-note file (its start-up). Both FluidSynth 2.3's 2 s end grace and its
    exit wait fall out that way (see the report)."""
    rows = []
    for r in results:
        e, c = r["engine"], r["cli"]
        audio = e["audio_seconds"]
        engine_cpu, engine_wall = e["render_cpu_seconds"], e["render_seconds"]
        cli_cpu = max(c["cpu_seconds"] - cli_startup["cpu_seconds"], 1e-9)
        cli_wall = max(c["wall_seconds"] - cli_startup["wall_seconds"], 1e-9)
        engine_raw = e["startup_seconds"] + engine_wall
        rows.append({
            "case": r["case"], "audio": audio,
            "engine": engine_cpu, "engine_rtf": audio / engine_cpu,
            "cli": cli_cpu, "cli_rtf": audio / cli_cpu,
            "ratio": engine_cpu / cli_cpu,
            "engine_rss": e["peak_rss_mb"], "cli_rss": c["peak_rss_mb"],
            "engine_wall": engine_wall, "engine_wall_rtf": audio / engine_wall,
            "engine_startup": e["startup_seconds"], "engine_raw": engine_raw,
            "cli_raw": c["wall_seconds"], "cli_wall": cli_wall, "cli_wall_rtf": audio / cli_wall,
            "ratio_wall": engine_wall / cli_wall, "ratio_raw": engine_raw / c["wall_seconds"],
            "voices": e["mean_voices"], "share": e["share_in_fluidsynth"],
        })
    return rows


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**FAIL**"


def _command(args: argparse.Namespace) -> str:
    command = "python bench/render_benchmark.py"
    if args.seconds != 60:
        command += f" --seconds {args.seconds:g}"
    if args.walk_seconds != 120:
        command += f" --walk-seconds {args.walk_seconds:g}"
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    if args.cues:
        command += " --cues " + " ".join(args.cues)
    return command


def markdown(results: list[dict], info: dict, args: argparse.Namespace, cli_startup: dict) -> str:
    from adaptive.synth import SYNTH_GAIN

    rows = _rows(results, cli_startup)
    cues = [row for row in rows if row["case"] != WALK]
    first = results[0]["engine"]
    lines = [
        SECTION_TITLE,
        "",
        f"Measured {info['date']} with `{_command(args)}` (add `--write-docs` to rewrite this section; "
        "`bench/README.md` says what is measured). The default cue bank rendered offline at 48 kHz on one "
        "thread, against the FluidSynth command line rendering the same notes (the MIDI the engine exports) "
        f"with the same SoundFont (`{Path(args.soundfont).name}`), gain {SYNTH_GAIN:g} "
        "(`adaptive.synth.SYNTH_GAIN`), reverb and chorus off, one core. Each cue is forced at intensity 1.0 "
        f"so every layer plays, for {args.seconds:g} s; `walk` goes through every cue in bank order, "
        f"{args.walk_seconds:g} s, with their transitions (the generated and the authored bridge) and one "
        f"stinger per cue. Best of {args.repeats} runs.",
        "",
        "### Machine",
        "",
        f"- CPU: {info['cpu']}" + (", virtual machine (KVM guest)" if info["virtual"] else ""),
        f"- Cores: {info['cores']}; the benchmark uses one (`sched_setaffinity` for the engine, "
        f"`taskset -c {args.core}` for the command line)",
        f"- Memory: {info['memory_gb']:.1f} GiB",
        f"- OS: {info['os']}",
        f"- Python {info['python']}, numpy {info['numpy']}, pyfluidsynth {info['pyfluidsynth']}",
        f"- FluidSynth {info['fluidsynth_cli']} (command line) and {info['fluidsynth_library']} "
        "(the library the engine loads)",
        "",
        "### Rendering (start-up excluded on both sides)",
        "",
        "| cue | audio s | engine render s | engine RTF | CLI s | CLI RTF | engine/CLI | engine peak RSS MB | "
        "CLI peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['audio']:.0f} | {row['engine']:.3f} | {row['engine_rtf']:.1f}x | "
            f"{row['cli']:.3f} | {row['cli_rtf']:.1f}x | {row['ratio']:.2f} | {row['engine_rss']:.0f} | "
            f"{row['cli_rss']:.0f} |"
        )
    if len(cues) > 1:
        audio, engine, cli = (sum(r[key] for r in cues) for key in ("audio", "engine", "cli"))
        lines.append(f"| all cues | {audio:.0f} | {engine:.3f} | {audio / engine:.1f}x | {cli:.3f} | "
                     f"{audio / cli:.1f}x | {engine / cli:.2f} | | |")
    lines += [
        "",
        "Seconds are CPU seconds (user + system) of one thread pinned to one core. *engine render*: "
        "`Session.render(4096)` in a loop over the timeline, after the session is built (its wall clock is "
        "within a few percent, below). *CLI*: the `fluidsynth` process's CPU time minus that of rendering a "
        f"one-note file ({cli_startup['cpu_seconds']:.3f} s: process start, SoundFont loading). RTF (real-time "
        "factor): seconds of audio per second of compute. *engine/CLI*: the ratio of the two rendering times. "
        "Peak RSS: the engine's is `ru_maxrss` of a fresh worker process after one whole offline render "
        "(Python and imports, every synthesizer of the bank, the stems, the rendered audio held in memory; "
        f"{first['rss_after_imports_mb']:.0f} MB after imports); the command line's from `wait4`.",
        "",
        "### Wall clock and start-up",
        "",
        "| cue | engine render s | engine RTF | engine start-up s | CLI whole process s | CLI minus start-up s "
        "| engine/CLI, start-up excluded | engine start-up + render / CLI whole process |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['engine_wall']:.3f} | {row['engine_wall_rtf']:.1f}x | "
            f"{row['engine_startup']:.3f} | {row['cli_raw']:.3f} | {row['cli_wall']:.3f} | "
            f"{row['ratio_wall']:.2f} | {row['ratio_raw']:.2f} |"
        )
    lines += [
        "",
        f"The command line's start-up is {cli_startup['wall_seconds']:.3f} s of wall clock (one-note file). Its "
        "wall clock also holds up to 0.1 s of waiting at exit for a FluidSynth helper thread that sleeps in "
        "100 ms steps (seen with `strace`), so its wall times move in 0.1 s steps; and FluidSynth 2.3's "
        "player renders 2 s of silence after the last event (`FLUID_PLAYER_STOP_GRACE_MS`), in the one-note "
        "file too. That is why the targets are judged on CPU time. The engine's start-up is building the "
        "`Session`: one FluidSynth instance per MIDI or generated layer, stinger and bridge of the whole bank "
        f"({first['synths']} here), each loading the SoundFont, and the stems; the run's first start-up, "
        f"with an empty stem cache, took {first['startup_first_seconds']:.3f} s including rendering the "
        f"stems. Python start and imports ({first['import_seconds']:.2f} s) are counted on neither side.",
        "",
        "### Where the engine's time goes",
        "",
        "| cue | voices sounding (mean) | engine render inside FluidSynth | Python: scheduling, gains, mixing |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['case']} | {row['voices']:.1f} | {100 * row['share']:.0f}% | "
                     f"{100 * (1 - row['share']):.0f}% |")
    lines += [
        "",
        "From a separate instrumented run: the time inside `Synth.render_into` (FluidSynth's "
        "`fluid_synth_write_float`) over the render, and FluidSynth's active voice count summed over the "
        "session's synthesizers, averaged over the audio. The command line synthesizes the same notes, but not "
        "always the same voices: the engine caps each part's synthesizer at `max_voices` (64 by default), where "
        "the command line's one synthesizer has FluidSynth's default polyphony of 256 for all parts. A part that "
        "reaches the cap (`triumph`'s strings, whose repeated chords pile up release tails) makes the engine end "
        "the quietest released voices and do less work than the command line; on `triumph` that changes the "
        "audio by -67 dB relative to the signal (measured against an uncapped render). "
        "`python bench/render_benchmark.py --profile CUE` prints a cProfile of the render.",
        "",
        "### Targets",
        "",
    ]
    rtf_ok = all(r["engine_rtf"] >= TARGET_RTF for r in rows)
    ratio_ok = all(r["ratio"] <= TARGET_RATIO for r in rows)
    worst_rtf = min(rows, key=lambda r: r["engine_rtf"])
    worst_ratio = max(rows, key=lambda r: r["ratio"])
    lines += [
        "| target | judged on | result | |",
        "|---|---|---|---|",
        f"| >= {TARGET_RTF:g}x real time, one thread | engine render CPU time, every case | lowest: "
        f"{worst_rtf['case']} {worst_rtf['engine_rtf']:.1f}x | {_verdict(rtf_ok)} |",
        f"| <= {TARGET_RATIO:g}x the command line's time | rendering CPU time, start-up excluded on both sides, "
        f"every case | highest: {worst_ratio['case']} {worst_ratio['ratio']:.2f}x | {_verdict(ratio_ok)} |",
        "",
    ]
    failing = [r for r in rows if r["engine_rtf"] < TARGET_RTF or r["ratio"] > TARGET_RATIO]
    if failing:
        lines.append("Failing: " + ", ".join(
            f"{r['case']} ({r['engine_rtf']:.1f}x real time, {r['ratio']:.2f}x the command line's time)"
            for r in failing) + ".")
        slow_cli = [r for r in failing if r["cli_rtf"] < TARGET_RTF]
        if slow_cli:
            lines.append("The command line itself renders " + ", ".join(
                f"{r['case']} at {r['cli_rtf']:.1f}x" for r in slow_cli)
                + f", below {TARGET_RTF:g}x: there the target needs less synthesis work (fewer or cheaper "
                "voices), not less engine overhead.")
        lines.append("")
    notes = []
    for r in results:
        e = r["engine"]
        note = (f"{r['case']}: {len(e['parts_played'])} parts, "
                f"{e['engine_note_ons'] + e['stem_note_ons']} notes")
        if e["stem_note_ons"]:
            note += f" ({e['stem_note_ons']} of them from stems)"
        notes.append(note)
    identical = all(r["engine"]["render_timeline_identical"] for r in results)
    lines += [
        "### Notes",
        "",
        "- The exported MIDI is the engine's own export (`write_midi` with `end_frame`, which closes notes "
        "still held at the end of the render), plus an all-sound-off on every channel at the end of the "
        "timeline, where the engine's render stops. The notes of audio stems rendered from MIDI (the `sorrow` cue) are added, looped as the "
        "engine loops the stems: the engine mixes those stems from memory while the command line synthesizes "
        "their notes, so `sorrow` compares stem mixing with synthesis.",
        "- Notes played: " + "; ".join(notes) + ".",
        f"- `render_timeline` gives bit-identical audio to the timed loop: {'yes' if identical else '**NO**'}. "
        f"Threads in the engine process while rendering: {max(r['engine']['threads'] for r in results)}; "
        f"torch imported: {'yes' if any(r['engine']['torch_imported'] for r in results) else 'no'}.",
        "- Command line: `taskset -c 0 fluidsynth -ni -q -F out.wav -T wav -O float -r 48000 "
        f"-g {SYNTH_GAIN:g} -o synth.reverb.active=0 -o synth.chorus.active=0 -o synth.cpu-cores=1 "
        "SOUNDFONT file.mid` (32-bit float output like the engine's buffers, no dither). It also writes the "
        "WAV file, which the engine does not (it keeps the audio in memory).",
        "",
    ]
    return "\n".join(lines)


def write_docs(path: Path, section: str) -> None:
    """Replace (or add) the "## Offline rendering" section of ``path``, leaving the others."""
    from docs_section import write_section

    write_section(path, SECTION_TITLE, section)


def print_table(results: list[dict], cli_startup: dict) -> None:
    header = (f"{'cue':<9} {'audio s':>7} {'engine s':>8} {'eng RTF':>8} {'CLI s':>7} {'CLI RTF':>8} "
              f"{'eng/CLI':>7} {'eng MB':>6} {'CLI MB':>6} | {'eng wall':>8} {'eng start':>9} {'CLI wall':>8} "
              f"{'voices':>6} {'in FS':>5}")
    print("CPU seconds, start-up excluded on both sides; then wall clock (engine render, engine start-up, "
          "whole CLI process)")
    print(header)
    print("-" * len(header))
    for row in _rows(results, cli_startup):
        print(f"{row['case']:<9} {row['audio']:>7.1f} {row['engine']:>8.3f} {row['engine_rtf']:>7.1f}x "
              f"{row['cli']:>7.3f} {row['cli_rtf']:>7.1f}x {row['ratio']:>7.2f} {row['engine_rss']:>6.0f} "
              f"{row['cli_rss']:>6.0f} | {row['engine_wall']:>8.3f} {row['engine_startup']:>9.3f} "
              f"{row['cli_raw']:>8.3f} {row['voices']:>6.1f} {100 * row['share']:>4.0f}%")


# =============================================================================
# Profile
# =============================================================================
def run_profile(spec: dict) -> None:
    """cProfile of the render loop only (after start-up), in this pinned process."""
    import cProfile
    import pstats

    os.sched_setaffinity(0, {spec["core"]})
    from adaptive.clock import seconds_to_frames
    from adaptive.cue import load_bank
    from adaptive.offline import render_offline
    from adaptive.session import Session

    bank = load_bank(spec["bank"])
    timeline = make_timeline(bank, spec["case"], spec["seconds"])
    session = Session(bank, soundfont=spec["soundfont"], sample_rate_hz=spec["sample_rate"], seed=timeline.seed,
                      max_block_frames=BLOCK_FRAMES)
    inputs = [(seconds_to_frames(t, spec["sample_rate"]), item) for t, item in timeline.inputs()]
    total = seconds_to_frames(timeline.duration_seconds, spec["sample_rate"])

    def loop() -> None:
        render_offline(session, total, inputs, block_frames=BLOCK_FRAMES)

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(loop)
    elapsed = time.perf_counter() - start
    session.close()
    print(f"profile of rendering {spec['case']!r}, {timeline.duration_seconds:g} s of audio: "
          f"{elapsed:.3f} s under cProfile")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(spec["top"])
    stats.sort_stats("tottime").print_stats(spec["top"])
    if spec.get("output"):
        stats.dump_stats(spec["output"])
        print(f"wrote {spec['output']} (open with snakeviz or pstats)")


# =============================================================================
# Main
# =============================================================================
def build_parser() -> argparse.ArgumentParser:
    from adaptive.cue import DEFAULT_BANK
    from adaptive.synth import find_soundfont
    from app.generators import register_generators

    register_generators()  # as the adaptive command does: the model generator is the default

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=Path, default=DEFAULT_BANK, help="cue bank (default: the embedded one)")
    parser.add_argument("--soundfont", type=Path, default=None, help="SoundFont (default: as the engine finds it)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per cue (default 60)")
    parser.add_argument("--walk-seconds", type=float, default=120.0, help="audio of the walk through all cues "
                        "(default 120; 0 to skip). Keep it long enough (>= 60) that no cue is asked for while a "
                        "bridge plays: the engine fails on that today")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement, best kept (default 3)")
    parser.add_argument("--cues", nargs="*", help="only these cues")
    parser.add_argument("--core", type=int, default=0, help="the CPU core to pin to (default 0)")
    parser.add_argument("--keep", type=Path, help="keep the MIDI and WAV files in this folder")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    parser.add_argument("--docs", type=Path, default=DOCS_PATH, help=argparse.SUPPRESS)
    parser.add_argument("--cli-timeout", type=float, default=600.0, help="give up on a fluidsynth run after this")
    parser.add_argument("--profile", metavar="CUE", help=f"instead: cProfile the engine rendering CUE (or {WALK!r})")
    parser.add_argument("--profile-top", type=int, default=30, help="functions listed per profile ordering")
    parser.add_argument("--profile-output", type=Path, help="also dump the profile (pstats) here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.set_defaults(_find_soundfont=find_soundfont)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(run_worker(json.loads(sys.argv[2]))))
        return 0
    args = build_parser().parse_args(argv)
    args.soundfont = args._find_soundfont(args.soundfont)
    from adaptive.cue import load_bank

    bank = load_bank(args.bank)
    cases = [cue.name for cue in bank.cues if not args.cues or cue.name in args.cues]
    if args.cues:
        unknown = sorted(set(args.cues) - {c.name for c in bank.cues} - {WALK})
        if unknown:
            raise SystemExit(f"render_benchmark: unknown cue(s) {', '.join(unknown)}")
    if args.walk_seconds > 0 and (not args.cues or WALK in args.cues):
        cases.append(WALK)
    base_spec = {"bank": str(args.bank), "soundfont": str(args.soundfont), "sample_rate": SAMPLE_RATE_HZ,
                 "core": args.core, "repeats": args.repeats}

    if args.profile:
        seconds = args.walk_seconds if args.profile == WALK else args.seconds
        env_spec = dict(base_spec, case=args.profile, seconds=seconds, top=args.profile_top,
                        output=str(args.profile_output) if args.profile_output else None)
        os.environ.update(THREAD_ENV)
        run_profile(env_spec)
        return 0

    for tool in ("fluidsynth", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"render_benchmark: '{tool}' not found (apt-get install fluidsynth util-linux)")
    info = machine()
    info["date"] = _dt.date.today().isoformat()
    with tempfile.TemporaryDirectory(prefix="render-benchmark-") as temporary:
        workdir = args.keep or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        # A fresh stem cache: the first start-up of the run renders the stems
        # (reported), the others load them.
        os.environ["ADAPTIVE_CACHE"] = str(Path(temporary) / "cache")
        one_note = workdir / "one_note.mid"
        one_note_midi(one_note)
        cli_startup = run_cli(one_note, workdir / "one_note.wav", args.soundfont, args.core, args.repeats,
                              args.cli_timeout)
        print(f"fluidsynth start-up (one-note file): {cli_startup['wall_seconds']:.3f} s, "
              f"peak RSS {cli_startup['peak_rss_mb']:.0f} MB", file=sys.stderr)
        results = []
        for case in cases:
            seconds = args.walk_seconds if case == WALK else args.seconds
            print(f"{case}: engine ...", file=sys.stderr, end="", flush=True)
            engine = spawn_worker(dict(base_spec, case=case, seconds=seconds, workdir=str(workdir),
                                       keep=bool(args.keep)))
            print(f" {engine['render_seconds']:.3f} s; fluidsynth ...", file=sys.stderr, end="", flush=True)
            cli = run_cli(Path(engine["midi"]), workdir / f"{case}.cli.wav", args.soundfont, args.core,
                          args.repeats, args.cli_timeout)
            print(f" {cli['wall_seconds']:.3f} s", file=sys.stderr)
            extra = cli["audio_seconds"] - engine["audio_seconds"]
            if abs(extra - cli_startup["audio_seconds"]) > 0.05:
                print(f"  warning: fluidsynth wrote {cli['audio_seconds']:.3f} s for {engine['audio_seconds']:.3f} s "
                      f"(expected the timeline plus {cli_startup['audio_seconds']:.3f} s, as for the one-note file)",
                      file=sys.stderr)
            results.append({"case": case, "engine": engine, "cli": cli,
                            "cli_startup": cli_startup["wall_seconds"]})
        if not args.keep:
            for result in results:
                result["engine"]["midi"] = Path(result["engine"]["midi"]).name
    print()
    print_table(results, cli_startup)
    section = markdown(results, info, args, cli_startup)
    print()
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "cli_startup": cli_startup, "results": results},
                                        indent=1) + "\n", encoding="utf-8")
    if args.write_docs:
        write_docs(args.docs, section)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
