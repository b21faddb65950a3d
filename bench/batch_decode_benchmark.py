#!/usr/bin/env python3
"""Bars per second against batch size for the generator's decoding step (issue 14).

Run by hand (not in CI), from a source checkout::

    python bench/batch_decode_benchmark.py                 # rows 1 2 4 8 16 32, best of 12 rounds
    python bench/batch_decode_benchmark.py --rows 1 2 4 --rounds 4

The question: if one generation worker served every session and decoded the
bars they request at the same moment in one step (a batch of rows, one per
guidance branch of each bar), how many bars per second would one core write?
The issue assumed a token step is bound by reading the weights, so a batch
costs little more than one row. This measures it, with the committed
checkpoint, one BLAS thread, the context filled to ``--context`` tokens, as
the calling thread's CPU time (``time.thread_time``: the machine may be
loaded), best of ``--rounds`` rounds of ``--steps`` steps:

* **compiled step** (``NumpyDecoder.step``, ``models/fast_step.py``, what
  the generator runs): one Numba call for all rows, row by row, one
  matrix-vector product per row and weight matrix;
* **matrix step** (``NumpyDecoder.forward`` with T = 1): the rows as one
  (R, C) block per weight matrix (a matrix-matrix product, BLAS ``gemm``),
  numpy dispatch around it;
* **products alone**: numpy and torch ``(R, 192) @ (192, 768)``, the qkv
  product of one layer, to see whether the weights' reading or the
  arithmetic bounds a batch.

Bars per second = rows / 2 (each bar decodes two rows: classifier-free
guidance) / (steps per bar x time per step). Steps per bar is measured by
counting ``decoder.step`` calls while a :class:`ModelPartGenerator` streams
``--bars`` bars per role (melody, arpeggio, bass; arousal 0). These are upper
bounds of the step's share: a bar also costs its prefill (``forward`` of its
header), sampling and the grammar masks, per bar and not batched (reported
as the measured whole-bar time at one bar at a time).

**Whole bars** (``--parts``): P parts (roles in turn, seeds 0.., arousal
0, guidance on) each write ``--bars`` bars, one bar of every part per
:func:`models.batching.generate_bars` call; bars per second of thread CPU
time, batched and the same P parts one bar at a time. The same bars either
way.
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


def best_time(step, steps: int, rounds: int) -> float:
    """Best over ``rounds`` of the thread CPU seconds per call of ``step`` (``steps`` calls a round)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(steps):
            step()
        best = min(best, (time.thread_time() - started) / steps)
    return best


