"""Token-by-token inference of :class:`models.model.MusicTransformer` in numpy.

Why numpy and not torch for decoding: one generated token runs the model on
one position (two with classifier-free guidance), where the work is reading
the weights and dispatching a few dozen small operations. On the project's
machine (AMD EPYC, one thread) a 192 x 768 matrix-vector product takes
17-24 µs through torch and 11 µs through numpy, and every other small
operation costs torch a few microseconds more in dispatch; the measured step
times are in docs/benchmarks.md ("Generator"). A decoding step (one token
per row) is :meth:`NumpyDecoder.step`: one Numba-compiled call
(:mod:`models.fast_step`), since numpy's ~200 small operations a step cost
more in dispatch than the arithmetic. Training stays in torch; the
weights are the same float32 numbers, and ``tests/models/test_inference.py``
checks that this decoder's cached, incremental logits equal the torch model's
full forward pass.

Shapes: B rows (1, or 2 for guidance), T new tokens, L tokens already cached,
C width, H heads, D = C / H, V vocabulary.
"""

from __future__ import annotations

import logging
import math
import mmap

import numpy as np

from models import fast_step

log = logging.getLogger("adaptive.generator")

_LN_EPS = 1e-5  # torch.nn.LayerNorm's default


class NumpyCache:
    """Keys and values of every layer, preallocated, float32, both
    (n_layer, B, H, block_size, D): the first ``length`` positions of a head
    are one contiguous block, which a decoding step reads in order.

    ``length`` positions are filled (the same for every row)."""

    def __init__(self, n_layer: int, rows: int, n_head: int, block_size: int, head_dim: int) -> None:
        self.keys = np.zeros((n_layer, rows, n_head, block_size, head_dim), np.float32)
        self.values = np.zeros((n_layer, rows, n_head, block_size, head_dim), np.float32)
        self.length = 0
        self.block_size = block_size
        self.pool: CachePool | None = None
        """The pool whose arrays this cache's rows live in (None: its own arrays)."""
        self.first_slot = 0
        """Its first row's slot in ``pool``'s arrays."""

    def room(self) -> int:
        """Positions still free."""
        return self.block_size - self.length

    @property
    def rows(self) -> int:
        """Sequences decoded in step in it."""
        return self.keys.shape[1]


def zeros_in_small_pages(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """``np.zeros(shape, dtype)`` in an anonymous mapping of its own that the
    kernel backs with base pages only (``madvise(MADV_NOHUGEPAGE)``, Linux),
    so it costs resident memory for the 4 KiB pages written, nothing more.

    Why: numpy asks for transparent huge pages on every array of 4 MiB or
    more (``madvise(MADV_HUGEPAGE)``), and with the kernel's THP in
    ``madvise`` mode (Debian's default) or ``always``, the first write into
    a 2 MiB region makes all of it resident. A :class:`CachePool`'s slots
    are interleaved (``(n_layer, slots, H, block_size, D)``), so a few
    tokens written into a few slots made most of the pool resident: 14.5 MB
    per session of the default bank, where its parts' contexts hold 14-55 kB
    a (layer, row, head) (docs/benchmarks.md, "Memory per session"). Where the
    platform has no ``MADV_NOHUGEPAGE`` the mapping is left as the kernel
    makes it. The mapping is freed with the array.

    Raises:
        ValueError: a negative dimension.
    """
    dtype = np.dtype(dtype)
    if any(size < 0 for size in shape):
        raise ValueError(f"shape {shape} has a negative dimension")
    count = math.prod(shape)
    mapping = mmap.mmap(-1, max(1, count * dtype.itemsize), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                        prot=mmap.PROT_READ | mmap.PROT_WRITE)  # zero-filled, this process's alone
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mapping, dtype, count=count).reshape(shape)


