"""The numpy decoder: its cached, incremental logits equal the torch model's
full forward pass, for one row and for the two rows of guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.inference import NumpyDecoder
from models.model import KVCache, ModelConfig, MusicTransformer


@pytest.fixture(scope="module")
def model() -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()


@pytest.mark.parametrize("rows", [1, 2])
def test_incremental_numpy_logits_equal_the_full_torch_forward(model, rows):
    ids = torch.randint(0, 97, (rows, 40), generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        full = model(ids).numpy()                                    # (rows, 40, V)
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache(rows)
    logits = decoder.forward(ids[:, :11].numpy(), cache)             # a bar header's chunk
    np.testing.assert_allclose(logits, full[:, 10], atol=2e-5)
    for t in range(11, 40):                                          # then one token at a time
        logits = decoder.forward(ids[:, t:t + 1].numpy(), cache)
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5)
    assert cache.length == 40


def test_torch_kv_cache_equals_the_full_forward(model):
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache(model.config)
        chunk = model(ids[:, :12], cache)
        steps = [model(ids[:, t:t + 1], cache) for t in range(12, 30)]
    torch.testing.assert_close(chunk, full[:, :12], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 12:], atol=2e-5, rtol=1e-4)


def test_a_context_past_the_block_is_refused(model):
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache()
    decoder.forward(np.zeros((1, 60), np.int64), cache)
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        decoder.forward(np.zeros((1, 5), np.int64), cache)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba step", "numpy step"])
@pytest.mark.parametrize("rows", [1, 2])
def test_decoding_steps_equal_the_full_torch_forward(model, rows, compiled):
    """``step`` (one token per row, what generation calls for every token)
    gives the full forward pass's logits, compiled or in numpy, after a chunk
    fed by ``forward`` and across the whole block."""
    decoder = NumpyDecoder(model)
    if compiled and not decoder.compiled:
        pytest.skip("numba is not importable here")
    decoder.compiled = compiled
    ids = torch.randint(0, 97, (rows, 64), generator=torch.Generator().manual_seed(10 + rows))
    with torch.no_grad():
        full = model(ids).numpy()
    cache = decoder.new_cache(rows)
    decoder.forward(ids[:, :9].numpy(), cache)
    for t in range(9, 64):
        logits = decoder.step(ids[:, t].numpy(), cache)
        np.testing.assert_allclose(logits, full[:, t], atol=3e-5)
    assert cache.length == 64
    with pytest.raises(ValueError, match="exceeds block_size 64"):
        decoder.step(ids[:, 0].numpy(), cache)


def test_warm_up_leaves_a_decoder_ready_and_its_caches_untouched(model):
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache(2)
    decoder.warm_up()
    assert cache.length == 0 and not cache.keys.any()
    assert decoder.step(np.array([1, 2]), cache).shape == (2, 97)


def test_the_compiled_tanh_is_float32_exact_over_the_range_gelu_meets():
    from models import fast_step
    if fast_step.decode_rows is None:
        pytest.skip("numba is not importable here")
    z = np.linspace(-12, 12, 240_001, dtype=np.float32)
    approx = np.array([fast_step._tanh(value) for value in z[::97]] + [fast_step._tanh(np.float32(40.0))])
    exact = np.append(np.tanh(z[::97].astype(np.float64)), 1.0)
    assert np.abs(approx - exact).max() < 5e-7
    gelu = np.array([fast_step._gelu_tanh(value) for value in z[::97]])
    reference = torch.nn.functional.gelu(torch.from_numpy(z[::97]), approximate="tanh").numpy()
    np.testing.assert_allclose(gelu, reference, atol=2e-6)


def test_a_rows_logits_are_the_same_alone_and_anywhere_in_a_batch(model):
    """Generation of one part must give the same notes whether its rows are
    stepped alone or among other sessions' rows (the compiled step pairs rows
    through one pass over the weights): bit for bit, not just close."""
    decoder = NumpyDecoder(model)
    if not decoder.compiled:
        pytest.skip("numba is not importable here")
    rng = np.random.default_rng(5)
    pool_keys = np.zeros((2, 6, 4, 64, 8), np.float32)
    pool_values = np.zeros_like(pool_keys)
    starts = np.array([7, 3, 12, 0, 30, 5])
    for slot, length in enumerate(starts):  # each slot a context of its own, random tokens
        cache = decoder.new_cache(1)
        decoder.forward(rng.integers(0, 97, (1, max(length, 1))), cache)
        pool_keys[:, slot], pool_values[:, slot] = cache.keys[:, 0], cache.values[:, 0]
    ids = rng.integers(0, 97, 6)

    def step(rows):
        keys, values = pool_keys.copy(), pool_values.copy()
        rows = np.array(rows)
        return decoder.step_rows(ids[rows], starts[rows], rows, keys, values)

    batch = step(range(6))
    for row in range(6):
        np.testing.assert_array_equal(step([row])[0], batch[row])
    np.testing.assert_array_equal(step([4, 1, 3]), batch[[4, 1, 3]])
    np.testing.assert_array_equal(step([2, 5, 0, 1, 4]), batch[[2, 5, 0, 1, 4]])


# ---------------------------------------------------------------- the relative-pitch head


@pytest.fixture(scope="module")
def relative_model():
    """A small model with the relative-pitch head, weights random (not zero),
    over the real vocabulary (its Pitch_ and Key_ tokens)."""
    from models.model import RELATIVE_PITCH_COLUMNS
    from models.tokenizer import Vocabulary

    vocab = Vocabulary.build()
    torch.manual_seed(1)
    model = MusicTransformer(ModelConfig(vocab_size=len(vocab), block_size=64, n_layer=2, n_head=4, n_embd=32,
                                         relative_pitch_columns=RELATIVE_PITCH_COLUMNS)).use_vocabulary(vocab)
    torch.nn.init.normal_(model.relative_head.weight, std=0.5)
    return model.eval(), vocab


def _tokens(vocab, names):
    return torch.tensor([[vocab.id(n) for n in names]])


def test_the_relative_head_scores_each_pitch_by_its_interval_and_scale_degree(relative_model):
    """After ``Key_2_minor`` and ``Pitch_62``, the head adds to ``Pitch_64``
    the score of a step up (+2) and of degree 2 of D minor (E); to no other
    token anything."""
    from models.model import RELATIVE_INTERVALS

    model, vocab = relative_model
    ids = _tokens(vocab, ["BOS_None", "Key_2_minor", "Position_0", "Pitch_62", "Velocity_79", "Duration_1.0.4",
                          "Position_4"])
    with torch.no_grad():
        logits = model(ids)[0, -1]
        model.relative_head, head = None, model.relative_head
        plain = model(ids)[0, -1]
        model.relative_head = head
        hidden = _last_hidden(model, ids)
        extra = head(hidden)
    difference = logits - plain
    pitch_64 = vocab.id("Pitch_64")
    expected = extra[12 + 2] + extra[RELATIVE_INTERVALS + 12 * 1 + 2]
    torch.testing.assert_close(difference[pitch_64], expected, atol=1e-5, rtol=1e-4)
    others = torch.ones(len(vocab), dtype=torch.bool)
    others[torch.from_numpy(vocab.ids_with_prefix("Pitch_"))] = False
    assert float(difference[others].abs().max()) == 0.0
    # a leap of two octaves is scored as an octave
    pitch_86 = vocab.id("Pitch_86")
    torch.testing.assert_close(difference[pitch_86], extra[24] + extra[RELATIVE_INTERVALS + 12 + 0], atol=1e-5,
                               rtol=1e-4)


def _last_hidden(model, ids):
    x = model.token_embedding(ids) + model.position_embedding(torch.arange(ids.shape[1]))
    for block in model.blocks:
        x = block(x)
    return model.ln_f(x)[0, -1]


@pytest.mark.parametrize("rows", [1, 2])
def test_numpy_decoding_with_the_relative_head_equals_the_torch_forward(relative_model, rows):
    """The numpy decoder returns the head's scores as extra columns; with the
    last pitch and key of the sequence, ``RelativePitch.add`` gives the torch
    model's logits, as the generator uses them; and the torch KV cache
    carries the last pitch and key across calls."""
    model, vocab = relative_model
    rng = np.random.default_rng(rows)
    pitch_ids, key_ids = vocab.ids_with_prefix("Pitch_"), vocab.ids_with_prefix("Key_")
    ids = rng.choice(np.concatenate([pitch_ids[30:60], key_ids, np.arange(20)]), size=(rows, 50))
    ids[:, 0] = vocab.id("BOS_None")
    with torch.no_grad():
        full = model(torch.from_numpy(ids)).numpy()
        cache = KVCache(model.config, batch_size=rows)
        model(torch.from_numpy(ids[:, :20]), cache)
        steps = np.concatenate([model(torch.from_numpy(ids[:, t:t + 1]), cache).numpy() for t in range(20, 50)], 1)
    np.testing.assert_allclose(steps, full[:, 20:], atol=3e-5, rtol=1e-4)
    decoder = NumpyDecoder(model)
    cache = decoder.new_cache(rows)
    decoder.forward(ids[:, :20], cache)
    relative = decoder.relative
    for t in range(20, 50):
        raw = decoder.step(ids[:, t], cache)
        assert raw.shape == (rows, len(vocab) + model.config.relative_pitch_columns)
        seen = ids[0, :t + 1]
        pitches = [int(vocab.pitch[i]) for i in seen if vocab.pitch[i] >= 0]
        keys = [int(relative.key_of[i]) for i in seen if relative.key_of[i] >= 0]
        if rows == 2 and ids[1, :t + 1].tolist() != seen.tolist():
            raw = raw[:1]  # the generator's rows share their pitches; here only row 0 is checked
        logits = relative.add(raw, pitches[-1] if pitches else None, keys[-1] if keys else None)
        np.testing.assert_allclose(logits[0], full[0, t], atol=3e-5, rtol=1e-4)


def test_the_compiled_draw_picks_the_token_the_numpy_sampler_picks():
    """A machine without Numba must write the same notes: over random logits,
    allowed sets, guidance scales, nuclei and discounts, the compiled draw
    and the same function run by numpy (what runs without Numba) choose the
    same token."""
    from models import fast_step
    from models.generate import ModelPartGenerator
    if fast_step.decode_rows is None:
        pytest.skip("numba is not importable here")
    rng = np.random.default_rng(9)
    compiled = fast_step.draw
    chosen = set()
    try:
        for trial in range(400):
            rows = 1 + trial % 2
            logits = (rng.standard_normal((rows, 120)) * rng.uniform(0.5, 6)).astype(np.float32)
            if trial % 7 == 0:
                logits[:, :40] = logits[0, 0]  # ties: the stable order decides
            allowed = np.sort(rng.choice(120, size=int(rng.integers(1, 60)), replace=False)).astype(np.int64)
            discount = (int(rng.choice(allowed)), 0.5) if trial % 3 == 0 else None
            arguments = (logits, float(rng.uniform(1, 4)), allowed)
            options = (float(rng.uniform(0.7, 1.2)), float(rng.uniform(0.8, 1.0)), discount)
            fast_step.draw = compiled
            a = ModelPartGenerator._sample(*arguments, np.random.default_rng(trial), *options)
            fast_step.draw = fast_step._draw  # the plain Python function, numpy doing the arithmetic
            b = ModelPartGenerator._sample(*arguments, np.random.default_rng(trial), *options)
            assert a == b, trial
            chosen.add(a)
    finally:
        fast_step.draw = compiled
    assert len(chosen) > 50  # the trials drew many different tokens, not one