def steps_per_bar(bars: int) -> tuple[float, float]:
    """Mean decoding steps per bar and mean whole-bar thread CPU seconds over the three roles (arousal 0)."""
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from models.generate import ModelPartGenerator

    progression = [Chord.parse(name) for name in ("C", "Am", "F", "G")]
    steps = 0
    started = time.thread_time()
    for role in ("melody", "arpeggio", "bass"):
        generator = ModelPartGenerator()
        original = generator.decoder.step

        def counted(ids, cache, original=original):
            nonlocal steps
            steps += 1
            return original(ids, cache)

        generator.decoder.step = counted
        try:
            for bar in range(bars):
                generator.generate_bar(BarRequest(bar, Key.parse("C major"), progression[bar % 4], 4, 120.0,
                                                  0.5, 0.0, role, 11))
        finally:
            del generator.decoder.step  # the decoder is shared: take the counter off it
    return steps / (3 * bars), (time.thread_time() - started) / (3 * bars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="batch sizes (rows)")
    parser.add_argument("--context", type=int, default=150, help="tokens already in the context (default 150)")
    parser.add_argument("--steps", type=int, default=40, help="steps per round (default 40)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds, best kept (default 12)")
    parser.add_argument("--bars", type=int, default=8, help="bars per role to count steps per bar (default 8)")
    parser.add_argument("--parts", type=int, nargs="*", default=[1, 2, 4, 8, 16],
                        help="parts written together, for whole bars per second (default 1 2 4 8 16; none: skip)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import torch
    from models.generate import shared_model

    torch.set_num_threads(1)
    decoder, _, _ = shared_model()
    with threadpool_limits(limits=1, user_api="blas"):
        per_bar_steps, bar_s = steps_per_bar(args.bars)
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; "
              f"compiled step: {decoder.compiled}; context {args.context} tokens; {per_bar_steps:.0f} steps per bar, "
              f"a whole bar {1000 * bar_s:.1f} ms CPU at one bar at a time")
        print("| rows | bars in the batch | compiled step | per row | matrix step | per row | numpy (R,192)@(192,768) "
              "| torch (R,192)@(192,768) | bars/s, compiled step | bars/s, matrix step |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        rng = np.random.default_rng(0)
        weight = rng.standard_normal((192, 768)).astype(np.float32)
        weight_t = torch.from_numpy(weight)
        for rows in args.rows:
            compiled_cache = decoder.new_cache(rows)
            decoder.forward(rng.integers(0, 100, (rows, args.context)), compiled_cache)
            matrix_cache = decoder.new_cache(rows)
            decoder.forward(rng.integers(0, 100, (rows, args.context)), matrix_cache)
            ids = rng.integers(0, 100, rows)

            def compiled_step():
                decoder.step(ids, compiled_cache)
                compiled_cache.length -= 1  # the same position again: the context stays at --context

            def matrix_step():
                decoder.compiled = False  # forward's numpy path (it feeds a short prompt compiled)
                try:
                    decoder.forward(ids[:, None], matrix_cache)
                finally:
                    decoder.compiled = True
                matrix_cache.length -= 1

            x = rng.standard_normal((rows, 192)).astype(np.float32)
            x_t = torch.from_numpy(x)
            compiled_s = best_time(compiled_step, args.steps, args.rounds)
            matrix_s = best_time(matrix_step, args.steps, args.rounds)
            numpy_s = best_time(lambda: x @ weight, args.steps * 5, args.rounds)
            torch_s = best_time(lambda: x_t @ weight_t, args.steps * 5, args.rounds)
            bars = rows / 2
            print(f"| {rows} | {bars:g} | {1000 * compiled_s:.3f} ms | {1000 * compiled_s / rows:.3f} ms "
                  f"| {1000 * matrix_s:.3f} ms | {1000 * matrix_s / rows:.3f} ms | {1e6 * numpy_s:.1f} µs "
                  f"| {1e6 * torch_s:.1f} µs | {bars / (per_bar_steps * compiled_s):.1f} "
                  f"| {bars / (per_bar_steps * matrix_s):.1f} |", flush=True)
    if args.parts:
        print()
        print("| parts written together | bars | batched: thread CPU | bars per second "
              "| the same parts one at a time: bars per second | batched against one at a time |")
        print("|---:|---:|---:|---:|---:|---:|")
        for parts in args.parts:
            rate = whole_bars_per_second(parts, args.bars, batched=True)
            alone = whole_bars_per_second(parts, args.bars, batched=False)
            print(f"| {parts} | {parts * args.bars} | {parts * args.bars / rate:.2f} s | {rate:.1f} "
                  f"| {alone:.1f} | {rate / alone:.2f}x |", flush=True)
    return 0


def whole_bars_per_second(parts: int, bars: int, batched: bool = True) -> float:
    """Bars per second of thread CPU time when ``parts`` parts (roles in
    turn, seeds 0..) write ``bars`` bars each: batched (one
    :func:`models.batching.generate_bars` call for a bar of every part), or
    one part's bar at a time (``generate_bar``), the same bars either way."""
    from adaptive.generator import BarRequest
    from adaptive.harmony import Chord, Key
    from models.batching import generate_bars, pool_for
    from models.generate import ModelPartGenerator

    progression = [Chord.parse(name) for name in ("C", "Am", "F", "G")]
    roles = ("melody", "arpeggio", "bass")
    generators = [ModelPartGenerator() for _ in range(parts)]
    if batched:
        pool_for(generators)
    started = time.thread_time()
    for bar in range(bars):
        jobs = [(g, BarRequest(bar, Key.parse("C major"), progression[bar % 4], 4, 120.0, 0.5, 0.0, roles[i % 3], i))
                for i, g in enumerate(generators)]
        if batched:
            generate_bars(jobs)
        else:
            for generator, request in jobs:
                generator.generate_bar(request)
    return parts * bars / (time.thread_time() - started)


if __name__ == "__main__":
    sys.exit(main())
