#!/usr/bin/env python3
"""Compare General MIDI SoundFonts as the engine's default: start-up, memory
and render speed of the default cue bank with each.

    python bench/soundfont_benchmark.py [--soundfont SF ...] [--rounds 3] [--write-docs]

Each measurement is a fresh worker process (``--worker``), pinned to one core
(``--core``) with ``OMP_NUM_THREADS=1``, and the SoundFonts take turns within
each round, so a change in the machine's load touches them alike; the best of
``--rounds`` is kept. A worker:

1. imports the engine (``import`` time, not counted below);
2. loads the SoundFont (one :class:`adaptive.synth.Synth`: FluidSynth reads
   the file; an SF3 file's Ogg Vorbis samples are decoded here): wall and
   CPU seconds, and the resident memory (RSS) it added;
3. builds a :class:`~adaptive.session.Session` of the default bank with the
   ``rule_based`` generator (every synthesizer, the stems) and renders the
   first block of 1024 frames: *first block* is the time from the process's
   start (``/proc/self/stat``) to that block, Python's start and imports
   included;
4. renders ``examples/walk.toml`` (80 s: every cue, transitions, stingers) in
   a new session (the SoundFont is loaded already), in CPU seconds: the real-
   time factor (RTF) is audio seconds per CPU second;
5. reports its peak RSS (``ru_maxrss``).

Then, once per SF3 file, its load with every core (FluidSynth decodes SF3
samples in parallel with OpenMP), not pinned.

Needs the SoundFonts installed (Debian: musescore-general-soundfont,
timgm6mb-soundfont, fluid-soundfont-gm). Figures depend on the machine and
its load: the section written states the load average around the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOCS_PATH = ROOT / "docs" / "benchmarks.md"
SECTION_TITLE = "## SoundFonts: start-up, memory, render speed"
WALK = ROOT / "examples" / "walk.toml"
DEFAULT_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
)
SAMPLE_RATE_HZ = 48_000
FIRST_BLOCK_FRAMES = 1024


def _rss_mb() -> float:
    """Resident memory now, MB of 2**20 bytes, as ``ru_maxrss / 1024`` (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _seconds_since_process_start() -> float:
    """Wall seconds since this process started (``/proc``; 10 ms resolution)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def worker(soundfont: Path) -> dict:
    """One measurement of ``soundfont`` in this (fresh) process."""
    t0 = time.perf_counter()
    from adaptive.clock import seconds_to_frames
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from adaptive.offline import render_offline
    from adaptive.session import Session
    from adaptive.synth import Synth
    from adaptive.timeline import load_timeline
    from app.generators import register_generators

    register_generators()
    import_seconds = time.perf_counter() - t0
    rss_before = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    keeper = Synth(soundfont, SAMPLE_RATE_HZ)  # loads the SoundFont; it stays loaded for the sessions below
    load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_loaded = _rss_mb()

    bank = load_bank(DEFAULT_BANK)
    mapping = load_mapping(DEFAULT_MAPPING, bank)
    wall = time.perf_counter()
    session = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=0, generator="rule_based",
                      mapping=mapping)
    session_seconds = time.perf_counter() - wall
    session.render(FIRST_BLOCK_FRAMES)
    first_block_seconds = _seconds_since_process_start()
    session.close()

    timeline = load_timeline(WALK, bank, mapping)
    total = seconds_to_frames(timeline.duration_seconds, SAMPLE_RATE_HZ)
    inputs = [(seconds_to_frames(t, SAMPLE_RATE_HZ), item) for t, item in timeline.inputs()]
    session = Session(bank, soundfont=soundfont, sample_rate_hz=SAMPLE_RATE_HZ, seed=timeline.seed,
                      generator="rule_based", mapping=mapping)
    wall, cpu = time.perf_counter(), time.process_time()
    render_offline(session, total, inputs, block_frames=4096)
    render_wall, render_cpu = time.perf_counter() - wall, time.process_time() - cpu
    session.close()
    keeper.close()
    return {
        "soundfont": str(soundfont), "import_seconds": import_seconds,
        "load_wall_seconds": load_wall, "load_cpu_seconds": load_cpu, "load_rss_mb": rss_loaded - rss_before,
        "session_seconds": session_seconds, "first_block_seconds": first_block_seconds,
        "audio_seconds": total / SAMPLE_RATE_HZ, "render_cpu_seconds": render_cpu, "render_wall_seconds": render_wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def load_worker(soundfont: Path) -> dict:
    """Only the SoundFont's load, with whatever cores the process may use."""
    from adaptive.synth import Synth

    wall, cpu = time.perf_counter(), time.process_time()
    Synth(soundfont, SAMPLE_RATE_HZ).close()
    return {"load_wall_seconds": time.perf_counter() - wall, "load_cpu_seconds": time.process_time() - cpu,
            "cores": len(os.sched_getaffinity(0))}


def _run_worker(kind: str, soundfont: Path, core: int | None) -> dict:
    env = dict(os.environ)
    env.pop("ADAPTIVE_SOUNDFONT", None)
    command = [sys.executable, __file__, f"--{kind}", str(soundfont)]
    if core is not None:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        command = ["taskset", "-c", str(core), *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"worker for {soundfont} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def measure(soundfonts: list[Path], rounds: int, core: int) -> dict:
    runs: dict[str, list[dict]] = {str(sf): [] for sf in soundfonts}
    load_before = _load_average()
    for round_index in range(rounds):
        for soundfont in soundfonts:
            result = _run_worker("worker", soundfont, core)
            runs[str(soundfont)].append(result)
            print(f"round {round_index + 1}: {soundfont.name}: load {result['load_cpu_seconds']:.2f} s CPU, "
                  f"first block {result['first_block_seconds']:.2f} s, render {result['render_cpu_seconds']:.2f} s CPU, "
                  f"peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr)
    parallel = {str(sf): _run_worker("load-worker", sf, None) for sf in soundfonts if sf.suffix == ".sf3"}
    return {"runs": runs, "parallel_load": parallel, "load_before": load_before, "load_after": _load_average()}


def summary(figures: dict) -> list[dict]:
    rows = []
    for soundfont, runs in figures["runs"].items():
        rows.append({
            "soundfont": soundfont,
            "file_mb": Path(soundfont).stat().st_size / 1e6,
            "load_cpu_seconds": min(r["load_cpu_seconds"] for r in runs),
            "load_wall_seconds": min(r["load_wall_seconds"] for r in runs),
            "load_rss_mb": max(r["load_rss_mb"] for r in runs),
            "first_block_seconds": min(r["first_block_seconds"] for r in runs),
            "render_cpu_seconds": min(r["render_cpu_seconds"] for r in runs),
            "audio_seconds": runs[0]["audio_seconds"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "parallel": figures["parallel_load"].get(soundfont),
        })
    return rows


def markdown(figures: dict, rounds: int, core: int) -> str:
    from bench.docs_section import machine_facts

    facts = machine_facts()
    rows = summary(figures)
    base = rows[0]
    lines = [
        SECTION_TITLE, "",
        f"Measured {figures.get('date') or time.strftime('%Y-%m-%d')} with `python bench/soundfont_benchmark.py` (add `--write-docs` to "
        "rewrite this section; the script's docstring says what is measured). The default cue bank with each "
        "General MIDI SoundFont; each figure the best of "
        f"{rounds} fresh processes pinned to core {core} (`OMP_NUM_THREADS=1`), the SoundFonts taking turns.",
        "",
        "### Machine", "",
        f"- CPU: {facts['cpu']}{', virtual machine' if facts['virtual'] else ''}",
        f"- Cores: {facts['cores']}; memory {facts['memory_gb']:.1f} GiB; {facts['os']}",
        f"- Python {facts['python']}, numpy {facts['numpy']}",
        f"- Load average (1, 5, 15 min) before the run: {figures['load_before']}; after: {figures['load_after']}",
        "",
        "### Start-up, memory, render speed", "",
        "| SoundFont | file MB | load, one core: CPU s | load: RSS MB | process start to first block s "
        "| walk render CPU s | RTF | vs first | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rtf = row["audio_seconds"] / row["render_cpu_seconds"]
        change = row["render_cpu_seconds"] / base["render_cpu_seconds"] - 1.0
        lines.append(f"| {Path(row['soundfont']).name} | {row['file_mb']:.0f} | {row['load_cpu_seconds']:.2f} | "
                     f"{row['load_rss_mb']:.0f} | {row['first_block_seconds']:.2f} | {row['render_cpu_seconds']:.2f} | "
                     f"{rtf:.0f}x | {'' if row is base else f'{change:+.0%}'} | {row['peak_rss_mb']:.0f} |")
    shares = sorted(r["render_cpu_seconds"] / r["render_wall_seconds"] for runs in figures["runs"].values() for r in runs)
    share = shares[len(shares) // 2]
    lines += ["", f"The workers got {share:.0%} of their core (median of render CPU / wall seconds): wall-clock "
              "figures (*process start to first block*) stretch by as much on a shared machine; CPU seconds much "
              "less."]
    for row in rows:
        if row["parallel"]:
            p = row["parallel"]
            lines += ["", f"{Path(row['soundfont']).name} loaded with all {p['cores']} cores (FluidSynth decodes an "
                      f"SF3 file's samples in parallel, OpenMP): {p['load_wall_seconds']:.2f} s wall, "
                      f"{p['load_cpu_seconds']:.2f} s CPU."]
    lines += [
        "",
        f"*load*: the first synthesizer of the process loading the SoundFont (FluidSynth reads it; an SF3 file's "
        f"Ogg Vorbis samples are decoded then), and the resident memory it added. *process start to first block*: "
        f"from the process's start to the first {FIRST_BLOCK_FRAMES}-frame block of a session of the default bank "
        "(Python's start, imports, the SoundFont load, every synthesizer, the stems; the `rule_based` generator, so "
        "no PyTorch). *walk render*: `examples/walk.toml` ({:g} s of audio) rendered offline in a second session, "
        "CPU seconds; *vs first*: its change against the first row. *peak RSS*: the worker's `ru_maxrss`."
        .format(base["audio_seconds"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--soundfont", type=Path, action="append", help="SoundFont (repeat; first = the baseline)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per SoundFont, best kept (default 3)")
    parser.add_argument("--core", type=int, default=0, help="the CPU core workers are pinned to (default 0)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument("--from-json", type=Path, help="publish the figures of an earlier --json run, measure nothing")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return 0
    if args.load_worker:
        print(json.dumps(load_worker(args.load_worker)))
        return 0
    if args.from_json:
        figures = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        soundfonts = args.soundfont or [sf for sf in DEFAULT_SOUNDFONTS if sf.is_file()]
        missing = [sf for sf in soundfonts if not sf.is_file()]
        if missing:
            print(f"soundfont_benchmark: not installed: {', '.join(map(str, missing))}", file=sys.stderr)
            return 2
        figures = measure(soundfonts, args.rounds, args.core)
        figures.update(rounds=args.rounds, core=args.core, date=time.strftime("%Y-%m-%d"))
    text = markdown(figures, figures.get("rounds", args.rounds), figures.get("core", args.core))
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    if args.write_docs:
        from bench.docs_section import write_section

        write_section(DOCS_PATH, SECTION_TITLE, text)
        print(f"rewrote '{SECTION_TITLE}' in {DOCS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
