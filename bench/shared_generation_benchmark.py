#!/usr/bin/env python3
"""One generation thread for every session: bars per second and misses against sessions (issue 14).

Run by hand (not in CI), from a source checkout::

    python bench/shared_generation_benchmark.py                        # 1 2 4 8 16 sessions, both parts
    python bench/shared_generation_benchmark.py --sessions 1 4 --seconds 10
    python bench/shared_generation_benchmark.py --write-docs           # rewrite its section of docs/benchmarks.md

Every session's generation worker (:class:`adaptive.generation.GenerationWorker`)
uses one :class:`adaptive.generation.GenerationScheduler` (one thread), as
``adaptive serve`` does (app/sessions.py); each part has its own
:class:`models.generate.ModelPartGenerator` (the committed checkpoint,
guidance on; roles melody, arpeggio, bass in turn; seeds 0..). Two
measurements, each with the scheduler batching the model's bars
(:class:`models.batching.BarBatcher`, what the server runs) and without
(``batcher=None``: each bar written whole, one at a time, on the same one
thread):

* **Throughput** (``--bars``): every session's one part asks for ``--bars``
  bars at once, all due now; bars per second of wall time until all are
  written, and of the scheduler thread's CPU time (the machine may be loaded).
* **Real time** (``--seconds``): every session has ``--parts`` parts playing
  at ``--bpm`` in 4/4, its bar lines staggered from the others' (session i
  starts i/N of a bar later); as a generated layer does, each part asks for
  bar k + 1 at the downbeat of bar k, due at the downbeat of bar k + 1, and
  takes bar k at its downbeat: a bar not written by then is a miss.
  Bars 0 and 1 are asked for at set-up, half a second before the first
  session starts. Reported: bars taken after bar 0, misses among them, the
  scheduler thread's share of a core, the mean bars per batched step.
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

SECTION_TITLE = "## One generation thread for every session"
DOCS = REPO / "docs" / "benchmarks.md"
ROLES = ("melody", "arpeggio", "bass")


def make_request(role: str, seed: int, bar_index: int, bpm: float):
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key

    chords = [Chord.parse(name) for name in ("C", "Am", "F", "G")]
    return BarRequest(bar_index=bar_index, key=Key.parse("C major"), chord=chords[bar_index % 4], beats_per_bar=4,
                      bpm=bpm, valence=0.3, arousal=0.0, role=role, seed=seed)


def scheduler_thread_cpu_s(scheduler) -> float:
    """CPU seconds the scheduler's thread has used so far (Linux)."""
    thread = scheduler._thread
    if thread is None or thread.ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def make_scheduler(batched: bool):
    from adaptive.generation import GenerationScheduler
    from models.batching import BarBatcher

    return GenerationScheduler(batcher=BarBatcher() if batched else None)


def throughput(sessions: int, bars: int, batched: bool) -> dict:
    """Every session's one part asks for ``bars`` bars at once; bars per second until all are written."""
    from adaptive.generation import GenerationMode, GenerationWorker
    from models.generate import ModelPartGenerator

    scheduler = make_scheduler(batched)
    start_s = time.monotonic()
    workers = [GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler, time_of_frame=lambda frame: start_s)
               for _ in range(sessions)]
    streams = [worker.stream(f"s{i}/part", ModelPartGenerator()) for i, worker in enumerate(workers)]
    threads = sum(thread.name == "adaptive-generation" for thread in threading.enumerate())
    cpu_before = scheduler_thread_cpu_s(scheduler)
    started = time.monotonic()
    tickets = [worker.submit(stream, make_request(ROLES[i % 3], i, bar, 120.0), deadline_frame=0)
               for bar in range(bars) for i, (worker, stream) in enumerate(zip(workers, streams))]
    for ticket in tickets:
        ticket.done.wait(600)
    wall_s = time.monotonic() - started
    cpu_s = scheduler_thread_cpu_s(scheduler) - cpu_before
    counters = dict(scheduler.counters)
    for worker in workers:
        worker.close()
    failed = sum(ticket.part is None for ticket in tickets)
    return {"bars": len(tickets), "wall_s": wall_s, "cpu_s": cpu_s, "failed": failed, "threads": threads,
            "mean_batch": counters["rows_stepped"] / counters["rounds"] if counters["rounds"] else 1.0,
            "largest_batch": counters["largest_batch_bars"] or 1}


