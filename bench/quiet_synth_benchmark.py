#!/usr/bin/env python3
"""What skipping FluidSynth while nothing sounds saves (issue 14, "cheap sessions").

Run by hand (not in CI), from a source checkout::

    python bench/quiet_synth_benchmark.py                    # every case, best of 3
    python bench/quiet_synth_benchmark.py --seconds 30 --repeats 2 --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2

A :class:`adaptive.synth.Synth` with no active voice writes zeros without
calling FluidSynth (``adaptive.synth.SKIP_WHEN_QUIET``). For each case this
renders one session offline (the default bank and mapping, the rule-based
generator, blocks of 1024 frames) twice per repeat, with the skip on and
off, in this one process, and reports:

* **render CPU**: the render loop's thread CPU time (``time.thread_time``)
  per second of audio, as a share of one core (what the session's render
  thread would cost in real time, without the pacing and the sinks); best
  of ``--repeats``;
* **FluidSynth calls** per second of audio, and the share of the frames
  asked of synthesizers that were written as zeros without a call (the
  synthesizers of cues not playing are not asked at all);
* whether the two renders are **bit-identical** (they must be).

Cases: the example timelines (``examples/walk.toml``, ``loss.toml``,
``emotion-walk.toml``: scene changes, transitions, stingers) and ``idle``:
the mapping's starting scene held for ``--seconds`` (a session whose game
has not changed anything yet, as each new session of
``bench/sessions_benchmark.py`` plays between its games' scene updates).
The session construction (SoundFont, stems) is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TIMELINES = {"walk": "walk.toml", "loss": "loss.toml", "emotion-walk": "emotion-walk.toml"}
"""Case name -> example timeline in ``examples/``."""

BLOCK_FRAMES = 1024
"""Render block (frames), the server's default."""


def render_case(case: str, skip: bool, seconds: float, soundfont: Path | None) -> dict:
    """Render ``case`` once with the skip on or off; its audio and figures."""
    import adaptive.synth as synth_module
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from adaptive.offline import render_offline
    from adaptive.session import Session
    from adaptive.timeline import load_timeline
    from app.generators import register_generators

    register_generators()
    bank = load_bank(DEFAULT_BANK)
    mapping = load_mapping(DEFAULT_MAPPING, bank)
    if case == "idle":
        seed, duration_s, timed = 1, seconds, [(0.0, mapping.start_scene())]
    else:
        timeline = load_timeline(REPO / "examples" / TIMELINES[case], bank, mapping)
        seed, duration_s, timed = timeline.seed, timeline.duration_seconds, list(timeline.inputs())
    synths: list = []
    original_init = synth_module.Synth.__init__

    def counted_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        synths.append(self)

    synth_module.SKIP_WHEN_QUIET = skip
    synth_module.Synth.__init__ = counted_init
    try:
        session = Session(bank, soundfont=soundfont, sample_rate_hz=48_000, seed=seed, max_block_frames=BLOCK_FRAMES,
                          generator="rule_based", mapping=mapping)
    finally:
        synth_module.Synth.__init__ = original_init
        synth_module.SKIP_WHEN_QUIET = True
    try:
        inputs = [(round(t * 48_000), item) for t, item in sorted(timed, key=lambda pair: pair[0])]
        total_frames = round(duration_s * 48_000)
        started = time.thread_time()
        audio = render_offline(session, total_frames, inputs, block_frames=BLOCK_FRAMES)
        cpu_s = time.thread_time() - started
    finally:
        session.close()
    calls = sum(s.render_calls for s in synths)
    skipped = sum(s.skipped_frames for s in synths)
    asked = skipped + sum(s.rendered_frames for s in synths)
    return {"audio": audio, "cpu_share": cpu_s / duration_s, "calls_per_s": calls / duration_s,
            "skipped_share": skipped / asked if asked else 0.0,
            "synths": len(synths), "seconds": duration_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=[*TIMELINES, "idle"], help="cases (default: all)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of the idle case (default 60)")
    parser.add_argument("--repeats", type=int, default=3, help="renders per case and setting, best kept (default 3)")
    parser.add_argument("--soundfont", type=Path, default=None, help="SoundFont (default: as the engine finds it)")
    args = parser.parse_args(argv)
    from adaptive.synth import choose_soundfont

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}; SoundFont {choose_soundfont(args.soundfont).path.name}")
    print("| case | audio (s) | synthesizers | render CPU, every frame | render CPU, skip when quiet | saved "
          "| FluidSynth calls/s (before -> after) | frames skipped | bit-identical |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for case in args.cases:
        best = {True: None, False: None}
        identical = True
        for _ in range(args.repeats):
            for skip in (False, True):
                result = render_case(case, skip, args.seconds, args.soundfont)
                if best[skip] is None or result["cpu_share"] < best[skip]["cpu_share"]:
                    reference = best[skip]["audio"] if best[skip] is not None else None
                    best[skip] = result
                    if reference is not None:
                        identical &= bool(np.array_equal(reference, result["audio"]))
            identical &= bool(np.array_equal(best[True]["audio"], best[False]["audio"]))
        before, after = best[False], best[True]
        print(f"| {case} | {after['seconds']:g} | {after['synths']} | {100 * before['cpu_share']:.1f} % "
              f"| {100 * after['cpu_share']:.1f} % | {100 * (1 - after['cpu_share'] / before['cpu_share']):.0f} % "
              f"| {before['calls_per_s']:.0f} -> {after['calls_per_s']:.0f} | {100 * after['skipped_share']:.1f} % "
              f"| {'yes' if identical else 'NO'} |", flush=True)
        if not identical:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
