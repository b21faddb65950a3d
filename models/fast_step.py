"""One decoding step of the generator's Transformer as a single compiled call (Numba).

Why: a decoding step feeds one token (two rows with classifier-free
guidance, more when several parts or sessions are decoded together,
:mod:`models.batching`). Through numpy that is about two hundred small
operations (layer norms, reshapes, soft-max, GELU, 17 matrix-vector
products) whose dispatch, a few microseconds each on the project's machine,
costs several times the arithmetic (docs/benchmarks.md, "Generator").
Numba (Lam et al. 2015, https://numba.pydata.org) compiles the whole step
to one machine-code function.

Weights are read once per step for every row. The model's 1.9 M float32
weights (7.4 MB) do not fit in a core's L2 cache, so a matrix-vector product
per row is bound by reading them from L3 (one row of the whole model: about
150 µs on the project's AMD EPYC, family 25, ~12 GMAC/s). The products here
go layer by layer over all rows at once, two rows per pass over a weight
matrix (:func:`_rows_times`), so that the two rows of a guided token cost
about 1.2 times one row, not 2 (measured on the project's machine: the whole
model's products for 2 rows 187 µs against 316 µs as one ``gemv`` per row,
4 rows 292 against 561; docs/benchmarks.md, "Generator").

A row's numbers never depend on the other rows of its batch: every row,
whatever its partner, goes through the same two-row loop (an odd row out is
paired with itself), whose two halves are the same operations, so one part
decoded alone or in a batch of sessions writes the same notes
(``tests/models/test_batching.py``).

The compiled functions are cached on disk beside this module (``cache=True``:
``__pycache__``), so only the first process after an install pays the
compilation (seconds); :meth:`models.inference.NumpyDecoder.warm_up`
triggers it at load, not on the first bar. :class:`models.inference.NumpyDecoder`
calls :func:`decode_rows` when Numba imports, else its numpy step.

Shapes: R rows, C width, H heads, D = C / H, S context positions (block
size), V vocabulary, N layers. All arrays float32 and C-contiguous.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the numpy step covers its absence
    numba = None

_LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def _rows_times(x, matrix_t, bias, out):
    """``out[r] = x[r] @ matrix_t.T + bias`` for every row: ``x`` (R, K),
    ``matrix_t`` (M, K) (the weight transposed: each output's weights
    contiguous), ``bias`` (M,), ``out`` (R, M). Rows go two at a time
    through one pass over ``matrix_t``, each output a dot product of K terms
    (vectorised by LLVM: ``fastmath`` lets it sum in SIMD lanes); a last odd
    row is paired with itself, so that every row's sums are made by the same
    instructions whatever the batch."""
    rows, inner = x.shape
    outputs = matrix_t.shape[0]
    for first in range(0, rows, 2):
        second = first + 1 if first + 1 < rows else first
        for m in range(outputs):
            a = np.float32(0.0)
            b = np.float32(0.0)
            for k in range(inner):
                w = matrix_t[m, k]
                a += x[first, k] * w
                b += x[second, k] * w
            out[first, m] = a + bias[m]
            out[second, m] = b + bias[m]


def _tanh(z):
    """tanh of a float32 in float32 arithmetic, as a rational function (a
    polynomial of degree 13 over one of degree 6, the input clamped to
    ±7.905), vectorisable where ``math.tanh`` is a scalar float64 call: the
    approximation of Eigen's ``generic_fast_tanh_float``
    (Eigen/src/Core/MathFunctionsImpl.h, https://eigen.tuxfamily.org).
    Largest error over [-12, 12]: 2.6e-7 (tests/models/test_inference.py)."""
    z = min(max(z, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    z2 = z * z
    p = z2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = z2 * p + np.float32(-8.60467152213735e-11)
    p = z2 * p + np.float32(5.12229709037114e-08)
    p = z2 * p + np.float32(1.48572235717979e-05)
    p = z2 * p + np.float32(6.37261928875436e-04)
    p = z2 * p + np.float32(4.89352455891786e-03)
    q = z2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = z2 * q + np.float32(2.26843463243900e-03)
    q = z2 * q + np.float32(4.89352518554385e-03)
    return z * p / q


def _gelu_tanh(v):
    """GELU, tanh form (Hendrycks & Gimpel 2016; torch's
    ``gelu(approximate="tanh")``, what the model trains with), in float32."""
    return np.float32(0.5) * v * (np.float32(1.0) + _tanh(np.float32(0.7978845608028654)
                                                          * (v + np.float32(0.044715) * v * v * v)))


def _layer_norm_rows(x, out, inverse_width):
    """LayerNorm over each row of ``x`` (R, C) without its affine part
    (folded into the next matrix), into ``out`` (R, C)."""
    for r in range(x.shape[0]):
        mean = np.float32(0.0)
        for c in range(x.shape[1]):
            mean += x[r, c]
        mean *= inverse_width
        variance = np.float32(0.0)
        for c in range(x.shape[1]):
            centred = x[r, c] - mean
            variance += centred * centred
        inverse = np.float32(1.0) / np.sqrt(variance * inverse_width + np.float32(_LN_EPS))
        for c in range(x.shape[1]):
            out[r, c] = (x[r, c] - mean) * inverse


def _decode_rows(ids, starts, slots, token_embedding, position_embedding, qkv_t, qkv_b, proj_t, proj_b, fc_t, fc_b,
                 out_t, out_b, head_t, head_b, keys, values, n_head, scale):
    """Feed token ``ids[r]`` (R,) int64 to row ``r`` at its own position
    ``starts[r]`` (R,) int64, its keys and values cached in slot ``slots[r]``
    (R,) int64 of ``keys``/``values`` (N, slots, H, S, D): written at
    ``starts[r]``, positions ``0..starts[r]`` read. Returns the next-token
    logits (R, V) float32. Rows may come from different sequences (different
    parts, different sessions: a batch); each row's logits are the same
    alone or in a batch (:func:`_rows_times`). Rows of one slot at
    consecutive positions (a prompt fed at once) see each other causally:
    every row's keys and values of a layer are written before any row reads
    them. Two rows must not share a slot and a position.

    Weights: the :class:`models.inference.NumpyDecoder` ones stacked over
    layers and transposed (each output's weights contiguous): ``qkv_t``
    (N, 3C, C), ``proj_t`` (N, C, C), ``fc_t`` (N, 4C, C), ``out_t``
    (N, C, 4C), biases (N, out); ``head_t`` (V, C)."""
    rows = ids.shape[0]
    n_layer = qkv_t.shape[0]
    width = token_embedding.shape[1]
    head_dim = width // n_head
    inverse_width = np.float32(1.0 / width)
    x = np.empty((rows, width), np.float32)
    normed = np.empty((rows, width), np.float32)
    qkv = np.empty((rows, 3 * width), np.float32)
    y = np.empty((rows, width), np.float32)
    change = np.empty((rows, width), np.float32)
    hidden = np.empty((rows, fc_t.shape[1]), np.float32)
    logits = np.empty((rows, head_t.shape[0]), np.float32)
    scores = np.empty(keys.shape[3], np.float32)
    for r in range(rows):
        for c in range(width):
            x[r, c] = token_embedding[ids[r], c] + position_embedding[starts[r], c]
    for layer in range(n_layer):
        _layer_norm_rows(x, normed, inverse_width)
        _rows_times(normed, qkv_t[layer], qkv_b[layer], qkv)
        for r in range(rows):
            for h in range(n_head):
                base = h * head_dim
                for d in range(head_dim):
                    keys[layer, slots[r], h, starts[r], d] = qkv[r, width + base + d]
                    values[layer, slots[r], h, starts[r], d] = qkv[r, 2 * width + base + d]
        for r in range(rows):
            end = starts[r] + 1
            slot = slots[r]
            for h in range(n_head):
                base = h * head_dim
                # Scores of every position so far, soft-max, then the weighted values, as plain
                # loops over the head's contiguous (end, D) blocks (a BLAS call per head and row
                # cost more in call overhead than its arithmetic).
                largest = np.float32(-np.inf)
                for p in range(end):
                    dot = np.float32(0.0)
                    for d in range(head_dim):
                        dot += keys[layer, slot, h, p, d] * qkv[r, base + d]
                    dot *= scale
                    scores[p] = dot
                    largest = max(largest, dot)
                total = np.float32(0.0)
                for p in range(end):
                    scores[p] = np.exp(scores[p] - largest)
                    total += scores[p]
                inverse = np.float32(1.0) / total
                for d in range(head_dim):
                    y[r, base + d] = np.float32(0.0)
                for p in range(end):
                    weight = scores[p] * inverse
                    for d in range(head_dim):
                        y[r, base + d] += weight * values[layer, slot, h, p, d]
        _rows_times(y, proj_t[layer], proj_b[layer], change)
        x += change
        _layer_norm_rows(x, normed, inverse_width)
        _rows_times(normed, fc_t[layer], fc_b[layer], hidden)
        for r in range(rows):
            for i in range(hidden.shape[1]):
                hidden[r, i] = _gelu_tanh(hidden[r, i])
        _rows_times(hidden, out_t[layer], out_b[layer], change)
        x += change
    _layer_norm_rows(x, normed, inverse_width)
    _rows_times(normed, head_t, head_b, logits)
    return logits


def _draw(logits, rows, allowed, scale, temperature, top_p, discount_id, discount_factor, uniform):
    """The token :meth:`models.generate.ModelPartGenerator._sample` draws,
    compiled (:data:`draw`; plain numpy when Numba does not import), in
    float64 IEEE arithmetic (no ``fastmath``): guided scores of the ``allowed`` ids (int64) from the
    logits' rows (``rows`` 1, or 2: conditional then unconditional), over
    ``temperature``, soft-max weights, the ``discount_id`` token's weight
    times ``discount_factor`` (-1: none), a stable sort, the nucleus of mass
    ``top_p``, then inverse-CDF sampling with ``uniform`` in [0, 1)."""
    n = allowed.shape[0]
    scores = np.empty(n, np.float64)
    for i in range(n):
        conditional = np.float64(logits[0, allowed[i]])
        if rows == 2:
            unconditional = np.float64(logits[1, allowed[i]])
            scores[i] = (unconditional + scale * (conditional - unconditional)) / temperature
        else:
            scores[i] = conditional / temperature
    weights = np.exp(scores - scores.max())
    if discount_id >= 0:
        for i in range(n):
            if allowed[i] == discount_id:
                weights[i] *= discount_factor
    order = np.argsort(-weights, kind="mergesort")
    cumulative = np.cumsum(weights[order])
    keep = np.searchsorted(cumulative, top_p * cumulative[-1]) + 1
    keep = min(keep, n)
    choice = np.searchsorted(cumulative[:keep], uniform * cumulative[keep - 1], side="right")
    return allowed[order[min(choice, keep - 1)]]


if numba is not None:
    draw = numba.njit(cache=True, nogil=True)(_draw)
    _jit = numba.njit(cache=True, fastmath=True, nogil=True)
    _rows_times = _jit(_rows_times)
    _tanh = _jit(_tanh)
    _gelu_tanh = _jit(_gelu_tanh)
    _layer_norm_rows = _jit(_layer_norm_rows)
    _decode_rows = decode_rows = _jit(_decode_rows)
else:  # pragma: no cover
    decode_rows = None
    draw = _draw
