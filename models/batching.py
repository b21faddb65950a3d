"""Several parts' bars written together: their decoding steps batched into one compiled call.

Each generated part (of any session) has its own :class:`ModelPartGenerator`
(its own context, request order and random generator). To write bars of
several parts at the same moment, :func:`generate_bars` runs each bar as
:meth:`ModelPartGenerator.bar_steps` (which yields whenever it needs a
decoding step) and, at each round, steps the rows of every bar still being
written in one call (:meth:`models.inference.NumpyDecoder.step_rows`: each
row at its own position, in its own cache slot of a shared
:class:`models.inference.CachePool`). Sampling, the grammar masks and each
bar's prefill stay per part, between the rounds.

**Same notes as one at a time.** The compiled step computes every row by
itself with the same operations whatever the batch is, and a generator
decodes alone through the same compiled call (``NumpyDecoder.step``), so a
part's notes do not depend on which other bars were written with it
(tests/models/test_batching.py). A replay can decode one bar at a time.

What it buys on this project's machine: the per-call overhead of the steps,
not their arithmetic (the compiled step reads the weights once per row);
docs/benchmarks.md, "Decoding in batches", and docs/sessions.md, "Design:
one generation worker for every session".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from adaptive.generator import BarRequest
from adaptive.part import Part
from models.generate import ModelPartGenerator, _blas_threads
from models.inference import CachePool


def pool_for(generators: Sequence[ModelPartGenerator]) -> CachePool:
    """A cache pool for ``generators`` (two slots each: guidance decodes two
    rows), each told to keep its caches there (:meth:`ModelPartGenerator.use_pool`).

    Raises:
        ValueError: the generators do not share one decoder (one checkpoint), or one is given twice.
    """
    if not generators:
        raise ValueError("no generators to pool")
    if len({id(g) for g in generators}) != len(generators):
        raise ValueError("a generator is given twice (each part's requests run in order, one at a time)")
    decoder = generators[0].decoder
    if any(g.decoder is not decoder for g in generators):
        raise ValueError("the generators do not share one decoder (load them from the same checkpoint)")
    pool = CachePool(decoder, 2 * len(generators))
    for generator in generators:
        generator.use_pool(pool)
    return pool


def generate_bars(jobs: Sequence[tuple[ModelPartGenerator, BarRequest]]) -> list[Part]:
    """Write one bar for each ``(generator, request)`` of ``jobs``, their
    decoding steps batched; returns the bars' notes in the order of ``jobs``,
    the same as ``generator.generate_bar(request)`` for each.

    Every generator must keep its caches in one pool (:func:`pool_for`) and
    appear once. The compiled step is needed; without it (no Numba) each bar
    is written on its own.

    Raises:
        ValueError: a generator appears twice, the generators use different
            pools (or none), or a request is invalid (as ``generate_bar``).
    """
    generators = [generator for generator, _ in jobs]
    if len({id(g) for g in generators}) != len(generators):
        raise ValueError("a generator appears twice in one batch (its bars must be written in order)")
    if not jobs:
        return []
    decoder = generators[0].decoder
    if not decoder.compiled:
        return [generator.generate_bar(request) for generator, request in jobs]
    pools = {id(g._pool) for g in generators}
    pool = generators[0]._pool
    if pool is None or len(pools) != 1:
        raise ValueError("every generator of a batch must keep its caches in one pool (models.batching.pool_for)")
    results: list[Part | None] = [None] * len(jobs)
    with _blas_threads.limit(limits=1, user_api="blas"):
        waiting = []  # (job index, its steps, the (ids, cache) it asks to step)
        for index, (generator, request) in enumerate(jobs):
            steps = generator.bar_steps(request)
            try:
                waiting.append((index, steps, next(steps)))
            except StopIteration as finished:
                results[index] = finished.value
        while waiting:
            ids = np.concatenate([asked[0] for _, _, asked in waiting])
            starts = np.concatenate([np.full(len(asked[0]), asked[1].length, np.int64) for _, _, asked in waiting])
            slots = np.concatenate([asked[1].first_slot + np.arange(len(asked[0])) for _, _, asked in waiting])
            for _, _, (_, cache) in waiting:
                if cache.pool is not pool or cache.length + 1 > cache.block_size:
                    raise ValueError("a cache outside the batch's pool, or a full context")
            logits = decoder.step_rows(ids, starts, slots, pool.keys, pool.values)  # (rows, V)
            still = []
            row = 0
            for index, steps, (asked_ids, cache) in waiting:
                rows = len(asked_ids)
                cache.length += 1
                try:
                    still.append((index, steps, steps.send(logits[row:row + rows])))
                except StopIteration as finished:
                    results[index] = finished.value
                row += rows
            waiting = still
    return results  # type: ignore[return-value]
