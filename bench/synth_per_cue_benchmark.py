#!/usr/bin/env python3
"""One FluidSynth synthesizer per cue (a MIDI channel and an output per
part) against one per part, as a session has (issue 14, "cheap sessions").

Run by hand (not in CI), from a source checkout::

    python bench/synth_per_cue_benchmark.py                 # 5 parts, 2000 blocks, best of 3
    python bench/synth_per_cue_benchmark.py --parts 2 5 10 --blocks 1000

P parts (General MIDI programs in turn: piano, strings, bass, pad,
flute, ...), each holding a three-note chord re-struck every 24 blocks
(so attacks, sustains and releases all play), rendered in blocks of 1024
frames at 48 kHz with the session's synthesizer settings (reverb and chorus
off, gain 0.8, 64 voices per part):

* **per part** (today): P synthesizers, one ``fluid_synth_write_float``
  call each per block, each part's audio in its own buffer (the mixer then
  applies the part's gain);
* **per cue**: one synthesizer, the parts on MIDI channels 0..P-1, with
  ``synth.audio-channels`` = ``synth.audio-groups`` = P so that channel i
  renders into output pair i, one ``fluid_synth_process`` call per block
  with 2P output buffers: each part's audio still apart, so the per-layer
  gains and crossfades stay as they are; polyphony 64 x P.

Reports the thread CPU time per block (best of ``--repeats``) and whether
each part's audio is bit-identical between the two (it decides whether the
golden outputs would change).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BLOCK_FRAMES = 1024
RATE_HZ = 48_000
PROGRAMS = (0, 48, 33, 89, 73, 40, 24, 56, 11, 19)
CHORDS = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))


def notes_at(block: int, part: int) -> tuple[list[int], list[int]]:
    """(note-offs, note-ons) of ``part`` at the start of ``block``."""
    if block % 24:
        return [], []
    chord = CHORDS[(block // 24) % len(CHORDS)]
    previous = CHORDS[(block // 24 - 1) % len(CHORDS)] if block else ()
    shift = -12 if part % 3 == 2 else 0
    return [p + shift for p in previous], [p + shift for p in chord]


def per_part(parts: int, blocks: int, soundfont: Path) -> tuple[float, list[np.ndarray]]:
    from adaptive.synth import Synth

    synths = [Synth(soundfont, RATE_HZ, PROGRAMS[i % len(PROGRAMS)], skip_when_quiet=False) for i in range(parts)]
    out = [np.zeros((blocks * BLOCK_FRAMES, 2), np.float32) for _ in range(parts)]
    try:
        started = time.thread_time()
        for block in range(blocks):
            for i, synth in enumerate(synths):
                offs, ons = notes_at(block, i)
                for pitch in offs:
                    synth.note_off(pitch)
                for pitch in ons:
                    synth.note_on(pitch, 90)
                synth.render_into(out[i][block * BLOCK_FRAMES:(block + 1) * BLOCK_FRAMES])
        cpu_s = time.thread_time() - started
    finally:
        for synth in synths:
            synth.close()
    return cpu_s / blocks, out


def per_cue(parts: int, blocks: int, soundfont: Path) -> tuple[float, list[np.ndarray]]:
    import contextlib
    import io

    from adaptive.synth import DEFAULT_MAX_VOICES, SYNTH_GAIN, _SharedSoundFont, _sfont_api

    with contextlib.redirect_stdout(io.StringIO()):
        import fluidsynth
    library = ctypes.PyDLL(fluidsynth._fl._name)
    process = library.fluid_synth_process
    process.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    process.restype = ctypes.c_int
    noteon, noteoff = library.fluid_synth_noteon, library.fluid_synth_noteoff
    noteon.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    noteoff.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    synth = fluidsynth.Synth(gain=SYNTH_GAIN, samplerate=float(RATE_HZ), channels=16,
                             **{"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.cpu-cores": 1,
                                "synth.polyphony": DEFAULT_MAX_VOICES * parts,
                                "synth.audio-channels": parts, "synth.audio-groups": parts})
    shared = _SharedSoundFont.acquire(soundfont)
    soundfont_id = _sfont_api().add(synth.synth, shared.sfont)
    for i in range(parts):
        synth.program_select(i, soundfont_id, 0, PROGRAMS[i % len(PROGRAMS)])
    handle = synth.synth
    planes = np.zeros((2 * parts, BLOCK_FRAMES), np.float32)  # left and right of each part, planar
    pointers = (ctypes.c_void_p * (2 * parts))(*[planes[k].ctypes.data for k in range(2 * parts)])
    out = [np.zeros((blocks * BLOCK_FRAMES, 2), np.float32) for _ in range(parts)]
    try:
        started = time.thread_time()
        for block in range(blocks):
            for i in range(parts):
                offs, ons = notes_at(block, i)
                for pitch in offs:
                    noteoff(handle, i, pitch)
                for pitch in ons:
                    noteon(handle, i, pitch, 90)
            planes.fill(0.0)  # fluid_synth_process adds into its buffers
            process(handle, BLOCK_FRAMES, 0, None, 2 * parts, pointers)
            for i in range(parts):  # interleave into each part's buffer, as the mixer needs it
                target = out[i][block * BLOCK_FRAMES:(block + 1) * BLOCK_FRAMES]
                target[:, 0] = planes[2 * i]
                target[:, 1] = planes[2 * i + 1]
        cpu_s = time.thread_time() - started
    finally:
        _sfont_api().remove(synth.synth, shared.sfont)
        synth.delete()
        shared.release()
    return cpu_s / blocks, out


def main(argv: list[str] | None = None) -> int:
    from adaptive.synth import find_soundfont

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, nargs="+", default=[5], help="parts per cue (default 5: the calls "
                                                                          "per block a session made, profiled)")
    parser.add_argument("--blocks", type=int, default=2000, help="blocks of 1024 frames per render (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="renders per case, best kept (default 3)")
    parser.add_argument("--soundfont", type=Path, default=None)
    args = parser.parse_args(argv)
    soundfont = find_soundfont(args.soundfont)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; {soundfont.name}; {args.blocks} blocks of {BLOCK_FRAMES} frames, best of "
          f"{args.repeats}")
    print("| parts | per part: CPU per block | per cue: CPU per block | per cue / per part | parts bit-identical |")
    print("|---:|---:|---:|---:|---|")
    for parts in args.parts:
        best_part = best_cue = None
        identical = True
        for _ in range(args.repeats):
            part_s, part_audio = per_part(parts, args.blocks, soundfont)
            cue_s, cue_audio = per_cue(parts, args.blocks, soundfont)
            best_part = part_s if best_part is None else min(best_part, part_s)
            best_cue = cue_s if best_cue is None else min(best_cue, cue_s)
            identical &= all(np.array_equal(a, b) for a, b in zip(part_audio, cue_audio))
            loudest = max(float(np.abs(a).max()) for a in part_audio)
            worst = max(float(np.abs(a - b).max()) for a, b in zip(part_audio, cue_audio))
        print(f"| {parts} | {1000 * best_part:.3f} ms | {1000 * best_cue:.3f} ms | {best_cue / best_part:.2f} "
              f"| {'yes' if identical else f'no (largest difference {worst:.2e}, peak {loudest:.2f})'} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