def realtime(sessions: int, parts: int, seconds: float, bpm: float, batched: bool) -> dict:
    """``sessions`` x ``parts`` parts asking one bar ahead on the real clock for ``seconds``."""
    from adaptive.generation import GenerationMode, GenerationWorker
    from models.generate import ModelPartGenerator

    rate = 48_000
    bar_s = 4 * 60.0 / bpm
    scheduler = make_scheduler(batched)
    workers, streams = [], []
    for i in range(sessions):
        worker = GenerationWorker(GenerationMode.REALTIME, scheduler=scheduler)
        workers.append(worker)
        streams.append([worker.stream(f"s{i}/p{p}", ModelPartGenerator()) for p in range(parts)])
    for generator in (s.generator for session in streams for s in session):  # warm: the first bar's set-up
        generator.generate_bar(make_request("melody", 99, 0, bpm))
    t0 = time.monotonic() + 0.5
    for i, worker in enumerate(workers):
        start_s = t0 + i * bar_s / sessions
        worker.time_of_frame = lambda frame, start_s=start_s: start_s + frame / rate
    frames_per_bar = int(round(bar_s * rate))
    tickets: dict[tuple[int, int, int], object] = {}
    for i, worker in enumerate(workers):
        for p, stream in enumerate(streams[i]):
            for bar in (0, 1):
                tickets[i, p, bar] = worker.submit(stream, make_request(ROLES[(i + p) % 3], 100 * i + p, bar, bpm),
                                                   deadline_frame=bar * frames_per_bar)
    # Each session's downbeats, in time order: (time, session, bar).
    events = [(t0 + i * bar_s / sessions, i, 0) for i in range(sessions)]
    heapq.heapify(events)
    cpu_before = scheduler_thread_cpu_s(scheduler)
    end_s = t0 + seconds
    late_takes_ms: list[float] = []
    taken = misses = 0
    while events and events[0][0] < end_s:
        at, i, bar = heapq.heappop(events)
        while (wait := at - time.monotonic()) > 0:
            time.sleep(min(wait, 0.05))
        late_takes_ms.append((time.monotonic() - at) * 1000.0)
        worker = workers[i]
        for p, stream in enumerate(streams[i]):
            missed_before = worker.counters["generation_misses"]
            worker.take(tickets.pop((i, p, bar)), bar * frames_per_bar)
            if bar > 0:  # bar 0 is asked for at set-up, just before the music starts
                taken += 1
                misses += worker.counters["generation_misses"] - missed_before
            tickets[i, p, bar + 2] = worker.submit(stream, make_request(ROLES[(i + p) % 3], 100 * i + p, bar + 2, bpm),
                                                   deadline_frame=(bar + 2) * frames_per_bar)
        heapq.heappush(events, (at + bar_s, i, bar + 1))
    elapsed_s = time.monotonic() - t0
    cpu_s = scheduler_thread_cpu_s(scheduler) - cpu_before
    counters = dict(scheduler.counters)
    threads = sum(thread.name == "adaptive-generation" for thread in threading.enumerate())
    for worker in workers:
        worker.close()
    return {"taken": taken, "misses": misses, "cpu_share": cpu_s / elapsed_s, "threads": threads,
            "mean_batch": counters["rows_stepped"] / counters["rounds"] if counters["rounds"] else 1.0,
            "demand_bars_per_s": sessions * parts / bar_s,
            "driver_late_ms": statistics.median(late_takes_ms) if late_takes_ms else 0.0}


