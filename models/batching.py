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
not their arithmetic (the compiled step reads the weights once per pair of
rows, the pair of a guided token, whatever the batch; every row reads its
own keys and values): measured 0.83-1.01x the bars per CPU second of the
same parts one at a time. docs/benchmarks.md, "Decoding in batches", and
docs/sessions.md, "Design: one generation worker for every session".
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


POOL_SLOTS = 32
"""Slots of each cache pool the :class:`BarBatcher` makes (16 parts with
guidance). A pool's arrays are allocated zeroed in base pages
(:func:`models.inference.zeros_in_small_pages`) and only the positions
written are touched (the operating system maps a 4 KiB page on its first
write), so an unused slot costs address space, not memory."""


class BarInFlight:
    """One bar being written in a :class:`BarBatcher`'s batch.

    Attributes:
        generator: the part's generator.
        finished: whether the bar is written (or failed).
        part: its notes once finished (None if it failed).
        error: the exception its generator raised, if it did.
    """

    __slots__ = ("generator", "steps", "asked", "finished", "part", "error")

    def __init__(self, generator: ModelPartGenerator, request: BarRequest) -> None:
        self.generator = generator
        self.finished = False
        self.part: Part | None = None
        self.error: BaseException | None = None
        self.asked = None  # the (ids, cache) its steps ask to decode next
        self.steps = generator.bar_steps(request)
        self._advance(None)

    def _advance(self, logits: np.ndarray | None) -> None:
        try:
            self.asked = next(self.steps) if logits is None else self.steps.send(logits)
        except StopIteration as finished:
            self.finished, self.part = True, finished.value
        except Exception as error:  # the part's failure: its session's fallback plays
            self.finished, self.error = True, error
        if self.finished:
            self.asked = None


class BarBatcher:
    """Writes the bars of many :class:`ModelPartGenerator` instances (every
    session's generated parts) together, for the generation scheduler
    (:class:`adaptive.generation.GenerationScheduler`, which calls it on its
    one thread): each round steps the rows of every bar in flight in one
    compiled call per cache pool (:meth:`models.inference.NumpyDecoder.step_rows`),
    as :func:`generate_bars` does for a fixed set of bars; a bar may join or
    leave between rounds.

    A generator's caches move into a pool the first time one of its bars
    starts (:meth:`ModelPartGenerator.use_pool`: its context is copied, so it
    continues as it would have); pools of :data:`POOL_SLOTS` slots are made as
    needed, one set per decoder (checkpoint); :meth:`release` frees a
    generator's slots when its session ends. The same notes come out as
    written alone (tests/models/test_batching.py).
    """

    def __init__(self, pool_slots: int = POOL_SLOTS) -> None:
        if not 2 <= pool_slots <= 4096:
            raise ValueError(f"pool_slots {pool_slots} is out of range (allowed: 2..4096)")
        self.pool_slots = pool_slots
        self._pools: dict[int, list[CachePool]] = {}  # id(decoder) -> its pools
        self._placed: dict[int, tuple[ModelPartGenerator, CachePool]] = {}  # id(generator) -> (it, its pool)
        self._one_blas_thread = None  # held while bars are in flight (entering it costs ~45 us: not every step)

    def _hold_one_blas_thread(self) -> None:
        if self._one_blas_thread is None:
            self._one_blas_thread = _blas_threads.limit(limits=1, user_api="blas")

    def _let_go_of_blas_threads(self) -> None:
        if self._one_blas_thread is not None:
            self._one_blas_thread.__exit__(None, None, None)
            self._one_blas_thread = None

    def admits(self, generator) -> bool:
        """Whether ``generator`` is a model generator with the compiled step (else its bars are written whole)."""
        return isinstance(generator, ModelPartGenerator) and bool(generator.decoder.compiled)

    def _place(self, generator: ModelPartGenerator) -> None:
        if id(generator) in self._placed:
            return
        if generator._pool is not None:
            raise ValueError("the generator keeps its caches in a pool the batcher did not make")
        pools = self._pools.setdefault(id(generator.decoder), [])
        for pool in pools:
            if pool.free_slots >= 2:
                try:
                    generator.use_pool(pool)
                except ValueError:  # free slots, but not two side by side
                    continue
                self._placed[id(generator)] = (generator, pool)
                return
        pool = CachePool(generator.decoder, self.pool_slots)
        pools.append(pool)
        generator.use_pool(pool)
        self._placed[id(generator)] = (generator, pool)

    def begin(self, generator: ModelPartGenerator, request: BarRequest) -> BarInFlight:
        """Start writing ``request``'s bar with ``generator``: its prefill
        runs now; an invalid request or a failure finishes it with ``error``.
        BLAS runs on one thread from now until no bar is in flight."""
        self._hold_one_blas_thread()
        try:
            self._place(generator)
        except ValueError as error:
            bar = BarInFlight.__new__(BarInFlight)
            bar.generator, bar.steps, bar.asked = generator, None, None
            bar.finished, bar.part, bar.error = True, None, error
            return bar
        return BarInFlight(generator, request)

    def step(self, bars: list[BarInFlight]) -> None:
        """One decoding step for every unfinished bar of ``bars``: one
        compiled call per pool; each bar gets its rows' logits back (and may
        finish). A bar whose cache cannot take one more token fails alone."""
        by_pool: dict[int, list[BarInFlight]] = {}
        for bar in bars:
            if bar.finished:
                continue
            cache = bar.asked[1]
            if cache.pool is None or cache.length + 1 > cache.block_size:
                bar.finished, bar.error, bar.asked = True, ValueError("a cache outside a pool, or a full context"), None
                continue
            by_pool.setdefault(id(cache.pool), []).append(bar)
        self._hold_one_blas_thread()
        for group in by_pool.values():
            pool = group[0].asked[1].pool
            ids = np.concatenate([bar.asked[0] for bar in group])
            starts = np.concatenate([np.full(len(bar.asked[0]), bar.asked[1].length, np.int64) for bar in group])
            slots = np.concatenate([bar.asked[1].first_slot + np.arange(len(bar.asked[0])) for bar in group])
            logits = pool.decoder.step_rows(ids, starts, slots, pool.keys, pool.values)  # (rows, V)
            row = 0
            for bar in group:
                rows = len(bar.asked[0])
                bar.asked[1].length += 1
                bar._advance(logits[row:row + rows])
                row += rows
        if all(bar.finished for bar in bars):
            self._let_go_of_blas_threads()

    def drop(self, bar: BarInFlight) -> None:
        """Stop writing ``bar`` (its session ended)."""
        if bar.steps is not None:
            bar.steps.close()
        bar.finished, bar.asked = True, None
        self._let_go_of_blas_threads()  # held again by the next bar that starts

    def release(self, generator) -> None:
        """Free ``generator``'s slots (its session ended; it is not used again)."""
        placed = self._placed.pop(id(generator), None)
        if placed is not None:
            generator, pool = placed
            pool.release(generator._first_slot, 2)
            generator._pool = None
            generator._cache = None
