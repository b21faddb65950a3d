#!/usr/bin/env python3
"""Where one session's render time goes (issue 14, "cheap sessions").

Run by hand (not in CI), from a source checkout::

    python bench/session_profile_benchmark.py                 # 60 s of audio, profile + pacing
    python bench/session_profile_benchmark.py --seconds 20    # quicker
    python bench/session_profile_benchmark.py --seconds 20 --no-profile --no-paced --repeats 5   # A/B runs

One session (the default bank and mapping, the rule-based generator so no
model work mixes in, 48 kHz, blocks of 1024 frames, lookahead 40 ms) driven
by :class:`adaptive.realtime.RealtimeSession` with the scene a 90 Hz game
sends (``bench/server_benchmark.py``'s ``scene_values``: intensity sweeping,
the emotion changing every 15 s), without sinks. Three measurements:

1. **profile**: ``cProfile`` over the render loop on a fake clock (no
   sleeping), the functions grouped into what they do: FluidSynth render
   calls (``Synth._write``: the ctypes call and the synthesis, which
   cProfile cannot see into), FluidSynth note calls, mixing and layer gains
   (``Player.render``, gain ramps, the mixer, the limiter), MIDI scheduling
   in the voices, the schedule and conductor (inputs, cue changes,
   callbacks), and the real-time runner (inbox, stamps, the output block).
   cProfile's own cost inflates the Python-heavy groups; the total without
   it is printed beside;
2. **back to back**: the same render, thread CPU time per second of audio,
   without the profiler (the median of ``--repeats`` runs: this machine is
   shared), and the thread CPU time spent following each scene input
   (``Conductor.apply``: the mapping's cue choice, the smoothing's target,
   the layer gains' ramps, the events);
3. **paced**: the same render in real time (one block due every 21.3 ms,
   the thread sleeping in between as the server's render thread does): the
   difference with (2) is what waking up once per block costs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

BLOCK_FRAMES = 1024
SAMPLE_RATE_HZ = 48_000
SCENE_RATE_HZ = 90.0

GROUPS = (
    ("FluidSynth render calls (Synth._write)", ("synth.py:", "_write"), ("synth.py:", "_wake")),
    ("FluidSynth note calls (note_on/off)", ("synth.py:", "note_on"), ("synth.py:", "note_off")),
    ("synth quiet checks (render_into)", ("synth.py:", "render_into"),),
    ("layer mixing and gains (Player.render, gain ramps, mixer)", ("players.py:", ""), ("gain.py:", ""),
     ("mixer.py:", "mix"), ("mixer.py:", "block")),
    ("master bus (limiter)", ("mixer.py:", "process"), ("mixer.py:", "master")),
    ("MIDI scheduling in the voices", ("voice.py:", ""), ("stinger.py:", "")),
    ("schedule, conductor, transitions, beat/bar callbacks", ("schedule.py:", ""), ("conductor.py:", ""),
     ("transition", ""), ("session.py:", ""), ("stage.py:", ""), ("clock.py:", ""), ("mapping", ""),
     ("smoothing.py:", ""), ("speculation.py:", ""), ("generation.py:", ""), ("generator.py:", ""),
     ("scene.py:", ""), ("emotion.py:", ""), ("events.py:", "")),
    ("real-time runner (inbox, stamps, output block)", ("realtime.py:", ""),),
)


def make_runner(seconds: float):
    """A real-time runner over a fresh session, and its inputs as (server time s, SceneUpdate)."""
    from adaptive.cue import DEFAULT_BANK, load_bank
    from adaptive.mapping import DEFAULT_MAPPING, load_mapping
    from adaptive.realtime import RealtimeSession  # noqa: F401 (imported here, not inside the profile)
    from adaptive.scene import SceneUpdate
    from adaptive.session import Session
    from app.generators import register_generators
    from server_benchmark import scene_values

    register_generators()
    bank = load_bank(DEFAULT_BANK)
    mapping = load_mapping(DEFAULT_MAPPING, bank)
    session = Session(bank, sample_rate_hz=SAMPLE_RATE_HZ, seed=1, max_block_frames=4096, generator="rule_based",
                      mapping=mapping, generated_bridges=True)
    inputs = [(0.0, mapping.start_scene())]
    for i in range(int(seconds * SCENE_RATE_HZ)):
        t = i / SCENE_RATE_HZ
        inputs.append((t, SceneUpdate(**scene_values(t))))
    return session, inputs


def drive(session, inputs, seconds: float, clock, sleep) -> "object":
    """Run a RealtimeSession over ``session`` for ``seconds`` of server time, submitting ``inputs`` on time."""
    from adaptive.realtime import RealtimeSession

    runner = RealtimeSession(session, block_frames=BLOCK_FRAMES, lookahead_ms=40.0, clock=clock, sleep=sleep)
    next_input = 0
    while runner.server_time_seconds() < seconds:
        now = runner.server_time_seconds()
        while next_input < len(inputs) and inputs[next_input][0] <= now:
            runner.submit(inputs[next_input][1])
            next_input += 1
        wait = runner.run_once()
        if wait > 0.0:
            sleep(wait)
    return runner


class FakeClock:
    """Server time that moves only when slept."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def group_of(key: tuple[str, int, str]) -> str | None:
    filename, _, function = key
    for name, *patterns in GROUPS:
        for file_part, function_part in patterns:
            if file_part in os.path.basename(filename) + ":" or file_part in filename:
                if function_part in function:
                    return name
    return None


