#!/usr/bin/env python3
"""A FluidSynth synthesizer's memory against its voices and settings, the
voices each part of the default bank sounds at most, and whether growing a
synthesizer's polyphony later sounds like making it with all its voices
(issue 14, "Memory per session" in docs/benchmarks.md).

Run by hand (not in CI), from a source checkout::

    python bench/synth_voices_benchmark.py                 # all three
    python bench/synth_voices_benchmark.py --only memory grow

* **memory**: resident kB per synthesizer (``fluidsynth.Synth`` with the
  session's settings, no SoundFont: it is shared), the mean over 30 made in
  a fresh subprocess per row, for 1, 16, 64 and 256 voices, with reverb and
  chorus active or not, at 8, 48 and 96 kHz;
* **peaks**: the most voices (``fluid_synth_get_active_voice_count`` after
  each render call) each synthesizer of a session sounded over
  ``examples/emotion-walk.toml``, ``walk.toml`` and ``loss.toml`` (the
  default bank, mapping and SoundFont; the model generator);
* **grow**: a synthesizer made with 24 voices and grown to 64
  (``fluid_synth_set_polyphony``) before any note-on that finds more than 12
  sounding, against one made with 64, both playing the same dense chords
  (voices pile past 64, so FluidSynth steals): the first frame where their
  audio differs, the largest difference, and the most voices each had
  active.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)  # run from a checkout without installing

SAMPLE_RATE_HZ = 48_000
TIMELINES = ("emotion-walk.toml", "walk.toml", "loss.toml")
MEMORY_CASES = [  # (voices, effects active, sample rate)
    (1, False, 48_000), (16, False, 48_000), (64, False, 48_000), (256, False, 48_000),
    (1, True, 48_000), (1, False, 8_000), (1, False, 96_000),
]


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _memory_case(voices: int, effects: bool, rate_hz: int, count: int = 30) -> float:
    """In this (fresh) process: resident kB per synthesizer of ``count``."""
    from adaptive.synth import SYNTH_GAIN, _load_fluidsynth

    fluidsynth, _ = _load_fluidsynth()
    settings = {"synth.reverb.active": int(effects), "synth.chorus.active": int(effects), "synth.cpu-cores": 1,
                "synth.polyphony": voices}
    fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(rate_hz), channels=16, **settings)  # the library's first
    before = _rss_kb()
    kept = [fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(rate_hz), channels=16, **settings)
            for _ in range(count)]
    cost = (_rss_kb() - before) / count
    del kept
    return cost


def memory() -> None:
    print("| voices | reverb and chorus | rate | resident per synthesizer |")
    print("|---:|---|---:|---:|")
    for voices, effects, rate_hz in MEMORY_CASES:
        result = subprocess.run([sys.executable, __file__, "--memory-case", str(voices), str(int(effects)),
                                 str(rate_hz)], capture_output=True, text=True, check=True)
        kb = float(result.stdout.split()[-1])
        print(f"| {voices} | {'active' if effects else 'off'} | {rate_hz / 1000:g} kHz | {kb:.0f} kB |")


def peaks() -> None:
    import adaptive.synth as synth_module
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from adaptive.offline import render_offline
    from adaptive.session import Session
    from adaptive.timeline import load_timeline
    from app.generators import register_generators

    most: dict[int, int] = {}
    render_into = synth_module.Synth.render_into

    def counting(synth, out):
        render_into(synth, out)
        if not synth.quiet:
            most[id(synth)] = max(most.get(id(synth), 0), synth.active_voice_count())

    synth_module.Synth.render_into = counting
    register_generators()
    bank = load_bank(DEFAULT_BANK)
    mapping = load_mapping(DEFAULT_MAPPING, bank)
    by_part: dict[str, int] = {}
    for name in TIMELINES:
        timeline = load_timeline(REPO / "examples" / name, bank, mapping)
        session = Session(bank, sample_rate_hz=SAMPLE_RATE_HZ, seed=timeline.seed, mapping=mapping,
                          generated_bridges=True)
        names = {id(layer.voice.synth): f"{cue}/{layer.layer_name}" for cue, player in session.stage.players.items()
                 for layer in player.layers if getattr(layer.voice, "synth", None) is not None}
        names.update({id(voice.synth): f"stinger/{stinger}" for stinger, (voice, _) in session.stingers.voices.items()})
        names.update({id(synth): "bridge" for synth in session._bridge_synths})
        inputs = [(round(seconds * SAMPLE_RATE_HZ), item) for seconds, item in timeline.inputs()]
        render_offline(session, round(timeline.duration_seconds * SAMPLE_RATE_HZ), inputs, block_frames=1024)
        for key, count in most.items():
            if key in names:
                by_part[names[key]] = max(by_part.get(names[key], 0), count)
        most.clear()
        session.close()
    print(f"most voices at once over {', '.join(TIMELINES)} (parts that sounded):")
    print(", ".join(f"{part} {count}" for part, count in sorted(by_part.items(), key=lambda item: -item[1])))


def play_dense(synth, steps: int = 120, seed: int = 5):
    """Overlapping chords struck faster than they release, blocks of varying size, then a rest."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chunks, most = [], 0
    for step in range(steps):
        for pitch in rng.integers(36, 96, size=int(rng.integers(1, 6))):
            synth.note_on(int(pitch), int(rng.integers(30, 128)))
        if step % 3 == 0:
            synth.note_off(int(rng.integers(36, 96)))
        out = np.zeros((int(rng.integers(64, 1500)), 2), np.float32)
        synth.render_into(out)
        most = max(most, synth.active_voice_count())
        chunks.append(out)
    out = np.zeros((SAMPLE_RATE_HZ, 2), np.float32)
    synth.render_into(out)
    chunks.append(out)
    return np.concatenate(chunks), most


