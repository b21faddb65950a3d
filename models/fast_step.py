"""One decoding step of the generator's Transformer as a single compiled call (Numba).

Why: a decoding step feeds one token (two rows with classifier-free
guidance). Through numpy that is about two hundred small operations (layer
norms, reshapes, soft-max, GELU, 17 matrix-vector products) whose dispatch,
a few microseconds each on the project's machine, costs several times the
arithmetic (docs/benchmarks.md, "Generator"). Numba (Lam et al. 2015,
https://numba.pydata.org) compiles the whole step to one machine-code
function; the matrix-vector products still go to the BLAS numpy uses
(``np.dot`` of a vector and a contiguous matrix is a ``gemv`` call).

The compiled function is cached on disk beside this module (``cache=True``:
``__pycache__``), so only the first process after an install pays the
compilation (seconds); :func:`warm_up` triggers it at load, not on the first
bar. :class:`models.inference.NumpyDecoder` calls :func:`decode_step` when
Numba imports, else its numpy step.

Shapes: R rows, C width, H heads, D = C / H, S context positions (block
size), V vocabulary, N layers. All arrays float32 and C-contiguous.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba
    # Numba's np.dot calls the BLAS SciPy ships (its own OpenBLAS, not numpy's). Loaded here, at
    # import, so that the thread limits models.generate sets around a bar (threadpoolctl, which
    # sees only the libraries loaded when its controller is made) reach it too: a two-thread
    # gemv on a two-core machine shared with the render thread took three times as long.
    import scipy.linalg.cython_blas  # noqa: F401
except ImportError:  # pragma: no cover - numba and scipy are dependencies; the numpy step covers their absence
    numba = None

_LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def _decode_rows(ids, starts, slots, token_embedding, position_embedding, qkv_w, qkv_b, proj_w, proj_b, fc_w, fc_b,
                 out_w, out_b, head_t, head_b, keys, values, n_head, scale):
    """Feed token ``ids[r]`` (R,) int64 to row ``r`` at its own position
    ``starts[r]`` (R,) int64, its keys and values cached in slot ``slots[r]``
    (R,) int64 of ``keys``/``values`` (N, slots, H, S, D): written at
    ``starts[r]``, positions ``0..starts[r]`` read. Returns the next-token
    logits (R, V) float32. Rows may come from different sequences (different
    parts, different sessions: a batch); each row is computed on its own, by
    the same operations whatever the other rows are, so its logits do not
    depend on the batch. Weights: the :class:`models.inference.NumpyDecoder`
    ones stacked over layers: ``qkv_w`` (N, C, 3C), ``proj_w`` (N, C, C),
    ``fc_w`` (N, C, 4C), ``out_w`` (N, 4C, C), biases (N, out); ``head_t`` (C, V)."""
    rows = ids.shape[0]
    n_layer = qkv_w.shape[0]
    width = token_embedding.shape[1]
    head_dim = width // n_head
    inverse_width = np.float32(1.0 / width)
    logits = np.empty((rows, head_t.shape[1]), np.float32)
    x = np.empty(width, np.float32)
    normed = np.empty(width, np.float32)
    y = np.empty(width, np.float32)
    for r in range(rows):
        start = starts[r]
        slot = slots[r]
        end = start + 1
        for c in range(width):
            x[c] = token_embedding[ids[r], c] + position_embedding[start, c]
        for layer in range(n_layer):
            _layer_norm(x, normed, inverse_width)
            qkv = np.dot(normed, qkv_w[layer]) + qkv_b[layer]
            for h in range(n_head):
                base = h * head_dim
                for d in range(head_dim):
                    keys[layer, slot, h, start, d] = qkv[width + base + d]
                    values[layer, slot, h, start, d] = qkv[2 * width + base + d]
                # Scores of every position so far, soft-max, then the weighted values: one
                # matrix-vector product each over the head's contiguous (end, D) block.
                scores = np.dot(keys[layer, slot, h, :end], qkv[base:base + head_dim]) * scale
                scores = np.exp(scores - scores.max())
                scores *= np.float32(1.0) / scores.sum()
                y[base:base + head_dim] = np.dot(scores, values[layer, slot, h, :end])
            x += np.dot(y, proj_w[layer]) + proj_b[layer]
            _layer_norm(x, normed, inverse_width)
            hidden = np.dot(normed, fc_w[layer]) + fc_b[layer]
            for i in range(hidden.shape[0]):
                v = hidden[i]
                hidden[i] = 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
            x += np.dot(hidden, out_w[layer]) + out_b[layer]
        _layer_norm(x, normed, inverse_width)
        logits[r] = np.dot(normed, head_t) + head_b
    return logits


def _decode_step(ids, start, token_embedding, position_embedding, qkv_w, qkv_b, proj_w, proj_b, fc_w, fc_b,
                 out_w, out_b, head_t, head_b, keys, values, n_head, scale):
    """Feed token ``ids[r]`` (R,) int64 to row ``r`` at position ``start``
    (every row at the same one), its cache in slot ``r`` of ``keys``/``values``
    (N, R, H, S, D): :func:`decode_rows` for one sequence's rows."""
    rows = ids.shape[0]
    starts = np.full(rows, start, np.int64)
    slots = np.arange(rows)
    return _decode_rows(ids, starts, slots, token_embedding, position_embedding, qkv_w, qkv_b, proj_w, proj_b,
                        fc_w, fc_b, out_w, out_b, head_t, head_b, keys, values, n_head, scale)


def _layer_norm(x, out, inverse_width):
    """LayerNorm without its affine part (folded into the next matrix), into ``out``."""
    mean = np.float32(0.0)
    for c in range(x.shape[0]):
        mean += x[c]
    mean *= inverse_width
    variance = np.float32(0.0)
    for c in range(x.shape[0]):
        centred = x[c] - mean
        variance += centred * centred
    inverse = np.float32(1.0) / np.sqrt(variance * inverse_width + np.float32(_LN_EPS))
    for c in range(x.shape[0]):
        out[c] = (x[c] - mean) * inverse


if numba is not None:
    _layer_norm = numba.njit(cache=True, fastmath=True, nogil=True)(_layer_norm)
    _decode_rows = decode_rows = numba.njit(cache=True, fastmath=True, nogil=True)(_decode_rows)
    decode_step = numba.njit(cache=True, fastmath=True, nogil=True)(_decode_step)
else:  # pragma: no cover
    decode_step = decode_rows = None