def profile(seconds: float) -> dict:
    session, inputs = make_runner(seconds)
    clock = FakeClock()
    profiler = cProfile.Profile(time.thread_time)
    try:
        profiler.enable()
        runner = drive(session, inputs, seconds, clock, clock.sleep)
        profiler.disable()
    finally:
        session.close()
    stats = pstats.Stats(profiler)
    totals: dict[str, float] = {}
    other: dict[str, float] = {}
    calls = {}
    for key, (_, ncalls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        group = group_of(key)
        if group is None:
            label = f"{os.path.basename(key[0])}:{key[2]}"
            other[label] = other.get(label, 0.0) + tottime
            group = "other (numpy, Python built-ins called from the above)"
        totals[group] = totals.get(group, 0.0) + tottime
        if key[2] in ("_write", "note_on", "note_off") and "synth.py" in key[0]:
            calls[key[2]] = calls.get(key[2], 0) + ncalls
    blocks = runner.counters["blocks"]
    return {"totals": totals, "other_top": sorted(other.items(), key=lambda kv: -kv[1])[:8], "calls": calls,
            "blocks": blocks, "total_s": sum(totals.values()),
            "calls_total": stats.total_calls,  # type: ignore[attr-defined]
            "apply_cumulative_s": sum(v[3] for k, v in stats.stats.items()  # type: ignore[attr-defined]
                                      if k[2] == "apply" and k[0].endswith("conductor.py"))}


def back_to_back(seconds: float) -> dict:
    """The render without the profiler on a fake clock: thread CPU per second
    of audio, and the thread CPU inside ``Conductor.apply`` (following one
    scene input: the mapping, the smoothing's target, the layer gains' ramps,
    the events), timed around each call (two ``thread_time`` calls per input,
    under a microsecond, are the only cost added)."""
    session, inputs = make_runner(seconds)
    clock = FakeClock()
    conductor = session.conductor
    apply = conductor.apply
    spent = {"apply_s": 0.0, "inputs": 0}

    def timed_apply(item) -> None:
        started = time.thread_time()
        apply(item)
        spent["apply_s"] += time.thread_time() - started
        spent["inputs"] += 1

    conductor.apply = timed_apply  # Session.submit schedules self.conductor.apply(item): this instance's
    try:
        started = time.thread_time()
        drive(session, inputs, seconds, clock, clock.sleep)
        cpu = (time.thread_time() - started) / seconds
    finally:
        session.close()
    return {"cpu": cpu, "apply_us": 1e6 * spent["apply_s"] / max(spent["inputs"], 1), "inputs": spent["inputs"],
            "cue_choices": (getattr(conductor, "cue_choices_made", None), getattr(conductor, "cue_choices_reused", None))}


def paced(seconds: float) -> tuple[float, int]:
    session, inputs = make_runner(seconds)
    result: dict = {}

    def run() -> None:
        started = time.thread_time()
        runner = drive(session, inputs, seconds, time.monotonic, time.sleep)
        result["cpu"] = time.thread_time() - started
        result["underruns"] = runner.counters["underruns"]

    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        session.close()
    return result["cpu"] / seconds, result["underruns"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of audio per measurement (default 60)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="back-to-back runs, the median reported (default 3: this machine is shared)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--no-paced", action="store_true", help="skip the paced run")
    args = parser.parse_args(argv)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; {args.seconds:g} s of audio, "
          f"blocks of {BLOCK_FRAMES} frames")
    if not args.no_profile:
        print_profile(profile(args.seconds), args.seconds)
    return measure_back_to_back_and_paced(args)