def grow(soundfont: str | None) -> None:
    import ctypes

    import numpy as np

    from adaptive.synth import Synth, _load_fluidsynth, find_soundfont

    fluidsynth, _ = _load_fluidsynth()
    set_polyphony = ctypes.PyDLL(fluidsynth._fl._name).fluid_synth_set_polyphony
    set_polyphony.argtypes = [ctypes.c_void_p, ctypes.c_int]
    path = find_soundfont(soundfont)
    print(f"SoundFont {path.name}; dense chords, 120 steps")
    print("| program | grew at | most voices active: grown / made with 64 | first differing frame | largest difference |")
    print("|---:|---:|---|---:|---:|")
    for program in (0, 48):
        grown = Synth(path, SAMPLE_RATE_HZ, program, max_voices=24)
        whole = Synth(path, SAMPLE_RATE_HZ, program, max_voices=64)
        note_on, grew_at = grown.note_on, []

        def growing_note_on(pitch, velocity, grown=grown, note_on=note_on, grew_at=grew_at):
            if not grew_at and grown.active_voice_count() > 12:
                assert set_polyphony(grown._handle, 64) == 0
                grew_at.append(grown.rendered_frames + grown.skipped_frames)
            note_on(pitch, velocity)

        grown.note_on = growing_note_on
        audio_grown, most_grown = play_dense(grown)
        audio_whole, most_whole = play_dense(whole)
        differ = np.flatnonzero(np.any(audio_grown != audio_whole, axis=1))
        first = str(int(differ[0])) if len(differ) else "none (bit-identical)"
        print(f"| {program} | frame {grew_at[0] if grew_at else '-'} | {most_grown} / {most_whole} | {first} | "
              f"{float(np.abs(audio_grown - audio_whole).max()):.3g} |")
        grown.close()
        whole.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=("memory", "peaks", "grow"), default=("memory", "peaks", "grow"))
    parser.add_argument("--soundfont", default=None, help="for grow (default: the server's choice)")
    parser.add_argument("--memory-case", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_case:
        voices, effects, rate_hz = args.memory_case
        print(json.dumps(_memory_case(voices, bool(effects), rate_hz)))
        return
    if "memory" in args.only:
        memory()
    if "grow" in args.only:
        grow(args.soundfont)
    if "peaks" in args.only:
        peaks()


if __name__ == "__main__":
    main()
