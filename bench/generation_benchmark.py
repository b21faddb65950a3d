#!/usr/bin/env python3
"""Generation in real time: does the generator keep ahead of the music?

Run by hand (not in CI), from a source checkout::

    python bench/generation_benchmark.py                       # the session's default generator, 60 s
    python bench/generation_benchmark.py --generator model --seconds 120
    python bench/generation_benchmark.py --generator model --write-docs   # rewrite its section of docs/benchmarks.md

What it measures: the default cue bank served in real time in this process
(:class:`adaptive.realtime.RealtimeSession`, real clock, with the block size,
lookahead, render thread priority and switch interval of ``adaptive serve``,
nothing else running in the process), driven by a script that
changes cue every ``--cue-seconds`` (8 s) between ``explore`` and ``stealth``
(explore -> stealth plays a generated bridge) at intensity 1.0 (explore's
generated harp layer audible) and triggers the generated ``flourish`` stinger
every 3 s. Reported:

* the time of each generator call (on the generation worker thread): median,
  p99 and max, in ms, and the bar length it must beat;
* bars taken from the generator and **misses** (fallbacks played), by part and
  reason — the first bar of the first cue is expected to miss with any
  generator slower than a few milliseconds (it is asked for when the cue
  starts);
* the render thread's underruns and longest block (the worker shares the GIL);
* that ``adaptive replay`` of the recording is bit-identical to the served audio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

SECTION_TITLE = "## Generation in real time"
DOCS = ROOT / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Register the generators and parse the command line."""
    from adaptive import registry
    from app.generators import DEFAULT_GENERATOR, register_generators

    register_generators()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=DEFAULT_GENERATOR,
                        choices=tuple(registry.GENERATORS))
    parser.add_argument("--seconds", type=float, default=60.0, help="served audio (default 60)")
    parser.add_argument("--cue-seconds", type=float, default=8.0, help="seconds between cue changes (default 8)")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    return parser.parse_args(argv)


def time_generator_calls(name: str, call_seconds: list[float]) -> None:
    """Replace generator ``name`` in the registry by one that appends each call's duration to ``call_seconds``."""
    from adaptive import registry

    factory = registry.GENERATORS[name]

    class Timed:
        """The generator, timed call by call."""

        def __init__(self) -> None:
            self.inner = factory()
            self.name = self.inner.name

        def generate_bar(self, request):
            started = time.perf_counter()
            try:
                return self.inner.generate_bar(request)
            finally:
                call_seconds.append(time.perf_counter() - started)

    registry.GENERATORS[name] = Timed


def cue_script(seconds: float, cue_seconds: float) -> list[tuple[float, object]]:
    """The timed inputs: explore/stealth alternating every ``cue_seconds``, the flourish stinger every 3 s."""
    from adaptive.scene import SceneUpdate, StingerTrigger

    script: list[tuple[float, object]] = []
    at, cue = 0.0, "explore"
    while at < seconds:
        script.append((at, SceneUpdate(cue=cue, intensity=1.0)))
        cue = "stealth" if cue == "explore" else "explore"
        at += cue_seconds
    script += [(t, StingerTrigger("flourish")) for t in np.arange(1.5, seconds, 3.0)]
    script.sort(key=lambda entry: entry[0])
    return script


def play_script(runner, script: list[tuple[float, object]], seconds: float) -> None:
    """Start ``runner``, submit each input of ``script`` on the real clock, stop after ``seconds``."""
    runner.start()
    start = time.monotonic()
    for at, item in script:
        while time.monotonic() - start < at:
            time.sleep(0.005)
        runner.submit(item)  # type: ignore[arg-type]
    while time.monotonic() - start < seconds:
        time.sleep(0.05)
    runner.stop()