def main(argv: list[str] | None = None) -> int:
    from docs_section import machine_facts, publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--bars", type=int, default=4, help="bars per session in the throughput run (default 4)")
    parser.add_argument("--parts", type=int, default=2, help="generated parts per session in real time (default 2)")
    parser.add_argument("--seconds", type=float, default=20.0, help="real-time run per row (default 20)")
    parser.add_argument("--bpm", type=float, default=120.0, help="tempo of the real-time run (default 120)")
    parser.add_argument("--skip-realtime", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite '{SECTION_TITLE}' in docs/benchmarks.md")
    args = parser.parse_args(argv)
    import os

    facts = machine_facts()
    load_before = os.getloadavg()[0]
    from models.generate import ModelPartGenerator

    ModelPartGenerator()  # load and compile once, outside the timings
    throughput(1, 1, True)  # the batched step's compiled code loaded once, outside the timings too

    lines = [SECTION_TITLE, "",
             f"`python bench/shared_generation_benchmark.py --sessions {' '.join(map(str, args.sessions))} "
             f"--bars {args.bars} --parts {args.parts} --seconds {args.seconds:g}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}) on {facts['cpu']}, {facts['cores']} cores, "
             f"Python {facts['python']}: load average {load_before:.1f} at the start (a model was training in the "
             f"background: the figures are of a **loaded** machine). One `GenerationScheduler` thread for every "
             f"session, batching the model's bars (`models.batching.BarBatcher`) or writing each bar whole, "
             f"one at a time (\"one by one\"); the committed checkpoint, guidance on.", "",
             f"**Throughput**: each session's one part asks for {args.bars} bars at once.", "",
             "| sessions | bars | generation threads | batched: bars/s (wall) | bars/s (thread CPU) | mean / largest batch "
             "| one by one: bars/s (wall) | bars/s (thread CPU) | batched / one by one (CPU) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for sessions in [] if args.skip_throughput else args.sessions:
        batched = throughput(sessions, args.bars, True)
        alone = throughput(sessions, args.bars, False)
        row = (f"| {sessions} | {batched['bars']} | {batched['threads']} | {batched['bars'] / batched['wall_s']:.1f} | "
               f"{batched['bars'] / batched['cpu_s']:.1f} | {batched['mean_batch']:.1f} / {batched['largest_batch']} | "
               f"{alone['bars'] / alone['wall_s']:.1f} | {alone['bars'] / alone['cpu_s']:.1f} | "
               f"{(batched['bars'] / batched['cpu_s']) / (alone['bars'] / alone['cpu_s']):.2f}x |")
        print(row, flush=True)
        lines.append(row)
    if not args.skip_realtime:
        lines += ["", f"**Real time**: {args.parts} parts per session at {args.bpm:g} bpm (a bar every "
                      f"{4 * 60 / args.bpm:g} s), each asking one bar ahead, {args.seconds:g} s per row; misses "
                      f"after each part's first bar.", "",
                  "| sessions | bars asked per second | batched: bars taken | misses | thread CPU (share of a core) "
                  "| mean batch | one by one: bars taken | misses | thread CPU |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for sessions in args.sessions:
            batched = realtime(sessions, args.parts, args.seconds, args.bpm, True)
            alone = realtime(sessions, args.parts, args.seconds, args.bpm, False)
            row = (f"| {sessions} | {batched['demand_bars_per_s']:.1f} | {batched['taken']} | {batched['misses']} | "
                   f"{100 * batched['cpu_share']:.0f} % | {batched['mean_batch']:.1f} | {alone['taken']} | "
                   f"{alone['misses']} | {100 * alone['cpu_share']:.0f} % |")
            print(row, flush=True)
            lines.append(row)
    lines += ["", f"Load average at the end: {os.getloadavg()[0]:.1f}."]
    publish("\n".join(lines) + "\n", args.write_docs, DOCS, SECTION_TITLE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