class CachePool:
    """The KV caches of several sequences (the parts whose bars are decoded
    together, :mod:`models.batching`) as slots of one pair of arrays, both
    (n_layer, slots, H, block_size, D) float32, so one compiled step
    (:func:`models.fast_step.decode_rows`) reads and writes any of them.

    Args:
        decoder: the decoder whose shapes the caches have.
        slots: rows the pool holds in all (a part with guidance takes two).
    """

    def __init__(self, decoder: "NumpyDecoder", slots: int) -> None:
        self.decoder = decoder
        shape = (decoder.n_layer, slots, decoder.n_head, decoder.block_size, decoder.head_dim)
        # Pages are resident only once written (and in base pages: see zeros_in_small_pages).
        self.keys = zeros_in_small_pages(shape)
        self.values = zeros_in_small_pages(shape)
        self._free = list(range(slots))

    def reserve(self, rows: int) -> int:
        """Take ``rows`` consecutive free slots for good; returns the first.

        Raises:
            ValueError: no ``rows`` consecutive slots are free.
        """
        for i, first in enumerate(self._free):
            if self._free[i:i + rows] == list(range(first, first + rows)):
                del self._free[i:i + rows]
                return first
        raise ValueError(f"the cache pool has no {rows} consecutive free slots ({len(self._free)} free)")

    def release(self, first_slot: int, rows: int) -> None:
        """Give back slots ``first_slot .. first_slot + rows - 1`` (their part
        ended); another part may :meth:`reserve` them.

        Raises:
            ValueError: a slot outside the pool, or one that is free already.
        """
        slots = range(first_slot, first_slot + rows)
        if first_slot < 0 or first_slot + rows > self.keys.shape[1] or any(slot in self._free for slot in slots):
            raise ValueError(f"slots {first_slot}..{first_slot + rows - 1} are not reserved slots of this pool")
        self._free = sorted(self._free + list(slots))

    @property
    def free_slots(self) -> int:
        """Slots not reserved."""
        return len(self._free)

    def cache(self, first_slot: int, rows: int) -> NumpyCache:
        """An empty cache over slots ``first_slot .. first_slot + rows - 1``
        (views of the pool's arrays: what it holds is written there)."""
        cache = NumpyCache.__new__(NumpyCache)
        cache.keys = self.keys[:, first_slot:first_slot + rows]
        cache.values = self.values[:, first_slot:first_slot + rows]
        cache.length = 0
        cache.block_size = self.decoder.block_size
        cache.pool = self
        cache.first_slot = first_slot
        return cache