def print_profile(result: dict, seconds: float) -> None:
    """The profile's table: each group's share of the render time and its ms per block."""
    blocks = result["blocks"]
    print(f"\nprofile ({blocks} blocks; cProfile thread CPU {result['total_s']:.2f} s = "
          f"{100 * result['total_s'] / seconds:.1f} % of a core, "
          f"{1000 * result['total_s'] / blocks:.2f} ms per block)")
    print("| where | share of render time | ms per block |")
    print("|---|---:|---:|")
    for name, seconds_spent in sorted(result["totals"].items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {100 * seconds_spent / result['total_s']:.0f} % | {1000 * seconds_spent / blocks:.3f} |")
    per_block = {k: v / blocks for k, v in result["calls"].items()}
    print("FluidSynth calls per block: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per_block.items())))
    print("largest of 'other': " + ", ".join(f"{k} {1000 * v / blocks:.3f} ms" for k, v in result["other_top"]))
    print(f"Python function calls: {result['calls_total'] / blocks:.0f} per block (counted, not timed: the same on "
          f"a loaded machine); Conductor.apply (following the scene inputs): {1000 * result['apply_cumulative_s'] / blocks:.3f} "
          f"ms per block under the profiler, {100 * result['apply_cumulative_s'] / result['total_s']:.0f} % of the render time")


def measure_back_to_back_and_paced(args: argparse.Namespace) -> int:
    """Measurements 2 and 3 (see the module's docstring), printed."""
    runs = [back_to_back(args.seconds) for _ in range(args.repeats)]
    cpu = statistics.median(run["cpu"] for run in runs)
    each_cpu = ", ".join(f"{100 * run['cpu']:.2f} %" for run in runs)
    apply_us = statistics.median(run["apply_us"] for run in runs)
    best_cpu = min(run["cpu"] for run in runs)
    best_apply_us = min(run["apply_us"] for run in runs)
    print(f"\nback to back (no profiler), median of {args.repeats}: {100 * cpu:.2f} % of a core, "
          f"{1000 * cpu * BLOCK_FRAMES / SAMPLE_RATE_HZ:.2f} ms per block "
          f"(each run: {each_cpu}; best {100 * best_cpu:.2f} %)")
    made, reused = runs[0]["cue_choices"]
    each_apply = ", ".join(f"{run['apply_us']:.1f}" for run in runs)
    print(f"scene input (Conductor.apply), median of {args.repeats}: {apply_us:.1f} us per input, {runs[0]['inputs']} "
          f"inputs (each run: {each_apply} us; best {best_apply_us:.1f} us); cue choices made "
          f"{made}, reused {reused}")
    if args.no_paced:
        return 0
    paced_cpu, underruns = paced(args.seconds)
    print(f"paced in real time (one sleep per block): {100 * paced_cpu:.2f} % of a core, "
          f"{1000 * paced_cpu * BLOCK_FRAMES / SAMPLE_RATE_HZ:.2f} ms per block, {underruns} underruns; "
          f"waking up costs {1000 * (paced_cpu - cpu) * BLOCK_FRAMES / SAMPLE_RATE_HZ:.2f} ms per block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