def serve(args: argparse.Namespace) -> dict:
    """Serve the default bank in real time as ``adaptive serve`` does; return the run's session, runner and figures."""
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.realtime import RealtimeSession
    from adaptive.recording import Recording
    from adaptive.session import Session

    bank = load_bank(DEFAULT_BANK)
    started = time.perf_counter()
    session = Session(bank, generator=args.generator)
    setup_seconds = time.perf_counter() - started
    folder = Path(tempfile.mkdtemp(prefix="adaptive-generation-bench-"))
    recording = Recording.for_session(folder / "session.jsonl", session, DEFAULT_BANK)
    # As `adaptive serve` runs it: its block size, lookahead, render thread
    # priority and interpreter switch interval (app/server.py).
    from app.server import SWITCH_INTERVAL_SECONDS, ServerSettings

    serve_settings = ServerSettings(bank=DEFAULT_BANK)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    runner = RealtimeSession(session, block_frames=serve_settings.block_frames,
                             lookahead_ms=serve_settings.lookahead_ms,
                             recording=recording, thread_priority=serve_settings.realtime_priority)
    served: list[np.ndarray] = []
    runner.add_sink(lambda block: served.append(block.audio.copy()))
    play_script(runner, cue_script(args.seconds, args.cue_seconds), args.seconds)
    stats = runner.stats()
    session.close()
    return {"session": session, "runner": runner, "stats": stats, "setup_seconds": setup_seconds,
            "audio": np.concatenate(served), "recording": folder / "session.jsonl"}


def figures_table(args: argparse.Namespace, run: dict, call_seconds: list[float],
                  fallbacks: list, identical: bool) -> str:
    """The figures of the run as a two-column Markdown table."""
    session, runner, stats, audio = run["session"], run["runner"], run["stats"], run["audio"]
    ms = sorted(1000 * s for s in call_seconds)
    by_part = Counter(f"{f.part} ({f.reason})" for f in fallbacks)
    rows = [
        ("generator", f"`{args.generator}`"),
        ("served", f"{len(audio) / session.sample_rate_hz:.0f} s, blocks of {runner.block_frames} frames, "
                   f"lookahead {runner.lookahead_ms:g} ms"),
        ("session set-up (generator loading included)", f"{run['setup_seconds']:.2f} s"),
        ("generator calls", str(len(ms))),
        ("time per call: median / p99 / max", f"{statistics.median(ms):.1f} / "
                                              f"{ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.1f} / {ms[-1]:.1f} ms"
         if ms else "-"),
        ("a bar lasts (explore 84 bpm, stealth 96 bpm)", "2857 ms, 2500 ms"),
        ("bars taken from the generator", str(stats["generated_bars"])),
        ("misses (fallback played)", f"{stats['generation_misses']}: "
                                     + (", ".join(f"{n}x {part}" for part, n in sorted(by_part.items())) or "none")),
        ("generator errors", str(stats["generation_errors"])),
        ("underruns", str(stats["underruns"])),
        ("longest block / latest wake-up", f"{stats['max_block_ms']:.1f} ms / {stats['max_wake_delay_ms']:.1f} ms"),
        ("replay bit-identical to the served audio", "yes" if identical else "**no**"),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)


def write_docs(args: argparse.Namespace, table: str) -> None:
    """Rewrite this benchmark's section of docs/benchmarks.md with ``table`` and the machine's facts."""
    from docs_section import machine_facts, write_section

    machine = machine_facts()
    section = (f"{SECTION_TITLE}\n\n`bench/generation_benchmark.py --generator {args.generator} --seconds "
               f"{args.seconds:g}`: the default bank served in real time, a cue change every "
               f"{args.cue_seconds:g} s (explore -> stealth through a generated bridge) and the generated "
               f"stinger every 3 s. Machine: {machine['cpu']}, {machine['cores']} cores"
               f"{' (virtual)' if machine['virtual'] else ''}, {machine['os']}, Python {machine['python']}.\n\n"
               + table + "\n")
    write_section(DOCS, SECTION_TITLE, section)
    print(f"wrote {DOCS}")


def main(argv: list[str] | None = None) -> int:
    """Serve the default bank with the generator timed, print the figures and, if asked, publish them."""
    from adaptive.recording import load_recording_with_fallbacks, replay

    args = parse_args(argv)
    call_seconds: list[float] = []
    time_generator_calls(args.generator, call_seconds)
    run = serve(args)
    _, _, fallbacks, _ = load_recording_with_fallbacks(run["recording"])
    identical = bool(np.array_equal(replay(run["recording"]), run["audio"]))
    table = figures_table(args, run, call_seconds, fallbacks, identical)
    print(table)
    if args.write_docs:
        write_docs(args, table)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