def _normalize(x: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis (Ba et al. 2016) without its affine part,
    which :class:`NumpyDecoder` folds into the following matrix (sums times
    1/C rather than ``mean``: numpy's ``mean`` costs more in bookkeeping than
    in arithmetic at C = 192)."""
    inverse_width = 1.0 / x.shape[-1]
    centred = x - x.sum(-1, keepdims=True) * inverse_width
    variance = np.einsum("...c,...c->...", centred, centred)[..., None] * inverse_width
    return centred * (1.0 / np.sqrt(variance + _LN_EPS))


def _fold(weight: np.ndarray, bias: np.ndarray, matrix_t: np.ndarray, matrix_bias: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray]:
    """``(n * w + b) @ M + c`` = ``n @ (w[:, None] * M) + (b @ M + c)``: a
    LayerNorm's affine part folded into the matrix ``M`` (C, out) that follows it."""
    folded = np.ascontiguousarray(weight[:, None] * matrix_t, dtype=np.float32)
    folded_bias = bias @ matrix_t + (0.0 if matrix_bias is None else matrix_bias)
    return folded, folded_bias.astype(np.float32)


def _rows_times(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``x @ matrix`` for a few rows ``x`` (B, K) float32 and ``matrix`` (K, N):
    one vector-matrix product per row, which OpenBLAS runs through its vector
    path (see :meth:`NumpyDecoder.step`); returns (B, N) float32."""
    if x.shape[0] == 1:
        return x @ matrix
    out = np.empty((x.shape[0], matrix.shape[1]), np.float32)
    for row in range(x.shape[0]):
        np.dot(x[row], matrix, out=out[row])
    return out


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as ``F.gelu(approximate="tanh")``."""
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


COMPILED_PREFILL_ROWS = 48
"""A prompt of at most this many rows (tokens x guidance rows: a bar's
header) is fed by the compiled step, above it by numpy's matrix products:
on the project's machine (AMD EPYC, family 25) 11 tokens x 2 rows took
2.9 ms compiled against 3.7 ms in numpy, 172 x 2 took 40 ms against 27 ms
(numpy's matrix-matrix products win once the rows are many)."""


class NumpyDecoder:
    """The weights of a trained model as float32 numpy arrays, and its forward pass.

    Args:
        model: a :class:`models.model.MusicTransformer` (any dtype; copied to float32).
    """

    def __init__(self, model) -> None:
        config = model.config
        self.n_layer, self.n_head, self.width = config.n_layer, config.n_head, config.n_embd
        self.head_dim = config.n_embd // config.n_head
        self.block_size = config.block_size

        def array(t) -> np.ndarray:
            return np.ascontiguousarray(t.detach().float().cpu().numpy())

        self.token_embedding = array(model.token_embedding.weight)          # (V, C)
        self.position_embedding = array(model.position_embedding.weight)    # (P, C)
        # The tied head, with the final LayerNorm's affine part folded in: (C, V).
        self.head_t, self.head_b = _fold(array(model.ln_f.weight), array(model.ln_f.bias),
                                         np.ascontiguousarray(self.token_embedding.T), None)
        self.relative = getattr(model, "relative", None)
        """A model with a relative-pitch head (:class:`models.model.RelativePitch`):
        its scores are more columns of the head, after the vocabulary's, and
        the logits :meth:`step` and :meth:`forward` return are (B, V + K);
        ``relative.add`` turns them into the vocabulary's. None without."""
        if getattr(model, "relative_head", None) is not None:
            if self.relative is None:
                raise ValueError("a model with a relative-pitch head needs use_vocabulary(vocab) first")
            extra_t, extra_b = _fold(array(model.ln_f.weight), array(model.ln_f.bias),
                                     np.ascontiguousarray(array(model.relative_head.weight).T), None)
            self.head_t = np.ascontiguousarray(np.concatenate([self.head_t, extra_t], axis=1))
            self.head_b = np.concatenate([self.head_b, extra_b]).astype(np.float32)
        self.layers = []
        for block in model.blocks:
            qkv_w, qkv_b = _fold(array(block.ln_1.weight), array(block.ln_1.bias),
                                 array(block.attn.qkv.weight).T, array(block.attn.qkv.bias))       # (C, 3C)
            fc_w, fc_b = _fold(array(block.ln_2.weight), array(block.ln_2.bias),
                               array(block.mlp.fc.weight).T, array(block.mlp.fc.bias))            # (C, 4C)
            self.layers.append(dict(
                qkv_w=qkv_w, qkv_b=qkv_b,
                proj_w=array(block.attn.proj.weight).T.copy(), proj_b=array(block.attn.proj.bias),  # (C, C)
                fc_w=fc_w, fc_b=fc_b,
                out_w=array(block.mlp.proj.weight).T.copy(), out_b=array(block.mlp.proj.bias),  # (4C, C)
            ))
        self.scale = 1.0 / math.sqrt(self.head_dim)
        # The same weights stacked over layers, matrices transposed (each output's weights
        # contiguous), for the compiled step (models.fast_step).
        self._stacked = tuple(np.ascontiguousarray(np.stack([layer[name].T if name.endswith("_w") else layer[name]
                                                             for layer in self.layers]), np.float32)
                              for name in ("qkv_w", "qkv_b", "proj_w", "proj_b", "fc_w", "fc_b", "out_w", "out_b"))
        self._head_tt = np.ascontiguousarray(self.head_t.T)                   # (V, C)
        self.compiled = fast_step.decode_rows is not None
        """Whether :meth:`step` runs the compiled step (Numba imports) or the numpy one."""

    def warm_up(self) -> None:
        """Run one compiled step on a scratch cache (and one compiled draw,
        :func:`models.fast_step.draw`), so that compiling (the
        first process after an install: seconds) or loading the compiled code
        from its on-disk cache (milliseconds) happens now, at load, rather than
        in the first bar's deadline."""
        if self.compiled:
            try:
                self.step(np.zeros(1, np.int64), self.new_cache(1))
                # The compiled sampler too, with the argument types generation passes.
                fast_step.draw(np.zeros((2, 4), np.float32), 2, np.arange(3, dtype=np.int64), 3.0, 0.9, 0.95, -1,
                               1.0, 0.5)
            except Exception as error:  # a Numba that cannot compile here (no BLAS, no compiler support)
                log.warning("the compiled decoding step failed (%s: %s); decoding in numpy instead",
                            type(error).__name__, error)
                self.compiled = False

    def new_cache(self, rows: int = 1) -> NumpyCache:
        """An empty cache for ``rows`` sequences decoded in step."""
        return NumpyCache(self.n_layer, rows, self.n_head, self.block_size, self.head_dim)

    def step(self, ids: np.ndarray, cache: NumpyCache) -> np.ndarray:
        """Feed one token per row, ``ids`` (B,) int, after the ``cache.length``
        tokens already seen; returns the next-token logits, (B, V) float32
        ((B, V + K) with a relative-pitch head, :attr:`relative`):
        :meth:`forward` with T = 1, as one compiled call
        (:func:`models.fast_step.decode_rows`) when Numba imports, else in
        numpy with one vector-matrix product per row (OpenBLAS multiplies a
        (2, 192) block by a (192, 768) matrix about five times slower than two
        (192,) vectors: 60.7 µs against 2 x 11.5 µs on the project's machine,
        docs/benchmarks.md).

        Raises:
            ValueError: the context is full (``cache.room() == 0``).
        """
        start = cache.length
        if start + 1 > self.block_size:
            raise ValueError(f"context of {start + 1} tokens exceeds block_size {self.block_size}")
        ids = np.ascontiguousarray(ids, np.int64)
        if self.compiled:
            return self._compiled_prompt(ids[:, None], cache)
        (B,) = ids.shape
        H, D, C = self.n_head, self.head_dim, self.width
        end = start + 1
        x = self.token_embedding[ids] + self.position_embedding[start]                  # (B, C)
        for index, p in enumerate(self.layers):
            qkv = _rows_times(_normalize(x), p["qkv_w"]) + p["qkv_b"]                    # (B, 3C)
            cache.keys[index, :, :, start] = qkv[:, C:2 * C].reshape(B, H, D)
            cache.values[index, :, :, start] = qkv[:, 2 * C:].reshape(B, H, D)
            q = (qkv[:, :C] * self.scale).reshape(B, H, D, 1)
            scores = (cache.keys[index, :, :, :end] @ q)[..., 0]                        # (B, H, end)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            y = (scores[:, :, None, :] @ cache.values[index, :, :, :end]).reshape(B, C)  # (B, C)
            x = x + (_rows_times(y, p["proj_w"]) + p["proj_b"])
            hidden = _gelu_tanh(_rows_times(_normalize(x), p["fc_w"]) + p["fc_b"])      # (B, 4C)
            x = x + (_rows_times(hidden, p["out_w"]) + p["out_b"])
        cache.length = end
        return _rows_times(_normalize(x), self.head_t) + self.head_b                  # (B, V)

    def _compiled_prompt(self, ids: np.ndarray, cache: NumpyCache) -> np.ndarray:
        """Feed ``ids`` (B, T) after the cached tokens in one compiled call
        (:meth:`step_rows`), each token a row at its position (rows of one
        sequence see each other causally, and a row's logits are the same
        alone or in a batch); returns the logits after the last token, (B, V)."""
        B, T = ids.shape
        start = cache.length
        if cache.pool is not None:
            keys, values, first = cache.pool.keys, cache.pool.values, cache.first_slot
        else:
            keys, values, first = cache.keys, cache.values, 0
        logits = self.step_rows(np.ascontiguousarray(ids, np.int64).reshape(-1),
                                np.tile(np.arange(start, start + T, dtype=np.int64), B),
                                np.repeat(np.arange(first, first + B, dtype=np.int64), T), keys, values)
        cache.length = start + T
        return logits.reshape(B, T, -1)[:, -1]

    def step_rows(self, ids: np.ndarray, starts: np.ndarray, slots: np.ndarray, keys: np.ndarray,
                  values: np.ndarray) -> np.ndarray:
        """One token for each row of a batch of sequences: row ``r`` feeds
        ``ids[r]`` at position ``starts[r]`` of the cache in slot ``slots[r]``
        of ``keys``/``values`` (N, slots, H, S, D) (a :class:`CachePool`'s
        arrays, or one cache's); returns the logits (R, V) float32
        (:func:`models.fast_step.decode_rows`; the caller advances each
        cache's ``length``). Compiled step only.

        Raises:
            RuntimeError: the compiled step is not available (no Numba).
        """
        if not self.compiled:
            raise RuntimeError("step_rows needs the compiled decoding step (Numba)")
        return fast_step.decode_rows(np.ascontiguousarray(ids, np.int64), np.ascontiguousarray(starts, np.int64),
                                     np.ascontiguousarray(slots, np.int64), self.token_embedding,
                                     self.position_embedding, *self._stacked, self._head_tt, self.head_b, keys, values,
                                     self.n_head, np.float32(self.scale))

    def forward(self, ids: np.ndarray, cache: NumpyCache) -> np.ndarray:
        """Feed ``ids`` (B, T) int after the ``cache.length`` tokens already seen;
        returns the next-token logits after the last one, (B, V) float32
        ((B, V + K) with a relative-pitch head, :attr:`relative`). A prompt of
        at most :data:`COMPILED_PREFILL_ROWS` rows (B x T) goes through the
        compiled step, each token a row at its position; a longer one through
        numpy's matrix products. The two agree to float32 rounding (about
        1e-5 in a logit).

        Raises:
            ValueError: the context would exceed ``block_size``.
        """
        B, T = ids.shape
        start = cache.length
        if start + T > self.block_size:
            raise ValueError(f"context of {start + T} tokens exceeds block_size {self.block_size}")
        if self.compiled and B * T <= COMPILED_PREFILL_ROWS:
            return self._compiled_prompt(ids, cache)
        H, D, C = self.n_head, self.head_dim, self.width
        x = self.token_embedding[ids] + self.position_embedding[start:start + T]        # (B, T, C)
        end = start + T
        mask = None
        if T > 1:  # query i (at position start + i) sees keys 0..start + i
            mask = np.triu(np.full((T, end), -np.inf, np.float32), k=start + 1)       # (T, end)
        for index, p in enumerate(self.layers):
            qkv = _normalize(x) @ p["qkv_w"] + p["qkv_b"]                               # (B, T, 3C)
            qkv = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)                  # (3, B, H, T, D)
            cache.keys[index, :, :, start:end] = qkv[1]
            cache.values[index, :, :, start:end] = qkv[2]
            scores = (qkv[0] * self.scale) @ cache.keys[index, :, :, :end].swapaxes(-1, -2)  # (B, H, T, end)
            if mask is not None:
                scores = scores + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            y = scores @ cache.values[index, :, :, :end]                               # (B, H, T, D)
            y = y.transpose(0, 2, 1, 3).reshape(B, T, C)                               # (B, T, C)
            x = x + (y @ p["proj_w"] + p["proj_b"])
            x = x + (_gelu_tanh(_normalize(x) @ p["fc_w"] + p["fc_b"]) @ p["out_w"] + p["out_b"])  # (B, T, C)
        cache.length = end
        return _normalize(x[:, -1]) @ self.head_t + self.head_b                       # (B, V)
