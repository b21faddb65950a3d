#!/usr/bin/env python3
"""Generator benchmark: how fast the model generator writes music on one CPU thread.

Run by hand (not in CI), from a source checkout::

    .venv/bin/python bench/generator_benchmark.py                # print the figures
    .venv/bin/python bench/generator_benchmark.py --write-docs   # also rewrite "## Generator" in docs/benchmarks.md

What it measures, pinned to one core (``--core``, default 0) with
``torch.set_num_threads(1)``:

* **Load**: a fresh Python process imports ``models.generate`` and constructs
  ``ModelPartGenerator()`` (the committed checkpoint); the construction is
  timed (import time reported apart). Best and median of ``--repeats``.
* **Real-time factor**: for each role (melody, arpeggio, bass) and arousal
  (-1, 0, +1), one generator streams ``--bars`` (32) consecutive 4/4 bars at
  120 bpm (2 s of music each) over a C-Am-F-G progression; RTF = seconds of
  music / seconds of wall-clock compute; each case is run ``--rtf-runs`` (3)
  times with a fresh generator and the median run is reported (the shared
  machine's neighbours move a run by up to 1.5x: the 7.4 MB of weights live
  in an L3 cache other guests share). Targets: >= 50x (every case).
* **Bridge latency**: a fresh generator instance (cold context, shared loaded
  model, as the engine makes one per generated part) writes a 2-bar bridge,
  120 bpm 4/4; ``--bridges`` (300) trials with seeds 0.., roles in turn and
  arousal/valence drawn uniformly in [-1, 1]. Time from the first request to
  the second bar's notes; p50, p99, max. Target: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
SECTION_TITLE = "## Generator (models/)"


def measure_load(repeats: int, core: int) -> dict:
    code = ("import os, time, json; os.sched_setaffinity(0, {%d}); t0=time.perf_counter(); "
            "import torch; torch.set_num_threads(1); import models.generate as g; t1=time.perf_counter(); "
            "g.ModelPartGenerator(); t2=time.perf_counter(); "
            "print(json.dumps({'import_seconds': t1-t0, 'load_seconds': t2-t1}))") % core
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    loads = [r["load_seconds"] for r in runs]
    imports = [r["import_seconds"] for r in runs]
    return {"load_best_ms": 1000 * min(loads), "load_median_ms": 1000 * statistics.median(loads),
            "import_median_ms": 1000 * statistics.median(imports)}


def measure_rtf(bars: int, runs: int = 1) -> list[dict]:
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from models.generate import ModelPartGenerator

    progression = [Chord.parse(s) for s in ("C", "Am", "F", "G")]
    rows = []
    for role in ("melody", "arpeggio", "bass"):
        for arousal in (-1.0, 0.0, 1.0):
            timings = []
            for _ in range(runs):
                generator = ModelPartGenerator()
                notes = 0
                started = time.perf_counter()
                for bar in range(bars):
                    part = generator.generate_bar(BarRequest(bar, Key.parse("C major"), progression[bar % 4], 4,
                                                             120.0, 0.5, arousal, role, 11))
                    notes += len(part)
                timings.append(time.perf_counter() - started)
            seconds = statistics.median(timings)
            music_seconds = bars * 4 * 60.0 / 120.0
            rows.append({"role": role, "arousal": arousal, "rtf": music_seconds / seconds,
                         "ms_per_bar": 1000 * seconds / bars, "notes_per_bar": notes / bars})
    return rows


def measure_bridges(trials: int) -> dict:
    import numpy as np

    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from models.generate import ModelPartGenerator

    rng = np.random.default_rng(0)
    roles = ("melody", "arpeggio", "bass")
    times = []
    for seed in range(trials):
        valence, arousal = rng.uniform(-1, 1, 2)
        role = roles[seed % 3]
        started = time.perf_counter()
        generator = ModelPartGenerator()
        for bar, chord in enumerate(("G", "C")):
            generator.generate_bar(BarRequest(bar, Key.parse("C major"), Chord.parse(chord), 4, 120.0,
                                              float(valence), float(arousal), role, seed))
        times.append(time.perf_counter() - started)
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--bridges", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rtf-runs", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    import torch

    torch.set_num_threads(1)
    from docs_section import machine_facts

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.generate import shared_model

    load_average = os.getloadavg()[0]
    load = measure_load(args.repeats, args.core)
    _, payload, _ = shared_model()
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)  # the torch model, for its parameter count
    rtf = measure_rtf(args.bars, args.rtf_runs)
    bridges = measure_bridges(args.bridges)
    facts = machine_facts()
    config = payload["model_config"]
    print(json.dumps({"load": load, "rtf": rtf, "bridges": bridges}, indent=1))

    lowest = min(rtf, key=lambda r: r["rtf"])
    lines = [
        SECTION_TITLE, "",
        "`bench/generator_benchmark.py`: the model generator (`models.generate.ModelPartGenerator`) on one core, "
        "one torch thread. Machine: "
        f"{facts['cpu']}{' (KVM guest)' if facts['virtual'] else ''}, {facts['cores']} cores, {facts['os']}, "
        f"Python {facts['python']}, torch {torch.__version__}. Measured {time.strftime('%Y-%m-%d')}; the machine "
        f"is shared with other work (1-minute load average {load_average:.2f} at the start), so the "
        "figures vary with its load: under a load of 3-5 the per-token time was 3-10x longer.",
        "",
        f"Checkpoint `models/{DEFAULT_CHECKPOINT.name}`: {DEFAULT_CHECKPOINT.stat().st_size / 1e6:.1f} MB, "
        f"{model.parameter_count() / 1e6:.2f} M parameters ({config['n_layer']} layers, width {config['n_embd']}, "
        f"{config['n_head']} heads, context {config['block_size']} tokens).",
        "",
        "| Measure | Figure | Target |", "|---|---|---|",
        f"| Load (construct `ModelPartGenerator()` in a fresh process) | {load['load_median_ms']:.0f} ms median, "
        f"{load['load_best_ms']:.0f} ms best (imports: {load['import_median_ms']:.0f} ms) | — |",
        f"| Real-time factor, lowest case ({lowest['role']}, arousal {lowest['arousal']:+.0f}) | "
        f"{lowest['rtf']:.0f}x | >= 50x |",
        f"| 2-bar bridge, 120 bpm 4/4, cold context ({bridges['trials']} trials) | p50 {bridges['p50_ms']:.1f} ms, "
        f"p99 {bridges['p99_ms']:.1f} ms, max {bridges['max_ms']:.1f} ms | p99 <= 100 ms |",
        "",
        f"Real-time factor by case ({args.bars} streamed bars of 4/4 at 120 bpm = {args.bars * 2} s of music; "
        f"the median of {args.rtf_runs} runs):",
        "", "| Role | Arousal | RTF | ms / bar | notes / bar |", "|---|---|---|---|---|",
    ]
    lines += [f"| {r['role']} | {r['arousal']:+.0f} | {r['rtf']:.0f}x | {r['ms_per_bar']:.1f} | "
              f"{r['notes_per_bar']:.1f} |" for r in rtf]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.write_docs:
        from docs_section import write_section

        write_section(ROOT / "docs" / "benchmarks.md", SECTION_TITLE, section)


if __name__ == "__main__":
    main()
